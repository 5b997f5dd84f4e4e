# Hive Portal: `make demo` runs the product, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

# Demo mode: simulator mounted, demo users allowed, plain HTTP on loopback.
DEMO_ENV := HIVE_SIMULATOR=1 ALLOW_PRIVATE_URLS=1 DJANGO_DEBUG=$${DJANGO_DEBUG:-1} LOG_FORMAT=text \
	PORTAL_BASE_URL=$${PORTAL_BASE_URL:-http://127.0.0.1:$(PORT)}

.PHONY: install demo test faults bench clean

$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

install: $(VENV)/.installed

demo: install
	mkdir -p var
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput
	$(DEMO_ENV) $(BIN)/python manage.py collectstatic --noinput -v 0
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo | tee var/seed.log
	$(DEMO_ENV) PORT=$(PORT) scripts/demo.sh

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/run_all.py

# The moderators' race needs PostgreSQL: that file runs again against a
# throwaway test_hiveportal_faults (pytest-django creates and drops it; Django
# connects through the `postgres` database, so hiveportal_faults need not exist).
FAULTS_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/hiveportal_faults

faults: install
	$(BIN)/python -m pytest -m faults tests/faults -s
	DATABASE_URL=$(FAULTS_DATABASE_URL) $(BIN)/python -m pytest -m faults tests/faults/test_moderators.py -s

clean:
	rm -rf var/test-*.sqlite3 .pytest_cache
