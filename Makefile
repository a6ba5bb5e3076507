# Two commands: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint clean screenshots

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found); set PYTHON=/path/to/python3.11"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py ensure_admin
	@PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/python manage.py run_stack

# Tests keep their database, broker and keys apart from `make run`'s. Test files run in
# parallel processes (pytest-xdist, one file per process at a time): most tests wait on
# real agents and workers rather than on the CPU. PYTEST_WORKERS=0 runs them in one.
PYTEST_WORKERS ?= 3
test: export CMS_VAR_DIR ?= $(CURDIR)/var/test
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The PNGs of docs/screenshots/ (and README.md's pictures), taken in Chromium against a
# live server and a small fleet of real agents. Not part of `make test`.
screenshots: export CMS_VAR_DIR ?= $(CURDIR)/var/test
screenshots: $(STAMP)
	$(BIN)/python -m pytest tests/browser/screenshots.py -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

clean:
	rm -rf var/run var/log var/supervisord.conf
