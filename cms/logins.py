"""Protection of the two login doors, the admin's form and the API's `auth/login/`.

django-axes counts failed logins in the database, so every web process and every
CMS host shares one count (a per-process counter let three times the limit
through with three processes). An account, or a client address, that fails
`CMS_LOGIN_FAILURES` times in a row is refused, the right password included,
until `CMS_LOGIN_COOLOFF_MINUTES` have passed.

The client address is the peer's, unless `CMS_TRUSTED_PROXIES` says how many
reverse proxies in front of the CMS append to X-Forwarded-For: only the address
the outermost trusted proxy saw counts, so a header the client sends itself
changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def client_address(request: HttpRequest) -> str | None:
    proxies = settings.CMS_TRUSTED_PROXIES
    if proxies:
        hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        hops = [h for h in hops if h]
        if len(hops) >= proxies:
            return hops[-proxies]
    return request.META.get("REMOTE_ADDR")


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    minutes = settings.CMS_LOGIN_COOLOFF_MINUTES
    message = (
        f"Too many failed logins for this account or from this address; try again in "
        f"{minutes} minutes, or ask an administrator to unlock it (Axes > Access attempts)."
    )
    if request.path.startswith("/api/"):
        error = {"code": "throttled", "message": message, "retry_after": minutes * 60}
        response: HttpResponse = JsonResponse({"error": error}, status=429)
    else:
        response = render(request, "admin/locked_out.html", {"message": message}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
