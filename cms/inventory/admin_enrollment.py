"""QuickConnect enrollment secrets in the admin: issued on save, or on request.

A secret is a credential: it is shown once, in a message to the administrator who
saved the server or ran the action (both need the change permission), never on a
page anyone can open later.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from cms.nodes import enrollment


def directory_url(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("nodes:qc-register")).rsplit("/", 1)[0]


def show_secret(request: HttpRequest, qc_id: str, secret: str) -> None:
    messages.warning(
        request,
        format_html(
            "QuickConnect ID {}: enrollment secret <code>{}</code> (shown only now). Start "
            "the node with <code>cms-node serve --quickconnect-id {} --directory {} …</code> "
            "and the secret in the environment variable <code>{}</code> (or "
            "<code>--quickconnect-enrollment</code>). Its first registration spends the "
            "secret and binds the ID; until then the server cannot be reached.",
            qc_id,
            secret,
            qc_id,
            directory_url(request),
            enrollment.ENROLLMENT_ENV,
        ),
    )


class EnrollmentAdminMixin:
    """For the server tabs: a secret on add or on a new ID, and the action to renew it."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        # The form's initial values are the stored ones: the ID reached before this save.
        before = form.initial if change else {}
        previous = enrollment.quickconnect_id_of(
            before.get("connection_type"), before.get("quickconnect_id")
        )
        super().save_model(request, obj, form, change)  # type: ignore[misc]
        secret = enrollment.issue_for_server(obj, previous)
        if secret:
            show_secret(request, obj.quickconnect_id, secret)

    @admin.action(
        description="Issue a new QuickConnect enrollment secret (a node was replaced)",
        permissions=["change"],
    )
    def issue_enrollment_secret(self, request: HttpRequest, queryset: Any) -> None:
        for server in queryset:
            qc_id = enrollment.quickconnect_id_of(server.connection_type, server.quickconnect_id)
            if qc_id is None:
                self.message_user(  # type: ignore[attr-defined]
                    request,
                    f"{server.name} is reached by an IP address or FQDN: it has no "
                    "QuickConnect ID to enroll.",
                    messages.ERROR,
                )
                continue
            show_secret(request, qc_id, enrollment.issue(qc_id))
