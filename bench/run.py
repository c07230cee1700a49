"""`make bench`: the API against the bare-WSGI limit of the same stack, on a generated million-movie catalogue.

1. Builds (once; reused while it holds BENCH_MOVIES movies) the database `movieapi_bench` on the
   DATABASE_URL server (or the embedded one) with `manage.py migrate` and `generate_movies`.
2. Starts `gunicorn bench.baseline_app` and `gunicorn movieapi.wsgi`, both with `-c gunicorn.conf.py` and
   WEB_CONCURRENCY workers, and drives each scenario with wrk (a separate process, Lua scripts), on the
   baseline and then on the API, back to back.
3. Prints req/s, p50 and p99 per scenario, the ratio to the baseline, the targets, and the EXPLAIN plans
   of the SQL the API sends for the list and change-feed scenarios (bench/results/).

Environment: BENCH_MOVIES (1000000), BENCH_SEED (42), BENCH_DURATION (seconds per scenario, 10),
BENCH_CONNECTIONS (16), BENCH_THREADS (1), BENCH_WARMUP (seconds, 5), WEB_CONCURRENCY (4), DATABASE_URL, REDIS_URL.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import psycopg
from bench_db import (  # bench/bench_db.py: this script runs as `python bench/run.py`
    history_size,
    migrate,
    own_database,
    set_history,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
MOVIES = int(os.environ.get("BENCH_MOVIES", "1000000"))
SEED = int(os.environ.get("BENCH_SEED", "42"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
# Seconds of load on each server before each scenario is measured: fresh workers measured 10-20% slower on the
# first scenario (the movie detail) after 2 s of warm-up than in later rounds of the same scenario.
WARMUP = int(os.environ.get("BENCH_WARMUP", "5"))
# Each scenario is measured this many times on each server, alternately; the report shows the medians.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
WORKERS = os.environ.get("WEB_CONCURRENCY", "4")
DB_NAME = os.environ.get("BENCH_DATABASE", "movieapi_bench")
SECRET = "bench-secret-key-not-for-production-0123456789abcdefghij"  # noqa: S105 (local bench server only)
PATCH = "PATCH (current version)"  # the scenario run last, on both servers
PATCH_NO_HISTORY = "PATCH, history triggers dropped"  # the API only, alternating with PATCH (history on)
FEED = "change feed page (100)"
FEED_CURSORS = 2000
CURATOR_PASSWORD = "Kq7-zebra-Lantern-92x"  # noqa: S105 (a throwaway local account)
GENEROUS = "1000000000/min"

# What people type: title words, two-word titles, one typo. The generated overviews reuse a small set of
# phrases ("a detective", "a dangerous secret"), so their words match 10-20% of the catalogue: see docs/search.md.
SEARCHES = [
    "matrx",
    "lost kingdom",
    "silent river",
    "golden sword",
    "iron wolf",
    "crimson moon",
    "dragon heist",
    "matrix reloaded",
    "broken mirror",
    "midnight train",
]
FILTERS = [
    "genre=drama&year_min=1990&year_max=2000&ordering=-rating",
    "genre=comedy&year_min=2000&year_max=2010&ordering=-rating",
    "genre=action,thriller&year_min=1980&year_max=2020&ordering=-rating",
    "genre=horror&year_min=1970&year_max=1999&ordering=-rating",
]


@dataclass
class Scenario:
    name: str
    script: str
    paths: list[str]
    method_note: str = ""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def median_of(runs: list[Result]) -> Result:
    """Each figure's median over the rounds (errors: their sum)."""
    return Result(
        rps=statistics.median(run.rps for run in runs),
        p50_ms=statistics.median(run.p50_ms for run in runs),
        p99_ms=statistics.median(run.p99_ms for run in runs),
        errors=sum(run.errors for run in runs),
    )


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def log_round(number: int, label: str, name: str, result: Result) -> None:
    """One measured round of a scenario on one server."""
    log(
        f"round {number} {label:8} {name:28} {result.rps:8.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
        f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
    )


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def prepare_database(env: dict[str, str]) -> None:
    """Migrate and fill the bench database (bench_db.own_database) unless it already holds exactly MOVIES movies."""
    bench_url = env["DATABASE_URL"]
    migrate(env)
    with psycopg.connect(bench_url) as conn:
        have = conn.execute("SELECT count(*) FROM movies_movie").fetchone()[0]  # type: ignore[index]
    if have == MOVIES:
        log(f"reusing {DB_NAME}: {have} movies; VACUUM ANALYZE after earlier runs' writes")
        # Earlier runs' PATCHes left dead rows and, above all, entries in the GIN indexes' pending lists, which
        # every search then reads (searches took twice as long). Autovacuum clears them in production; the
        # PostgreSQL of this machine runs without it, so the bench restores that steady state itself.
        with psycopg.connect(bench_url, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) movies_movie")
            conn.execute("CHECKPOINT")  # the vacuum's dirty pages written now, not during the first scenario
        return
    if have:
        log(f"{DB_NAME} holds {have} movies, not {MOVIES}: rebuilding it")
        own_database(DB_NAME, fresh=True)
        migrate(env)
    started = time.monotonic()
    manage(env, "generate_movies", "--count", str(MOVIES), "--seed", str(SEED))
    log(f"generated {MOVIES} movies in {time.monotonic() - started:.0f}s")
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the load's dirty pages written now, not during the first scenario


