from django.contrib import admin
from django.urls import include, path
from django.views import defaults
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("qc/", include("cms.nodes.urls")),
    path("api/", include("cms.api.urls")),
]


def _api_aware(handler, status: int, code: str, message: str):
    """Under /api/ errors are JSON in the API's one shape; elsewhere Django's pages."""
    from django.http import JsonResponse

    def view(request, *args, **kwargs):
        if request.path.startswith("/api/"):
            return JsonResponse({"error": {"code": code, "message": message}}, status=status)
        return handler(request, *args, **kwargs)

    return view


handler404 = _api_aware(defaults.page_not_found, 404, "not_found", "Not found.")
handler500 = _api_aware(defaults.server_error, 500, "server_error", "Internal error.")
