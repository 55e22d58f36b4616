"""Analytic FLOPs and minimum bytes of a block, per mode: the x and y of the roofline.

Layers of each block (as built by :mod:`dartsfast.nn.blocks`; mid = round(C_in·exp),
Cr = max(1, round(C_in·se_ratio)), H' = (H − 1)//s + 1, all per image, N images):

    MBConv        conv_pw 1×1 C_in→mid @H · BN · SiLU · conv_dw k×k groups=mid stride s ·
                  BN · SiLU · SE(mid, Cr) · conv_pwl 1×1 mid→C_out @H' · BN  (+ x if residual)
    Fused-MBConv  conv_exp k×k C_in→mid stride s · BN · SiLU · [SE(mid, Cr)] ·
                  conv_pwl 1×1 mid→C_out @H' · BN; with exp == 1: conv_exp C_in→C_out only
    DSConv        conv_dw k×k groups=C_in stride s · BN · SiLU · SE(C_in, Cr) ·
                  conv_pw 1×1 C_in→C_out @H' · BN

FLOPs (2 per multiply-accumulate, the hardware convention the matmul ceiling is measured in):
    conv          2 · N · H'·W' · C_out · (C_in / groups) · k²
    SE            2 · N · (mid·Cr + Cr·mid)        (its two FCs; the pooling is not counted)
    inference     Σ conv + Σ SE
    training      3 × inference (forward, data-grad and weight-grad are each one forward's
                  MACs) + 4·P for the SGD-momentum step (buf = m·buf + g; p −= lr·buf)
BN, SiLU, sigmoid, the SE pooling / gating and the residual add are *not* counted: they run
on CUDA cores, not the tensor cores the ceiling measures (for an EfficientNetV2-S stage-4
MBConv, 128→512→128 at 24×24, they would add ~2.5%: ~3.9 M vs 156 M FLOP per image), and
they are what the byte count below charges for.

Minimum bytes (b = bytes per element; every tensor, parameters too, is in the run's dtype):
the traffic of an implementation that keeps each conv a kernel of its own and fuses
everything else into the convs — BN+SiLU into the consumer's prologue, BN statistics and
the SE pooling into the producer's epilogue, the SE gate into the consumer's prologue, the
residual into the last conv's epilogue. So every conv's input I and output O (elements,
all N images) cross DRAM once; the per-sample vectors (SE's N×mid, BN's per-channel
statistics) are < 0.1% and not counted. P = parameters, B = BN running-stat buffers.
    inference     b · (Σ_conv (I + O) + X·res + P + B)
    training      forward   b · (Σ_conv (I + O) + X·res + P + 2B)       (running stats r+w)
                  backward  b · (Σ_conv (2I + 2O) + Y·res + 2P)
                            per conv: read dO, read O again (the raw conv output, for the
                            BN + SiLU backward), read I (weight grad), write dI; read W,
                            write dW; the residual grad dY is read once more
                  step      b · 5P      (SGD momentum: read p, g, buf; write p, buf)
X, Y are the block's input and output; res = 1 when the block has a residual.
A fused kernel can only beat these counts by recomputing activations; unfused eager
PyTorch moves more: for that stage-4 MBConv forward 8576 vs 2432 elements per pixel
(3.5×), every BN, SiLU, the SE pool and gate and the residual add being a pass of its own.
"""
from __future__ import annotations

import dataclasses

from dartsfast.profiling.presets import BlockSpec

MODES = ("inference", "training")
# FLOPs per parameter of the training step (see the module docstring) and bytes moved per
# parameter element: read p, g, momentum buffer; write p, buffer.
SGD_FLOPS_PER_PARAM = 4
SGD_ELEMENTS_PER_PARAM = 5


