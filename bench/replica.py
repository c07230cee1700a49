"""`make bench-replica`: reads on a PostgreSQL primary against reads on one streaming replica, and where the CPU goes.

1. Starts a throwaway primary (movieapi/tests/pg_cluster.py), migrates it and generates BENCH_REPLICA_MOVIES movies
   (100,000), then a streaming replica of it (`pg_basebackup -R`) and a redis-server of its own.
2. Runs two gunicorns (WEB_CONCURRENCY workers each) on the same data: `primary` without DATABASE_REPLICA_URLS (every
   read on the primary) and `replica` with it; wrk drives the movie detail and list page 1 (20) on each, in
   alternating rounds (bench/run.py's wrk, scenarios' shape and rounds).
3. Measures each run's CPU time by process and children (the primary's postmaster and backends, the replica's,
   gunicorn's master and workers, this script with wrk) from /proc, and where reads went (movieapi_db_reads_total).
4. Prints req/s, p50, p99, CPU per request of each group, and what moving the replica's share to another machine
   gives back to this one (bench/results/replica.md).

Everything it starts is stopped, and its folders removed, at the end (also when it fails).
Environment: BENCH_REPLICA_MOVIES (100000), BENCH_SEED, BENCH_DURATION, BENCH_WARMUP, BENCH_ROUNDS,
BENCH_CONNECTIONS, BENCH_THREADS, WEB_CONCURRENCY, PG_BINDIR.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# bench/run.py's measuring pieces (this script runs as `python bench/replica.py`, like it), and pg_cluster.
from run import (
    CONNECTIONS,
    DURATION,
    GENEROUS,
    RESULTS,
    ROOT,
    ROUNDS,
    SECRET,
    SEED,
    THREADS,
    WARMUP,
    WORKERS,
    Result,
    Scenario,
    log,
    manage,
    median_of,
    start_gunicorn,
    stop,
    wrk,
)

sys.path.insert(0, str(ROOT))
from movieapi.tests.pg_cluster import PgCluster, PgUnavailable

MOVIES = int(os.environ.get("BENCH_REPLICA_MOVIES", "100000"))
BATCH = 19_999
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
GROUPS = ("postgres primary", "postgres replica", "gunicorn", "wrk + this script")


@dataclass
class Run:
    """One measured run: wrk's figures, the CPU seconds of each process group, the reads' targets."""

    result: Result
    requests: float
    cpu: dict[str, float]
    machine_busy: float  # CPU seconds of the whole machine (every process, also others')
    replica_share: float


def group_cpu(groups: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each group: a process, its children (a postmaster's backends, gunicorn's
    workers, wrk) and the children it reaped. Not process groups: each PostgreSQL backend leads its own session."""
    processes: dict[int, tuple[int, float]] = {}  # pid -> (parent, CPU seconds)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            # utime, stime, and cutime, cstime: its children reaped so far (wrk, once run() has waited for it)
            processes[int(stat.parent.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]) / CLOCK_TICK)
    return {
        name: sum(cpu for pid, (parent, cpu) in processes.items() if root in (pid, parent))
        for name, root in groups.items()
    }


def machine_busy() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICK


