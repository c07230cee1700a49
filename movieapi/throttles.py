"""Rate limits: the anon, user, auth and global scopes, decided together in one atomic step on a shared store.

Algorithm: a fixed window per bucket that starts at the bucket's first request (not at a clock boundary)
and lasts the rate's period. A request passes only if every applicable scope still has room; then, and
only then, it counts in all of them. So in any one window no more than the limit passes, whatever the
concurrency, and a refused request costs nothing. The burst this allows: a client that spends its whole
quota at the end of one window can spend it again right after, i.e. up to 2x the limit over a span of
one period that straddles two windows. See docs/rate-limiting.md, "Algorithm", for why that trade was made.

The shared counter stores (Redis, PostgreSQL) and what they decide are in movieapi/throttle_stores.py.
The admin's log-in attempts are limited on the same stores, outside DRF: see admin_login_attempt().
"""

from __future__ import annotations

import functools
import hashlib
import re
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from prometheus_client import Counter
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from movieapi.client_ip import client_ip, rate_limit_bucket
from movieapi.throttle_stores import Check, Decision, Rate, get_store

if TYPE_CHECKING:
    # rest_framework.views reads DEFAULT_THROTTLE_CLASSES, i.e. this module, when it is imported.
    from rest_framework.views import APIView

REFUSALS = Counter("movieapi_throttle_refusals_total", "Requests refused with 429, by refusing scope.", ["scope"])
# Every series exists from the start at 0, so rate() and alerts work before the first event.
ADMIN_LOGIN_IP, ADMIN_LOGIN_USERNAME = "admin_login_ip", "admin_login_username"
for _scope in ("anon", "user", "auth", "global", ADMIN_LOGIN_IP, ADMIN_LOGIN_USERNAME):
    REFUSALS.labels(_scope)

_DECISION_ATTR = "_movieapi_throttle_decision"
_UNDECIDED = object()


# ---- rates -------------------------------------------------------------------------------------


