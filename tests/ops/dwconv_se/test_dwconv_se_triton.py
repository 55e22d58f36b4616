"""dwconv_se's Triton kernels (interpreter on CPU, real sizes under `gpu`) against an
independent float64 composition of stock torch.nn.functional ops.

The interpreter runs ~1000x slower than a GPU, so the shape grid of issue 5 (N, C, H×W,
k, stride, training, dtype, layout, parameter dtype) is covered pairwise — every value of
every axis, and every pair of values of any two axes, appears in CASES — not as a product.
The kernels also compile for sm_90 without a GPU. Registration and dispatch:
test_dwconv_se_dispatch.py.
"""
import itertools
import os
import re
import subprocess
import sys

import pytest
import torch
from dwconv_se_checks import GRAD_NAMES, check_against_float64, composition, make_inputs, run, triton_step

from dartsfast import backend
from dartsfast.ops import dwconv_se
from dartsfast.testing import (
    SUBPROCESS_TIMEOUT_S,
    assert_close_to_reference,
    make_generator,
    poisoned_outputs,
    random_tensor,
)

triton = pytest.importorskip("triton")

from dartsfast.ops.dwconv_se import _plan  # noqa: E402
from dartsfast.ops.dwconv_se import triton_forward as dwconv_se_triton  # noqa: E402

pytestmark = pytest.mark.interpreter


# (N, C, (H, W), k, stride, training, dtype, channels_last, parameters in x's dtype):
# a greedy pairwise covering array of the nine axes (14 rows instead of 2592).
CASES = [
    (1, 8, (7, 7), 5, 2, True, torch.float16, False, False),
    (1, 8, (7, 7), 5, 2, False, torch.bfloat16, True, True),
    (1, 8, (8, 8), 3, 1, True, torch.float32, True, True),
    (1, 8, (8, 8), 5, 1, True, torch.bfloat16, False, True),
    (1, 8, (9, 13), 5, 2, True, torch.float32, False, False),
    (1, 24, (7, 7), 3, 1, True, torch.float32, False, True),
    (1, 24, (9, 13), 5, 2, False, torch.float16, True, True),
    (1, 123, (7, 7), 5, 1, False, torch.float32, False, True),
    (3, 8, (7, 7), 3, 2, False, torch.float32, True, False),
    (3, 8, (8, 8), 5, 2, True, torch.float16, True, False),
    (3, 8, (9, 13), 5, 1, False, torch.bfloat16, True, True),
    (3, 24, (8, 8), 3, 2, True, torch.bfloat16, True, False),
    (3, 123, (8, 8), 5, 2, False, torch.bfloat16, True, False),
    (3, 123, (9, 13), 3, 1, True, torch.float16, False, False),
]


def test_cases_cover_every_pair_of_axis_values():
    axes = [{1, 3}, {8, 24, 123}, {(7, 7), (8, 8), (9, 13)}, {3, 5}, {1, 2}, {True, False},
            {torch.float32, torch.float16, torch.bfloat16}, {True, False}, {True, False}]
    for i, j in itertools.combinations(range(len(axes)), 2):
        missing = set(itertools.product(axes[i], axes[j])) - {(case[i], case[j]) for case in CASES}
        assert not missing, f"axes {i}, {j}: no case has the value pairs {missing}"


@pytest.mark.parametrize("n, c, hw, k, stride, training, dtype, channels_last, same_dtype_params", CASES)
def test_matches_float64_composition(n, c, hw, k, stride, training, dtype, channels_last, same_dtype_params):
    seed = CASES.index((n, c, hw, k, stride, training, dtype, channels_last, same_dtype_params))
    x, params, running = make_inputs(n, c, hw, k, dtype=dtype, channels_last=channels_last, seed=seed,
                                     param_dtype=dtype if same_dtype_params else torch.float32)
    check_against_float64(x, params, running, stride, training, seed)


