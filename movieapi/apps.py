"""The project's own app configurations: the admin on its rate-limited site, and the project's signal receivers."""

from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin, with its log-in limited (Django's documented way to replace the default site)."""

    default_site = "movieapi.admin_site.AdminSite"


class MovieApiConfig(AppConfig):
    name = "movieapi"
    verbose_name = "Movie API"

    def ready(self) -> None:
        """Connect the project's signal receivers: a user's tokens revoked when their password changes."""
        from movieapi import tokens  # noqa: F401 - its @receiver connects on import
