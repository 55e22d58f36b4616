"""Triton kernels for the backward of ``dwconv_se``, and their launcher (forward and layout
notes: :mod:`dartsfast.ops.dwconv_se.triton_forward`). Imported on the first Triton call
by the op's registration, never by ``import dartsfast``.

Only the op's inputs are saved for backward; everything else is recomputed from x.
The SE gate and the BatchNorm gradient both need image- or batch-wide sums of terms
that only exist after the conv, so the backward factorises them: with s' = silu'(a),
ẑ = (z − mean)·inv_std and d_a = s'·(g·gate[n,c] + u[n,c]) where u = d_pooled/(H'W'),

    Σ_p d_a      = gate·Σ_p s'g    + u·Σ_p s'
    Σ_p d_a·ẑ    = gate·Σ_p s'gẑ   + u·Σ_p s'ẑ

so ONE pass over (x, g) yields every per-(n, c) sum the SE and BN gradients need.

Passes (b = element size, M_in = N·H·W·C, M_out = N·H'·W'·C, DRAM bytes):

0. training only: batch statistics again (the op saves no activations; forward passes
   1–2): reads M_in·b.
1. ``_dwconv_se_backward_sums_kernel``: conv, BN, SiLU; six per-(n, chunk, c) sums Σ gy, Σ y, Σ s'g,
   Σ s', Σ s'gẑ, Σ s'ẑ: reads M_in·b + M_out·b, writes 6·T·C·4.
2. torch on [N, C]: SE forward + backward, BN weight/bias grads, the per-channel
   coefficients of d_z = A·d_a + B·(z − mean) + C'.
3. ``_dwconv_se_backward_dz_kernel``: recomputes d_a, writes d_z (x's dtype, NHWC) and the depthwise
   weight-gradient partials Σ_p d_z·x_tap per program (one [k², C] fp32 row block per
   program, summed by torch in a fixed order — no atomics): reads M_in·b + M_out·b,
   writes M_out·b + T·k²·C·4.
4. ``_dwconv_se_backward_dx_kernel``: d_x = d_z correlated with the flipped filter (a gather over the
   k² output pixels that see each input pixel): reads M_out·b, writes M_in·b.

Total ≈ 4·M_in·b + 4·M_out·b in training (8·M·b at stride 1), 3·M_in·b + 4·M_out·b in
eval; the floor (read x and g, write d_x) is 2·M_in·b + M_out·b (3·M·b at stride 1).
d_z is stored in x's dtype, unlike the forward's fp32 z: it costs every layer's backward
2·M_out·b rather than stride-2 forwards alone, fp32 would add 25% to the bf16 backward
bytes at stride 1, and the bf16 d_x error measured 0.93–1.04× plain PyTorch's (fp16:
0.3×), inside DESIGN.md §6's 2×. Saving the forward's batch statistics would drop pass 0
(M_in·b), but the op saves only its inputs (its autograd lives in dwconv_se/__init__.py).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dartsfast import _triton
from dartsfast.ops._common import memory_format_of, new_output
from dartsfast.ops.dwconv_se._plan import Plan, as_channels_last, filter_taps, fp32, nhwc_strides, se_gate
from dartsfast.ops.dwconv_se._tiles import (
    VARYING,
    bn_params,
    conv_window,
    dwconv_tile,
    load_tap,
    pixel_tile,
    program_tile,
    sigmoid,
    tile_ptrs,
)
from dartsfast.ops.dwconv_se.reference import output_size, silu_grad
from dartsfast.ops.dwconv_se.triton_forward import batch_stats


@triton.jit
def _bn_silu_parts(z, mean, scale, beta):
    a = (z - mean[None, :]) * scale[None, :] + beta[None, :]
    sig = sigmoid(a)
    return a * sig, sig * (1.0 + a * (1.0 - sig))  # y, silu'(a)


@triton.jit(do_not_specialize=VARYING + ["ROWS"])
def _dwconv_se_backward_sums_kernel(x_ptr, g_ptr, w_ptr, mean_ptr, scale_ptr, beta_ptr, inv_std_ptr, sums_ptr,
                                    C, H, W, Wo, HWo, CHUNKS, TILES, ROWS,
                                    sxn, sxh, sxw, sxc, sgn, sgh, sgw, sgc,
                                    STRIDE: tl.constexpr, K: tl.constexpr, BLOCK_P: tl.constexpr,
                                    BLOCK_C: tl.constexpr):
    """sums[j, pid, c] for j = (Σgy, Σy, Σs'g, Σs', Σs'gẑ, Σs'ẑ) over the program's pixels."""
    pid, n, chunk, c, c_mask = program_tile(CHUNKS, C, BLOCK_C)
    x_img = x_ptr + n.to(tl.int64) * sxn
    g_img = g_ptr + n.to(tl.int64) * sgn
    mean, scale, beta = bn_params(mean_ptr, scale_ptr, beta_ptr, c, c_mask)
    inv_std = tl.load(inv_std_ptr + c, mask=c_mask, other=0.0)
    s_gy = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_y = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_dg = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_d = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_dgz = tl.zeros([BLOCK_C], dtype=tl.float32)
    s_dz = tl.zeros([BLOCK_C], dtype=tl.float32)
    for t in range(TILES):
        p, p_mask, ho, wo = pixel_tile(chunk, t, TILES, HWo, Wo, BLOCK_P)
        mask = p_mask[:, None] & c_mask[None, :]
        z = dwconv_tile(x_img, w_ptr, ho, wo, p_mask, c, c_mask, C, H, W, sxh, sxw, sxc,
                        STRIDE, K, BLOCK_P, BLOCK_C)
        g = tl.load(tile_ptrs(g_img, ho, wo, c, sgh, sgw, sgc), mask=mask, other=0.0)
        g = g.to(tl.float32)
        y, ds = _bn_silu_parts(z, mean, scale, beta)
        y = tl.where(mask, y, 0.0)      # padding rows would otherwise add silu(beta - mean*scale)
        ds = tl.where(mask, ds, 0.0)
        z_hat = (z - mean[None, :]) * inv_std[None, :]
        s_gy += tl.sum(g * y, axis=0)
        s_y += tl.sum(y, axis=0)
        s_dg += tl.sum(ds * g, axis=0)
        s_d += tl.sum(ds, axis=0)
        s_dgz += tl.sum(ds * g * z_hat, axis=0)
        s_dz += tl.sum(ds * z_hat, axis=0)
    row = sums_ptr + pid * C + c
    tl.store(row, s_gy, mask=c_mask)
    tl.store(row + ROWS * C, s_y, mask=c_mask)
    tl.store(row + 2 * ROWS * C, s_dg, mask=c_mask)
    tl.store(row + 3 * ROWS * C, s_d, mask=c_mask)
    tl.store(row + 4 * ROWS * C, s_dgz, mask=c_mask)
    tl.store(row + 5 * ROWS * C, s_dz, mask=c_mask)


