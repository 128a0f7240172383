# mlbench: set-up, the acceptance run, tests, benchmarks.
# `make run` and `make test` set themselves up: a virtual environment in .venv that sees the
# system's site-packages, so a torch already installed (CUDA, ROCm or CPU) is used as it is.
# Only when no torch is importable at all does set-up install $(TORCH_SPEC) (the CPU build on
# machines that carry its wheel locally; pass TORCH_SPEC/TORCH_PIP_ARGS to choose another).

PYTHON      ?= python3
VENV        ?= .venv
PY          := $(VENV)/bin/python
TORCH_SPEC  ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PROFILE     ?=
ARGS        ?=

.PHONY: setup run mamf test fast lint format bench clean help

help:
	@echo "make run    - set up, then the acceptance run on this node (PROFILE=quick|standard|full; default by device)"
	@echo "make mamf   - set up, then the MAMF finder with its default plan"
	@echo "make test   - set up, then the linter and the whole test suite (what CI runs)"
	@echo "make fast   - set up, then the tests not marked slow (under a minute)"
	@echo "make format - ruff's formatter and safe fixes over the tree"
	@echo "make bench  - set up, then benchmarks/ (mlbench measured against its peers)"

setup: $(VENV)/.ready

# The environment: a venv that sees the system's packages. Images without ensurepip (Debian's python3
# without python3-venv, some NVIDIA PyTorch containers) get one without its own pip: the system's pip
# module, visible through --system-site-packages, then installs into it; the image's torch is kept.
$(PY):
	$(PYTHON) -m venv --system-site-packages $(VENV) 2>/dev/null || \
	  { rm -rf $(VENV); echo "python3 -m venv could not install pip here: using the system's pip in the venv"; \
	    $(PYTHON) -m venv --system-site-packages --without-pip $(VENV); }
	$(PY) -m pip --version >/dev/null 2>&1 || { echo "no pip for $(PYTHON): install pip (e.g. apt-get install python3-pip)"; exit 2; }

$(VENV)/.ready: pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[test]"
	$(PY) -c "import torch, mlbench; print('mlbench', mlbench.__version__, 'on torch', torch.__version__)"
	touch $@

run: setup
	$(VENV)/bin/mlbench run $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

mamf: setup
	$(VENV)/bin/mlbench mamf $(ARGS)

test: setup lint
	$(PY) -m pytest -q $(ARGS)

fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# fio is the storage benchmark's peer: installed from Debian's packages when missing and possible
bench: setup
	command -v fio >/dev/null || (command -v apt-get >/dev/null && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio) || echo "fio not installed: the storage comparison will be skipped"
	@# fio's buffers like mlbench's (huge pages, one segment per IO) need the hugetlb pool: reserved for the run, then put back
	old=$$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo); \
	if [ -n "$$old" ] && [ "$$old" -lt 64 ] && [ -w /proc/sys/vm/nr_hugepages ] && echo 64 > /proc/sys/vm/nr_hugepages 2>/dev/null; then \
	  trap 'echo '"$$old"' > /proc/sys/vm/nr_hugepages' EXIT; fi; \
	$(PY) benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
