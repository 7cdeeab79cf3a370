# The two quick-start commands: `make demo` and `make test`. Each builds its own
# virtual environment in .venv on first use (Python 3.11+ as `python3`, or PYTHON=...).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint types unit emulator bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/emoclient demo

test: lint types unit

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

types: $(STAMP)
	$(BIN)/mypy

# The Redis store's tests need redis-server; the script installs it where it is missing.
unit: $(STAMP)
	sh scripts/ensure-redis.sh
	sh scripts/ensure-chromium.sh
	$(BIN)/pytest --cov --cov-report=term -q

emulator: $(STAMP)
	$(BIN)/emoclient emulator --host 127.0.0.1 --port 8089

# The benchmark suite: every benchmarks/bench_*.py, its report in benchmarks/README.md.
# `make bench BENCH=--quick` for the quick variant (about 3 minutes on 2 cores).
bench: $(STAMP)
	sh scripts/ensure-redis.sh
	$(BIN)/python -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .coverage