@triton.jit(do_not_specialize=VARYING)
def _dwconv_se_backward_dz_kernel(x_ptr, g_ptr, w_ptr, mean_ptr, scale_ptr, beta_ptr, gate_ptr, u_ptr,
                                  ca_ptr, cb_ptr, cc_ptr, dz_ptr, wpart_ptr,
                                  C, H, W, Wo, HWo, CHUNKS, TILES,
                                  sxn, sxh, sxw, sxc, sgn, sgh, sgw, sgc,
                                  STRIDE: tl.constexpr, K: tl.constexpr, KK_PAD: tl.constexpr,
                                  BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """d_z = A·d_a + B·(z − mean) + C' → dz_ptr (NHWC, dense); Σ_p d_z·x_tap → wpart[pid]."""
    pid, n, chunk, c, c_mask = program_tile(CHUNKS, C, BLOCK_C)
    x_img = x_ptr + n.to(tl.int64) * sxn
    g_img = g_ptr + n.to(tl.int64) * sgn
    dz_img = dz_ptr + n.to(tl.int64) * HWo * C
    mean, scale, beta = bn_params(mean_ptr, scale_ptr, beta_ptr, c, c_mask)
    gate = tl.load(gate_ptr + n * C + c, mask=c_mask, other=0.0)
    u = tl.load(u_ptr + n * C + c, mask=c_mask, other=0.0)
    ca = tl.load(ca_ptr + c, mask=c_mask, other=0.0)
    cb = tl.load(cb_ptr + c, mask=c_mask, other=0.0)
    cc = tl.load(cc_ptr + c, mask=c_mask, other=0.0)
    taps = tl.arange(0, KK_PAD)
    wacc = tl.zeros([KK_PAD, BLOCK_C], dtype=tl.float32)
    for t in range(TILES):
        p, p_mask, ho, wo = pixel_tile(chunk, t, TILES, HWo, Wo, BLOCK_P)
        mask = p_mask[:, None] & c_mask[None, :]
        z = dwconv_tile(x_img, w_ptr, ho, wo, p_mask, c, c_mask, C, H, W, sxh, sxw, sxc,
                        STRIDE, K, BLOCK_P, BLOCK_C)
        g = tl.load(tile_ptrs(g_img, ho, wo, c, sgh, sgw, sgc), mask=mask, other=0.0)
        _, ds = _bn_silu_parts(z, mean, scale, beta)
        d_a = ds * (g.to(tl.float32) * gate[None, :] + u[None, :])
        dz = ca[None, :] * d_a + cb[None, :] * (z - mean[None, :]) + cc[None, :]
        dz = tl.where(mask, dz, 0.0)
        tl.store(dz_img + (p * C)[:, None] + c[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask)
        # Weight-gradient partials from the fp32 d_z (x re-read per tap: L1/L2 hits, no DRAM).
        # A one-hot add puts each tap's [BLOCK_C] sum in its row of the [k², BLOCK_C]
        # accumulator: k²·KK_PAD·BLOCK_C FLOPs per tile, 1/8–1/4 of the conv's own.
        h0, w0, base = conv_window(x_img, ho, wo, c, sxh, sxw, sxc, STRIDE, K)
        for kh in range(K):
            row_ok = p_mask & (h0 + kh >= 0) & (h0 + kh < H)
            for kw in tl.static_range(K):
                xv = load_tap(base, kh, kw, row_ok, w0, W, c_mask, sxh, sxw)
                s = tl.sum(dz * xv.to(tl.float32), axis=0)
                wacc += tl.where(taps[:, None] == kh * K + kw, s[None, :], 0.0)
    tl.store(wpart_ptr + (pid * (K * K) + taps[:, None]) * C + c[None, :], wacc,
             mask=(taps[:, None] < K * K) & c_mask[None, :])


@triton.jit
def _strided_source(ok, num, STRIDE: tl.constexpr, size):
    """(mask, index) of the output row (or column) num / STRIDE that an input pixel at offset
    num = in + pad − tap gathers from: valid where num ≥ 0, divisible and below size."""
    # Negative numerators are masked before their (backend-dependent) // and %.
    ok = ok & (num >= 0)
    if STRIDE == 1:
        out = num
    else:
        ok = ok & (num % STRIDE == 0)
        out = num // STRIDE
    return ok & (out < size), out


@triton.jit(do_not_specialize=VARYING + ["Ho"])
def _dwconv_se_backward_dx_kernel(dz_ptr, w_ptr, dx_ptr, C, H, W, Ho, Wo, CHUNKS, TILES,
                                  sdn, sdh, sdw, sdc,
                                  STRIDE: tl.constexpr, K: tl.constexpr, BLOCK_P: tl.constexpr,
                                  BLOCK_C: tl.constexpr):
    """d_x[hi, wi] = Σ_taps w[tap]·d_z[(hi + pad − kh)/s, (wi + pad − kw)/s] where integral and in range."""
    pid, n, chunk, c, c_mask = program_tile(CHUNKS, C, BLOCK_C)
    dz_img = dz_ptr + n.to(tl.int64) * Ho * Wo * C
    dx_img = dx_ptr + n.to(tl.int64) * sdn
    PAD: tl.constexpr = K // 2
    for t in range(TILES):
        p, p_mask, hi, wi = pixel_tile(chunk, t, TILES, H * W, W, BLOCK_P)
        acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for kh in range(K):
            row_ok, ho = _strided_source(p_mask, hi + PAD - kh, STRIDE, Ho)
            row = dz_img + (ho * Wo * C)[:, None] + c[None, :]
            for kw in tl.static_range(K):
                ok, wo = _strided_source(row_ok, wi + PAD - kw, STRIDE, Wo)
                v = tl.load(row + (wo * C)[:, None], mask=ok[:, None] & c_mask[None, :], other=0.0)
                wv = tl.load(w_ptr + (kh * K + kw) * C + c, mask=c_mask, other=0.0)
                acc += v.to(tl.float32) * wv[None, :]
        tl.store(tile_ptrs(dx_img, hi, wi, c, sdh, sdw, sdc),
                 acc.to(dx_ptr.dtype.element_ty), mask=p_mask[:, None] & c_mask[None, :])


def dwconv_se_backward_triton(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var,
                              se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                              stride, training, eps):
    """Same contract as the torch kernel: ``[d_x, d_weight, d_bn_weight, d_bn_bias,
    d_se_reduce_weight, d_se_reduce_bias, d_se_expand_weight, d_se_expand_bias]``;
    d_x in x's dtype and memory format, each parameter grad in its parameter's dtype,
    contiguous. x is fp32/fp16/bf16 and not empty: the op's registration handles fp64
    and empty batches."""
    params = (weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias)
    n, c, h, w = x.shape
    k = weight.shape[-1]
    ho_wo = (output_size(h, k, stride), output_size(w, k, stride))
    hw = ho_wo[0] * ho_wo[1]
    with _triton.device_guard(x.device):
        xc, g = as_channels_last(x), as_channels_last(grad_out.to(x.dtype))
        w_taps = filter_taps(weight)
        gamma, beta, srw, srb, sew, seb = fp32(bn_weight, bn_bias, se_reduce_weight, se_reduce_bias,
                                               se_expand_weight, se_expand_bias)
        plan = Plan(n, hw, c, x.device)
        if training:
            mean, _, scale, inv_std = batch_stats(xc, w_taps, gamma, plan, k, stride, ho_wo, eps)
        else:
            mean, var = fp32(running_mean, running_var)
            inv_std = torch.rsqrt(var + eps)
            scale = gamma * inv_std
        sums = new_output((6, plan.rows, c), torch.float32, x.device)
        _dwconv_se_backward_sums_kernel[plan.grid](
            xc, g, w_taps, mean, scale, beta, inv_std, sums, c, h, w, ho_wo[1], hw, plan.chunks, plan.tiles,
            plan.rows, *nhwc_strides(xc), *nhwc_strides(g),
            STRIDE=stride, K=k, BLOCK_P=plan.block_p, BLOCK_C=plan.block_c, num_warps=plan.num_warps)
        s_gy, s_y, s_dg, s_d, s_dgz, s_dz = sums.view(6, n, plan.chunks, c).sum(2).unbind(0)

        # SE backward on [N, C] / [N, Cr] (same algebra as the torch reference).
        pooled = s_y / hw
        h_pre, h_act, gate = se_gate(pooled, srw, srb, sew, seb)
        d_e = s_gy * gate * (1 - gate)
        d_sew, d_seb = d_e.t() @ h_act, d_e.sum(0)
        d_h = (d_e @ sew) * silu_grad(h_pre)
        d_srw, d_srb = d_h.t() @ pooled, d_h.sum(0)
        u = (d_h @ srw) / hw                           # d_pooled spread over the H'·W' pixels
        d_bn_bias = (gate * s_dg + u * s_d).sum(0)     # Σ d_a
        d_bn_weight = (gate * s_dgz + u * s_dz).sum(0)  # Σ d_a·ẑ
        coef_a = scale
        if training:  # BN backward through the batch statistics
            count = n * hw
            coef_b = -scale * inv_std * d_bn_weight / count
            coef_c = -scale * d_bn_bias / count
        else:
            coef_b = coef_c = torch.zeros_like(scale)

        dz = new_output((n, c, *ho_wo), x.dtype, x.device, torch.channels_last)
        kk_pad = triton.next_power_of_2(k * k)
        w_part = new_output((plan.rows, k * k, c), torch.float32, x.device)
        _dwconv_se_backward_dz_kernel[plan.grid](
            xc, g, w_taps, mean, scale, beta, gate.contiguous(), u.contiguous(), coef_a.contiguous(),
            coef_b.contiguous(), coef_c.contiguous(), dz, w_part, c, h, w, ho_wo[1], hw, plan.chunks,
            plan.tiles, *nhwc_strides(xc), *nhwc_strides(g),
            STRIDE=stride, K=k, KK_PAD=kk_pad, BLOCK_P=plan.block_p, BLOCK_C=plan.block_c,
            num_warps=plan.num_warps)
        d_weight = w_part.sum(0).t().reshape(c, 1, k, k)  # fixed-order reduction of the partials

        d_x = new_output((n, c, h, w), x.dtype, x.device, memory_format_of(x))
        in_plan = Plan(n, h * w, c, x.device)
        _dwconv_se_backward_dx_kernel[in_plan.grid](
            dz, w_taps, d_x, c, h, w, ho_wo[0], ho_wo[1], in_plan.chunks, in_plan.tiles, *nhwc_strides(d_x),
            STRIDE=stride, K=k, BLOCK_P=in_plan.block_p, BLOCK_C=in_plan.block_c,
            num_warps=in_plan.num_warps)

    grads = [d_x]
    for grad, param in zip((d_weight, d_bn_weight, d_bn_bias, d_srw, d_srb, d_sew, d_seb), params):
        grads.append(grad.to(param.dtype).contiguous())
    return grads
