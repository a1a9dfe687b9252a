# Two commands on a fresh Debian 12 machine (as root): `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv system-deps lint format test test-e2e image demo bench config-sample clean

$(STAMP): pyproject.toml
	bash scripts/system-deps.sh python
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

# redis-server and the Docker engine from Debian's packages when absent; dockerd started;
# the check image built locally (no registry is reachable here).
CHECK_IMAGE ?= redis-maint-check:7
system-deps:
	bash scripts/system-deps.sh redis compose chromium postgresql
	bash scripts/ensure-dockerd.sh
	bash scripts/build-check-image.sh $(CHECK_IMAGE)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# In parallel (pytest-xdist): most of the suite waits on processes (redis-server, daemons, containers),
# so 4 workers pay on 2 cores. --dist loadfile keeps a module's tests (and its module-scoped
# services: Cluster, Sentinel, PITR workloads) on one worker. TEST_WORKERS=0 runs it serially.
TEST_WORKERS ?= 4
test: venv system-deps lint
	$(BIN)/python -m pytest -m "not e2e" -n $(TEST_WORKERS) --dist loadfile

demo: venv system-deps
	CHECK_IMAGE=$(CHECK_IMAGE) bash scripts/demo.sh

# The sidecar image, from a local Debian base when no registry is reachable (BASE_IMAGE=... to override)
image: venv
	bash scripts/ensure-dockerd.sh
	bash scripts/build-image.sh redis-maint:latest

# Builds the image and runs the compose stack (~3 min from nothing, ~30 s cached)
test-e2e: venv system-deps
	bash scripts/ensure-dockerd.sh
	$(BIN)/python -m pytest -m e2e

# Quick sizes, 3 repeats each, medians printed (sweep ~2.5 min, backup ~1 min on 2 cores);
# the full sizes: README "Benchmarks"
bench: venv system-deps
	$(BIN)/python bench/sweep.py --sessions 200000 --repeat 3
	$(BIN)/python bench/backup.py --size-mib 256 --rounds 3
	$(BIN)/python bench/http_load.py --rounds 3
	$(BIN)/python bench/cli_speed.py --repeat 5
	$(BIN)/python bench/bigkeys.py --keys 200000 --repeat 3
	$(BIN)/python bench/archive.py --seconds 30
	$(BIN)/python bench/pitr_restore.py --rounds 3
	$(BIN)/python bench/exactly_once.py --minutes 1

config-sample: venv
	$(BIN)/redis-maint config sample > config/redis-maint.toml

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
