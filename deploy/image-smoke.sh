#!/usr/bin/env bash
# Replays the Dockerfile's steps without a docker engine (`make image-smoke`): a fresh venv,
# `pip install --require-hashes`, the code copied as `COPY . .` would, collectstatic with a
# throwaway key, then gunicorn started exactly as the image's CMD with the image's environment,
# probed with the HEALTHCHECK command. Also checks what production settings imply: the HTTPS
# redirect, whitenoise serving static files with DEBUG off, and /readyz.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
work="$(mktemp -d)"
pid=""
cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "image-smoke: venv and hash-checked install"
"$PYTHON" -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r requirements.txt

echo "image-smoke: copy the build context (.dockerignore) and collectstatic"
"$work/venv/bin/python" - "$work/app" <<'PY'
import shutil, sys
from pathlib import Path
skip = {".git", ".github", ".ci", ".venv", ".data", ".env", ".mypy_cache", ".ruff_cache", ".pytest_cache",
        "__pycache__", "staticfiles", ".cache", "compose.yaml", "Dockerfile", ".dockerignore"}
shutil.copytree(Path.cwd(), sys.argv[1], ignore=lambda d, names: [n for n in names if n in skip or n.endswith(".pyc")])
PY
cd "$work/app"
DJANGO_SECRET_KEY="$("$work/venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DATABASE_URL=postgres://unused/unused \
    "$work/venv/bin/python" manage.py collectstatic --no-input --verbosity 0

port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
echo "image-smoke: gunicorn movieapi.wsgi -c gunicorn.conf.py on port $port"
# The image's ENV, plus what compose gives the api service. Without a reachable database the
# API still starts; /readyz then says so (503), which this checks too.
env -i PATH="$work/venv/bin:/usr/bin:/bin" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=movieapi.settings HOST=127.0.0.1 PORT="$port" WEB_CONCURRENCY=2 \
    DJANGO_SECRET_KEY="$("$work/venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DATABASE_URL="${SMOKE_DATABASE_URL:-postgres://nobody@127.0.0.1:1/nothing}" TRUSTED_PROXY_COUNT=1 \
    gunicorn movieapi.wsgi -c gunicorn.conf.py > "$work/gunicorn.log" 2>&1 &
pid=$!

healthcheck=(python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)")
for _ in $(seq 60); do
    if PATH="$work/venv/bin:$PATH" PORT="$port" "${healthcheck[@]}" 2>/dev/null; then break; fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/gunicorn.log"; echo "image-smoke: gunicorn exited"; exit 1; }
    sleep 0.5
done
PATH="$work/venv/bin:$PATH" PORT="$port" "${healthcheck[@]}" || { cat "$work/gunicorn.log"; exit 1; }
echo "image-smoke: HEALTHCHECK passes"

"$work/venv/bin/python" - "$port" <<'PY'
import json, sys, urllib.error, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
opener = urllib.request.build_opener(NoRedirect)
def get(path, **headers):
    try:
        with opener.open(urllib.request.Request(base + path, headers={"Host": "localhost", **headers}), timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
status, headers, _ = get("/api/v1/movies/")
assert status == 301 and headers["Location"].startswith("https://"), (status, headers)
status, headers, _ = get("/static/admin/css/base.css", **{"X-Forwarded-Proto": "https"})
assert status == 200 and headers["Content-Type"].startswith("text/css"), (status, headers)
status, headers, body = get("/api/docs/", **{"X-Forwarded-Proto": "https"})
assert status == 200 and b"swagger" in body.lower(), status
assert "Strict-Transport-Security" in headers, headers
status, headers, body = get("/readyz")
problem = json.loads(body)
print(f"image-smoke: /readyz {status} {problem.get('checks')}")
assert status in (200, 503) and (status == 200 or headers["Content-Type"] == "application/problem+json"), status
print("image-smoke: HTTPS redirect, static files, docs and /readyz OK")
PY
