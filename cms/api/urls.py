"""The API's URLs: the framework's (auth, schema, docs) and each app's viewsets."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from cms.alerts import api as alerts_views
from cms.inventory.api import views as inventory_views
from failover.api import drills as failover_drills
from failover.api import views as failover_views

from .audit import AuditViewSet
from .tokens import LoginView, LogoutView

# The one place that knows both apps: failover's recording server list is the
# inventory's with failover's actions added.
router = DefaultRouter()
router.register("teams", inventory_views.TeamViewSet, basename="team")
router.register("recording-servers", failover_views.RecordingServerViewSet,
                basename="recording-server")  # fmt: skip
router.register("failover-servers", failover_views.FailoverServerViewSet,
                basename="failover-server")  # fmt: skip
router.register("licenses", inventory_views.LicenseViewSet, basename="license")
router.register("protections", failover_views.ProtectionViewSet, basename="protection")
router.register("events", failover_views.FailoverEventViewSet, basename="event")
router.register("restorations", failover_views.RestorationJobViewSet, basename="restoration")
router.register("drills", failover_drills.DrillViewSet, basename="drill")
router.register("audit", AuditViewSet, basename="audit")
router.register("alert-channels", alerts_views.ChannelViewSet, basename="alert-channel")
router.register("alerts", alerts_views.AlertViewSet, basename="alert")

settings_view = failover_views.FailoverSettingsViewSet.as_view(
    {"get": "read", "put": "put", "patch": "patch"}
)

capacity_view = failover_views.CapacityViewSet.as_view({"get": "table"})
what_if_view = failover_views.CapacityViewSet.as_view({"get": "what_if"})
guard_view = failover_views.GuardViewSet.as_view({"get": "state"})
guard_release_view = failover_views.GuardViewSet.as_view({"post": "release"})

urlpatterns = [
    path("v1/capacity/", capacity_view, name="capacity"),
    path("v1/capacity/what-if/", what_if_view, name="capacity-what-if"),
    path("v1/failover-settings/", settings_view, name="failover-settings"),
    path("v1/guard/", guard_view, name="guard"),
    path("v1/guard/release/", guard_release_view, name="guard-release"),
    path("v1/auth/login/", LoginView.as_view(), name="api-login"),
    path("v1/auth/logout/", LogoutView.as_view(), name="api-logout"),
    path("v1/", include(router.urls)),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
