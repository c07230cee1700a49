"""Bearer tokens (django-rest-knox: stored as hashes, expiring): log in and log out."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from movieapi.authentication import TokenAuthentication
from movieapi.fields import StrictCharField, StrictSerializerMixin
from movieapi.idempotency import IDEMPOTENCY_KEY, respond_once
from movieapi.sql import REGISTRATION_LOCK_SQL
from movieapi.tokens import user_tokens_revoke


class LoginSerializer(StrictSerializerMixin, serializers.Serializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=4096, trim_whitespace=False)


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Bearer <token>`.")
    expiry = serializers.DateTimeField()


class TokenView(APIView):
    """Log in: username and password in, a bearer token out; log out everywhere: all the caller's tokens revoked."""

    authentication_classes = [TokenAuthentication]
    throttle_scope = "auth"

    def get_permissions(self) -> list[Any]:
        """Anyone may log in; only a token holder may revoke their tokens."""
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    @extend_schema(request=LoginSerializer, responses={201: TokenSerializer}, summary="Log in")
    def post(self, request: Request) -> Response:
        """Check the credentials and issue a new expiring token."""
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = authenticate(request._request, **serializer.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("Wrong username or password.")
        # Tokens are checked for expiry when used (TokenAuthentication); the expired ones are cleared here.
        AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
        instance, token = AuthToken.objects.create(user=user)
        return Response({"token": token, "expiry": instance.expiry}, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={204: OpenApiResponse(description="Every token of the caller revoked, this one included")},
        summary="Log out everywhere",
    )
    def delete(self, request: Request) -> Response:
        """Revoke every token of the caller (all their devices and scripts must log in again)."""
        user_tokens_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class CurrentTokenView(APIView):
    """Log out: revoke the token this request carries."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Token revoked")}, summary="Log out")
    def delete(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the token used for this request."""
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---- registration ------------------------------------------------------------------------------


class RegistrationSerializer(StrictSerializerMixin, serializers.Serializer):
    """A new account: username, email and a password Django's validators accept."""

    read_only_input = frozenset({"id"})

    id = serializers.IntegerField(read_only=True)
    username = StrictCharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @/./+/-/_ only; unique regardless of case.",
    )
    email = StrictCharField(max_length=254, validators=[EmailValidator()], help_text="Unique regardless of case.")
    password = StrictCharField(
        max_length=4096, write_only=True, trim_whitespace=False, help_text="At least 8 characters, not common."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Run Django's password validators, which also compare the password with the username and email."""
        User = get_user_model()
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            validate_password(attrs["password"], candidate)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": list(exc.messages)}) from exc
        return attrs


def _advisory_key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def user_register(*, username: str, email: str, password: str) -> Any:
    """Create a plain user; a username or email already taken (ignoring case) is a 400 naming the field."""
    User = get_user_model()
    user = User(username=User.normalize_username(username), email=User.objects.normalize_email(email))
    user.set_password(password)  # hashing is slow, so it happens before any lock is taken
    with transaction.atomic():
        # Nothing in the schema makes email (or a username's case) unique, so two registrations of
        # the same name or email queue on a transaction-scoped advisory lock before checking.
        keys = {_advisory_key("username:" + user.username.casefold()), _advisory_key("email:" + user.email.casefold())}
        with connection.cursor() as cursor:
            for key in sorted(keys):
                cursor.execute(REGISTRATION_LOCK_SQL, [key])
        errors: dict[str, list[str]] = {}
        if User.objects.filter(username__iexact=user.username).exists():
            errors["username"] = ["This username is taken. Choose another."]
        if User.objects.filter(email__iexact=user.email).exists():
            errors["email"] = ["An account with this email exists. Log in at /api/v1/tokens/ instead."]
        if errors:
            raise serializers.ValidationError(errors)
        try:
            with transaction.atomic():
                user.save()
        except IntegrityError as exc:  # a username written around this lock, e.g. by the admin
            raise serializers.ValidationError({"username": ["This username is taken. Choose another."]}) from exc
    return user


class RegistrationView(APIView):
    """Register: anyone may create a plain account, then log in at `tokens/`."""

    permission_classes = [AllowAny]
    throttle_scope = "auth"
    extra_problem_codes = {"POST": ("409", "422")}

    @extend_schema(
        request=RegistrationSerializer,
        responses={201: RegistrationSerializer},
        summary="Register",
        parameters=[IDEMPOTENCY_KEY],
    )
    def post(self, request: Request) -> Response:
        """Register, at most once per Idempotency-Key (its scope: the client's IP)."""
        return respond_once(self, request, functools.partial(self.register, request))

    def register(self, request: Request) -> Response:
        """Validate the new account and create it; the answer never contains the password."""
        serializer = RegistrationSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_register(**serializer.validated_data)
        return Response(RegistrationSerializer(user).data, status=status.HTTP_201_CREATED)
