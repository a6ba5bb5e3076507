"""Admin forms: the name rule, the address checks and a write-only password."""

from __future__ import annotations

from typing import Any

from django import forms

from .choices import NameSource
from .models import Server, Team


class ServerForm(forms.ModelForm):
    admin_password_input = forms.CharField(
        label="Admin password",
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The node's admin password. Stored encrypted; leave empty to keep the "
        "current one.",
    )

    class Meta:
        model = Server
        fields = [
            "team",
            "name",
            "connection_type",
            "host",
            "port",
            "use_https",
            "quickconnect_id",
            "admin_username",
            "enabled",
        ]

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Spaces at either end break the name rule; say so instead of trimming silently.
        if "name" in self.fields:  # absent for a view-only user (read-only page)
            self.fields["name"].strip = False
        if user is not None and "team" in self.fields:
            self.fields["team"].queryset = Team.objects.for_user(user)
        if not self.instance.pk and "admin_password_input" in self.fields:
            self.fields["admin_password_input"].required = True
            self.fields[
                "admin_password_input"
            ].help_text = "The node's admin password. Stored encrypted, never shown again."

    # Whether the user confirmed what saving would cost (see cms.inventory.actions.edit);
    # a form that asks sets it from its own field.
    consequences_confirmed = False

    def _post_clean(self) -> None:
        # A name typed here follows the rule, even if a naming rule made the old one.
        if "name" in self.changed_data:
            self.instance.name_source = NameSource.CUSTOM
        super()._post_clean()

    def save(self, commit: bool = True) -> Server:
        password = self.cleaned_data.get("admin_password_input")
        if password:
            self.instance.admin_password = password
        return super().save(commit=commit)
