# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PKGS := espeak-ng sox libsndfile1
DEMO_DIR ?= demo-workspace

# The catalog tests also run against a real PostgreSQL server: `make test` installs the Debian server package
# when it is missing and wraps pytest in scripts/with-postgres.sh (throwaway cluster, stopped afterwards).
PG_PKGS := postgresql

.PHONY: demo test lint deps sysdeps pgdeps clean

sysdeps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch==2.13.0 is pinned in pyproject and resolved in this same call (CPU wheel).
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

pgdeps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian packages: $(PG_PKGS)"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(PG_PKGS) >/dev/null; }

deps: sysdeps $(STAMP)

demo: deps
	HEARTH_DEMO_DIR=$(DEMO_DIR) bash scripts/demo.sh

test: deps pgdeps
	$(BIN)/ruff check src tests bench
	bash scripts/with-postgres.sh $(BIN)/python -m pytest -q

lint: deps
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
