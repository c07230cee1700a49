"""`manage.py purge_history`: delete movie versions older than HISTORY_RETENTION_DAYS (docs/history.md#retention).

A movie's latest version is always kept, whatever its age: it is what the next version follows and what a client
holding the movie diffs against. Run it daily (cron, a Kubernetes CronJob); without the setting it deletes nothing.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from movies.versions import history_purge, retention_days


class Command(BaseCommand):
    help = "Delete movie versions older than HISTORY_RETENTION_DAYS (or --days), keeping each movie's latest."

    def add_arguments(self, parser: CommandParser) -> None:
        """--days overrides the setting (for a one-off clean-up)."""
        parser.add_argument("--days", type=int, help="Keep this many days instead of HISTORY_RETENTION_DAYS.")

    def handle(self, *args: Any, days: int | None, **options: Any) -> None:
        """Purge, and say how many versions went."""
        if days is None:
            days = retention_days()
        if days is None:
            self.stdout.write("HISTORY_RETENTION_DAYS is not set: every version is kept, nothing purged.")
            return
        if days < 1:
            raise CommandError("--days must be at least 1.")
        before = timezone.now() - datetime.timedelta(days=days)
        deleted = history_purge(before=before)
        self.stdout.write(f"purged {deleted:,} version(s) recorded before {before:%Y-%m-%d %H:%M} UTC")
