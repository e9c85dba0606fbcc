# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PKGS := espeak-ng sox libsndfile1
# Only the tests need these: a real one-node SLURM cluster (tests/launch/test_slurm.py) and network namespaces
# joined by a veth pair (tests/launch/test_multinode.py); Debian's chromium drives the browser tests (tests/web/).
TEST_APT_PKGS := slurm-wlm munge iproute2 util-linux chromium
DEMO_DIR ?= demo-workspace

# The catalog tests also run against a real PostgreSQL server: `make test` installs the Debian server package
# when it is missing and wraps pytest in scripts/with-postgres.sh (throwaway cluster, stopped afterwards).
PG_PKGS := postgresql

.PHONY: demo test lint deps sysdeps testdeps pgdeps clean

sysdeps:
	@bash scripts/apt-ensure.sh $(APT_PKGS)

testdeps:
	@bash scripts/apt-ensure.sh $(TEST_APT_PKGS)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch==2.13.0 is pinned in pyproject and resolved in this same call (CPU wheel).
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	# Flower pins typer<0.21, rich<15, fastapi 0.138, uvicorn 0.49 and starlette<1.4, older than hearthkit's own
	# pins; its other requirements are in pyproject and tests/federate proves it runs beside the newer ones.
	$(BIN)/pip install -q --disable-pip-version-check --no-deps flwr==1.42.0
	@touch $(STAMP)

pgdeps:
	@bash scripts/apt-ensure.sh $(PG_PKGS)

deps: sysdeps $(STAMP)

demo: deps
	HEARTH_DEMO_DIR=$(DEMO_DIR) bash scripts/demo.sh

# --durations=25: the CI log names the slowest tests (the suite must stay under the 35-minute budget).
test: deps testdeps pgdeps
	$(BIN)/ruff check src tests bench
	bash scripts/with-postgres.sh $(BIN)/python -m pytest -q --durations=25

lint: deps
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
