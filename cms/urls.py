from django.conf import settings
from django.contrib import admin
from django.http import FileResponse, HttpRequest
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView

from failover import metrics


def favicon(request: HttpRequest) -> FileResponse:
    """What browsers ask for at /favicon.ico before they read a page's <link rel=icon>."""
    icon = settings.BASE_DIR / "static" / "cms" / "favicon.ico"
    response = FileResponse(icon.open("rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("favicon.ico", favicon),
    path("admin/", admin.site.urls),
    path("qc/", include("cms.nodes.urls")),
    path("api/", include("cms.api.urls")),
    # Prometheus: a token (CMS_METRICS_TOKEN) or a staff login
    path("metrics", metrics.view, name="metrics"),
]


def _api_aware(handler, status: int, code: str, message: str):
    """Under /api/ errors are JSON in the API's one shape; elsewhere Django's pages."""
    from django.core.exceptions import RequestDataTooBig
    from django.http import JsonResponse

    def view(request, *args, **kwargs):
        if request.path.startswith("/api/"):
            error = {"code": code, "message": message}
            if isinstance(kwargs.get("exception"), RequestDataTooBig):
                error = {"code": "request_too_large", "message": "The request body is larger "
                         f"than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."}  # fmt: skip
            return JsonResponse({"error": error}, status=status)
        return handler(request, *args, **kwargs)

    return view


handler400 = _api_aware(defaults.bad_request, 400, "bad_request", "Bad request.")
handler403 = _api_aware(defaults.permission_denied, 403, "permission_denied", "Forbidden.")
handler404 = _api_aware(defaults.page_not_found, 404, "not_found", "Not found.")
handler500 = _api_aware(defaults.server_error, 500, "server_error", "Internal error.")
