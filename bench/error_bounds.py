"""What refusing hostile input costs: CPU and answer size of the 400s for unknown body keys, unknown query
parameters and repeated ordering keys (docs/api.md#errors).

    python bench/error_bounds.py

Sends each request through DRF's test client (the whole Django stack, no HTTP server) as an unsaved superuser,
best of 3 after a warm-up, and prints status, answer bytes and CPU ms. Every request is refused before a query and
the rate limits count in Redis (REDIS_URL, default redis://127.0.0.1:6379/0, under their own key prefix), so no
database is read or written: DATABASE_URL need not name an existing one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")
os.environ.setdefault("DJANGO_HTTPS", "0")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")  # the rate limits' store, as `make bench` runs them
os.environ["THROTTLE_KEY_PREFIX"] = "movieapi:bench-errors:"


def main() -> None:
    import django

    django.setup()
    logging.disable(logging.WARNING)  # each refusal logs its request line: 1,300 keys long
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="localhost")
    client.force_authenticate(User(username="bench", is_staff=True, is_superuser=True))
    body = json.dumps({f"k{i}": 1 for i in range(80_000)}).encode()
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            f"POST movies/, 80,000 unknown keys ({len(body):,} B)",
            lambda: client.post("/api/v1/movies/", body, content_type="application/json"),
        ),
        (
            "GET movies/, 900 unknown parameters",
            lambda: client.get("/api/v1/movies/?" + "&".join(f"x{i}=1" for i in range(900))),
        ),
        (
            "GET movies/?ordering=title x 1,300",
            lambda: client.get("/api/v1/movies/?ordering=" + ",".join(["title"] * 1300)),
        ),
    ]
    for label, send in cases:
        send()
        spent = []
        for _ in range(3):
            start = time.process_time()
            response = send()
            spent.append(time.process_time() - start)
        print(f"{label}: {response.status_code}, {len(response.content):,} B, {min(spent) * 1000:.0f} ms CPU")  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
