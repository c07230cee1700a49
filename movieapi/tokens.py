"""Revoking all of a user's bearer tokens: on log-out-everywhere (`DELETE tokens/`) and when their password changes.

Kept apart from movieapi.auth (its views): AppConfig.ready() imports this module, before DRF's views may be imported.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models.signals import post_save
from django.dispatch import receiver


def user_tokens_revoke(*, user: Any) -> int:
    """Delete every token of this user; how many there were."""
    from knox.models import AuthToken

    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="movieapi_password_tokens")
def revoke_tokens_on_password_change(
    sender: type, instance: Any, created: bool, raw: bool, update_fields: frozenset[str] | None, **kwargs: Any
) -> None:
    """A password set (set_password() then save(): the API, the admin, `changepassword`, `create_curator`) or
    disabled (set_unusable_password()) revokes every token the user holds.

    Django's own notion of a change: save() passes the raw password of set_password() to the password validators'
    `password_changed` hooks. The hash upgrade on log-in (a new hasher or more iterations) is not a change, as
    Django says; nor is a hash written directly into `password` or by SQL, which bypass this receiver."""
    if created or raw or (update_fields is not None and "password" not in update_fields):
        return
    if instance._password is not None or not instance.has_usable_password():
        user_tokens_revoke(user=instance)
