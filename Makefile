# wavenet-live: `make play` and `make test` do all set-up on a fresh Debian machine (as root or with sudo).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := libportaudio2 libsndfile1 jackd2 stress-ng
TRAIN_APT_PACKAGES := fluidsynth fluid-soundfont-gm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: train-all-cores train-source-filter setup apt play test test-fast lint bench data train evaluate clean

setup: apt $(STAMP)

# apt packages, installed only when missing
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# the venv: torch first (pip takes the local CPU wheel), then the project with its test extra
$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,train]'
	@touch $@

play: setup
	$(BIN)/wavenet-live $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)

# the inner loop: no slow and no JACK tests (~2.5 min of one core once Numba's cache is warm; realtime/README.md, Tests); `make test` still runs everything
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not jack" $(PYTEST_ARGS)

# ruff, one config in pyproject.toml
lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m realtime.bench

# training-time extras: the General MIDI soundfont and FluidSynth, then the note dataset (velocities
# 50/80/110; its every 20th note is the eval set) and four more velocities of the same notes (training only)
EXTRA := --data-extra data/gm-vel
# the default model learns pitches between the notes (pitch bend): crops detuned by up to +-1 semitone
DETUNE := --detune 1
# the learning rate the lag model trained at since 2026-12-03 (2e-4 on 2026-12-02; train's own default, 1e-3,
# is for a new model); the checkpoint keeps its weight average (--weight-ema 0.999); TRAIN_ARGS="--lr X" overrides it
LR := --lr 1e-4
# the model folder `make train` / `make train-all-cores` resume (an experiment: TRAIN_OUT=models/experiments/NAME)
TRAIN_OUT ?= models/default
data: setup
	@missing=""; for p in $(TRAIN_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi
	[ -f data/gm/dataset.json ] || $(BIN)/python -m models.dataset build data/gm
	[ -f data/gm-vel/dataset.json ] || $(BIN)/python -m models.dataset build data/gm-vel --velocities 40,65,95,120

# the core `make train` runs on (a second run beside it: TRAIN_CPU=0)
TRAIN_CPU ?= 1
# resume training the default model (TRAIN_OUT) on one core (taskset), one torch thread
train: data
	taskset -c $(TRAIN_CPU) $(BIN)/python -m models.train --data data/gm $(EXTRA) --out $(TRAIN_OUT) --resume --compile $(DETUNE) $(LR) $(TRAIN_ARGS)

# the same on every core: one process per core, data-parallel (DDP, gloo), one torch thread each
train-all-cores: data
	OMP_NUM_THREADS=1 $(BIN)/torchrun --standalone --nproc_per_node $$(nproc) -m models.train \
		--data data/gm $(EXTRA) --out $(TRAIN_OUT) --resume --compile $(DETUNE) $(LR) $(TRAIN_ARGS)

# the source-filter model (issue 37; models/experiments/source-filter/config.json): from scratch, then resumed, on one
# core; the network models the excitation, the envelope bank the spectral envelope and gain
SF_OUT ?= models/source-filter
train-source-filter: data
	OMP_NUM_THREADS=1 taskset -c $(TRAIN_CPU) $(BIN)/python -m models.train --data data/gm $(EXTRA) --out $(SF_OUT) \
		--resume --compile $(DETUNE) --config models/experiments/source-filter/config.json --weight-ema 0.999 \
		--no-progress $(TRAIN_ARGS)

evaluate: setup
	$(BIN)/python -m models.evaluate --model models/default/model.npz

clean:
	rm -rf $(VENV) build *.egg-info
