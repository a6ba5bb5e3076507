"""API tokens for scripts (knox: only a hash of each token is stored)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle
from rest_framework.views import APIView

from .errors import error_response


class LoginThrottle(AnonRateThrottle):
    rate = "20/min"


class LoginView(APIView):
    """Exchange a username and password for a token (shown once)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [LoginThrottle]

    @extend_schema(
        request=inline_serializer("Login", {"username": serializers.CharField(),
                                            "password": serializers.CharField()}),
        responses={200: inline_serializer("Token", {"token": serializers.CharField(),
                                                    "expiry": serializers.DateTimeField()})},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        user = authenticate(request, username=request.data.get("username", ""),
                            password=request.data.get("password", ""))  # fmt: skip
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
