"""Deployment checks of the project's own settings (`manage.py check --deploy`)."""

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register(deploy=True)
def secret_keys_from_environment(app_configs: Any, **kwargs: Any) -> list[Warning]:
    if settings.CMS_SECRET_KEYS:
        return []
    return [
        Warning(
            "CMS_SECRET_KEYS is not set: node passwords are encrypted with a development "
            f"key generated into {settings.CMS_SECRET_KEYS_FILE}.",
            hint="Generate a key with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'` and set CMS_SECRET_KEYS.",
            id="cms.W001",
        )
    ]
