# Two commands on a fresh machine: `make run` (materialize one partition) and `make test`.
# Both create/refresh the virtualenv first. torch is pinned by constraints.txt to the local CPU wheel.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SCALE ?= 1k
PROFILE ?= offline
PYTEST_ARGS ?=
TEST_WORKERS ?= auto
MATRIX_SCALES ?= 100 1k 5k 10k 50k 100k
MATRIX_PROFILES ?= offline kura-tier5
MATRIX_ARGS ?=
WORKERS ?= 2
SHARDS ?= 4
# Dagster's Celery executor and Postgres storage; see the `cluster` extra in pyproject.toml for why
# they are installed without their exact dagster pin.
DAGSTER_CLUSTER_LIBS := dagster-celery==0.29.27 dagster-postgres==0.29.27

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test dev validate report matrix clean-data cluster cluster-stop cluster-status cluster-run

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install -qq -c constraints.txt -e '.[kura,dev,cluster]'
	$(BIN)/python -m pip install -qq --no-deps $(DAGSTER_CLUSTER_LIBS)
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/kura-perf run --scale $(SCALE) --profile $(PROFILE)

# The suite on pytest-xdist workers, one per CPU (at most 4: each may start servers and load models);
# TEST_WORKERS=0 runs it in this process.
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --maxprocesses 4 $(PYTEST_ARGS)

validate: install
	$(BIN)/dagster definitions validate -w workspace.yaml

dev: install
	DAGSTER_HOME=$$($(BIN)/kura-perf dagster-home) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

report: install
	$(BIN)/kura-perf report

# The whole test matrix, one partition at a time (each its own process), waiting before each for a quiet
# box (other processes under 10% of the CPU), then the filled §1.2 table (also data/matrix.md).
matrix: install
	$(BIN)/kura-perf matrix --wait-quiet --scales $(MATRIX_SCALES) --profiles $(MATRIX_PROFILES) $(MATRIX_ARGS)

clean-data:
	rm -rf data/storage data/metrics data/metrics_pending data/reports data/metrics.duckdb

# A local cluster under the data root: Postgres + Redis + $(WORKERS) Dagster Celery workers on 127.0.0.1,
# each in its own process group; pids and ports in data/cluster/state.json.
cluster: install
	$(BIN)/kura-perf cluster up --workers $(WORKERS)

cluster-stop:
	$(BIN)/kura-perf cluster down

cluster-status:
	$(BIN)/kura-perf cluster status

# One partition on the running cluster, embeddings in $(SHARDS) shards (add ARGS=--all-stages for the rest).
cluster-run: install
	$(BIN)/kura-perf cluster run --scale $(SCALE) --profile $(PROFILE) --shards $(SHARDS) $(ARGS)
