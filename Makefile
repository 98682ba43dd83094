# musicseq: every target does its own set-up (virtualenv, Python packages, and
# abc2midi + fluidsynth from Debian when apt-get is available and we are root).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MUSICSEQ := $(VENV)/bin/musicseq
STAMP := $(VENV)/.installed-stamp
SHIPPED := saved_models/folk-transformer

export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup system-deps demo test lint train train-gru clean

setup: $(STAMP) system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# abc2midi (Debian: abcmidi) and fluidsynth are optional: without them musicseq
# falls back to music21 / pretty_midi and says so.
system-deps:
	@if command -v abc2midi >/dev/null 2>&1 && command -v fluidsynth >/dev/null 2>&1; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends abcmidi fluidsynth >/dev/null) \
		|| echo "notice: could not install abcmidi/fluidsynth; musicseq will use music21/pretty_midi fallbacks"; \
	else \
		echo "notice: abc2midi/fluidsynth not found and apt-get unavailable (or not root); musicseq will use music21/pretty_midi fallbacks"; \
	fi

# The demo uses the pretrained model shipped in saved_models/ (no training step).
demo: setup
	$(MUSICSEQ) generate $(SHIPPED) --num 4 --seed 7 --temperature 0.9 --constrain --render --out out/demo

# Reproduces the shipped default model saved_models/folk-transformer (about 50 minutes on a
# 2-core CPU; a step budget, so the same steps on any machine; re-running after an
# interruption resumes from its checkpoint). See saved_models/folk-transformer/MODEL_CARD.md.
train: setup
	$(MUSICSEQ) data
	$(MUSICSEQ) train --model transformer --units 256 --layers 4 --heads 8 --context 512 \
		--seq-len 512 --batch-size 16 --embedding-dim 64 --dropout 0.1 --learning-rate 1.5e-3 \
		--lr-schedule cosine --warmup-steps 100 --steps 1800 --steps-per-epoch 150 \
		--save-every 150 --seed 2026 --out $(SHIPPED) --quiet

# The second shipped model, saved_models/folk-gru (30 minutes; smaller and faster to sample).
train-gru: setup
	$(MUSICSEQ) data
	$(MUSICSEQ) train --model gru --units 512 --embedding-dim 64 --dropout 0.5 \
		--batch-size 64 --seq-len 128 --minutes 30 --steps-per-epoch 200 \
		--learning-rate 2e-3 --early-stopping 3 --save-every 500 --seed 2026 \
		--out saved_models/folk-gru --quiet

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check musicseq tests scripts

clean:
	rm -rf out .pytest_cache
