"""The channel form: a write-only URL, checked by apprise before it is stored."""

from __future__ import annotations

from typing import Any

import apprise
from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from .kinds import Kind
from .models import Channel


def url_errors(url: str) -> str:
    """Why apprise cannot use `url` (without repeating it: it may hold a secret)."""
    if not apprise.Apprise().add(url):
        return "Apprise does not support this URL; see the apprise wiki for each service's form."
    return ""


def address_errors(emails: str) -> str:
    for line in emails.splitlines():
        if line.strip():
            try:
                validate_email(line.strip())
            except ValidationError:
                return f"{line.strip()!r} is not an e-mail address."
    return ""


class ChannelForm(forms.ModelForm):
    url_input = forms.CharField(
        label="Apprise URL",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="E.g. json://receiver.example/hook, slack://..., mailtos://... "
        "Stored encrypted, never shown again; leave empty to keep the current one.",
    )
    kinds = forms.MultipleChoiceField(
        choices=Kind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every kind.",
    )

    class Meta:
        model = Channel
        fields = ["team", "name", "type", "emails", "kinds", "enabled"]

    def __init__(self, *args: Any, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user is not None and "team" in self.fields:
            self.fields["team"].queryset = self.fields["team"].queryset.for_user(user)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        url = data.get("url_input", "")
        if data.get("type") == Channel.APPRISE:
            if url:
                if error := url_errors(url):
                    self.add_error("url_input", error)
            elif not self.instance.url:
                self.add_error("url_input", "An apprise channel needs its URL.")
        if data.get("type") == Channel.EMAIL:
            if not data.get("emails", "").strip():
                self.add_error("emails", "An e-mail channel needs at least one address.")
            elif error := address_errors(data["emails"]):
                self.add_error("emails", error)
        return data

    def save(self, commit: bool = True) -> Channel:
        if self.cleaned_data.get("url_input"):
            self.instance.url = self.cleaned_data["url_input"]
        return super().save(commit)
