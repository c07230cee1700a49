"""gunicorn settings, from the environment: `gunicorn movieapi.wsgi -c gunicorn.conf.py`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

# `.env` as the settings read it (the environment wins), so that PORT, HOST and WEB_CONCURRENCY may live there too.
load_dotenv(os.environ.get("MOVIEAPI_ENV_FILE") or Path(__file__).resolve().parent / ".env", override=False)


def _cpus() -> int:
    """CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# HOST=0.0.0.0 in the image; locally only this machine can connect.
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
# Sync workers, two per CPU: measured against gthread (2 workers x 4 threads) on GET /movies/{id}/,
# sync served more requests per second with a lower p99 (docs/decisions.md). Request handling
# here is CPU-bound Python, where threads share one GIL, and nginx in front buffers slow clients.
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, _cpus() * 2))
# gunicorn's sync worker with raw UTF-8 request targets accepted and its own refusals (malformed request
# lines, headers, chunks) answered as application/problem+json instead of HTML: movieapi/server.py.
worker_class = "movieapi.server.ProblemSyncWorker"
# That worker's request-line hook lives in gunicorn's Python parser; the optional C parser (gunicorn_h1c)
# would bypass it and refuse raw UTF-8 again.
http_parser = "python"
# A worker silent for this long is killed and replaced; PostgreSQL's statement_timeout
# (STATEMENT_TIMEOUT_MS, 5 s) ends a slow query well before that.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM: stop accepting, let requests in flight finish for this long, then kill.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# No control socket (gunicorn 25+ opens one in ~/.gunicorn by default): the master is driven by signals only.
control_socket_disable = True


def _trusted_proxy_count() -> int:
    """TRUSTED_PROXY_COUNT as the settings read it (a malformed value: 0 here, and the settings refuse it at start)."""
    try:
        return int(os.environ.get("TRUSTED_PROXY_COUNT", "").strip() or 0)
    except ValueError:
        return 0


# Who may tell gunicorn the scheme (X-Forwarded-Proto and the other secure_scheme_headers, which set
# wsgi.url_scheme and so request.is_secure()): the proxy the settings trust, TRUSTED_PROXY_COUNT. gunicorn's own
# default trusts 127.0.0.1 and ::1 whatever the settings say, so with no proxy anything on the host could claim
# https. Behind a proxy its address is the deployment's (another container): FORWARDED_ALLOW_IPS names it, "*" by
# default, as SECURE_PROXY_SSL_HEADER assumes that only the proxy reaches gunicorn.
forwarded_allow_ips = (os.environ.get("FORWARDED_ALLOW_IPS") or "*") if _trusted_proxy_count() > 0 else ""
# No peer may set SCRIPT_NAME or PATH_INFO by header (gunicorn's default lets the trusted ones): the API is served
# at the root, and a path moved under a prefix would slip past a proxy's path rules.
forwarder_headers = ""
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# The heartbeat file is written on every request; keep it in memory, not on the container's disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None  # the app logs one JSON line per request
errorlog = "-"

# Statement timeouts apply to the web server only (settings reads this); commands run unbounded.
os.environ["MOVIEAPI_WEB_SERVER"] = "1"

# Each worker writes its metrics to files here; /metrics adds them up. Set before the workers
# import prometheus_client, which reads it at import time.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="movieapi-metrics-")
METRICS_DIR = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])

if os.environ.get("LOG_FORMAT", "json") != "plain":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "root": {"level": "INFO", "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
            # The app logs one line per request with its request id; gunicorn's own only on demand.
            "gunicorn.access": {
                "level": "INFO" if accesslog else "WARNING",
                "handlers": ["console"],
                "propagate": False,
            },
        },
    }


def _refuse_bad_settings(server: Any) -> None:
    """Stop with the settings' one-line reason (a missing or weak secret key, ...) before any worker boots: a
    worker that cannot import the settings would print a traceback and be restarted over and over."""
    from django.core.exceptions import ImproperlyConfigured

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "movieapi.settings")
    try:
        from django.conf import settings

        settings.SECRET_KEY  # noqa: B018 (reading it imports and checks the settings)
    except ImproperlyConfigured as exc:
        server.log.error("%s", exc)
        on_exit(server)  # gunicorn does not call it when a hook stops the start
        raise SystemExit(1) from None


def on_starting(server: Any) -> None:
    """Refuse bad settings in one line; start the metrics from zero (a previous run's files would add up)."""
    _refuse_bad_settings(server)
    METRICS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in METRICS_DIR.glob("*.db"):
        stale.unlink()


def when_ready(server: Any) -> None:
    """Say where to start, once the sockets are bound: the docs, and the index of the API."""
    for listener in server.LISTENERS:
        address = listener.sock.getsockname()
        if not isinstance(address, tuple):  # a unix socket
            continue
        host, port = address[0], address[1]
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)  # noqa: S104
        base = f"http://{host}:{port}"
        server.log.info("Serving the API at %s/api/v1/ - docs at %s/api/docs/", base, base)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live-gauge files (its counters stay and keep counting in the totals)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics folder this config created."""
    if _own_metrics_dir:
        shutil.rmtree(METRICS_DIR, ignore_errors=True)
