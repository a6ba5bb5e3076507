"""A model field that stores a Secret encrypted and never hands out plaintext by accident."""

from typing import Any

from django.db import models

from .secrets import Secret


class EncryptedSecretField(models.TextField):
    """Ciphertext in the column, a `Secret` on the instance.

    Decryption is lazy: loading a list of servers costs nothing until a secret is
    revealed. Assigning a plain str encrypts it when saved.
    """

    description = "A secret encrypted at rest with the CMS keys"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Secret:
        return Secret.from_token(value) if value else Secret("")

    def to_python(self, value: Any) -> Secret:
        if isinstance(value, Secret):
            return value
        if value is None:
            return Secret("")
        return Secret(str(value))

    def get_prep_value(self, value: Any) -> str:
        if value is None or value == "":
            return ""
        secret = self.to_python(value)
        return secret.token() if secret else ""

    def value_to_string(self, obj: models.Model) -> str:
        # serialisers (dumpdata) get the ciphertext, never the plaintext
        return self.get_prep_value(self.value_from_object(obj))

    def formfield(self, **kwargs: Any) -> None:
        # Forms declare their own write-only password field.
        return None

    def contribute_to_class(self, cls: type, name: str, **kwargs: Any) -> None:
        super().contribute_to_class(cls, name, **kwargs)
        setattr(cls, self.attname, _SecretDescriptor(self))


class _SecretDescriptor:
    """Turns whatever is assigned into a Secret, so `obj.field` is always one."""

    def __init__(self, field: EncryptedSecretField) -> None:
        self.field = field

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return instance.__dict__.get(self.field.attname, Secret(""))

    def __set__(self, instance: Any, value: Any) -> None:
        instance.__dict__[self.field.attname] = self.field.to_python(value)
