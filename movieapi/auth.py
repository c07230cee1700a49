"""Bearer tokens (django-rest-knox: stored as hashes, expiring): log in and log out."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from movieapi.fields import StrictCharField, StrictSerializerMixin


class LoginSerializer(StrictSerializerMixin, serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    expiry = serializers.DateTimeField()


class TokenView(APIView):
    """Log in: username and password in, a bearer token out."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    @extend_schema(request=LoginSerializer, responses={201: TokenSerializer}, summary="Log in")
    def post(self, request: Request) -> Response:
        """Check the credentials and issue a new expiring token."""
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        instance, token = AuthToken.objects.create(user=user)
        return Response({"token": token, "expiry": instance.expiry}, status=status.HTTP_201_CREATED)


class CurrentTokenView(APIView):
    """Log out: revoke the token this request carries."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Token revoked")}, summary="Log out")
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the token used for this request."""
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
