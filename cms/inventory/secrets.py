"""Encryption at rest for node credentials.

Keys are Fernet keys, newest first, from CMS_SECRET_KEYS. Without it, one
development key is generated into var/ so that a bare machine works; production
sets the variable. To rotate: put a new key first, run `manage.py rotate_secrets`,
then drop the old key.
"""

from __future__ import annotations

import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MASK = "********"


def _key_file_keys() -> list[str]:
    path = settings.CMS_SECRET_KEYS_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode() + "\n")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def configured_keys() -> list[str]:
    return list(settings.CMS_SECRET_KEYS) or _key_file_keys()


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "CMS_SECRET_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes), "
            "comma-separated, newest first."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet_for(tuple(configured_keys()))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with the configured keys: "
            "was a key removed from CMS_SECRET_KEYS before `rotate_secrets` ran?"
        ) from exc


def rotate(token: str) -> str:
    """Re-encrypt a token with the newest key."""
    return fernet().rotate(token.encode("ascii")).decode("ascii")


class Secret:
    """A secret that does not show itself: repr, str and format all print a mask.

    It holds the ciphertext from the database, or the plaintext just typed; the
    plaintext is produced only by an explicit `reveal()`.
    """

    __slots__ = ("_plain", "_token")

    def __init__(self, plain: str | None = None, *, token: str | None = None) -> None:
        self._plain = plain
        self._token = token

    @classmethod
    def from_token(cls, token: str) -> Secret:
        return cls(token=token)

    def reveal(self) -> str:
        if self._plain is None:
            self._plain = decrypt(self._token) if self._token else ""
        return self._plain

    @property
    def is_new(self) -> bool:
        """Typed in and not stored yet (so a save changes the stored secret)."""
        return self._token is None and bool(self._plain)

    def token(self) -> str:
        """The ciphertext to store; encrypts on first use only."""
        if self._token is None:
            self._token = encrypt(self._plain or "")
        return self._token

    def __bool__(self) -> bool:
        return bool(self._token) or bool(self._plain)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self.reveal() == other.reveal()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __reduce__(self):  # pickling would bypass the mask; store the ciphertext only
        return (Secret.from_token, (self.token(),))
