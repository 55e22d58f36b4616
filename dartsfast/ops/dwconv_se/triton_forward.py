"""Triton kernels for ``dwconv_se`` (the MBConv middle), forward, and their launcher; the
backward is in :mod:`dartsfast.ops.dwconv_se.triton_backward`. Imported on the first Triton
call by the op's registration (``dartsfast.ops.dwconv_se``), never by ``import dartsfast``.

Layout: NHWC (channels_last) is the fast path — a program owns a tile of BLOCK_P output
pixels × BLOCK_C contiguous channels, so every load/store is a contiguous run of channels.
NCHW inputs are accepted and converted to channels_last once (one extra read + write of x);
the output keeps x's memory format (the kernels address outputs through their strides).
fp32/fp16/bf16 activations, fp32 accumulation; fp64 runs on the torch reference.

Passes of the training forward (b = element size, M_in = N·H·W·C, M_out = N·H'·W'·C;
DRAM bytes, halo re-reads of neighbouring pixels hit L2 and are not counted):

1. ``_dwconv_se_forward_kernel[MODE_STATS]``: depthwise conv, per-program BN partials
   (count, mean, M2 — Chan/Welford, robust where Σz² − (Σz)²/n would cancel):
   reads M_in·b, writes 2·T·C·4 (T = N·chunks, partials of TILES·BLOCK_P pixels each)
   [+ M_out·4 when z is stored, see below].
2. ``_dwconv_se_bn_stats_kernel``: combines the T partials in a fixed order (no atomics) into the
   batch mean and biased variance: reads 2·T·C·4, writes 4·C·4.
3. ``_dwconv_se_forward_kernel[MODE_POOL]``: conv (or z), BN + SiLU, per-(n, chunk) SE sums of y;
   nothing full-size is written: reads M_in·b (stored z: M_out·4), writes T·C·4.
4. SE MLP in torch on [N, C] (tiny).
5. ``_dwconv_se_forward_kernel[MODE_APPLY]``: conv (or z) + BN + SiLU, writes out = y·gate:
   reads M_in·b (stored z: M_out·4), writes M_out·b.

Recompute or store z, by the byte count (``store_z_saves_bytes``): z is kept in fp32 —
a bf16 z measured 1.1–1.45× plain PyTorch's bf16 output error against 0.6× for fp32 z,
and fp32 keeps the one-rounding-at-the-end promise of ``accumulate_dtype``. Re-convolving
x in passes 3 and 5 costs 2·M_in·b; writing z in pass 1 and reading it twice costs
3·M_out·4. Stride 1 (M_in = M_out = M) recomputes: 4·M·b in all (floor 2·M·b). Stride 2
(M_in ≈ 4·M_out) stores z: bf16 22·M_out bytes against 26 recomputing (floor 10),
fp32 32 against 52 (floor 20). Partials add ≈ 5·T·C·4 bytes, 1–2% at real sizes.
Eval (running statistics) skips passes 1–2; pass 3 stores z when 2·M_out·4 < M_in·b
(fp32 stride 2 only): stride 1 moves 3·M·b.
For comparison the eager composition (conv, BN stats + normalise, SiLU, mean, scale)
moves ≈ M_in·b + 9·M_out·b: EfficientNet-B0 stage 3 at batch 128 bf16 (144 ch 56→28
stride 2, then 240 ch at 28²) is 0.86 GB eager against 0.51 GB here per forward
(0.42 GB with a bf16 z).

Every output buffer comes from ``new_output`` (NaN-poisoned under test).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dartsfast import _triton
from dartsfast.ops._common import memory_format_of, new_output
from dartsfast.ops.dwconv_se._plan import Plan, as_channels_last, filter_taps, fp32, nhwc_strides, se_gate
from dartsfast.ops.dwconv_se._tiles import VARYING, bn_params, dwconv_tile, pixel_tile, program_tile, sigmoid, tile_ptrs
from dartsfast.ops.dwconv_se.reference import output_size

# tl.constexpr so the kernels may read them as globals (Triton rejects plain global ints).
MODE_STATS, MODE_POOL, MODE_APPLY = tl.constexpr(0), tl.constexpr(1), tl.constexpr(2)


# ----------------------------------------------------------------------------- kernels

@triton.jit(do_not_specialize=VARYING)
def _dwconv_se_forward_kernel(x_ptr, w_ptr, mean_ptr, scale_ptr, beta_ptr, gate_ptr, part_ptr, part2_ptr,
                              out_ptr, z_ptr,
                              C, H, W, Wo, HWo, CHUNKS, TILES,
                              sxn, sxh, sxw, sxc, son, soh, sow, soc,
                              MODE: tl.constexpr, Z_IN: tl.constexpr, Z_OUT: tl.constexpr, STRIDE: tl.constexpr,
                              K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """One program: image n, pixel chunk (TILES tiles of BLOCK_P output pixels), BLOCK_C channels.

    MODE_STATS: per-chunk mean and M2 of z → part_ptr, part2_ptr  [N*CHUNKS, C] fp32
    MODE_POOL:  per-chunk Σ_p silu(bn(z))  → part_ptr               [N*CHUNKS, C] fp32
    MODE_APPLY: out = silu(bn(z)) * gate[n, c]  → out_ptr (its strides)
    Z_OUT: also store the conv output z to z_ptr ([N, H', W', C] dense, fp32);
    Z_IN: read z from z_ptr instead of convolving x (see "Recompute or store z" above).
    """
    pid, n, chunk, c, c_mask = program_tile(CHUNKS, C, BLOCK_C)
    x_img = x_ptr + n.to(tl.int64) * sxn
    z_img = z_ptr + n.to(tl.int64) * HWo * C
    if MODE != MODE_STATS:
        mean, scale, beta = bn_params(mean_ptr, scale_ptr, beta_ptr, c, c_mask)
    if MODE == MODE_APPLY:
        gate = tl.load(gate_ptr + n * C + c, mask=c_mask, other=0.0)
        out_img = out_ptr + n.to(tl.int64) * son
    count = tl.zeros([BLOCK_C], dtype=tl.float32)
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for t in range(TILES):
        p, p_mask, ho, wo = pixel_tile(chunk, t, TILES, HWo, Wo, BLOCK_P)
        z_ptrs = z_img + (p * C)[:, None] + c[None, :]
        if Z_IN:
            z = tl.load(z_ptrs, mask=p_mask[:, None] & c_mask[None, :], other=0.0).to(tl.float32)
        else:
            z = dwconv_tile(x_img, w_ptr, ho, wo, p_mask, c, c_mask, C, H, W, sxh, sxw, sxc,
                            STRIDE, K, BLOCK_P, BLOCK_C)
            if Z_OUT:
                tl.store(z_ptrs, z.to(z_ptr.dtype.element_ty), mask=p_mask[:, None] & c_mask[None, :])
        if MODE == MODE_STATS:
            # Chan's parallel update of (count, mean, M2) with this tile's centred sums.
            n_t = tl.sum(p_mask.to(tl.float32), axis=0)
            mean_t = tl.sum(z, axis=0) / tl.maximum(n_t, 1.0)  # masked rows of z are exactly 0
            d = tl.where(p_mask[:, None], z - mean_t[None, :], 0.0)
            m2_t = tl.sum(d * d, axis=0)
            new_count = count + n_t
            frac = n_t / tl.maximum(new_count, 1.0)
            delta = mean_t - acc
            acc += delta * frac
            acc2 += m2_t + delta * delta * count * frac
            count = new_count
        else:
            a = (z - mean[None, :]) * scale[None, :] + beta[None, :]
            y = a * sigmoid(a)
            if MODE == MODE_POOL:
                acc += tl.sum(tl.where(p_mask[:, None], y, 0.0), axis=0)
            else:
                out = y * gate[None, :]
                tl.store(tile_ptrs(out_img, ho, wo, c, soh, sow, soc), out.to(out_ptr.dtype.element_ty),
                         mask=p_mask[:, None] & c_mask[None, :])
    if MODE != MODE_APPLY:
        tl.store(part_ptr + pid * C + c, acc, mask=c_mask)
    if MODE == MODE_STATS:
        tl.store(part2_ptr + pid * C + c, acc2, mask=c_mask)


@triton.jit(do_not_specialize=["T", "CHUNKS", "HWo", "CHUNK_P"])
def _dwconv_se_bn_stats_kernel(mean_part_ptr, m2_part_ptr, gamma_ptr, mean_ptr, var_ptr, scale_ptr, inv_std_ptr,
                               T, C, CHUNKS, HWo, CHUNK_P, total, eps,
                               BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """Batch mean / biased var from T chunk partials, always summed in the same order.

    Two sweeps (mean first, then Σ M2_t + n_t (mean_t − mean)²) keep the combination as
    robust as the per-chunk Welford; BLOCK_T rows per step keep the serial loop short
    (T = 512 chunks → 8 steps at BLOCK_T = 64).
    """
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_mask = c < C
    acc = tl.zeros([BLOCK_C], dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        t_mask = t < T
        cnt = tl.minimum(tl.maximum(HWo - (t % CHUNKS) * CHUNK_P, 0), CHUNK_P).to(tl.float32)
        m = tl.load(mean_part_ptr + t[:, None] * C + c[None, :], mask=t_mask[:, None] & c_mask[None, :], other=0.0)
        acc += tl.sum(cnt[:, None] * m, axis=0)
    mean = acc / total
    m2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    for t0 in range(0, T, BLOCK_T):
        t = t0 + tl.arange(0, BLOCK_T)
        t_mask = t < T
        mask = t_mask[:, None] & c_mask[None, :]
        cnt = tl.minimum(tl.maximum(HWo - (t % CHUNKS) * CHUNK_P, 0), CHUNK_P).to(tl.float32)
        cnt = tl.where(t_mask, cnt, 0.0)  # rows past T would add cnt·mean² through d = 0 − mean
        m = tl.load(mean_part_ptr + t[:, None] * C + c[None, :], mask=mask, other=0.0)
        q = tl.load(m2_part_ptr + t[:, None] * C + c[None, :], mask=mask, other=0.0)
        d = m - mean[None, :]
        m2 += tl.sum(q + cnt[:, None] * d * d, axis=0)
    var = m2 / total
    inv_std = 1.0 / tl.sqrt(var + eps)
    gamma = tl.load(gamma_ptr + c, mask=c_mask, other=0.0)
    tl.store(mean_ptr + c, mean, mask=c_mask)
    tl.store(var_ptr + c, var, mask=c_mask)
    tl.store(scale_ptr + c, gamma * inv_std, mask=c_mask)
    tl.store(inv_std_ptr + c, inv_std, mask=c_mask)


# ----------------------------------------------------------------------------- launch helpers

def launch_pass(mode, x, w_taps, plan, k, stride, ho_wo, *, mean=None, scale=None, beta=None, gate=None,
                part=None, part2=None, out=None, z=None, z_in=False):
    """Launch ``_dwconv_se_forward_kernel``; unused pointer arguments get a dummy tensor.

    With ``z`` given, the pass reads z from it (``z_in``) or convolves x and stores z there.
    """
    dummy = w_taps
    _, c, h, w = x.shape
    sxn, sxh, sxw, sxc = nhwc_strides(x)
    son, soh, sow, soc = nhwc_strides(out) if out is not None else (0, 0, 0, 0)
    _dwconv_se_forward_kernel[plan.grid](
        x, w_taps, mean if mean is not None else dummy, scale if scale is not None else dummy,
        beta if beta is not None else dummy, gate if gate is not None else dummy,
        part if part is not None else dummy, part2 if part2 is not None else dummy,
        out if out is not None else x, z if z is not None else x,
        c, h, w, ho_wo[1], plan.hw, plan.chunks, plan.tiles,
        sxn, sxh, sxw, sxc, son, soh, sow, soc,
        MODE=mode, Z_IN=z is not None and z_in, Z_OUT=z is not None and not z_in, STRIDE=stride, K=k,
        BLOCK_P=plan.block_p, BLOCK_C=plan.block_c, num_warps=plan.num_warps)


def batch_stats(x, w_taps, bn_weight32, plan, k, stride, ho_wo, eps, z=None):
    """Passes 1–2: (mean, biased var, γ·inv_std, inv_std), each [C] fp32; pass 1 also
    stores the conv output into ``z`` when given."""
    c = x.shape[1]
    mean_part = new_output((plan.rows, c), torch.float32, x.device)
    m2_part = new_output((plan.rows, c), torch.float32, x.device)
    launch_pass(MODE_STATS, x, w_taps, plan, k, stride, ho_wo, part=mean_part, part2=m2_part, z=z)
    mean, var, scale, inv_std = (new_output((c,), torch.float32, x.device) for _ in range(4))
    block_c = 64
    _dwconv_se_bn_stats_kernel[(triton.cdiv(c, block_c),)](
        mean_part, m2_part, bn_weight32, mean, var, scale, inv_std,
        plan.rows, c, plan.chunks, plan.hw, plan.chunk_p, float(plan.rows // plan.chunks * plan.hw), eps,
        BLOCK_T=64, BLOCK_C=block_c)
    return mean, var, scale, inv_std


def store_z_saves_bytes(m_in: int, m_out: int, elem: int, training: bool) -> bool:
    """True when writing z (fp32) once and reading it back moves fewer bytes than
    re-convolving x in the later passes (the module docstring has the counts)."""
    reads = 2 if training else 1  # later passes that need z
    recompute = reads * m_in * elem
    store = (1 + reads) * m_out * 4
    return store < recompute


# ----------------------------------------------------------------------------- forward launcher

def dwconv_se_forward_triton(x, weight, bn_weight, bn_bias, running_mean, running_var,
                             se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                             stride, training, eps):
    """Same contract as the torch kernel: ``(out, batch_mean, batch_var_biased)``.

    out: x's shape/dtype/memory format; mean/var: [C] fp32 (the running stats cast to
    fp32 in eval mode). x is fp32/fp16/bf16 and not empty: the op's registration sends
    fp64 and empty batches to the torch reference.
    """
    layout = memory_format_of(x)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    ho_wo = (output_size(h, k, stride), output_size(w, k, stride))
    with _triton.device_guard(x.device):
        xc = as_channels_last(x)
        w_taps = filter_taps(weight)
        gamma, beta, srw, srb, sew, seb = fp32(bn_weight, bn_bias, se_reduce_weight, se_reduce_bias,
                                               se_expand_weight, se_expand_bias)
        plan = Plan(n, ho_wo[0] * ho_wo[1], c, x.device)
        store = store_z_saves_bytes(x.numel(), n * c * plan.hw, x.element_size(), training)
        z = new_output((n, c, *ho_wo), torch.float32, x.device, torch.channels_last) if store else None
        if training:
            mean, var, scale, _ = batch_stats(xc, w_taps, gamma, plan, k, stride, ho_wo, eps, z=z)
        else:
            mean, var = fp32(running_mean, running_var)
            scale = gamma * torch.rsqrt(var + eps)
        pool_part = new_output((plan.rows, c), torch.float32, x.device)
        launch_pass(MODE_POOL, xc, w_taps, plan, k, stride, ho_wo, mean=mean, scale=scale, beta=beta,
                    part=pool_part, z=z, z_in=training)
        pooled = pool_part.view(n, plan.chunks, c).sum(1) / plan.hw  # fixed-order reduction
        _, _, gate = se_gate(pooled, srw, srb, sew, seb)
        out = new_output((n, c, *ho_wo), x.dtype, x.device, layout)
        launch_pass(MODE_APPLY, xc, w_taps, plan, k, stride, ho_wo, mean=mean, scale=scale, beta=beta,
                    gate=gate.contiguous(), out=out, z=z, z_in=True)
    if not training:
        mean, var = mean.clone(), var.clone()  # never alias the caller's running buffers
    return out, mean, var
