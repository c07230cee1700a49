"""Who is calling and what they may do: bearer tokens (django-rest-knox) and model permissions, each in one query.

Kept apart from movieapi.auth (its views): DRF imports the authentication classes while it imports its own views.
"""

from __future__ import annotations

import functools
from hmac import compare_digest
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import DEFAULT_DB_ALIAS, connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox import auth as knox_auth
from knox.crypto import hash_token
from knox.models import AuthToken, get_token_model
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request

from movieapi.postgres.prepared import prepared_cursor
from movieapi.sql import PERMISSIONS_SQL


class TokenAuthentication(knox_auth.TokenAuthentication):
    """Fast path: bearer token in one statement.

    Replaces: knox's TokenAuthentication: an ORM lookup, a walk over all the caller's tokens, the header map built by
        DRF.
    Why: ~50 us of header map per authenticated request; with the permissions row, a curator's PATCH 11 -> 7 round
        trips.
    Equal: movies/tests/test_tokens_and_commands.py::test_unknown_or_malformed_tokens_are_401
    Off: DEFAULT_AUTHENTICATION_CLASSES (and auth.py's views): knox.auth.TokenAuthentication.

    knox's bearer tokens, without knox's walk over all of the caller's tokens on every request.

    knox deletes the caller's other expired tokens on each authenticated request: one more query, and one
    row per token the user holds. Here an expired token is still refused (and deleted) when it is used, and
    a user's other expired tokens are deleted when they log in (TokenView), so they cannot pile up.
    """

    _with_permissions = False

    def authenticate(self, request: Request) -> tuple[Any, AuthToken] | None:
        """knox's checks of the `Authorization: Bearer <token>` header, read from the WSGI environ: knox reads it
        through DRF's helper, which builds Django's map of all the request's headers (~50 us) to read one."""
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        parts = header.encode(HTTP_HEADER_ENCODING).split()
        if not parts or parts[0].lower() != self.authenticate_header(request).encode().lower():
            return None  # another scheme: not ours
        if len(parts) == 1:
            raise AuthenticationFailed(_("Invalid token header. No credentials provided."))
        if len(parts) > 2:
            raise AuthenticationFailed(_("Invalid token header. Token string should not contain spaces."))
        # A write asks for the caller's model permissions next (ReadOrModelPermissions): read them with the token.
        self._with_permissions = request.method not in SAFE_METHODS
        return self.authenticate_credentials(parts[1])

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        """knox's check (the key prefix finds the candidate tokens, the digest must match, an expired token is
        refused), with each token and its user read by one prepared statement instead of an ORM query."""
        try:
            text = token.decode("utf-8")
            digest = hash_token(text)
        except (UnicodeDecodeError, TypeError, ValueError) as exc:
            raise AuthenticationFailed("Invalid token.") from exc
        for auth_token in _tokens_with_users(text[: CONSTANTS.TOKEN_KEY_LENGTH], self._with_permissions):
            if self._cleanup_token(auth_token):
                continue
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                user_and_token: tuple[Any, AuthToken] = self.validate_user(auth_token)
                return user_and_token
        raise AuthenticationFailed("Invalid token.")

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        """Delete and refuse this token if it has expired (True); keep it otherwise."""
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=type(self), username=username, source="auth_token")
        return True


@functools.cache
def _token_query(with_permissions: bool) -> tuple[str, list[str], list[str]]:
    """The statement reading the tokens with a key prefix joined to their users (and, with_permissions, each user's
    permissions as PermissionBackend reads them), and each side's attribute names."""
    token_model, user_model = get_token_model(), get_user_model()
    token_fields, user_fields = token_model._meta.concrete_fields, user_model._meta.concrete_fields
    quote = connection.ops.quote_name
    columns = [f"t.{quote(field.column)}" for field in token_fields] + [
        f"u.{quote(field.column)}" for field in user_fields
    ]
    if with_permissions:
        user = f"u.{quote(user_model._meta.pk.column)}"
        columns.append(f"ARRAY({PERMISSIONS_SQL % {'superuser': 'u.is_superuser', 'user': user}})")
    user_column = quote(token_model._meta.get_field("user").column)
    sql = (
        f"SELECT {', '.join(columns)} FROM {quote(token_model._meta.db_table)} t "  # noqa: S608 (model metadata only)
        f"JOIN {quote(user_model._meta.db_table)} u ON u.{quote(user_model._meta.pk.column)} = t.{user_column} "
        "WHERE t.token_key = %s"
    )
    return sql, [field.attname for field in token_fields], [field.attname for field in user_fields]


def _tokens_with_users(token_key: str, with_permissions: bool = False) -> list[AuthToken]:
    """The tokens with this key prefix (normally one), each with its user loaded (and its permissions cached on it,
    as PermissionBackend would cache them)."""
    sql, token_names, user_names = _token_query(with_permissions)
    with prepared_cursor() as cursor:
        cursor.execute(sql, [token_key])
        rows = cursor.fetchall()
    tokens = []
    user_start = len(token_names)
    user_end = user_start + len(user_names)
    for row in rows:
        auth_token = get_token_model().from_db(DEFAULT_DB_ALIAS, token_names, row[:user_start])
        auth_token.user = user = get_user_model().from_db(DEFAULT_DB_ALIAS, user_names, row[user_start:user_end])
        if with_permissions:
            user._perm_cache = set(row[user_end]) if user.is_active else set()  # type: ignore[attr-defined]
        tokens.append(auth_token)
    return tokens


class PermissionBackend(ModelBackend):
    """Fast path: permissions in one statement.

    Replaces: ModelBackend's two ORM queries for a user's permissions.
    Why: one round trip instead of two on every curator write (part of PATCH 11 -> 7 round trips).
    Equal: movies/tests/test_tokens_and_commands.py::test_permission_backend_answers_as_djangos_model_backend
    Off: AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"].

    Django's ModelBackend, reading a user's permissions in one prepared statement instead of two ORM queries.

    Same answers as ModelBackend (inactive and anonymous users hold none, a superuser holds all), cached on
    the user object for the request like ModelBackend's. A curator's write asks for them on every request.
    """

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        """The user's permissions and their groups' permissions, from one statement."""
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        cached: set[str] | None = getattr(user_obj, "_perm_cache", None)
        if cached is None:
            with prepared_cursor() as cursor:
                cursor.execute(PERMISSIONS_SQL, {"superuser": user_obj.is_superuser, "user": user_obj.pk})
                cached = user_obj._perm_cache = {name for (name,) in cursor.fetchall()}
        return cached