def reads(url: str) -> dict[str, float]:
    """movieapi_db_reads_total by target, from the server's /metrics (all workers)."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^movieapi_db_reads_total\{target="(\w+)"\} (\S+)$', text, re.MULTILINE)
    return {target: float(value) for target, value in found}


def measure(url: str, scenario: Scenario, env: dict[str, str], groups: dict[str, int]) -> Run:
    """One wrk run of the scenario, with the CPU each group spent meanwhile."""
    reads_before, cpu_before, busy_before = reads(url), group_cpu(groups), machine_busy()
    result = wrk(url, scenario, env, DURATION)
    cpu_after, busy_after, reads_after = group_cpu(groups), machine_busy(), reads(url)
    routed = {target: reads_after.get(target, 0.0) - reads_before.get(target, 0.0) for target in reads_after}
    total = sum(routed.values())
    return Run(
        result=result,
        requests=result.rps * DURATION,
        cpu={name: cpu_after[name] - cpu_before[name] for name in groups},
        machine_busy=busy_after - busy_before,
        replica_share=routed.get("replica", 0.0) / total if total else 0.0,
    )


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of this bench only (no persistence), stopped at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: install it (Debian: apt-get install redis-server) and rerun.")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is missing: install it (Debian: apt-get install wrk), or run `make bench` once.", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    try:
        cluster = PgCluster(settings={"shared_buffers": "256MB"})
    except PgUnavailable as reason:
        print(f"bench-replica skipped: {reason}", file=sys.stderr)
        return 0
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    runs: dict[tuple[str, str], list[Run]] = {}
    with cluster, redis_server() as redis_url:
        primary = cluster.start_primary()
        primary.query("CREATE DATABASE movieapi")
        # What bench/run.py's servers get: no HTTPS, quiet logs, limits that never refuse.
        env = {
            **os.environ,
            "DATABASE_URL": primary.url("movieapi"),
            "DATABASE_REPLICA_URLS": "",
            "REDIS_URL": redis_url,
        }
        env |= {"DJANGO_SECRET_KEY": SECRET, "DJANGO_DEBUG": "0", "DJANGO_HTTPS": "0", "PYTHONPATH": str(ROOT)}
        env |= {"LOG_LEVEL": "WARNING", "GUNICORN_ACCESS_LOG": "", "THROTTLE_GLOBAL_RATE": "100000000/s"}
        env |= {f"THROTTLE_{scope}_RATE": GENEROUS for scope in ("ANON", "USER", "AUTH")}
        started = time.monotonic()
        manage(env, "migrate", "--no-input", "-v0")
        # In batches below generate_movies' bulk path (20,000), which drops and rebuilds indexes with ALTER TABLE:
        # on a fresh database the history triggers' deferred events make PostgreSQL refuse that ALTER TABLE.
        for batch, start in enumerate(range(0, MOVIES, BATCH)):
            count = str(min(BATCH, MOVIES - start))
            manage(env, "generate_movies", "--count", count, "--seed", str(SEED + batch))
        primary.query("CHECKPOINT")
        replica = cluster.start_replica()
        replica.wait_replayed(primary.current_lsn(), timeout=300)
        log(f"primary with {MOVIES} movies and its replica ready in {time.monotonic() - started:.0f}s")
        max_id = int(primary.value("SELECT max(id) FROM movies_movie", dbname="movieapi"))
        rng = random.Random(SEED)
        detail = [f"/api/v1/movies/{rng.randint(1, max_id)}/" for _ in range(5000)]
        scenarios = [
            Scenario("replica detail", "paths.lua", detail),
            Scenario("replica list page 1 (20)", "paths.lua", ["/api/v1/movies/"]),
        ]
        try:
            replica_env = {**env, "DATABASE_REPLICA_URLS": replica.url("movieapi")}
            for label, server_env in (("primary", env), ("replica", replica_env)):
                servers[label] = start_gunicorn("movieapi.wsgi", server_env, RESULTS / f"gunicorn-replica-{label}.log")
            groups = {
                "postgres primary": primary.process.pid,
                "postgres replica": replica.process.pid,
                "wrk + this script": os.getpid(),
            }
            for scenario in scenarios:
                for _, url in servers.values():
                    wrk(url, scenario, env, WARMUP)
                for number in range(1, ROUNDS + 1):
                    for label, (process, url) in servers.items():
                        run = measure(url, scenario, env, {**groups, "gunicorn": process.pid})
                        runs.setdefault((scenario.name, label), []).append(run)
                        log(
                            f"round {number} {label:8} {scenario.name:26} {run.result.rps:7.0f} req/s  "
                            f"p99 {run.result.p99_ms:6.2f} ms  on the replica {run.replica_share:.0%}"
                        )
        finally:
            for process, _ in servers.values():
                stop(process)
    report = render(runs)
    (RESULTS / "replica.md").write_text(report)
    print(report)
    return 0


def render(runs: dict[tuple[str, str], list[Run]]) -> str:
    """The table of both configurations per scenario, CPU per request by group, and the one-more-machine estimate."""
    lines = [
        f"{MOVIES} movies; wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s; gunicorn -w {WORKERS} (sync); "
        f"{os.cpu_count()} CPUs shared by everything; medians of {ROUNDS} alternating rounds",
        "",
        "| scenario | reads on | req/s | p50 ms | p99 ms | errors | on the replica | "
        + " | ".join(f"{name} ms/req" for name in GROUPS)
        + " | machine ms/req |",
        "|---|---|---:|---:|---:|---:|---:|" + "---:|" * (len(GROUPS) + 1),
    ]
    notes = []
    for (name, label), measured in runs.items():
        result = median_of([run.result for run in measured])
        per_request = {
            group: statistics.median(1000 * run.cpu[group] / run.requests for run in measured) for group in GROUPS
        }
        machine = statistics.median(1000 * run.machine_busy / run.requests for run in measured)
        share = statistics.median(run.replica_share for run in measured)
        lines.append(
            f"| {name.removeprefix('replica ')} | {label} | {result.rps:.0f} | {result.p50_ms:.2f} | "
            f"{result.p99_ms:.2f} | {result.errors} | {share:.0%} | "
            + " | ".join(f"{per_request[group]:.3f}" for group in GROUPS)
            + f" | {machine:.3f} |"
        )
        if label == "replica":
            ours = sum(per_request.values())
            moved = per_request["postgres replica"]
            notes.append(
                f"- {name.removeprefix('replica ')}: the replica's postgres took {moved:.3f} of {ours:.3f} CPU ms a "
                f"request ({moved / ours:.0%}); on a machine of its own that CPU goes to the rest, up to "
                f"{ours / (ours - moved):.2f}x this machine's req/s while it is CPU-bound, and the primary keeps "
                f"{per_request['postgres primary']:.3f} ms a request of these anonymous reads."
            )
    return "\n".join([*lines, "", "One more machine for the replica (from the measured CPU split):", *notes]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
