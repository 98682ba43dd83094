# musicseq: every target does its own set-up (virtualenv, Python packages, and the Debian
# tools of system-deps when apt-get is available and we are root).
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

# Debian tools, each optional, as binary:package. abc2midi and fluidsynth render audio (without
# them musicseq falls back to music21 / pretty_midi and says so); abcm2ps typesets the scores
# of `generate --html` and of notebook tunes (without it they say the score could not be
# typeset); chromium runs the page test in a real browser (without it that test is skipped).
# Whatever is missing is installed with apt-get when it is available and we are root.
SYSTEM_TOOLS := abc2midi:abcmidi fluidsynth:fluidsynth abcm2ps:abcm2ps chromium:chromium
WITHOUT := musicseq falls back to music21/pretty_midi for audio, shows no scores without abcm2ps, and the browser test is skipped without chromium

system-deps:
	@missing=""; \
	for tool in $(SYSTEM_TOOLS); do \
		command -v "$${tool%%:*}" >/dev/null 2>&1 || missing="$$missing $${tool#*:}"; \
	done; \
	if [ -z "$$missing" ]; then \
		true; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian packages:$$missing"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
		|| echo "notice: could not install$$missing; $(WITHOUT)"; \
	else \
		echo "notice: missing Debian packages:$$missing (apt-get unavailable, or not root); $(WITHOUT)"; \
	fi

# The demo uses the pretrained model shipped in saved_models/ (no training step).
demo: setup
	$(MUSICSEQ) generate $(SHIPPED) --num 4 --seed 7 --temperature 0.9 --repeat-bias 0.5 --constrain --form AABB --render --html --out out/demo

# Reproduces the shipped default model, a Transformer with metrical and tonal inputs and a
# logits head that reads note letters relative to the tonic, trained in mixed bfloat16 (57
# minutes on this 2-core CPU with AVX-512 BF16 on 2026-11-23, 4,100-4,900 characters/s; 55-62
# on other days for the same flags without the head; on a CPU without bfloat16 instructions
# drop --precision: float32 took 70 minutes here; a step
# budget, so the same steps on any machine; re-running after an interruption resumes from its
# checkpoint) into models/folk-transformer, which
# `musicseq generate folk-transformer` then finds before the shipped one;
# `make train OUT=saved_models/folk-transformer` replaces the shipped model itself.
# See saved_models/folk-transformer/MODEL_CARD.md.
train: setup
	$(MUSICSEQ) data
	$(MUSICSEQ) train --model transformer --units 256 --layers 4 --heads 8 --context 512 \
		--seq-len 512 --batch-size 16 --embedding-dim 64 --dropout 0.1 --learning-rate 1.5e-3 \
		--lr-schedule cosine --warmup-steps 100 --steps 1800 --steps-per-epoch 150 \
		--save-every 150 --seed 2026 --metrical --tonal --relative-pitch --precision mixed_bfloat16 --out $(or $(OUT),models/folk-transformer) --quiet
	# Its own sampling settings, measured by scripts/sampling_sweep.py (docs/form.md).
	$(PY) scripts/sampling_sweep.py $(or $(OUT),models/folk-transformer) \
		--set free top_p=0.9 --set constrained repeat_bias=1.15625

# The second shipped model, folk-gru (30 minutes; smaller and faster to sample), into
# models/folk-gru (OUT=saved_models/folk-gru replaces the shipped one).
train-gru: setup
	$(MUSICSEQ) data
	$(MUSICSEQ) train --model gru --units 512 --embedding-dim 64 --dropout 0.5 \
		--batch-size 64 --seq-len 128 --minutes 30 --steps-per-epoch 200 \
		--learning-rate 2e-3 --early-stopping 3 --save-every 500 --seed 2026 \
		--out $(or $(OUT),models/folk-gru) --quiet
	# It repeats bars only with a strong nudge (docs/form.md).
	$(PY) scripts/sampling_sweep.py $(or $(OUT),models/folk-gru) --set constrained repeat_bias=4

# Two test processes (pytest-xdist; 12-15 minutes on 2 cores against 19 in one, the machine's
# speed drifting); each test is independent (its own tmp_path, session fixtures built per
# process), and an idle worker takes queued tests from the other (worksteal).
test: setup
	$(PY) -m pytest -q -n 2 --dist worksteal

lint: setup
	$(VENV)/bin/ruff check musicseq tests scripts

clean:
	rm -rf out .pytest_cache
