# t2i: every target sets up what it needs; a fresh clone needs only `make demo` or `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.t2i-setup
KERNEL := t2i
# Compute nodes (and this project's test machines) have no internet: read weights and data from the
# caches that `make assets` filled. `make assets` itself turns this off.
export HF_HUB_OFFLINE ?= 1
# provenance sidecars record the command that made a report
export T2I_COMMAND ?= make $(MAKECMDGOALS) $(MAKEOVERRIDES)
REPORTS := $(or $(T2I_REPORTS_DIR),reports)
PAPERMILL := $(PY) -m papermill --kernel $(KERNEL) --log-output --no-progress-bar

.PHONY: help setup demo test eval guidance guidance-check guidance-models samplers ema export figures assets bench-loader bench-latent bench-sampling bench-bootstrap bench-gpu lab watch screenshots clean

help:  ## list the targets
	@grep -E '^[a-z][a-z0-9 -]*:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{sub(/:.*/, "", $$1); printf "  make %-34s %s\n", $$1, $$2}'
	@printf "  make %-34s %s\n" "run-<experiment>" "$(RUN_HELP)"

setup: $(STAMP)  ## create .venv, install t2i + pinned deps, nbstripout filter, Jupyter kernel "t2i"

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -e .
	# the kernel lives inside the venv, so papermill and `make lab` always run this clone's environment
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (t2i)" >/dev/null
	if git rev-parse --git-dir >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install; fi
	touch $@

demo: setup  ## offline CPU demo: 01_mnist on the bundled digits, with a judge and an adherence table
	mkdir -p $(REPORTS)/demo/mnist/demo
	T2I_NOTEBOOK=notebooks/01_mnist.ipynb $(PAPERMILL) notebooks/01_mnist.ipynb $(REPORTS)/demo/mnist/demo/01_mnist.ipynb -p profile demo

TEST_WORKERS ?= 2
test: setup  ## the test suite (offline, CPU; TEST_WORKERS=2 processes, one thread each)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n $(TEST_WORKERS)

