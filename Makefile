# tactful — the two commands a new user types: `make demo` and `make test`.
# Both install what they need into .venv (Python deps) and deploy/local-kafka/.kafka (Kafka jars).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KAFKA := deploy/local-kafka/kafka.sh
# make test runs its own broker on a port of its own, so a Kafka you run on 9092 is left alone.
TEST_KAFKA_PORT ?= 39092
DEMO_KAFKA_PORT ?= 39192
BENCH_KAFKA_PORT ?= 39492
# Extra flags of bench/compare.py, e.g. BENCH_COMPARE_FLAGS=--profile
BENCH_COMPARE_FLAGS ?=
PYTEST_FLAGS ?= -q -p no:cacheprovider

.PHONY: help install prometheus-tools browser-tools lint unit integration test drills compiled demo explore bench bench-worker bench-compare schemas kafka-start kafka-stop clean

help:
	@echo "make demo   local Kafka, the worker, a sample story, intents printed"
	@echo "make test   install, lint, type-check, unit + property + scenario tests, integration tests on a real Kafka"
	@echo "make drills  long reliability drills on the local Kafka (some document known gaps)"
	@echo "make explore  property tests on fresh random examples (5,000 each)"
	@echo "make compiled  the engine compiled with mypyc into build/compiled (PYTHONPATH=build/compiled)"
	@echo "make bench  replay throughput (writes BENCHMARKS.md)"
	@echo "make bench-worker  worker throughput on the local Kafka (writes BENCHMARKS.md)"
	@echo "make bench-compare  tactful beside raw aiokafka, Faust, Quix Streams; latency (writes BENCHMARKS.md;"
	@echo "                    BENCH_QUICK=1 for a run of at most 10 minutes, BENCH_EVENTS=N to size it)"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tactful needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,rocksdb]'
	@touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy --strict src

schemas: install
	$(PY) -m tactful.adapters.schemas --write schemas

unit: install
	$(PY) -m pytest $(PYTEST_FLAGS) -n 2 tests/unit tests/property tests/scenarios tests/e2e

# prometheus and promtool for tests/integration/test_prometheus.py: Debian's package when
# either is missing (apt-get, as root), nothing when both are on PATH.
prometheus-tools:
	@if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 || { echo "prometheus/promtool missing and no apt-get: install Prometheus 2.x" >&2; exit 1; }; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus; \
	fi

# The shopper's pages are tested in headless Chromium, driven through chromedriver.
browser-tools:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		command -v apt-get >/dev/null 2>&1 || { echo "chromium/chromedriver missing and no apt-get: install Chromium and its driver" >&2; exit 1; }; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium chromium-driver; \
	fi

# The broker is started here and stopped whatever the tests' outcome.
integration: install prometheus-tools browser-tools
	@set -e; \
	addr=$$(KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) start | tail -n 1); \
	trap 'KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) stop' EXIT; \
	echo "integration tests on Kafka at $$addr"; \
	env -u TACTFUL_BOOTSTRAP KAFKA_PORT=$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_FLAGS) --durations=20 tests/integration

test: lint unit integration

# Drills too long for `make test`, or not yet passing (README, "Known gap (worker)");
# each writes its counts to .cache/drills/ (RELIABILITY.md).
drills: install
	@set -e; \
	addr=$$(KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) start | tail -n 1); \
	trap 'KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) stop' EXIT; \
	env -u TACTFUL_BOOTSTRAP KAFKA_PORT=$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_FLAGS) -s tests/drills

explore: install
	TACTFUL_PROPERTY_EXPLORE=1 $(PY) -m pytest $(PYTEST_FLAGS) -n 2 tests/property

# The engine's hot modules compiled with mypyc, for replays and workers that want the speed:
# PYTHONPATH=build/compiled .venv/bin/tactful ... (byte-identical outputs: tests/e2e).
compiled: install
	$(PY) -m tactful.compile build/compiled

bench: install
	$(PY) bench/replay.py

bench-worker: install
	$(PY) bench/worker.py

# Quix Streams and py-spy come from the `bench` extra; the broker is its own, stopped whatever happens.
bench-compare: install
	@$(PY) -c 'import quixstreams' 2>/dev/null && test -x $(VENV)/bin/py-spy || \
		$(PY) -m pip install --quiet -e '.[dev,rocksdb,bench]'
	@set -e; \
	addr=$$(KAFKA_PORT=$(BENCH_KAFKA_PORT) bash $(KAFKA) start | tail -n 1); \
	trap 'KAFKA_PORT=$(BENCH_KAFKA_PORT) bash $(KAFKA) stop' EXIT INT TERM; \
	TACTFUL_BOOTSTRAP=$$addr $(PY) bench/compare.py $(BENCH_COMPARE_FLAGS)

kafka-start:
	bash $(KAFKA) start

kafka-stop:
	bash $(KAFKA) stop

demo: install
	@set -e; \
	addr=$$(KAFKA_PORT=$(DEMO_KAFKA_PORT) bash $(KAFKA) start | tail -n 1); \
	trap 'KAFKA_PORT=$(DEMO_KAFKA_PORT) bash $(KAFKA) stop' EXIT; \
	TACTFUL_BOOTSTRAP=$$addr $(PY) -m tactful.service.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
