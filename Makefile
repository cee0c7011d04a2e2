# Two commands on a fresh machine: `make run` (materialize one partition) and `make test`.
# Both create/refresh the virtualenv first. torch is pinned by constraints.txt to the local CPU wheel.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SCALE ?= 1k
PROFILE ?= offline
PYTEST_ARGS ?=
MATRIX_SCALES ?= 100 1k 5k 10k 50k 100k
MATRIX_PROFILES ?= offline kura-tier5
MATRIX_ARGS ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test dev validate report matrix clean-data

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[kura,dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kura-perf run --scale $(SCALE) --profile $(PROFILE)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

dev: install
	DAGSTER_HOME=$$($(BIN)/kura-perf dagster-home) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

report: install
	$(BIN)/kura-perf report

# The whole test matrix, each partition its own process, then the filled §1.2 table (also data/matrix.md).
matrix: install
	$(BIN)/kura-perf matrix --scales $(MATRIX_SCALES) --profiles $(MATRIX_PROFILES) $(MATRIX_ARGS)

clean-data:
	rm -rf data/storage data/metrics data/metrics_pending data/reports data/metrics.duckdb