def feed_paths(bench_url: str) -> list[str]:
    """Pages of the change feed after cursors spread over the whole history, and its first page."""
    sys.path.insert(0, str(ROOT))
    changes = importlib.import_module("movies.changes")  # Django-free, like the baseline's imports
    with psycopg.connect(bench_url) as conn:
        total = conn.execute("SELECT count(*) FROM movies_movieversion").fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT setseed(%s)", [1 / SEED])
        positions = conn.execute(
            "SELECT xid, id FROM movies_movieversion WHERE random() < %s LIMIT %s",
            [min(1.0, FEED_CURSORS / max(total, 1)), FEED_CURSORS],
        ).fetchall()
    cursors = [changes.encode_cursor(changes.FeedPosition(xid, entry_id)) for xid, entry_id in positions]
    return ["/api/v1/changes/", *(f"/api/v1/changes/?after={cursor}" for cursor in cursors)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(app: str, env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server_env = {**env, "PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": WORKERS}
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", app, "-c", "gunicorn.conf.py"],
            cwd=ROOT,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{app} exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"{app} did not start:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, scenario: Scenario, env: dict[str, str], duration: int) -> Result:
    """Run wrk with the scenario's Lua script; parse req/s and the latency percentiles."""
    paths_file = RESULTS / f"paths-{scenario.name}.txt"
    paths_file.write_text("\n".join(scenario.paths) + "\n")
    command = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(BENCH / "lua" / scenario.script),
        url,
    ]
    output = subprocess.run(
        command, env={**env, "BENCH_PATHS": str(paths_file)}, capture_output=True, text=True, check=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors:.*?timeout (\d+)"):
        match = re.search(pattern, output)
        if match:
            errors += int(match.group(1))
    return Result(rps=rps, p50_ms=p50, p99_ms=p99, errors=errors)


def fetch(url: str, method: str = "GET", body: dict[str, str] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def scenarios(max_id: int, feed: list[str]) -> list[Scenario]:
    rng = random.Random(SEED)
    detail = [f"/api/v1/movies/{rng.randint(1, max_id)}/" for _ in range(5000)]
    return [
        Scenario("detail", "paths.lua", detail),
        Scenario("list page 1 (20)", "paths.lua", ["/api/v1/movies/"]),
        Scenario("list page 1 (100)", "paths.lua", ["/api/v1/movies/?page_size=100"]),
        Scenario("list page 500 (20)", "paths.lua", ["/api/v1/movies/?page=500"]),
        Scenario("search", "paths.lua", ["/api/v1/movies/?search=" + s.replace(" ", "+") for s in SEARCHES]),
        Scenario("filter genre+year, -rating", "paths.lua", ["/api/v1/movies/?" + f for f in FILTERS]),
        # Its paths' first is the feed's first page, which bench/explain.py explains.
        Scenario(FEED, "paths.lua", feed),
    ]


def main() -> int:
    if shutil.which("wrk") is None:
        if os.geteuid() == 0 and shutil.which("apt-get"):
            subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
        else:
            print("wrk is missing: install it (Debian: apt-get install wrk) and rerun.", file=sys.stderr)
            return 2
    RESULTS.mkdir(exist_ok=True)
    bench_url = own_database(DB_NAME)
    env = {
        **os.environ,
        "DATABASE_URL": bench_url,
        "DJANGO_SECRET_KEY": SECRET,
        "DJANGO_DEBUG": "0",
        "DJANGO_HTTPS": "0",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_ACCESS_LOG": "",
        "THROTTLE_ANON_RATE": GENEROUS,
        "THROTTLE_USER_RATE": GENEROUS,
        "THROTTLE_AUTH_RATE": GENEROUS,
        "THROTTLE_GLOBAL_RATE": "100000000/s",
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
        "PYTHONPATH": str(ROOT),
    }
    prepare_database(env)
    with psycopg.connect(bench_url) as conn:
        max_id = conn.execute("SELECT max(id) FROM movies_movie").fetchone()[0]  # type: ignore[index]
    env["BENCH_MAX_ID"] = str(max_id)
    all_scenarios = scenarios(max_id, feed_paths(bench_url))
    results: dict[str, dict[str, Result]] = {"baseline": {}, "django": {}}
    ratios: dict[str, float] = {}

    # Both servers run for the whole bench. Each scenario is measured ROUNDS times on the baseline and on the API,
    # alternately and back to back, so that a drift of the shared machine affects both sides of a ratio alike;
    # a ratio to the baseline is the median of the rounds' ratios.
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for label, app in (("baseline", "bench.baseline_app:application"), ("django", "movieapi.wsgi")):
            servers[label] = start_gunicorn(app, env, RESULTS / f"gunicorn-{label}.log")
        urls = {label: url for label, (_, url) in servers.items()}
        for scenario in all_scenarios:
            for url in urls.values():
                wrk(url, scenario, env, WARMUP)  # caches, prepared statements, connections
            rounds(results, ratios, scenario.name, urls, partial(wrk, scenario=scenario, env=env, duration=DURATION))
        manage(env, "create_curator", "bench-curator", "--password", CURATOR_PASSWORD)
        token = fetch(
            servers["django"][1] + "/api/v1/tokens/",
            "POST",
            {"username": "bench-curator", "password": CURATOR_PASSWORD},
        )
        patch = partial(patch_scenario, env=env, bench_url=bench_url, token=str(token["token"]))
        rounds(results, ratios, PATCH, urls, patch)
        history_rounds(results, ratios, urls["django"], patch, bench_url)
    finally:
        for process, _ in servers.values():
            stop(process)

    explain = subprocess.run(
        [PYTHON, str(BENCH / "explain.py"), *(s.paths[0] for s in all_scenarios[1:])],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (RESULTS / "explain.txt").write_text(explain)
    entries, per_version = history_size(bench_url)
    report = render(results, ratios) + (
        f"\nhistory: {entries:,} versions in movies_movieversion, {per_version:,.0f} bytes per version "
        "(indexes and TOAST included)\n"
    )
    (RESULTS / "report.md").write_text(report)
    print(report)
    print(f"EXPLAIN plans of the list and feed scenarios: {RESULTS / 'explain.txt'}")
    return 0


def rounds(
    results: dict[str, dict[str, Result]],
    ratios: dict[str, float],
    name: str,
    urls: dict[str, str],
    measure: Callable[[str], Result],
) -> None:
    """Measure one scenario ROUNDS times on every server in turn; keep each server's medians and the median of the
    rounds' API/baseline throughput ratios."""
    runs: dict[str, list[Result]] = {label: [] for label in urls}
    for number in range(1, ROUNDS + 1):
        for label, url in urls.items():
            runs[label].append(result := measure(url))
            log_round(number, label, name, result)
    for label, measured in runs.items():
        results[label][name] = median_of(measured)
    ratios[name] = statistics.median(
        api.rps / base.rps for api, base in zip(runs["django"], runs["baseline"], strict=True)
    )


def history_rounds(
    results: dict[str, dict[str, Result]],
    ratios: dict[str, float],
    url: str,
    patch: Callable[[str], Result],
    bench_url: str,
) -> None:
    """PATCH on the API with the history's triggers dropped and installed, alternately (which goes first alternates
    too), ROUNDS times each; the ratio is the median of the rounds' with/without throughputs. The triggers are back
    when this returns, whatever happens; the versions written meanwhile have no entries (a bench database only)."""
    runs: dict[bool, list[Result]] = {True: [], False: []}
    try:
        for number in range(1, ROUNDS + 1):
            for on in (False, True) if number % 2 else (True, False):
                set_history(bench_url, on=on)
                runs[on].append(result := patch(url))
                name = PATCH if on else PATCH_NO_HISTORY
                log_round(number, "django", name, result)
    finally:
        set_history(bench_url, on=True)
    results["django"][PATCH_NO_HISTORY] = median_of(runs[False])
    ratios[PATCH_NO_HISTORY] = statistics.median(
        with_history.rps / without.rps for with_history, without in zip(runs[True], runs[False], strict=True)
    )


def patch_scenario(url: str, env: dict[str, str], bench_url: str, token: str) -> Result:
    """PATCH with the current version, as a curator created for the run (the baseline sends the API's statements).

    Each server's run starts from a VACUUM: PostgreSQL merges the GIN indexes' pending lists (which every PATCH
    appends to) into the indexes once they hold 4 MB, inside whichever write fills them; without it the second
    server's run would pay for the first one's entries.
    """
    with psycopg.connect(bench_url, autocommit=True) as conn:
        conn.execute("VACUUM movies_movie")
        rows = conn.execute(
            "SELECT id, version FROM movies_movie WHERE id %% 37 = %s ORDER BY id LIMIT 20000",
            [random.Random().randrange(37)],
        ).fetchall()
    versions = RESULTS / "versions.txt"
    versions.write_text("".join(f"{movie_id} {version}\n" for movie_id, version in rows))
    patch_env = {**env, "BENCH_VERSIONS": str(versions), "BENCH_TOKEN": token}
    return wrk(url, Scenario("patch", "patch.lua", []), patch_env, DURATION)


TARGETS = {
    "detail": ("baseline", 0.5),
    "list page 1 (20)": ("baseline", 0.5),
    "list page 1 (100)": ("baseline", 0.35),
}


def render(results: dict[str, dict[str, Result]], ratios: dict[str, float]) -> str:
    django, baseline = results["django"], results["baseline"]
    page1 = django["list page 1 (20)"]
    lines = [
        f"{MOVIES} movies, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, gunicorn -w {WORKERS} (sync), "
        f"{os.cpu_count()} CPUs; medians of {ROUNDS} alternating rounds (ratio: the median of the rounds' ratios)",
        "",
        "| scenario | Django req/s | p50 ms | p99 ms | errors | baseline req/s | baseline p99 ms | ratio | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, result in django.items():
        base = baseline.get(name)
        ratio = f"{ratios[name]:.2f}" if name in ratios else "-"
        target, ok = "", True
        if name in TARGETS:
            minimum = TARGETS[name][1]
            ok = name in ratios and ratios[name] >= minimum
            target = f"≥{minimum:.0%} of baseline"
        elif name in ("search", "filter genre+year, -rating"):
            ok = result.p99_ms <= 3 * page1.p99_ms
            target = f"p99 ≤3x list p99 ({result.p99_ms / page1.p99_ms:.1f}x)"
        elif name == FEED:
            ok = result.p99_ms <= page1.p99_ms
            target = f"p99 ≤ list p99 ({result.p99_ms / page1.p99_ms:.2f}x)"
        elif name == "list page 500 (20)":
            ok = result.p99_ms <= 1.5 * page1.p99_ms
            target = f"p99 ≤1.5x page 1 ({result.p99_ms / page1.p99_ms:.2f}x)"
        elif name == PATCH:
            ratio = f"{result.rps / django['detail'].rps:.2f} of detail"
            if base:  # the same writes without Django: what this stack's PostgreSQL leaves for a PATCH
                ratio += f" (baseline: {base.rps / baseline['detail'].rps:.2f} of its detail)"
            ok = result.rps >= 0.6 * django["detail"].rps
            target = "≥60% of detail GET"
        elif name == PATCH_NO_HISTORY:
            ratio = f"PATCH with history: {ratios[name]:.2f} of this"
            ok = ratios[name] >= 0.85
            target = "with history ≥85% of without"
        mark = ("met" if ok else "MISSED") if target else ""
        lines.append(
            f"| {name} | {result.rps:.0f} | {result.p50_ms:.2f} | {result.p99_ms:.2f} | {result.errors} | "
            f"{base.rps if base else 0:.0f} | {base.p99_ms if base else 0:.2f} | {ratio} | {target} {mark} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
