# Everything runs from the checkout root: the package `trace` shadows the stdlib
# module of that name only when the checkout comes first on sys.path (DESIGN.md §9).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)
export FLASK_APP := trace

.PHONY: run test lint bench-labels bench-resolve bench-analytics demo clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/flask --app trace db upgrade
	$(BIN)/flask --app trace demo load --if-empty
	$(BIN)/flask --app trace demo banner
	$(BIN)/flask --app trace run --host 127.0.0.1 --port 5000

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench-labels: $(STAMP)
	$(BIN)/python bench/bench_labels.py --record-hook bench.record_run:record

bench-resolve: $(STAMP)
	$(BIN)/python bench/bench_resolve.py

bench-analytics: $(STAMP)
	$(BIN)/python bench/bench_analytics.py

clean:
	rm -rf $(VENV) instance/*.sqlite3
