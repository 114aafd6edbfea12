# SLM Course. The two commands that matter:
#   make course   set everything up, then run every lesson notebook with papermill (full settings)
#   make test     set everything up, then run all tests (ruff, pytest + nbval, notebooks in smoke mode)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# slmlib.KERNEL_NAME, the kernel setup_course.py registers (tests/test_setup.py checks that they agree)
KERNEL := slm-course
STAMP  := $(VENV)/.installed
RELEASE ?= build/student-release
# CPU_TORCH=1 (e.g. `make test CPU_TORCH=1`): PyTorch's CPU-only wheel from PyTorch's own index,
# instead of whatever the configured index gives (on Linux, PyPI's torch is the CUDA build).
CPU_TORCH ?=
CPU_TORCH_FLAG := $(if $(filter 1 yes true,$(CPU_TORCH)),--cpu-torch)

.PHONY: help course test test-fast lint lab bench browser-test data exercises release reset-outputs clean

help:
	@echo "make course        run all lessons end to end (outputs/executed/, models/, outputs/)"
	@echo "make test          run all tests (5 min 19-25 s on a fresh clone, 2 quiet cores: 500 passed)"
	@echo "make test-fast     the tests that train no real run and run no notebook (under 2 minutes)"
	@echo "make lab           open the course in JupyterLab (lessons in notebooks/, exercises in exercises/)"
	@echo "make bench         speed benchmarks (benchmarks/results/)"
	@echo "make browser-test  click through the widgets in a real JupyterLab + Chromium"
	@echo "make data          regenerate data/ (byte-identical)"
	@echo "make exercises     rebuild exercises/ from solutions/"
	@echo "make release       build the students' folder, without solutions ($(RELEASE)/)"
	@echo "make reset-outputs delete outputs/ (plots, results, executed notebooks); keeps .venv/ and models/"
	@echo "make clean         remove the venv, trained models and outputs"
	@echo "CPU_TORCH=1        with any of these: set up with PyTorch's CPU-only wheel (needs the internet)"

# The venv: pinned requirements, slmlib installed editable, and a Jupyter kernel that lives
# inside the venv (so papermill, nbval and JupyterLab never pick up a stray system kernel).
# setup_course.py does it (and writes $(STAMP)): the same script sets up Windows and conda.
# With CPU_TORCH=1 the script is always asked; it does nothing if torch came from the CPU index.
$(STAMP): requirements.txt pyproject.toml $(if $(CPU_TORCH_FLAG),FORCE)
	$(PYTHON) setup_course.py --venv $(VENV) $(CPU_TORCH_FLAG)

FORCE:

$(VENV): $(STAMP)

course: $(STAMP)
	$(BIN)/python -m slmlib course

# The grading sandbox (bubblewrap, tests/test_grading.py): installed where apt-get runs as root, quietly
# skipped when it is already there; elsewhere the sandbox tests skip and say why.
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; }; }; } || \
	  echo "note: bubblewrap (bwrap) is not installed: the grading sandbox tests will be skipped"

# ruff first: a second or two, and it stops a run that would fail on a typo (rules: pyproject.toml).
lint: $(STAMP)
	$(BIN)/python -m ruff check --no-cache .

test: lint sandbox
	$(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-kernel-name $(KERNEL) -p no:cacheprovider

# While developing: everything but the tests marked slow (they execute notebooks, train a level or start
# processes) and the browser; `make test` still runs them all.
test-fast: lint
	$(BIN)/python -m pytest tests -m "not slow and not browser" -p no:cacheprovider

# The server's root is the course folder, so notebooks/ and exercises/ are both reachable.
lab: $(STAMP)
	$(BIN)/jupyter lab

bench: $(STAMP)
	$(BIN)/python -m slmlib bench

browser-test: $(STAMP)
	scripts/install_browser.sh $(BIN)/python
	$(BIN)/python -m pytest -m browser tests -p no:cacheprovider

data: $(STAMP)
	$(BIN)/python -m slmlib data build

exercises: $(STAMP)
	$(BIN)/python -m slmlib exercises build

# The folder students get: lessons, exercises, data, slmlib, set-up; never solutions/ (checked).
# WITH_RUNS=1: with your finished small runs of lessons 04 and 08 (the classroom set-up for slow laptops).
WITH_RUNS ?=
release: $(STAMP)
	$(BIN)/python -m slmlib release $(RELEASE) --force $(if $(filter 1 yes true,$(WITH_RUNS)),--with-runs)

# Start the outputs afresh (make course then reruns every lesson) without losing the venv or the models.
reset-outputs:
	rm -rf outputs/*
	touch outputs/.gitkeep

clean:
	rm -rf $(VENV) outputs/* models/*.pt models/model_index.json
	touch outputs/.gitkeep models/.gitkeep