# The thesis experiments, headless (`make assets` first; on SLURM: sbatch slurm/notebook.sbatch ...).
# PROFILE=smoke runs the same notebook in seconds on synthetic data (the test suite does this for run-celeba);
# RUN_NAME names the run (runs/<experiment>/<RUN_NAME>, default the profile); ARGS passes more papermill parameters.
# The executed notebook lands beside the figures it drew: reports/<profile>/<experiment>/<run>/.
PROFILE ?= full
RUN_NAME ?= $(PROFILE)
EXECUTED = $(REPORTS)/$(PROFILE)/$*/$(RUN_NAME)/
# run-<experiment> runs notebooks/NN_<experiment>[_*].ipynb: a new experiment's notebook needs no line here
NB = $(basename $(notdir $(firstword $(wildcard notebooks/[0-9][0-9]_$*.ipynb notebooks/[0-9][0-9]_$*_*.ipynb))))
# the experiments are the files t2i/experiments/<name>.py (t2i.experiments.NAMES), in the thesis's order
EXPERIMENT_FILES := $(filter-out __init__,$(basename $(notdir $(wildcard t2i/experiments/*.py))))
RUN_HELP := thesis Experiments 1-4 (sections 3.2-3.5), PROFILE=full|smoke: $(addprefix run-,$(EXPERIMENT_FILES))
run-%: setup
	@test -n "$(NB)" || { echo "no notebook notebooks/NN_$*.ipynb for make run-$*"; exit 2; }
	mkdir -p $(EXECUTED)
	T2I_NOTEBOOK=notebooks/$(NB).ipynb $(PAPERMILL) notebooks/$(NB).ipynb $(EXECUTED)$(NB).ipynb -p profile $(PROFILE) -p run_name $(RUN_NAME) $(ARGS)

RUN ?= runs/mnist/demo
# A notebook that measures a trained run, executed beside the report it writes (python -m t2i where says where):
# $(call measure,<report folder>,<notebook>)
measure = out=$$($(PY) -m t2i where $(1) --run $(RUN)) && mkdir -p $$out && \
	T2I_NOTEBOOK=notebooks/$(2).ipynb $(PAPERMILL) notebooks/$(2).ipynb $$out/$(2).ipynb -p run_dir $(RUN) $(ARGS)

eval: setup  ## guidance sweep of a trained run (FID/KID/IS, adherence, CLIP score): make eval RUN=runs/mnist/demo
	$(call measure,eval,05_evaluate)

guidance: setup  ## every guidance method, paired verdicts along the front: make guidance RUN=runs/mnist/demo [ARGS=...]
	$(call measure,guidance,06_guidance)

# A replication of `make guidance`'s verdicts: every method again on seeds disjoint from the main report's, judged
# against real images past those the main report used (guidance/replication/check.md: sign, interval, verdict).
# autoguidance's guide, as in notebooks/06_guidance.ipynb: the replication repeats every method of the main report
GUIDE ?= epoch-0010
guidance-check: setup  ## replicate the guidance verdicts on fresh seeds and held-out real images: make guidance-check RUN=...
	$(PY) -m t2i guidance $(RUN) --check replication --guide-checkpoint $(GUIDE) $(ARGS)

# The verdicts on more than one model: SEEDS are trained like the demo (runs/mnist/demo-seed<S>, each its own guide),
# each gets `make guidance`, then guidance/models.md says on how many models each verdict holds (38 min on 2 cores,
# and 8-10 min per model the first time, to train it).
# Every model samples the post-hoc EMA length `make ema` chose for CFG on the demo (runs/mnist/demo/ema_presets.json),
# as the recipe's: a seed's own `make ema` reads its guidance report, so it would cost a second guidance report each.
SEEDS ?= 423 424
MODELS_EMA = $(shell $(PY) -c "import json; print(json.load(open('runs/mnist/demo/ema_presets.json'))['lengths']['cfg'])" 2>/dev/null)
guidance-models: setup  ## the guidance verdicts on the demo and on demo models trained from SEEDS="423 424"
	for s in $(SEEDS); do $(MAKE) run-mnist PROFILE=demo RUN_NAME=demo-seed$$s ARGS="-p seed $$s" && \
		$(MAKE) guidance RUN=runs/mnist/demo-seed$$s ARGS="$(if $(MODELS_EMA),-p ema_length $(MODELS_EMA))" || exit 1; done
	$(MAKE) guidance RUN=runs/mnist/demo
	$(PY) -m t2i guidance runs/mnist/demo --across $(foreach s,$(SEEDS),runs/mnist/demo-seed$(s))

samplers: setup  ## every sampler and spacing against a 1,000-step reference: make samplers RUN=runs/mnist/demo
	$(call measure,samplers,07_samplers)

ema: setup  ## post-hoc EMA lengths for unguided, CFG and autoguided sampling (after make guidance): make ema RUN=...
	$(call measure,ema,08_ema)

OUT ?= exported/$(notdir $(RUN))
export: setup  ## a trained run as a diffusers pipeline folder + model card: make export RUN=runs/mnist/demo [OUT=...] [ARGS="--push-to-hub user/repo"]
	$(PY) -m t2i export $(RUN) $(OUT) $(ARGS)

figures: setup  ## every thesis figure and table the runs can feed -> reports/$(PROFILE)/ with index.md (never trains)
	$(PY) -m t2i figures --profile $(PROFILE) $(ARGS)

EXPERIMENTS ?= $(EXPERIMENT_FILES)
assets: setup  ## on a node with internet: datasets and weights into the caches (EXPERIMENTS="mnist cifar10 ...")
	for e in $(EXPERIMENTS); do HF_HUB_OFFLINE=0 $(PY) -m t2i assets --experiment $$e || exit 1; done

bench-loader: setup  ## thesis Table 2: naive / LRU / file-sequential / preprocessed loading -> reports/bench/loader.md
	$(PY) -m t2i.bench loader

bench-latent: setup  ## CelebA step reading the latent cache vs encoding with the VAE -> reports/bench/latent.md
	$(PY) -m t2i.bench latent

bench-sampling: setup  ## a run's default sampler vs the DDPM x 20 it replaced (RUN=runs/mnist/demo) -> reports/bench/sampling.md
	$(PY) -m t2i.bench sampling --run $(RUN)

bench-bootstrap: setup  ## the guidance front's bootstrap per row: FD, KID one resample at a time vs the front's ways -> reports/bench/bootstrap.md
	$(PY) -m t2i.bench bootstrap

bench-gpu: setup  ## training step per config, precision and layout vs the card's peak -> reports/bench/<device>/gpu.md
	$(PY) -m t2i.bench gpu $(ARGS)

# As root (containers) JupyterLab needs --allow-root; ARGS passes the rest, e.g. ARGS="--no-browser --ip=0.0.0.0 --port=8888"
lab: setup  ## JupyterLab with the t2i kernel (ARGS="--no-browser --port 8888" on a cluster node)
	$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

PORT ?= 6006
watch: setup  ## TensorBoard over a run (or all runs): loss, LR, speed, sample grids, evaluations; make watch RUN=runs/mnist/demo
	$(VENV)/bin/tensorboard --logdir $(or $(RUN),runs) --port $(PORT) $(ARGS)

screenshots: setup  ## retake reports/watch/: a tracked 12-epoch demo run in TensorBoard, pictured by headless Chromium
	$(PY) -m t2i.screenshots

# the nbstripout git filter runs .venv's Python: take it out with the environment, or every `git add` of a notebook fails
clean:  ## remove the environment (runs/, data/ and reports/ are kept)
	if [ -x $(PY) ] && git rev-parse --git-dir >/dev/null 2>&1; then $(PY) -m nbstripout --uninstall; fi
	rm -rf $(VENV) .pytest_cache
