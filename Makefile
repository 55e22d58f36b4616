# dartsfast developer entry points.  `make test` is what CI (.ci/run) runs.
#   make install      venv + torch + editable install (builds the CUDA extension if nvcc is here)
#   make test         install, then the test suite (gpu tests skip without a GPU)
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

.PHONY: install test cmake-build clean

install: $(STAMP)

# Re-runs when the build inputs change.  --no-build-isolation: compile against the
# torch installed here rather than a second ~2 GB copy in an isolated build env.
$(STAMP): pyproject.toml setup.py $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip setuptools wheel ninja
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install --no-build-isolation -e '.[dev]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest

cmake-build: $(STAMP)
	cmake -S . -B $(CMAKE_BUILD_DIR) -G Ninja \
	  -DCMAKE_PREFIX_PATH="$$($(PY) -c 'import torch; print(torch.utils.cmake_prefix_path)')"
	cmake --build $(CMAKE_BUILD_DIR)

clean:
	rm -rf build $(CMAKE_BUILD_DIR) *.egg-info dartsfast/*.so $(STAMP) .pytest_cache
