# The two commands in the README: `make demo` and `make test`. Each sets up .venv when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-compat lint bench gpu-check clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned (pyproject.toml accepts a range): the newest pair the toolkit supports
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	# onnxruntime-gpu, the package users deploy with (here it runs its CPU EP), never beside onnxruntime:
	# both ship the same files, so a .venv that holds the CPU wheel loses both before the install
	if $(PY) -m pip show -q onnxruntime 2>/dev/null; then $(PY) -m pip uninstall -q -y onnxruntime onnxruntime-gpu; fi
	$(PY) -m pip install -q -e '.[dev,gpu]'
	# resnest 0.0.5 declares an old `nose` dependency that it never imports
	$(PY) -m pip install -q --no-deps resnest==0.0.5
	touch $(STAMP)

demo: $(STAMP)
	$(PY) deploy_examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

# CI: everything but the full-size sweeps (tests marked slow; make test-slow runs those alone).
test: lint
	@$(PY) -m pytest -q -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The full-size sweeps: every registry model in every export mode, noise floors, the long chaos
# run (hours on 2 CPU cores).
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The oldest torch the toolkit supports (pyproject.toml's lower bounds), in a venv of its own:
# the fast suite there. Not part of CI: it downloads and installs a second torch.
COMPAT_VENV ?= .venv-compat
COMPAT_TORCH ?= 2.9.1
COMPAT_TORCHVISION ?= 0.24.1
COMPAT_PY := $(COMPAT_VENV)/bin/python
COMPAT_STAMP := $(COMPAT_VENV)/.installed-$(COMPAT_TORCH)

$(COMPAT_STAMP): pyproject.toml Makefile
	test -x $(COMPAT_PY) || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q --upgrade pip
	$(COMPAT_PY) -m pip install -q torch==$(COMPAT_TORCH) torchvision==$(COMPAT_TORCHVISION)
	# the editable install must keep that torch: pip fails rather than replace it
	$(COMPAT_PY) -m pip install -q -e '.[dev]' torch==$(COMPAT_TORCH) torchvision==$(COMPAT_TORCHVISION)
	$(COMPAT_PY) -m pip install -q --no-deps resnest==0.0.5
	$(COMPAT_PY) -c "import torch; assert torch.__version__.split('+')[0] == '$(COMPAT_TORCH)', torch.__version__"
	touch $(COMPAT_STAMP)

test-compat: $(COMPAT_STAMP)
	@$(COMPAT_PY) -m pytest -q -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-compat: pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) -m benchmarks.run

# The one GPU check (tools/gpu_check.py): on a GPU machine, with .venv or the machine's python3.
gpu-check:
	$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m tools.gpu_check

clean:
	rm -rf $(VENV) $(COMPAT_VENV) artifacts .pytest_cache .ruff_cache
