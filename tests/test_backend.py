"""Backend choice: names, environment variable, availability errors, dispatch order."""
import pytest
import torch

import dartsfast
from dartsfast import _ext, backend


def test_default_is_auto_and_auto_runs_cpu_tensors_on_torch(monkeypatch):
    monkeypatch.delenv(backend.ENV_VAR, raising=False)
    monkeypatch.setattr(backend, "_chosen", None)
    assert dartsfast.get_backend() == "auto"
    name, kernel = backend.select("weighted_sum", torch.device("cpu"))
    assert name == "torch" and kernel is dartsfast.ops.weighted_sum_ref


def test_set_and_get(monkeypatch):
    dartsfast.set_backend("torch")
    assert dartsfast.get_backend() == "torch"
    dartsfast.set_backend(" AUTO ")
    assert dartsfast.get_backend() == "auto"


@pytest.mark.parametrize("bad, error", [("cudnn", ValueError), ("", ValueError), (3, TypeError)])
def test_unknown_names_are_rejected(bad, error):
    with pytest.raises(error, match="backend"):
        dartsfast.set_backend(bad)


def test_environment_variable_sets_the_backend(monkeypatch):
    monkeypatch.setattr(backend, "_chosen", None)
    monkeypatch.setenv(backend.ENV_VAR, "torch")
    assert dartsfast.get_backend() == "torch"


def test_bad_environment_variable_names_itself(monkeypatch):
    monkeypatch.setattr(backend, "_chosen", None)
    monkeypatch.setenv(backend.ENV_VAR, "fastest")
    with pytest.raises(ValueError, match="DARTSFAST_BACKEND='fastest'"):
        dartsfast.get_backend()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_backend_without_gpu_says_why():
    with pytest.raises(backend.BackendUnavailableError, match="backend 'cuda' is unavailable: .*"
                       + ("no CUDA device" if _ext.HAS_EXT else "not built")):
        dartsfast.set_backend("cuda")
    assert dartsfast.get_backend() != "cuda"


def test_triton_without_gpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(backend.BackendUnavailableError, match="TRITON_INTERPRET=1"):
        dartsfast.set_backend("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    dartsfast.set_backend("triton")
    assert dartsfast.get_backend() == "triton"


def test_explicit_backend_without_kernel_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(backend, "_warned_fallbacks", set())
    monkeypatch.setitem(backend._kernels, "toy_op", {"torch": lambda: "ref"})
    with backend.use_backend("triton"):
        with pytest.warns(RuntimeWarning, match="toy_op has no 'triton' kernel"):
            assert backend.select("toy_op", torch.device("cpu"))[0] == "torch"
        backend.select("toy_op", torch.device("cpu"))  # second call: no new warning
    assert len(backend._warned_fallbacks) == 1


def test_explicit_cuda_rejects_cpu_tensors(monkeypatch):
    monkeypatch.setattr(backend, "_chosen", "cuda")  # as if a GPU were present
    with pytest.raises(ValueError, match="backend 'cuda' runs CUDA tensors only"):
        backend.select("weighted_sum", torch.device("cpu"))


def test_auto_prefers_cuda_then_triton_for_cuda_tensors(monkeypatch):
    kernels = {"torch": "ref", "triton": "tri", "cuda": "ext"}
    monkeypatch.setitem(backend._kernels, "toy_op", kernels)
    monkeypatch.setattr(backend, "why_unavailable", lambda name: "")
    monkeypatch.setattr(backend, "_chosen", "auto")
    cuda = torch.device("cuda")
    assert backend.select("toy_op", cuda) == ("cuda", "ext")
    del kernels["cuda"]
    assert backend.select("toy_op", cuda) == ("triton", "tri")
    del kernels["triton"]
    assert backend.select("toy_op", cuda) == ("torch", "ref")


def test_use_backend_restores_previous_choice():
    dartsfast.set_backend("torch")
    with dartsfast.use_backend("auto"):
        assert dartsfast.get_backend() == "auto"
    assert dartsfast.get_backend() == "torch"


def test_register_kernel_rejects_unknown_backend():
    with pytest.raises(ValueError, match="cannot register a kernel for backend 'auto'"):
        backend.register_kernel("toy_op", "auto")
