"""Admin forms: the name rule, the address checks and a write-only password."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from cms.actions import ConfirmationRequired
from cms.nodes.errors import NodeBusy
from cms.nodes.webcalls import address_of, web_node_call

from . import identity
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

    confirm_node_replacement = forms.BooleanField(
        label="Replace the node",
        required=False,
        help_text="Tick when the new address is another node on purpose: the server's "
        "serial, model and version then follow the new node.",
    )

    # Whether the user confirmed what saving would cost (see cms.inventory.actions.edit);
    # a form that asks sets it from its own field.
    consequences_confirmed = False

    def _post_clean(self) -> None:
        # A name typed here follows the rule, even if a naming rule made the old one.
        if "name" in self.changed_data:
            self.instance.name_source = NameSource.CUSTOM
        super()._post_clean()
        if not self._errors:  # the node is asked only about a form that is otherwise valid
            self._check_node()

    def _check_node(self) -> None:
        """Add Server and a changed address reach the node before saving (identity.py)."""
        server, password = self.instance, self.cleaned_data.get("admin_password_input")
        stored = Server.objects.filter(pk=server.pk).first() if server.pk else None
        if stored is not None and not identity.connection_changed(
            stored, server, password_changed=bool(password)
        ):
            return
        probe = Server(**{f: getattr(server, f) for f in identity.CONNECTION_FIELDS})
        probe.role, probe.team_id = server.role, server.team_id
        probe.tls_fingerprint = server.tls_fingerprint
        probe.admin_password = password or (stored.admin_password if stored else "")
        try:
            with web_node_call(address_of(probe)):
                if stored is None:
                    report = identity.check_node(probe, server.role,
                                                 login_field="admin_password_input")  # fmt: skip
                else:
                    report = identity.check_edit(
                        stored, probe, login_field="admin_password_input",
                        replace_confirmed=bool(self.cleaned_data.get("confirm_node_replacement")),
                    )  # fmt: skip
        except NodeBusy as exc:
            self.add_error(None, exc.message)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        except ConfirmationRequired as exc:
            where = "confirm_node_replacement"
            where = where if where in self.fields else None
            self.add_error(where, [*exc.consequences, "Tick 'Replace the node' to save anyway."])
        else:
            identity.adopt(server, report)

    def save(self, commit: bool = True) -> Server:
        password = self.cleaned_data.get("admin_password_input")
        if password:
            self.instance.admin_password = password
        return super().save(commit=commit)
