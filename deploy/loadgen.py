"""A tiny closed-loop HTTP load generator (stdlib only), for comparing gunicorn worker classes.

python deploy/loadgen.py http://127.0.0.1:8000/api/v1/movies/1/ --connections 8 --seconds 10
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time
from urllib.parse import urlsplit


def worker(url: str, deadline: float, latencies: list[float], errors: list[int]) -> None:
    """Send GETs over one keep-alive connection until the deadline."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
        except (OSError, http.client.HTTPException):
            errors.append(0)
            conn.close()
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
            continue
        latencies.append(time.perf_counter() - start)
    conn.close()


def main() -> None:
    """Run the load and print requests/s and latency percentiles."""
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.monotonic() + args.seconds
    threads = [
        threading.Thread(target=worker, args=(args.url, deadline, latencies, errors)) for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    count = len(latencies)
    if not count:
        raise SystemExit(f"no successful requests; errors: {errors[:10]}")
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{count / args.seconds:.0f} req/s  p50 {quantiles[49] * 1000:.1f} ms  p99 {quantiles[98] * 1000:.1f} ms  "
        f"errors {len(errors)}"
    )


if __name__ == "__main__":
    main()
