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

.PHONY: help install prometheus-tools browser-tools lint unit integration test drills fuzz compiled demo explore bench bench-worker bench-compare bench-memory schemas kafka-start kafka-stop clean

help:
	@echo "make demo   local Kafka, the worker, a sample story, intents printed"
	@echo "make test   install, lint, type-check, unit + property + scenario tests, integration tests on a real Kafka"
	@echo "make drills  long reliability drills on the local Kafka (RELIABILITY.md)"
	@echo "make explore  property tests on fresh random examples (5,000 each)"
	@echo "make fuzz   coverage-guided fuzzing (atheris) of the input codec, FUZZ_SECONDS per topic"
	@echo "make compiled  the engine compiled with mypyc into build/compiled (PYTHONPATH=build/compiled)"
	@echo "make bench  replay throughput (writes BENCHMARKS.md)"
	@echo "make bench-worker  worker throughput on the local Kafka (writes BENCHMARKS.md)"
	@echo "make bench-compare  tactful beside raw aiokafka, Faust, Quix Streams; latency (writes BENCHMARKS.md;"
	@echo "                    BENCH_QUICK=1 for a run of at most 10 minutes, BENCH_EVENTS=N to size it)"
	@echo "make bench-memory  a worker's RSS per 100,000 live customers, memory store and RocksDB (writes BENCHMARKS.md)"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tactful needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,rocksdb]'
	@touch $@

install: $(VENV)/.installed

lint: install
	$(VENV)/bin/ruff check src tests bench fuzz
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

# Drills too long for `make test` (README, "Reliability drills");
# each writes its counts to .cache/drills/ (RELIABILITY.md). A short fuzzing run first.
drills: install
	$(MAKE) fuzz FUZZ_SECONDS=20
	@set -e; \
	addr=$$(KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) start | tail -n 1); \
	trap 'KAFKA_PORT=$(TEST_KAFKA_PORT) bash $(KAFKA) stop' EXIT; \
	env -u TACTFUL_BOOTSTRAP KAFKA_PORT=$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_FLAGS) -s tests/drills

# Coverage-guided fuzzing (fuzz/input_records.py) of each input topic's records for
# FUZZ_SECONDS, one process (FUZZ_FLAGS adds libFuzzer flags). The corpus grows in
# .cache/fuzz/TOPIC from the seeds in fuzz/corpus/TOPIC; a crash stops the run and its
# input is written to .cache/fuzz/TOPIC-crash-*. atheris is installed when missing.
FUZZ_SECONDS ?= 60
FUZZ_TOPICS ?= storefront inventory consent feedback
FUZZ_FLAGS ?=
fuzz: install
	@$(PY) -c 'import atheris' 2>/dev/null || $(PY) -m pip install --quiet -e '.[dev,rocksdb,fuzz]'
	@set -e; \
	for topic in $(FUZZ_TOPICS); do \
		mkdir -p .cache/fuzz/$$topic; \
		echo "fuzz: $$topic for $(FUZZ_SECONDS) s"; \
		if ! $(PY) -m fuzz.input_records $$topic -dict=fuzz/input.dict \
			-max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix=.cache/fuzz/$$topic- $(FUZZ_FLAGS) \
			.cache/fuzz/$$topic fuzz/corpus/$$topic >.cache/fuzz/$$topic.log 2>&1; then \
			tail -n 40 .cache/fuzz/$$topic.log; \
			echo "fuzz: $$topic: a finding, its input in .cache/fuzz/$$topic-*" >&2; exit 1; \
		fi; \
		grep -E '^#[0-9]+[[:space:]]+DONE|^stat::(number_of_executed_units|peak_rss_mb)' \
			.cache/fuzz/$$topic.log; \
	done

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

bench-memory: install
	@$(PY) -c 'import rocksdict' 2>/dev/null || $(PY) -m pip install --quiet -e '.[dev,rocksdb]'
	$(PY) bench/memory.py

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
