# Baton — the two commands that matter: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := $(shell command -v uv 2>/dev/null || echo .uv/bin/uv)
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-sqlite test-postgres lint format bench screenshots browser-deps system-deps clean fuzz

.uv/bin/uv:
	$(PYTHON) -m venv .uv
	.uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(if $(findstring .uv/,$(UV)),.uv/bin/uv)
	UV_PYTHON=$(PYTHON) $(UV) sync --frozen --quiet
	touch $@

install: $(VENV)/.installed ## set up .venv from the lock file

run: install ## migrate, then serve the web app and a worker on http://127.0.0.1:8000 (options: ARGS="--port 8080")
	$(PY) manage.py serve $(ARGS)

# Debian packages the tests use: chromium for the dashboard tests (Playwright's own browser download
# is not used) and bubblewrap, the script sandbox's network/filesystem isolation. Installed when root.
SYSTEM_PACKAGES := chromium bubblewrap
browser-deps system-deps:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	  command -v bwrap >/dev/null 2>&1 || missing="$$missing bubblewrap"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null); \
	    else echo "missing Debian packages:$$missing (the browser and bubblewrap tests need them)"; fi; \
	  fi

test: install system-deps ## the whole suite on SQLite, then on PostgreSQL + Redis when they are reachable
	$(MAKE) --no-print-directory test-sqlite
	@if $(PY) bench/services_up.py "$(PG_URL)" "$(REDIS_TEST_URL)"; then \
	  $(MAKE) --no-print-directory test-postgres; \
	else echo "PostgreSQL or Redis not reachable: PostgreSQL run skipped (SQLite run passed)"; fi

# The SQLite pass runs on TEST_WORKERS processes (pytest-xdist; "auto": one a core), each with its own test
# database file; tests marked xdist_group run on one worker (--dist loadgroup). The PostgreSQL + Redis pass
# runs on PG_TEST_WORKERS, each with its own PostgreSQL test database and its own Redis database (counting
# down from REDIS_TEST_URL's; config/settings.py). Both print the slowest tests (PYTEST_DURATIONS).
TEST_WORKERS ?= auto
PG_TEST_WORKERS ?= 2
PYTEST_DURATIONS ?= 15

test-sqlite: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=$(PYTEST_DURATIONS)

test-postgres: install  # the browser, soak/load and heavy (contract fuzzing) tests run in the SQLite pass only
	DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) -m pytest -n $(PG_TEST_WORKERS) --dist loadgroup --durations=$(PYTEST_DURATIONS) \
	  -m "not browser and not soak and not heavy"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

screenshots: install browser-deps ## the dashboard pictures in docs/screenshots (from the browser tests)
	BATON_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/dashboard/test_dashboard_browser.py tests/dashboard/test_pages_browser.py -k "accessibility or new_page"

bench: install ## benchmarks (not part of the test run); prints a table
	$(PY) bench/run.py

# docs/reliability.md: the crash soak and the load test, on SQLite, then on PostgreSQL + Redis when reachable
# (a database `<PG_URL's name>_soak` / `_load` created and dropped on that server). Options: ARGS="--runs 50".
.PHONY: soak load
soak load: install system-deps
	$(PY) bench/$@.py $(ARGS)
	@if $(PY) bench/services_up.py "$(PG_URL)" "$(REDIS_TEST_URL)"; then \
	  DATABASE_URL=$(PG_URL) REDIS_URL=$(REDIS_TEST_URL) $(PY) bench/$@.py $(ARGS); \
	else echo "PostgreSQL or Redis not reachable: the PostgreSQL run of $@ skipped"; fi
fuzz: install ## contract fuzzing of a served Baton with schemathesis, every phase (options: ARGS="--max-examples 500")
	$(PY) bench/fuzz.py $(ARGS)

clean:
	rm -rf $(VENV) .uv var/test-*
