"""dwconv_se with G grouped SEs (the MBConv middles of a batched supernet state): the same as
G separate ops on their channel groups, through every backend, with grouped-shape grads."""
import pytest
import torch
from dwconv_se_checks import GRAD_NAMES, composition, run

from dartsfast import _triton, backend
from dartsfast.ops import dwconv_se
from dartsfast.testing import assert_close_to_reference, make_generator, poisoned_outputs, random_tensor

G, C_PER, CR_PER = 3, 4, 2


def _grouped_inputs(seed, dtype=torch.float64):
    gen = make_generator(seed)
    c, cr = G * C_PER, G * CR_PER
    x = random_tensor((2, c, 6, 6), dtype=dtype, generator=gen)
    shapes = [((c, 1, 3, 3), 0.3, 0.0), ((c,), 0.3, 1.0), ((c,), 0.3, 0.0), ((cr, C_PER), 0.5, 0.0),
              ((cr,), 0.3, 0.0), ((c, CR_PER), 0.5, 0.0), ((c,), 0.3, 0.0)]
    params = [random_tensor(s, dtype=dtype, generator=gen, scale=sc, offset=off) for s, sc, off in shapes]
    running = (random_tensor((c,), dtype=dtype, generator=gen, scale=0.2),
               random_tensor((c,), dtype=dtype, generator=gen, scale=0.2).abs() + 0.5)
    return x, params, running


def _per_group_oracle(x, params, running, grad_out, stride, training):
    """G separate compositions of stock ops on channel groups: outputs, grads, running stats."""
    outs, grads, rms, rvs = [], [[] for _ in GRAD_NAMES], [], []
    for g in range(G):
        ch, red = slice(g * C_PER, (g + 1) * C_PER), slice(g * CR_PER, (g + 1) * CR_PER)
        part = [params[0][ch], params[1][ch], params[2][ch], params[3][red], params[4][red],
                params[5][ch], params[6][ch]]
        out, gr, rm, rv = run(composition, x[:, ch], part, (running[0][ch], running[1][ch]), grad_out[:, ch],
                              stride=stride, training=training)
        outs.append(out), rms.append(rm), rvs.append(rv)
        for i, t in enumerate(gr):
            grads[i].append(t)
    cat_dims = [1, 0, 0, 0, 0, 0, 0, 0]  # x over channels; every parameter over its rows
    return torch.cat(outs, 1), [torch.cat(g, d) for g, d in zip(grads, cat_dims)], torch.cat(rms), torch.cat(rvs)


BACKENDS = ["torch", pytest.param("triton", marks=[pytest.mark.interpreter, pytest.mark.skipif(
    not _triton.installed(), reason="needs triton")])]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("stride, training", [(1, True), (2, True), (1, False)])
def test_grouped_se_is_g_separate_ops(name, stride, training):
    dtype = torch.float64 if name == "torch" else torch.float32
    x, params, running = _grouped_inputs(7, dtype)
    ho = (6 - 1) // stride + 1
    grad_out = random_tensor((2, G * C_PER, ho, ho), dtype=dtype, generator=make_generator(8))
    ref_out, ref_grads, ref_rm, ref_rv = _per_group_oracle(
        x.double(), [p.double() for p in params], tuple(r.double() for r in running), grad_out.double(),
        stride, training)
    with backend.use_backend(name), poisoned_outputs():
        out, grads, rm, rv = run(dwconv_se, x, params, running, grad_out, stride=stride, training=training)
    assert_close_to_reference(out, ref_out, dtype)
    for what, got, ref in zip(GRAD_NAMES, grads, ref_grads):
        assert got.shape == ref.shape, what  # grouped weights get grouped-shape gradients
        assert_close_to_reference(got, ref, dtype, what)
    assert_close_to_reference(rm, ref_rm, dtype, "running_mean")
    assert_close_to_reference(rv, ref_rv, dtype, "running_var")


@pytest.mark.parametrize("srw_shape, sew_shape, message", [
    ((6, 5), (12, 2), "se_reduce_weight must be"),       # 5 does not divide C=12
    ((4, 4), (12, 2), "se_reduce_weight must be"),       # G=3 does not divide Cr=4
    ((6, 4), (12, 6), "se_expand_weight"),               # expand must be [C, Cr/G] = [12, 2]
])
def test_bad_grouped_se_shapes_are_named(srw_shape, sew_shape, message):
    x, params, running = _grouped_inputs(9)
    params[3] = torch.zeros(srw_shape, dtype=torch.float64)
    params[4] = torch.zeros(srw_shape[0], dtype=torch.float64)
    params[5] = torch.zeros(sew_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=message):
        dwconv_se(x, *params[:3], *running, *params[3:])


def test_opcheck_grouped():
    x, params, running = _grouped_inputs(10, torch.float32)
    x.requires_grad_(True)
    params = [p.requires_grad_(True) for p in params]
    args = (x, *params[:3], *running, *params[3:], 1, True, 1e-5)
    torch.library.opcheck(torch.ops.dartsfast.dwconv_se.default, args)
    grad = random_tensor((2, G * C_PER, 6, 6), generator=make_generator(11))
    detached = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.dartsfast.dwconv_se_backward.default, (grad, *detached))
