"""Create the first admin user (and the default team) if there is none, and print the login."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from cms.inventory.models import Team, TeamMembership


class Command(BaseCommand):
    help = "Create the admin user on first run and print how to log in."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("CMS_ADMIN_USER", "admin"))

    def handle(self, *args, username: str, **options) -> None:
        from django.conf import settings

        User = get_user_model()
        team, _ = Team.objects.get_or_create(
            name="Default", defaults={"description": "Servers not assigned to another team."}
        )
        # The generated password is kept in var/ (mode 0600) so the login can be printed
        # again on every start; an operator who changes it in the admin is not overridden.
        password_file = settings.VAR_DIR / "admin-password"
        user = User.objects.filter(username=username).first()
        if user is None:
            password = os.environ.get("CMS_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(password + "\n")
        TeamMembership.objects.get_or_create(team=team, user=user)
        shown = password_file.read_text().strip() if password_file.exists() else "(unchanged)"
        if not user.check_password(shown):
            shown = "(changed since it was generated; not shown)"
        self.stdout.write(f"Admin login: user {username!r}, password {shown!r}")
