# misterp: the README's two commands are `make demo` and `make test`.
# Python 3.12 is required by the current pymc/bambi/arviz/nutpie; we look for it on PATH and in
# pyenv, because a pyenv shim named python3.12 can exist without the version being active.
PYTHON ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv

.PHONY: install demo test lint browser help

help:  ## list targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "%-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it or pass PYTHON=/path/to/python3.12"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install -q --compile-bytecode -p $(VENV)/bin/python -r requirements.lock
	$(VENV)/bin/uv pip install -q -p $(VENV)/bin/python --no-deps -e .
	touch $@

install: $(VENV)/.installed  ## create .venv with the locked dependencies and misterp

demo: install  ## simulate 3 monthly waves with known changes and track them end to end, locally
	$(VENV)/bin/misterp demo --output demo-results

lint: install  ## ruff, mypy (src/misterp and flows/) and the layer contracts (lint-imports)
	$(VENV)/bin/ruff check src flows tests bench probes
	$(VENV)/bin/ruff format --check src flows tests bench probes
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The report test opens the report in a real headless browser: Debian's chromium (Playwright's
# own browser downloads are not used).
browser:  ## install Debian's chromium for the report's browser test, if missing
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q chromium; \
	else echo "/usr/bin/chromium is missing: the report's browser test needs it;" \
	  "install it as root: sudo apt-get install -y chromium"; exit 1; fi

test: lint browser  ## lint, type-check, then the whole suite including the slow recovery tests
	$(VENV)/bin/pytest --run-slow -p no:cacheprovider -n 2 --dist worksteal
