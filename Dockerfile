# The Movie API image: `docker build -t movieapi .` — `make image-smoke` replays these steps in a
# fresh venv (no docker engine needed) so that CI proves they work.

# ---- build: install the pinned, hash-checked dependencies and collect the static files ----
FROM python:3.11-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt

WORKDIR /app
COPY . .
# collectstatic needs settings, not secrets or a database: throwaway values for this step only (a random key:
# settings refuse a weak one outside debug).
RUN DJANGO_SECRET_KEY="$(/opt/venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    DATABASE_URL=postgres://unused/unused \
    /opt/venv/bin/python manage.py collectstatic --no-input --verbosity 0

# ---- runtime: the venv and the code, owned by root, run by an unprivileged user ----
FROM python:3.11-slim-bookworm

# HOST=0.0.0.0 so that the proxy reaches gunicorn; never publish port 8000 itself: slow clients starve sync
# workers (docs/operations.md#exposure).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=movieapi.settings \
    HOST=0.0.0.0 \
    PORT=8000

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app

USER 10001:10001
EXPOSE 8000

# Liveness only (no database): a container with a lost database stays up and answers 503s.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2)"]

CMD ["gunicorn", "movieapi.wsgi", "-c", "gunicorn.conf.py"]