_RATE_RE = re.compile(r"^(\d+)/(\d*)(s|sec|second|m|min|minute|h|hour|d|day)s?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@functools.lru_cache(maxsize=64)
def parse_rate(text: str | None) -> Rate | None:
    """Read "100/min", "2000/s" or "5/10s"; None, "" or "off" switch the scope off."""
    value = (text or "").strip().lower().replace(" ", "")
    if value in {"", "off", "none"}:
        return None
    match = _RATE_RE.match(value)
    if match is None:
        raise ImproperlyConfigured(f"Bad rate {text!r}: use N/s, N/min, N/hour, N/day or N/<k><unit> like 5/10s.")
    count, multiplier, unit = match.groups()
    window = int(multiplier or 1) * _UNIT_SECONDS[unit[0]]
    if window <= 0:
        raise ImproperlyConfigured(f"Bad rate {text!r}: the period must be at least one second.")
    return Rate(limit=int(count), window=window)


def rate_limit_headers(decision: Decision) -> dict[str, str]:
    """RateLimit-Policy and RateLimit as structured-field lists (draft-ietf-httpapi-ratelimit-headers-10)."""
    headers = {
        "RateLimit-Policy": ", ".join(
            f'"{check.scope}";q={check.rate.limit};w={check.rate.window}' for check in decision.checks
        )
    }
    if decision.states:
        headers["RateLimit"] = ", ".join(
            f'"{state.scope}";r={state.remaining};t={state.reset}' for state in decision.states
        )
    return headers


# ---- DRF throttles -----------------------------------------------------------------------------


class ScopeThrottle(BaseThrottle):
    """One scope of the request's shared decision; subclasses say which bucket a request counts in."""

    scope = ""
    _wait: int | None = None

    def bucket(self, request: Request, view: APIView) -> str | None:
        """The bucket this request counts in for this scope, or None if the scope does not apply."""
        raise NotImplementedError

    def rate(self) -> Rate | None:
        """This scope's rate from DEFAULT_THROTTLE_RATES; None if switched off."""
        return parse_rate(api_settings.DEFAULT_THROTTLE_RATES.get(self.scope))

    def allow_request(self, request: Request, view: APIView) -> bool:
        """Read this scope's verdict from the decision made once for all the view's scopes."""
        decision = request_decision(request, view)
        if decision is None:
            return True
        state = next((state for state in decision.states if state.scope == self.scope), None)
        if state is None or state.allowed:
            return True
        self._wait = decision.retry_after
        return False

    def wait(self) -> int | None:
        """Whole seconds until a request would pass again (DRF sends it as Retry-After)."""
        return self._wait


class AnonScopeThrottle(ScopeThrottle):
    """Anonymous requests, per client IP."""

    scope = "anon"

    def bucket(self, request: Request, view: APIView) -> str | None:
        """The client's address bucket, for anonymous requests only."""
        if request.user and request.user.is_authenticated:
            return None
        return rate_limit_bucket(client_ip(request._request))


class UserScopeThrottle(ScopeThrottle):
    """Authenticated requests, per user."""

    scope = "user"

    def bucket(self, request: Request, view: APIView) -> str | None:
        """The user's id, for authenticated requests only."""
        if request.user and request.user.is_authenticated:
            return str(request.user.pk)
        return None


class AuthScopeThrottle(ScopeThrottle):
    """Views with `throttle_scope = "auth"` (log in, register), per client IP."""

    scope = "auth"

    def bucket(self, request: Request, view: APIView) -> str | None:
        """The client's address bucket, on views that opt into the auth scope."""
        if getattr(view, "throttle_scope", None) != self.scope:
            return None
        return rate_limit_bucket(client_ip(request._request))


class GlobalScopeThrottle(ScopeThrottle):
    """Every request together."""

    scope = "global"

    def bucket(self, request: Request, view: APIView) -> str | None:
        """One bucket for everyone."""
        return "all"


def request_decision(request: Request, view: APIView) -> Decision | None:
    """Decide once per request for every scope the view applies, and put the headers on its answer."""
    decided = request.__dict__.get(_DECISION_ATTR, _UNDECIDED)  # hasattr() on a DRF request raises twice
    if decided is not _UNDECIDED:
        decision: Decision | None = decided
        return decision
    checks = []
    for throttle in view.get_throttles():
        if isinstance(throttle, ScopeThrottle):
            rate = throttle.rate()
            bucket = throttle.bucket(request, view) if rate is not None else None
            if rate is not None and bucket is not None:
                checks.append(Check(throttle.scope, bucket, rate))
    decision = _decide(checks) if checks else None
    setattr(request, _DECISION_ATTR, decision)
    if checks:
        # DRF copies view.headers onto the final response, the 429 included.
        view.headers.update(rate_limit_headers(decision or Decision(True, (), tuple(checks))))
    return decision


def _decide(checks: list[Check]) -> Decision | None:
    """The store's decision for these checks, its refusals counted by scope."""
    decision = get_store().decide(checks)
    if decision is not None and not decision.allowed:
        for state in decision.states:
            if not state.allowed:
                REFUSALS.labels(state.scope).inc()
    return decision


# ---- the admin's log-in ------------------------------------------------------------------------


def admin_login_attempt(request: HttpRequest, username: str) -> Decision | None:
    """Count a log-in attempt against the client's address and the username, or refuse it (decision.allowed).

    Counted before the password is checked, so that concurrent guesses cannot overshoot the limits; a
    successful log-in gives its hit back (admin_login_succeeded), so only failures add up. None: no limit
    applies (both switched off, or the store is failing and the attempt goes ahead)."""
    checks = []
    ip_rate = parse_rate(settings.ADMIN_LOGIN_RATES[ADMIN_LOGIN_IP])
    if ip_rate is not None:
        checks.append(Check(ADMIN_LOGIN_IP, rate_limit_bucket(client_ip(request)), ip_rate))
    username_rate = parse_rate(settings.ADMIN_LOGIN_RATES[ADMIN_LOGIN_USERNAME])
    if username_rate is not None:
        # Case-folded, as a case-insensitive backend would match it; hashed, so no client text becomes a key.
        bucket = hashlib.sha256(username.casefold().encode()).hexdigest()[:32]
        checks.append(Check(ADMIN_LOGIN_USERNAME, bucket, username_rate))
    return _decide(checks) if checks else None


def admin_login_succeeded(decision: Decision) -> None:
    """Give back the hit a successful log-in counted: a user's own successes never lock them out."""
    get_store().release(list(decision.checks))
