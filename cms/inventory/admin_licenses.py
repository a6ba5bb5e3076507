"""Installed licenses on a server's page: add (a new key or one not installed) and remove.

Both go through `cms.inventory.licenses`, so the node is changed first, with no
transaction open, and every move lands in the license's history; a refused install
leaves nothing behind.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_POST

from cms.audit import actor_name
from cms.nodes.errors import NodeBusy, NodeError
from cms.nodes.webcalls import address_of, web_node_call
from cms.permissions import can

from . import licenses
from .models import License, Server


def panel(request: HttpRequest, server: Server) -> dict[str, Any]:
    """What the server page shows: its licenses and, for who may, the add/remove forms."""
    return {
        "installed": list(server.licenses.order_by("key")),
        "available": list(
            License.objects.for_user(request.user)
            .filter(team_id=server.team_id, server__isnull=True)
            .order_by("key")
        ),
        "can_manage": can(request.user, "manage_licenses"),
        "add_url": reverse(_url(server, "license_add"), args=[server.pk]),
        "remove_url": reverse(_url(server, "license_remove"), args=[server.pk]),
    }


def _url(server: Server, action: str) -> str:
    return f"admin:inventory_{server.role}server_{action}"


def _server(request: HttpRequest, model_admin: Any, object_id: int) -> Server:
    if not can(request.user, "manage_licenses"):
        raise PermissionDenied
    return get_object_or_404(model_admin.get_queryset(request), pk=object_id)


# ASCII digits only: the database lookup raises on "abc" (a 500), and int() would take
# " 7", "+7" or a full-width "\uff17" as license 7.
_ID = re.compile(r"[0-9]{1,18}")


def _license_id(value: str | None) -> int:
    """A license id from the form, or 404 as for one that does not exist."""
    if value is None or not _ID.fullmatch(value):
        raise Http404("No such license.")
    return int(value)


def _back(server: Server) -> HttpResponse:
    url = reverse(f"admin:inventory_{server.role}server_change", args=[server.pk])
    return HttpResponseRedirect(url + "#cms-licenses")


@require_POST
def add_view(request: HttpRequest, model_admin: Any, object_id: int) -> HttpResponse:
    server = _server(request, model_admin, object_id)
    existing, key = request.POST.get("license"), request.POST.get("key", "").strip()
    try:
        if existing:
            # Any license the user may see: one of another team is refused by
            # licenses.install with a message, not taken for a missing one.
            lic = get_object_or_404(
                License.objects.for_user(request.user).select_related("server", "team"),
                pk=_license_id(existing),
            )
            # Offered as installed nowhere: never take it from a server meanwhile (checked
            # again when the move is recorded, after the node answered).
            if lic.server is not None:
                raise ValidationError(
                    f"License {lic.key} was installed on {lic.server.name} meanwhile; "
                    "remove it there first."
                )
        else:
            lic = License(key=key, team=server.team, cameras=request.POST.get("cameras") or 1)
            lic.full_clean()  # saved only once the node has taken it
        with web_node_call(address_of(server)):
            licenses.install(lic, server, actor=actor_name(request.user))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except (licenses.LicenseMovedMeanwhile, licenses.LicenseOfAnotherTeam) as exc:
        messages.error(request, str(exc))
    except NodeBusy as exc:
        messages.error(request, f"{server.name}: {exc}")
    except NodeError as exc:
        messages.error(request, f"{server.name} refused the license: {exc}")
    else:
        messages.success(request, f"License {lic.key} installed on {server.name}.")
    return _back(server)


@require_POST
def remove_view(request: HttpRequest, model_admin: Any, object_id: int) -> HttpResponse:
    server = _server(request, model_admin, object_id)
    lic = get_object_or_404(server.licenses.all(), pk=_license_id(request.POST.get("license")))
    try:
        with web_node_call(address_of(server)):
            licenses.uninstall(lic, actor=actor_name(request.user))
    except licenses.LicenseMovedMeanwhile as exc:
        messages.error(request, str(exc))
    except NodeBusy as exc:
        messages.error(request, f"{server.name}: {exc}")
    except NodeError as exc:
        messages.error(request, f"{server.name} could not remove the license: {exc}")
    else:
        messages.success(
            request, f"License {lic.key} removed from {server.name}; it can be installed again."
        )
    return _back(server)
