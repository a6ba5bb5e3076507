from django.urls import path

from cms.nodes import views

app_name = "nodes"
urlpatterns = [
    path("register", views.register, name="qc-register"),
    path("resolve/<str:qc_id>", views.resolve, name="qc-resolve"),
]
