# Quick start (a fresh machine with ../shared beside the clone):
#   make smoke   # installs, then runs the benchmark end to end on a small default
#   make test    # installs what the tests need, then lint + the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
export BEARD_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install install-test smoke test test-slow lint

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

install: $(PY)
	$(PIP) install --quiet -e .

# torch first, pinned to the CPU build served from local disk, so nothing can
# resolve a CUDA build; torchattacks without its stale pins (ENVIRONMENT.md).
install-test: $(PY)
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[test]'
	$(PIP) install --quiet --no-deps torchattacks==3.5.1
	$(PIP) install --quiet scipy tqdm

smoke: install
	$(PY) launch.py --config=configs/smoke.py --data_dir=$(BEARD_DATA_DIR) \
	  --dataset_pool=$(BEARD_DATA_DIR)/dataset_pool --workdir=runs/smoke

lint: install-test
	$(VENV)/bin/ruff check .

# One single-threaded worker per core (tests/conftest.py sets the thread flags).
TEST_WORKERS ?= 2

test: lint
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist=worksteal -m 'not slow' --durations=15 tests

test-slow: install-test
	$(VENV)/bin/pytest -m slow tests || [ $$? -eq 5 ]  # 5: no slow tests collected