@pytest.mark.parametrize("stride, k, blocks", [(1, 3, (16, 16, 3)), (2, 5, (8, 16, 2))])
def test_small_tiles_cover_tile_loops_chunks_and_channel_blocks(monkeypatch, stride, k, blocks):
    """Tiny tiles: 24 channels → 2 channel blocks of 16 (the last partial); stride 1: 117 px
    → 8 tiles of 16 → 3 chunks of 3 (the last with an empty tile); stride 2: 35 px → 5 tiles
    of 8 → 3 chunks of 2, and the input-pixel dgrad 117 px → 15 tiles → 8 chunks."""
    monkeypatch.setattr(_plan, "INTERPRETER_BLOCKS", blocks)
    x, params, running = make_inputs(2, 24, (9, 13), k, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=40 + stride)
    check_against_float64(x, params, running, stride, True, 40 + stride)


@pytest.mark.parametrize("hw, stride, elem, training, store", [
    ((56, 56), 1, 2, True, False),   # stride 1: re-reading x (2·M·2) beats z (3·M·4)
    ((56, 56), 2, 2, True, True),    # 2·4M·2 = 16M > 12M
    ((56, 56), 2, 2, False, False),  # eval reads z once: 1·4M·2 = 8M = 2·M·4, no gain
    ((56, 56), 2, 4, False, True),   # fp32: 16M > 8M
    ((7, 7), 2, 2, True, True),      # 49 → 16 px: 2·49·2 = 196 > 3·16·4 = 192
])
def test_store_z_only_where_it_moves_fewer_bytes(hw, stride, elem, training, store):
    m_in = hw[0] * hw[1]
    m_out = ((hw[0] - 1) // stride + 1) * ((hw[1] - 1) // stride + 1)
    assert dwconv_se_triton.store_z_saves_bytes(m_in, m_out, elem, training) is store


def test_running_stats_follow_batchnorm_over_steps():
    """4 steps whose inputs have growing offsets (up to mean/std ≈ 50): the Welford
    partials keep fp32 variance accurate where Σz² − (Σz)²/n would lose ~3 digits."""
    x, params, running = make_inputs(3, 24, (9, 13), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=50)
    rm, rv = (t.clone() for t in running)
    ref_rm, ref_rv = (t.double() for t in running)
    gen = make_generator(51)
    with backend.use_backend("triton"), poisoned_outputs():
        for step in range(4):
            xs = random_tensor(x.shape, generator=gen, scale=1 + step, offset=15.0 * step, channels_last=True,
                               device=x.device)
            dwconv_se(xs, *params[:3], rm, rv, *params[3:], stride=1, training=True, momentum=0.3)
            composition(xs.double(), *[p.double() for p in params[:3]], ref_rm, ref_rv,
                        *[p.double() for p in params[3:]], 1, True, momentum=0.3)
    assert_close_to_reference(rm, ref_rm, torch.float32, "running_mean")
    assert_close_to_reference(rv, ref_rv, torch.float32, "running_var")


@pytest.mark.parametrize("training", [True, False])
def test_gradients_are_bitwise_deterministic(training):
    x, params, running = make_inputs(3, 24, (9, 13), 5, dtype=torch.bfloat16, param_dtype=torch.float32,
                                     channels_last=True, seed=60)
    grad_out = random_tensor((3, 24, 5, 7), dtype=torch.bfloat16, generator=make_generator(61), channels_last=True,
                             device=x.device)
    first = triton_step(x, params, running, grad_out, 2, training)
    second = triton_step(x, params, running, grad_out, 2, training)
    for name, a, b in zip(GRAD_NAMES, first[1], second[1]):
        assert torch.equal(a, b), f"grad {name} differs between two identical runs"
    assert torch.equal(first[0], second[0]) and torch.equal(first[3], second[3])


def _bad_case(name):
    x, params, running = make_inputs(2, 8, (7, 7), 3, dtype=torch.float32, param_dtype=torch.float32,
                                     channels_last=True, seed=90)
    args, kwargs = [*params[:3], *running, *params[3:]], {}
    if name == "even_k":
        args[0] = torch.randn(8, 1, 4, 4, device=x.device)
    elif name == "weight_shape":
        args[0] = torch.randn(8, 2, 3, 3, device=x.device)
    elif name == "se_expand_shape":
        args[7] = torch.randn(8, 3, device=x.device)
    elif name == "stride3":
        kwargs["stride"] = 3
    elif name == "device":
        args[1] = args[1].to("meta")
    elif name == "dtype":
        args[5] = args[5].double()
    elif name == "x_dtype":
        x = x.to(torch.int32)
    return x, args, kwargs


@pytest.mark.parametrize("name, error, message", [
    ("even_k", ValueError, "even kernel size 4"),
    ("weight_shape", ValueError, r"weight must be a depthwise filter of shape \(8, 1, k, k\)"),
    ("se_expand_shape", ValueError, r"se_expand_weight must have shape \(8, 2\)"),
    ("stride3", ValueError, "stride must be 1 or 2, got 3"),
    ("device", ValueError, "bn_weight is on meta"),
    ("dtype", TypeError, "se_reduce_weight has dtype float64"),
    ("x_dtype", TypeError, "x has dtype int32"),
])
def test_bad_inputs_raise_clear_errors(name, error, message):
    x, args, kwargs = _bad_case(name)
    with backend.use_backend("triton"), pytest.raises(error, match=message):
        dwconv_se(x, *args, **kwargs)


# ----------------------------------------------------------------------------- sm_90 compile, no GPU

AOT_SCRIPT = """
import sys, triton
from triton.backends.compiler import GPUTarget
from dartsfast.ops.dwconv_se import _plan as P, triton_backward as B, triton_forward as F
UNIT = {"sxc", "soc", "sgc", "sdc"}  # Triton specialises stride-1 arguments of real launches
def build(fn, dtype_args, const, warps):
    const = dict(const, **{a: 1 for a in fn.arg_names if a in UNIT})
    sig = {a: "constexpr" if a in const else dtype_args.get(a, "*fp32" if a.endswith("_ptr") else "i32")
           for a in fn.arg_names}
    sig.update({a: "fp32" for a in ("total", "eps") if a in sig})
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(fn.arg_names) if sig[a].startswith("*")}
    src = triton.compiler.ASTSource(fn=fn, signature=sig, constexprs=const, attrs=attrs)
    triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
    print("compiled", fn.__name__, flush=True)
act = {"x_ptr": "*bf16", "g_ptr": "*bf16", "out_ptr": "*bf16", "dz_ptr": "*bf16", "dx_ptr": "*bf16"}
for block_p, block_c, warps in (P.GPU_BLOCKS, P.GPU_BLOCKS_NARROW):
    tile = {"STRIDE": 2, "K": 5, "BLOCK_P": block_p, "BLOCK_C": block_c}
    for mode, z_in, z_out in ((0, False, True), (1, False, False), (2, False, False), (2, True, False)):
        build(F._dwconv_se_forward_kernel, act, dict(tile, MODE=mode, Z_IN=z_in, Z_OUT=z_out), warps)
    build(B._dwconv_se_backward_sums_kernel, act, tile, warps)
    build(B._dwconv_se_backward_dz_kernel, act, dict(tile, KK_PAD=32), warps)
    build(B._dwconv_se_backward_dx_kernel, act, tile, warps)
build(F._dwconv_se_bn_stats_kernel, {}, {"BLOCK_T": 64, "BLOCK_C": 64}, 4)
"""


def test_kernels_compile_for_sm90_without_spills(tmp_path):
    """The interpreter never runs Triton's compiler; compile for an H100 (sm_90, no GPU
    needed) so frontend/type errors and register spills show up in CPU-only CI.
    bf16, k=5, stride 2 is the heaviest variant (up to 175 registers at 8 warps; C and
    the strides get no divisibility hints, as for C = 123)."""
    pytest.importorskip("triton.backends.nvidia.compiler")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_DUMP_PTXAS_LOG="1", TRITON_ALWAYS_COMPILE="1", TRITON_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", AOT_SCRIPT], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT_S, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("compiled") == 15, done.stdout
    spills = re.findall(r"(\d+) bytes spill stores", done.stdout)
    assert len(spills) == 15 and all(s == "0" for s in spills), done.stdout


# ----------------------------------------------------------------------------- GPU, real sizes

# MBConv middles at batch 32: EfficientNetV2-S stage 4 (first, stride 2) and stage 5/6 at
# 384 px, EfficientNet-B0 stage 3 (k5, stride 2) and stage 6 (k5), and a search cell.
GPU_SHAPES = [
    (32, 256, (48, 48), 3, 2),
    (32, 960, (24, 24), 3, 1),
    (32, 144, (56, 56), 5, 2),
    (32, 672, (14, 14), 5, 1),
    (64, 48, (28, 28), 3, 1),
]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("n, c, hw, k, stride", GPU_SHAPES)
def test_gpu_real_sizes_match_float64(n, c, hw, k, stride, training, dtype):
    seed = GPU_SHAPES.index((n, c, hw, k, stride))
    x, params, running = make_inputs(n, c, hw, k, dtype=dtype, param_dtype=torch.float32, channels_last=True,
                                     seed=seed, device="cuda")
    check_against_float64(x, params, running, stride, training, seed)


@pytest.mark.gpu
def test_gpu_nchw_input_and_determinism():
    x, params, running = make_inputs(16, 240, (28, 28), 5, dtype=torch.bfloat16, param_dtype=torch.float32,
                                     channels_last=False, seed=130, device="cuda")
    check_against_float64(x, params, running, 1, True, 130)
    grad_out = random_tensor((16, 240, 28, 28), dtype=torch.bfloat16, generator=make_generator(131), device="cuda")
    first, second = (triton_step(x, params, running, grad_out, 1, True) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


@pytest.mark.gpu
@pytest.mark.parametrize("training", [True, False])
def test_gpu_forward_and_backward_capture_in_a_cuda_graph(training):
    """No host sync and no allocation outside the caching allocator in either pass: the whole
    forward + backward replays from a CUDA graph and, on new values in the captured buffers,
    matches a float64 composition run on those values (running stats included)."""
    x, params, running = make_inputs(8, 96, (14, 14), 3, dtype=torch.bfloat16, param_dtype=torch.float32,
                                     channels_last=True, seed=140, device="cuda")
    grad_out = random_tensor((8, 96, 7, 7), dtype=torch.bfloat16, generator=make_generator(141), device="cuda",
                             channels_last=True)
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *params)]
    rm, rv = (t.detach().clone() for t in running)

    def step():
        out = dwconv_se(leaves[0], *leaves[1:4], rm, rv, *leaves[4:], stride=2, training=training)
        return (out, *torch.autograd.grad(out, leaves, grad_out))

    with backend.use_backend("triton"):
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()  # compile outside the capture
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = step()
    new_x, new_params, new_running = make_inputs(8, 96, (14, 14), 3, dtype=torch.bfloat16,
                                                 param_dtype=torch.float32, channels_last=True, seed=142,
                                                 device="cuda")
    with torch.no_grad():
        for leaf, value in zip(leaves, (new_x, *new_params)):
            leaf.copy_(value)
        rm.copy_(new_running[0])
        rv.copy_(new_running[1])
        for t in static:
            t.fill_(float("nan"))  # poisoned: the replay must write every element
    graph.replay()
    torch.cuda.synchronize()
    up = lambda ts: [t.double() for t in ts]  # noqa: E731
    ref, ref_grads, ref_rm, ref_rv = run(composition, new_x.double(), up(new_params), up(new_running),
                                         grad_out.double(), stride=2, training=training)
    assert_close_to_reference(static[0], ref, torch.bfloat16, "replayed output")
    for name, got, want in zip(GRAD_NAMES, static[1:], ref_grads):
        assert_close_to_reference(got, want, torch.bfloat16, f"replayed grad {name}")
    assert_close_to_reference(rm, ref_rm, torch.float32, "running_mean after replay")
    assert_close_to_reference(rv, ref_rv, torch.float32, "running_var after replay")
