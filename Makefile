# knd: every command a user runs. `make help` lists them.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
PYTHON ?= python3
STAMP := $(VENV)/.installed
MIRROR ?= $(abspath ../shared/data/ravdess/Audio_Speech_Actors_16k_dev.zip)
MIRROR_MD5 ?= 73047ca122ff4319665fec328b1bbed2
PYTEST_ARGS ?=
IMAGE ?= knd
BASE_IMAGE ?=
MODEL ?= models/model.pt
# This machine's data choice, written by `make pipeline DATA=...` (see conf/site/README.md)
SITE := conf/site/local.yaml

.DEFAULT_GOAL := help
.PHONY: help install pipeline pipeline-mirror test lint format docs serve report bench \
	docker-train docker-predict remote docs-gen docker-smoke

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) ## Create .venv and install knd with its dev tools (only when pyproject.toml changed)

pipeline: $(STAMP) ## Run the DVC pipeline (Zenodo; DATA=archive-or-folder [DATA_MD5=...]: a local copy, kept)
ifdef DATA
	printf '%s\n' '# @package _global_' \
		'# Written by `make pipeline DATA=...`: the data of this machine, in every later run.' \
		'defaults:' '  - override /data: local' \
		'data:' '  path: $(abspath $(DATA))' '  md5: "$(DATA_MD5)"' > $(SITE)
endif
	if [ -f $(SITE) ]; then dvc exp run; else dvc repro; fi

pipeline-mirror: ## Run the DVC pipeline on the offline mirror in ../shared
	$(MAKE) pipeline DATA=$(MIRROR) DATA_MD5=$(MIRROR_MD5)

test: $(STAMP) ## Run the test suite (pytest; PYTEST_ARGS='-m "not slow"' for the quick part)
	$(BIN)/pytest $(PYTEST_ARGS) || test $$? -eq 5

lint: $(STAMP) ## ruff, hadolint and actionlint
	ruff check .
	ruff format --check .
	hadolint dockerfiles/*.dockerfile
	actionlint
	shellcheck scripts/*.sh .ci/run

format: $(STAMP) ## Fix what ruff can fix and format the code
	ruff check --fix .
	ruff format .

docs: $(STAMP) ## Build the documentation site into site/ (strict, offline)
	mkdocs build --strict

docs-gen: $(STAMP) ## Regenerate the generated doc pages (config, CLI, pipeline figure)
	python docs/gen_config_reference.py
	python docs/gen_cli_reference.py
	python docs/gen_pipeline_figure.py

serve: $(STAMP) ## Serve the trained model on http://127.0.0.1:8000 (MODEL=models/model.onnx for ONNX)
	knd serve --model $(MODEL)

remote: ## Make an S3 bucket the DVC remote (URL=s3://bucket/path [ENDPOINT=http://host:port])
	scripts/s3_remote.sh $(URL) $(ENDPOINT)

report: $(STAMP) ## Render DVC plots to an offline HTML report (reports/plots/index.html)
	knd report

bench: $(STAMP) ## Run the feature, training, prediction, live-stream, timeline and encoder benchmarks (needs ../shared)
	python benchmarks/bench_features.py
	python benchmarks/bench_train.py
	python benchmarks/bench_predict.py
	python benchmarks/bench_stream.py
	python benchmarks/bench_timeline.py
	python benchmarks/bench_encoders.py

docker-train: ## Build the GPU training image (BASE_IMAGE=... to override the base)
	docker build -f dockerfiles/train_model.dockerfile -t $(IMAGE)-train \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .

models/model.onnx: models/model.pt | $(STAMP)
	knd export

docker-smoke: ## Build both images on a local Docker engine, run the inference one, call its API
	bash scripts/docker_smoke.sh

docker-predict: models/model.onnx ## Build the slim ONNX inference image (model baked in)
	docker build -f dockerfiles/predict_model.dockerfile -t $(IMAGE)-predict \
		$(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) .
