"""Keep ratings' aggregates exact when a user is deleted (the admin deletes users without our services)."""

from __future__ import annotations

from typing import Any


def take_out_ratings_of_deleted_user(sender: type, instance: Any, **kwargs: Any) -> None:
    """Delete the user's ratings through the service before Django's cascade would, silently."""
    # Imported here: AppConfig.ready() imports this module, before DRF's settings may be imported safely.
    from movies import services

    services.ratings_delete_for_user(user_id=instance.pk)
