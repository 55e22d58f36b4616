# dartsfast developer entry points.  `make test` is what CI (.ci/run) runs.
#   make install      venv + torch + editable install (builds the CUDA extension if nvcc is here)
#   make search       the main job: install, search on the embedded digits set, train the result
#   make lint         ruff over the whole tree (part of make test)
#   make test         install, lint, then the test suite (gpu tests skip without a GPU)
#   make test-timing  the wall-clock tests left out of `make test` (for a quiet machine)
#   make test-compat  the test suite under the GPU machine's torch 2.11.0 / triton 3.6.0 (own venv, ~3 GB)
#   make cmake-build  the same kernels as a plain shared library, build/cmake/libdartsfast_ops.so
#   make clean        build outputs (keeps the venv)
VENV ?= .venv
PYTHON ?= python3
CUDA_HOME ?= /usr/local/cuda
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.dartsfast-installed
CMAKE_BUILD_DIR ?= build/cmake

# setup.py and CMake look for nvcc under CUDA_HOME.
ifneq ($(wildcard $(CUDA_HOME)/bin/nvcc),)
export CUDA_HOME
endif

.PHONY: install search lint test test-timing test-compat cmake-build clean

# The main job, sized for a 2-core CPU (about 6 minutes there): a 3-cell, 8-channel supernet
# searched for 10 epochs on digits (16x16; one warm-up epoch for the weights, then 99
# architecture steps at an alpha lr of 0.1 so that the alphas commit: README "Does the
# search decide?"), then the found cells stacked 5 deep at 12 channels and trained for 12
# epochs.  Test accuracy is printed at the end (>= 97% is the bar; 99.4% in our last run).  Outputs: $(SEARCH_OUT)/{genotype,history}.json, plots,
# checkpoint.pt, and $(SEARCH_OUT)/train/{model.pt,train_history.json}.
SEARCH_OUT ?= runs/digits
SEARCH_ARGS ?= --dataset digits --epochs 10 --layers 3 --channels 8 --batch-size 64 --alpha-lr 0.1 --warmup-epochs 1
TRAIN_ARGS ?= --dataset digits --epochs 12 --layers 5 --channels 12 --batch-size 64

install: $(STAMP)

# Re-runs when the build inputs change.  --no-build-isolation: compile against the
# torch installed here rather than a second ~2 GB copy in an isolated build env.
$(STAMP): pyproject.toml setup.py $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel ninja
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install --no-build-isolation -e '.[dev]'
	touch $@

search: $(STAMP)
	$(PY) -m dartsfast search $(SEARCH_ARGS) --out $(SEARCH_OUT) --overwrite
	$(PY) -m dartsfast train --genotype $(SEARCH_OUT)/genotype.json $(TRAIN_ARGS) --out $(SEARCH_OUT)/train

lint: $(STAMP)
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest

# Tests whose assertions depend on wall-clock measurements (a planted 20% slowdown flagged,
# training slower than inference, a plausible copy bandwidth). A busy machine can fail them
# without any bug, so `make test` and CI leave them out (pyproject.toml addopts).
test-timing: $(STAMP)
	$(PY) -m pytest -m timing

# The GPU machine has torch 2.11.0, triton 3.6.0 and torchvision 0.26.0 (DESIGN.md §7), and our
# code must pass there as well as on the pinned 2.14.1.  test-compat installs those versions
# into their own venv and runs the whole suite on a copy of the working tree (tracked and
# untracked, not ignored files), so the extension it builds against torch 2.11 never replaces
# the one .venv uses in place.  Not part of CI: it downloads ~3 GB.
COMPAT_VENV ?= .venv-compat
# numpy < 2.4: triton 3.6's interpreter turns a scalar kernel argument used in range() into an
# int with int(1-element array), which NumPy 2.4 made an error (triton 3.8 squeezes first).
# Only the interpreter (CPU) is affected; compiled kernels on the GPU machine's numpy are not.
COMPAT_TORCH_SPEC ?= torch==2.11.0 torchvision==0.26.0 triton==3.6.0 'numpy<2.4'
COMPAT_TREE ?= build/compat/tree
COMPAT_PY := $(abspath $(COMPAT_VENV))/bin/python

$(COMPAT_VENV)/.torch-installed: Makefile  # re-checked when the pinned versions change
	test -x $(COMPAT_PY) || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_PY) -m pip install -q -U pip setuptools wheel ninja
	$(COMPAT_PY) -m pip install -q $(COMPAT_TORCH_SPEC)
	touch $@

test-compat: $(COMPAT_VENV)/.torch-installed
	rm -rf $(COMPAT_TREE) && mkdir -p $(COMPAT_TREE)
	git ls-files -z --cached --others --exclude-standard \
	  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(COMPAT_TREE)
	cd $(COMPAT_TREE) && $(COMPAT_PY) -m pip install -q --no-build-isolation -e '.[dev]'
	cd $(COMPAT_TREE) && $(COMPAT_PY) -c 'import torch, triton, torchvision; \
	  print("test-compat: torch", torch.__version__, "triton", triton.__version__, "torchvision", torchvision.__version__)'
	cd $(COMPAT_TREE) && $(COMPAT_PY) -m pytest

cmake-build: $(STAMP)
	cmake -S . -B $(CMAKE_BUILD_DIR) -G Ninja \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build $(CMAKE_BUILD_DIR)

clean:
	rm -rf build $(CMAKE_BUILD_DIR) *.egg-info dartsfast/*.so $(STAMP) .pytest_cache
