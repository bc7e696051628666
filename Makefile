# Ledgerflow: `make run` starts a development stack, `make test` runs the test suite.
# Both build .venv from pyproject.toml first; nothing needs to be set by hand.

PYTHON3 ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
MANAGE := $(PY) manage.py
# Where the web process listens. honcho hands PORT to the first Procfile entry (web).
PORT ?= 8000

.PHONY: run test install install-dev chromium

# --- Environment --------------------------------------------------------------------------------
$(PY):
	$(PYTHON3) -m venv $(VENV)

# A stamp per extra: pip runs again only when pyproject.toml changes (or the stamp is deleted).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e '.[dev]'
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Browser tests drive Debian's Chromium; without root or a package mirror they cannot run, but
# the rest of the suite can: warn and go on.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO="sudo -n"; \
		( $$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y chromium ) \
			|| echo "WARNING: could not install chromium; browser tests will not run." >&2; \
	fi

# --- Development stack --------------------------------------------------------------------------
# The development secret key is accepted only with DEBUG on; it is on for `make run` alone.
run: export DEBUG ?= true
run: export PORT := $(PORT)
# The launcher picks the database and broker (real ones, or embedded ones when none answers),
# runs the setup (database, migrations, schedules, demo data, admin login, static files) against
# them, then starts web, worker and beat from the Procfile with honcho.
run: install
	@echo "Ledgerflow is starting (web, worker, beat); stop it with Ctrl-C."
	@echo "  Admin:    http://127.0.0.1:$(PORT)/admin/"
	@echo "  API docs: http://127.0.0.1:$(PORT)/api/v1/docs/"
	@echo
	$(PY) -m config.launch

# --- Tests --------------------------------------------------------------------------------------
test: install-dev chromium
	$(VENV)/bin/pytest
