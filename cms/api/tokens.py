"""API tokens for scripts (knox: only a hash of each token is stored)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .errors import error_response


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)


class LoginView(APIView):
    """Exchange a username and password for a token (shown once).

    Failed logins are counted by django-axes in the database (cms/logins.py), for
    every process and host alike; a locked account or address answers 429.
    """

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        request=LoginSerializer,
        responses={200: inline_serializer("Token", {"token": serializers.CharField(),
                                                    "expiry": serializers.DateTimeField()})},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        login = LoginSerializer(data=request.data)
        login.is_valid(raise_exception=True)
        # The Django request: django-axes marks a lockout on it for its middleware.
        user = authenticate(request._request, **login.validated_data)
        if user is None:
            return error_response(401, "not_authenticated", "Wrong username or password.")
        instance, token = AuthToken.objects.create(user)
        return Response({"token": token, "expiry": instance.expiry})


class LogoutView(APIView):
    """Revoke the token this request was made with."""

    permission_classes = [permissions.IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, *args: Any) -> Response:
        if isinstance(request.auth, AuthToken):
            request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


def revoke_tokens_on_password_change(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A new password ends every API token of its user (pre_save of the user model):
    whoever learnt the old password may have made tokens with it."""
    fields = kwargs.get("update_fields")
    if not instance.pk or (fields is not None and "password" not in fields):
        return  # e.g. last_login on every login: no password change, no query
    old = type(instance).objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        AuthToken.objects.filter(user_id=instance.pk).delete()