@dataclasses.dataclass(frozen=True)
class Conv:
    """A conv layer at one position; element counts are per image."""

    name: str
    c_in: int
    c_out: int
    k: int
    stride: int
    groups: int
    h: int
    w: int

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.h - 1) // self.stride + 1, (self.w - 1) // self.stride + 1

    @property
    def macs(self) -> int:
        ho, wo = self.out_hw
        return ho * wo * self.c_out * (self.c_in // self.groups) * self.k * self.k

    @property
    def in_elems(self) -> int:
        return self.c_in * self.h * self.w

    @property
    def out_elems(self) -> int:
        ho, wo = self.out_hw
        return self.c_out * ho * wo

    @property
    def weights(self) -> int:
        return self.c_out * (self.c_in // self.groups) * self.k * self.k


@dataclasses.dataclass(frozen=True)
class Layers:
    """A block as the layers the cost model counts."""

    convs: tuple[Conv, ...]
    se: tuple[tuple[int, int], ...]    # (channels, reduced channels) of each SE
    bn_channels: tuple[int, ...]
    residual: bool
    in_elems: int                      # X, per image
    out_elems: int                     # Y, per image

    @property
    def params(self) -> int:
        """Trainable parameters: conv weights, BN γ/β, SE FC weights and biases."""
        se = sum(c * r + r + r * c + c for c, r in self.se)
        return sum(c.weights for c in self.convs) + 2 * sum(self.bn_channels) + se

    @property
    def buffers(self) -> int:
        """BN running mean and variance."""
        return 2 * sum(self.bn_channels)


@dataclasses.dataclass(frozen=True)
class Cost:
    flops: int
    bytes: int
    params: int

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte."""
        return self.flops / self.bytes


def _se_channels(c_in: int, se_ratio: float) -> int:
    return max(1, round(c_in * se_ratio))


def block_layers(spec: BlockSpec) -> Layers:
    """The conv / SE / BN layers of ``spec`` (see the module docstring)."""
    s = spec.shape
    ho, wo = s.out_hw
    k, stride = s.kernel, s.stride
    se_rd = _se_channels(s.c_in, spec.se_ratio)
    residual = stride == 1 and s.c_in == s.c_out
    if spec.block == "mbconv":
        mid = max(1, round(s.c_in * s.exp_ratio))
        convs = (Conv("conv_pw", s.c_in, mid, 1, 1, 1, s.h, s.w),
                 Conv("conv_dw", mid, mid, k, stride, mid, s.h, s.w),
                 Conv("conv_pwl", mid, s.c_out, 1, 1, 1, ho, wo))
        bns, se = (mid, mid, s.c_out), ((mid, se_rd),) if spec.se_ratio > 0 else ()
    elif spec.block == "fused_mbconv":
        project = s.exp_ratio != 1.0
        mid = max(1, round(s.c_in * s.exp_ratio)) if project else s.c_out
        convs = (Conv("conv_exp", s.c_in, mid, k, stride, 1, s.h, s.w),)
        bns = (mid,)
        if project:
            convs += (Conv("conv_pwl", mid, s.c_out, 1, 1, 1, ho, wo),)
            bns += (s.c_out,)
        se = ((mid, se_rd),) if spec.se_ratio > 0 else ()
    elif spec.block == "dsconv":
        convs = (Conv("conv_dw", s.c_in, s.c_in, k, stride, s.c_in, s.h, s.w),
                 Conv("conv_pw", s.c_in, s.c_out, 1, 1, 1, ho, wo))
        bns, se = (s.c_in, s.c_out), ((s.c_in, se_rd),) if spec.se_ratio > 0 else ()
    else:
        raise ValueError(f"unknown block {spec.block!r}; expected mbconv, fused_mbconv or dsconv")
    return Layers(convs, se, bns, residual, s.c_in * s.h * s.w, s.c_out * ho * wo)


def forward_flops(layers: Layers, batch: int) -> int:
    macs = sum(c.macs for c in layers.convs) + sum(2 * c * r for c, r in layers.se)
    return 2 * batch * macs


def block_cost(spec: BlockSpec, batch: int, element_size: int, mode: str) -> Cost:
    """FLOPs and minimum bytes of one call of ``spec`` at ``batch`` images (module docstring).

    ``mode``: "inference" (forward, eval BN) or "training" (forward + backward + SGD step).
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if batch < 1 or element_size < 1:
        raise ValueError(f"batch and element_size must be ≥ 1, got {batch} and {element_size}")
    layers = block_layers(spec)
    p, b = layers.params, layers.buffers
    io = batch * sum(c.in_elems + c.out_elems for c in layers.convs)
    res_x = batch * layers.in_elems if layers.residual else 0
    res_y = batch * layers.out_elems if layers.residual else 0
    flops = forward_flops(layers, batch)
    if mode == "inference":
        elems = io + res_x + p + b
    else:
        flops = 3 * flops + SGD_FLOPS_PER_PARAM * p
        forward = io + res_x + p + 2 * b
        backward = 2 * io + res_y + 2 * p
        elems = forward + backward + SGD_ELEMENTS_PER_PARAM * p
    return Cost(flops=flops, bytes=elems * element_size, params=p)
