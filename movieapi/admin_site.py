"""The admin site, its log-in limited per client IP and per username (docs/rate-limiting.md, "Authentication limits").

Each attempt is counted on the API's rate-limit store before the password is checked (so concurrent guesses cannot
overshoot, and a refused one costs no hashing); a successful log-in gives its hit back, so only failures add up.
A refused attempt is the log-in page again with the reason, answered 429 with Retry-After.
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse

from movieapi.throttle_stores import Decision
from movieapi.throttles import admin_login_attempt, admin_login_succeeded, rate_limit_headers

_REFUSAL_ATTR = "_movieapi_admin_login_refusal"


def _wait_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


class AdminLoginForm(AdminAuthenticationForm):
    """Django's admin log-in form, refusing an attempt over the limits before it checks the password."""

    def clean(self) -> dict[str, Any]:
        """Count the attempt, refuse it over the limits, give the hit back when the log-in succeeds."""
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        if self.request is None or username is None or not password:  # no password to check
            return super().clean()
        decision = admin_login_attempt(self.request, username)
        if decision is not None and not decision.allowed:
            setattr(self.request, _REFUSAL_ATTR, decision)
            raise ValidationError(
                "Too many failed log-in attempts for this username or from your address. "
                f"Try again in {_wait_text(decision.retry_after)}.",
                code="rate_limited",
            )
        cleaned = super().clean()  # raises on a wrong password or a non-staff user: the attempt stays counted
        if decision is not None:
            admin_login_succeeded(decision)
        return cleaned


class AdminSite(admin.AdminSite):
    """Django's admin site with AdminLoginForm; a refused log-in is answered 429 with Retry-After."""

    login_form = AdminLoginForm

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Django's log-in view; the page that says an attempt was refused gets 429 and the limit headers."""
        response = super().login(request, extra_context)
        decision: Decision | None = getattr(request, _REFUSAL_ATTR, None)
        if decision is not None:
            response.status_code = 429
            for name, value in {**rate_limit_headers(decision), "Retry-After": str(decision.retry_after)}.items():
                response[name] = value
        return response
