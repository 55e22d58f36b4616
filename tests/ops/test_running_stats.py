"""update_running_stats: BatchNorm's running-statistics update as one op, on every backend,
against the float64 formula and against nn.BatchNorm2d itself."""
import pytest
import torch

from dartsfast import _triton, backend
from dartsfast.ops.running_stats import update_running_stats
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor

BACKENDS = ["torch", pytest.param("triton", marks=[pytest.mark.interpreter, pytest.mark.skipif(
    not _triton.installed(), reason="needs triton")])]


def _formula(rm, rv, mean, var, count, m):
    rm, rv, mean, var = (t.double() for t in (rm, rv, mean, var))
    return (1 - m) * rm + m * mean, (1 - m) * rv + m * var * count / (count - 1)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_update_matches_the_formula(name, dtype):
    gen = make_generator(3)
    c = 1500  # more than one Triton program, with a masked tail
    rm, rv = random_tensor((c,), dtype=dtype, generator=gen), random_tensor((c,), dtype=dtype, generator=gen).abs()
    mean, var = random_tensor((c,), generator=gen), random_tensor((c,), generator=gen).abs()
    want_rm, want_rv = _formula(rm, rv, mean, var, 50, 0.1)
    with backend.use_backend(name):
        update_running_stats(rm, rv, mean, var, 50, 0.1)
    assert_close_to_reference(rm, want_rm, dtype, "running_mean")
    assert_close_to_reference(rv, want_rv, dtype, "running_var")


def test_torch_path_tracks_what_batchnorm_tracks():
    bn = torch.nn.BatchNorm2d(6, momentum=0.3)
    x = random_tensor((4, 6, 5, 5), generator=make_generator(4), scale=2.0, offset=0.5)
    rm, rv = bn.running_mean.clone(), bn.running_var.clone()
    bn(x)
    var, mean = torch.var_mean(x, (0, 2, 3), unbiased=False)
    update_running_stats(rm, rv, mean, var, 100, 0.3)
    torch.testing.assert_close(rm, bn.running_mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(rv, bn.running_var, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kwargs, message", [({"count": 1}, "count >= 2"), ({"momentum": 1.5}, "momentum"),
                                             ({"grad": True}, "must not require grad")])
def test_bad_arguments_are_named(kwargs, message):
    rm, rv, mean, var = torch.zeros(3), torch.ones(3), torch.zeros(3, requires_grad=kwargs.get("grad", False)), \
        torch.ones(3)
    with pytest.raises(ValueError, match=message):
        update_running_stats(rm, rv, mean, var, kwargs.get("count", 4), kwargs.get("momentum", 0.1))


def test_opcheck():
    args = (torch.zeros(4), torch.ones(4), torch.randn(4), torch.rand(4), 10, 0.1)
    torch.library.opcheck(torch.ops.dartsfast.update_running_stats_.default, args)
