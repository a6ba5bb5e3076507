"""Re-encrypt every stored secret with the newest key."""

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import transaction

from cms.inventory import secrets
from cms.inventory.models import Server
from cms.nodes.models import PendingPairing


class Command(BaseCommand):
    help = (
        "Re-encrypt node credentials with the first key of CMS_SECRET_KEYS. "
        "Rotation: put a new key first, run this, then remove the old key. "
        "With --new-key (development key file only) a key is generated and put first."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--new-key",
            action="store_true",
            help="Generate a new key into the development key file before re-encrypting.",
        )

    def handle(self, *args, new_key: bool, **options) -> None:
        from cryptography.fernet import Fernet
        from django.conf import settings

        if new_key:
            if settings.CMS_SECRET_KEYS:
                self.stderr.write(
                    "CMS_SECRET_KEYS is set: add the new key to it yourself (first), "
                    "then run this command without --new-key."
                )
                raise SystemExit(2)
            keys = secrets.configured_keys()
            path = settings.CMS_SECRET_KEYS_FILE
            path.write_text("\n".join([Fernet.generate_key().decode(), *keys]) + "\n")
            self.stdout.write(f"A new key was put first in {path}.")

        count = 0
        with transaction.atomic():
            # Node passwords and pairing keys, pairing keys waiting for their server, and
            # the alert channels' URLs (by name: the inventory does not import that app).
            for model, field in (
                (Server, "admin_password"),
                (Server, "pairing_key"),
                (PendingPairing, "key"),
                (apps.get_model("alerts", "Channel"), "url"),
            ):
                for pk, secret in (
                    model.objects.select_for_update()
                    .exclude(**{field: ""})
                    .values_list("pk", field)
                    .iterator()
                ):
                    rotated = secrets.Secret.from_token(secrets.rotate(secret.token()))
                    model.objects.filter(pk=pk).update(**{field: rotated})
                    count += 1
        self.stdout.write(f"Re-encrypted {count} secret(s) with the newest key.")
