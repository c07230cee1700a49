"""`make bench-throttle`: throughput of one read endpoint with rate limiting on and off, in the same run.

Starts `gunicorn movieapi.wsgi -c gunicorn.conf.py` (WEB_CONCURRENCY workers) three times over the
same database and the same Redis, differing only in the THROTTLE_* settings:

  off        all four scopes "off" (no store is asked; no headers)
  redis      REDIS_URL store, rates so high nothing is refused (every request pays the full decision)
  postgres   the same rates on the PostgreSQL store (no REDIS_URL), for reference

and drives them in alternating rounds with wrk (installed with apt-get if missing and we are root), so
that the noise of a shared machine falls on all of them alike. Prints the median req/s of each and the
ratio to "off". The target is redis/off >= 0.90.

Environment: DATABASE_URL (the server; unset: the embedded PostgreSQL, as `make run`), BENCH_THROTTLE_DATABASE
(movieapi_bench_throttle: created on that server when missing, migrated, reused), REDIS_URL (unset: a
redis-server of our own on a free port), BENCH_THROTTLE_PATH (/api/v1/genres/), BENCH_THROTTLE_ROUNDS (5),
BENCH_THROTTLE_DURATION (seconds per run, 8), BENCH_CONNECTIONS (16), WEB_CONCURRENCY (4).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench_db import migrate, own_database  # bench/bench_db.py: this script runs as `python bench/throttle.py`

ROOT = Path(__file__).resolve().parent.parent
DB_NAME = os.environ.get("BENCH_THROTTLE_DATABASE", "movieapi_bench_throttle")
PYTHON = sys.executable
PATH = os.environ.get("BENCH_THROTTLE_PATH", "/api/v1/genres/")
ROUNDS = int(os.environ.get("BENCH_THROTTLE_ROUNDS", "5"))
DURATION = int(os.environ.get("BENCH_THROTTLE_DURATION", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
WORKERS = os.environ.get("WEB_CONCURRENCY", "4")
SECRET = "bench-secret-key-not-for-production-0123456789abcdefghij"  # noqa: S105 (local throwaway)
HUGE = "1000000000/min"

CONFIGS: dict[str, dict[str, str]] = {
    "off": {f"THROTTLE_{scope}_RATE": "off" for scope in ("ANON", "USER", "AUTH", "GLOBAL")},
    "redis": {f"THROTTLE_{scope}_RATE": HUGE for scope in ("ANON", "USER", "AUTH", "GLOBAL")},
    "postgres": {**{f"THROTTLE_{scope}_RATE": HUGE for scope in ("ANON", "USER", "AUTH", "GLOBAL")}, "REDIS_URL": ""},
}


def log(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    if os.geteuid() != 0:
        sys.exit("wrk is not installed: apt-get install wrk (needs root)")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)


def wait_until_up(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited early:\n{log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url + PATH, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    sys.exit(f"gunicorn did not answer {PATH} with 200:\n{log_path.read_text(errors='replace')}")


def wrk(url: str) -> tuple[float, int]:
    """req/s and the number of non-2xx answers of one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}s", url + PATH], capture_output=True, text=True, check=True
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None:
        sys.exit(f"could not read wrk's output:\n{out}")
    return float(rate.group(1)), int(bad.group(1)) if bad else 0


def main() -> None:
    ensure_wrk()
    workdir = Path(tempfile.mkdtemp(prefix="bench-throttle-"))
    processes: list[subprocess.Popen[bytes]] = []
    base_env = {
        **os.environ,
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or SECRET,
        "DJANGO_DEBUG": "0",
        "DJANGO_HTTPS": "0",
        "WEB_CONCURRENCY": WORKERS,
        "HOST": "127.0.0.1",
        "THROTTLE_KEY_PREFIX": f"bench-{os.getpid()}:",
        "TRUSTED_PROXY_COUNT": "0",
    }
    try:
        if not base_env.get("REDIS_URL"):
            port = free_port()
            redis_server = shutil.which("redis-server") or sys.exit("redis-server is not installed")
            processes.append(
                subprocess.Popen(
                    [redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            base_env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        base_env["DATABASE_URL"] = own_database(DB_NAME)
        log(f"migrating {DB_NAME} (as `make run` does) ...")
        migrate(base_env)

        urls: dict[str, str] = {}
        for name, overrides in CONFIGS.items():
            port = free_port()
            log_path = workdir / f"gunicorn-{name}.log"
            with log_path.open("wb") as out:
                process = subprocess.Popen(
                    [PYTHON, "-m", "gunicorn", "movieapi.wsgi", "-c", "gunicorn.conf.py"],
                    cwd=ROOT,
                    env={**base_env, **overrides, "PORT": str(port)},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append(process)
            urls[name] = f"http://127.0.0.1:{port}"
            wait_until_up(urls[name], process, log_path)

        log(f"GET {PATH}: wrk -t1 -c{CONNECTIONS} -d{DURATION}s, {WORKERS} sync workers, {ROUNDS} alternating rounds")
        for url in urls.values():  # warm every worker (connections, prepared statements, imports)
            wrk(url)
        rates: dict[str, list[float]] = {name: [] for name in urls}
        for round_number in range(1, ROUNDS + 1):
            for name, url in urls.items():
                rate, bad = wrk(url)
                rates[name].append(rate)
                note = f"  ({bad} non-2xx!)" if bad else ""
                log(f"  round {round_number}  {name:<9} {rate:8.0f} req/s{note}")

        log("")
        log(f"{'throttling':<12}{'median req/s':>14}{'median of per-round ratios to off':>36}")
        for name, values in rates.items():
            ratio = statistics.median(value / base for value, base in zip(values, rates["off"], strict=True))
            log(f"{name:<12}{statistics.median(values):>14.0f}{ratio:>36.3f}")
        ratio = statistics.median(value / base for value, base in zip(rates["redis"], rates["off"], strict=True))
        verdict = "meets" if ratio >= 0.90 else "MISSES"
        log(f"\nthrottling on Redis costs {100 * (1 - ratio):.1f}% of throughput: {verdict} the <=10% target")
        # Throughput on a shared machine is noisy; the cost of one decision, measured alone, is not.
        subprocess.run([PYTHON, __file__, "--decision-cost"], cwd=ROOT, env=base_env, check=True)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
        shutil.rmtree(workdir, ignore_errors=True)


def decision_cost() -> None:
    """Print the wall time of one rate-limit decision (all four scopes) on each store, in this process."""
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")
    django.setup()
    from movieapi.throttle_stores import Check, PostgresStore, Rate, RedisStore, Store

    checks = [Check("anon", "192.0.2.1", Rate(10**9, 60)), Check("global", "all", Rate(10**9, 1))]
    prefix = f"bench-cost-{os.getpid()}:"
    stores: dict[str, Store] = {"redis": RedisStore(os.environ["REDIS_URL"], prefix), "postgres": PostgresStore(prefix)}
    for name, store in stores.items():
        for _ in range(200):
            store.decide(checks)
        count, started, cpu = 3000, time.perf_counter(), time.process_time()
        for _ in range(count):
            store.decide(checks)
        wall = (time.perf_counter() - started) / count * 1e6
        cpu = (time.process_time() - cpu) / count * 1e6
        log(f"one decision (anon + global) on {name:<8}: {wall:5.0f} us wall, {cpu:4.0f} us of worker CPU")


if __name__ == "__main__":
    if sys.argv[1:] == ["--decision-cost"]:
        decision_cost()
    else:
        main()
