# Two commands on a fresh Linux machine with Python >= 3.10 and PyPI:
#   make study   # the whole study: dvc repro on the embedded default (tiny model, CPU)
#   make test    # every test that runs on a CPU, the smoke `dvc repro` included
# The study starts from the committed tiny base (models/tiny-base); `make pretrain` rebuilds it.
# Each creates the locked environment in .venv first if it is missing or stale.

PYTHON ?= python3
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
export HF_HUB_OFFLINE := 1
export UV_PYTHON_DOWNLOADS := never
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: env pretrain study back ablations claims tables test lab

env: $(VENV)/.synced

.tools/bin/uv:
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv==0.13.9

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $@

pretrain: env  # the tiny base from nothing (params.yaml `pretrain`, about 57 min on 2 idle AMD EPYC AVX-512 cores, about 80 estimated on an Intel Xeon, resumable): models/tiny-base
	python -m vrlib.pretrain

study: env  # library notices a user cannot act on are silenced in the kernels (vrlib.stage.quiet)
	dvc repro

back: env  # after an experiment: the committed recipe again, every log, plot and metric from this machine's run of it
	git stash push --include-untracked -m "make back: the experiment's edits (git stash pop brings them back)" -- vrlib notebooks params.yaml dvc.yaml
	dvc repro  # the stages the experiment changed: rerun, or restored from DVC's run cache with their logs
	dvc status

ablations: env  # after `make study` and a commit: dvc exp run per RL variant -> metrics/ablations.json
	python -m vrlib.ablations

claims: env  # after `make study` and a commit: each claim from 3 SFT x RL seeds -> metrics/claims.json, its tables (58 min on 2 cores from nothing, measured; resumes)
	python -m vrlib.claims
	python -m vrlib.tables

tables: env  # after your own `make study`: the README's and docs/results.md's tables from your metrics/
	python -m vrlib.tables

test: env
	pytest

lab: env  # a save keeps a notebook as committed (no outputs): dvc status stays clean (jupyter_server_config.py)
	jupyter lab --config=jupyter_server_config.py notebooks/
