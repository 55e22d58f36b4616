"""Shared test setup: Triton interpreter on GPU-less machines, markers, backend reset."""
import os

import pytest
import torch

# Triton reads TRITON_INTERPRET when kernels are defined, i.e. when dartsfast's kernel
# modules are imported on the first Triton call, so set it before any test makes one: on a
# machine without a GPU the `interpreter` tests run the Triton kernels on CPU tensors.
if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

from dartsfast import backend  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_backend():
    """Each test starts from, and leaves behind, the backend it found."""
    previous = backend._chosen
    yield
    backend._chosen = previous
