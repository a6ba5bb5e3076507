"""Create, list and revoke API tokens (the admin's Auth tokens page does the same)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Manage API tokens: create USER [--days N], list [USER], revoke USER [--key PREFIX]."

    def add_arguments(self, parser: Any) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        create = sub.add_parser("create", help="print a new token for USER (shown once)")
        create.add_argument("username")
        create.add_argument("--days", type=int, default=None, help="expiry (default: settings)")
        listing = sub.add_parser("list", help="tokens and their expiry (not the tokens)")
        listing.add_argument("username", nargs="?")
        revoke = sub.add_parser("revoke", help="revoke USER's tokens")
        revoke.add_argument("username")
        revoke.add_argument("--key", help="only the token starting with these characters")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        getattr(self, f"_{verb}")(**options)

    def _user(self, username: str) -> Any:
        try:
            return get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user named {username!r}") from None

    def _create(self, username: str, days: int | None, **_: Any) -> None:
        user = self._user(username)
        expiry = dt.timedelta(days=days) if days else None
        instance, token = (
            AuthToken.objects.create(user, expiry=expiry)
            if days
            else AuthToken.objects.create(user)
        )
        self.stdout.write(token)
        when = instance.expiry.isoformat() if instance.expiry else "never"
        self.stderr.write(f"Token for {username}, expires {when}; it is not shown again.")

    def _list(self, username: str | None = None, **_: Any) -> None:
        tokens = AuthToken.objects.select_related("user").order_by("user__username", "created")
        if username:
            tokens = tokens.filter(user=self._user(username))
        for token in tokens:
            expiry = token.expiry.isoformat() if token.expiry else "never"
            self.stdout.write(f"{token.user.get_username()}\t{token.token_key}…\t{expiry}")

    def _revoke(self, username: str, key: str | None = None, **_: Any) -> None:
        tokens = AuthToken.objects.filter(user=self._user(username))
        if key:
            tokens = tokens.filter(token_key__startswith=key[:15])
        count, _ = tokens.delete()
        self.stdout.write(f"Revoked {count} token(s).")
