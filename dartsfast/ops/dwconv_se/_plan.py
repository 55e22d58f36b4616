"""Host-side launch plan shared by dwconv_se's forward and backward launchers: tile sizes
and grid (:class:`Plan`), NHWC strides and layout conversion, the filter as per-tap
vectors, and the tiny SE MLP both passes run in torch on [N, C].
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
import triton


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


# (BLOCK_P, BLOCK_C, tiles per program) for the Triton interpreter (CPU tensors).
INTERPRETER_BLOCKS = (64, 128, 1)
# (BLOCK_P, BLOCK_C, num_warps) on CUDA, for C > 32 and C ≤ 32 (see Plan).
GPU_BLOCKS, GPU_BLOCKS_NARROW = (32, 64, 8), (64, 32, 8)


class Plan:
    """Tile sizes and grid of one launch family over an [N, HWo, C] pixel space."""

    def __init__(self, n: int, hw: int, c: int, device: torch.device):
        self.n, self.hw, self.c = n, hw, c
        if device.type != "cuda":
            # Interpreter: its cost is per executed op, not per element, so few big programs.
            # Tests shrink these (see INTERPRETER_BLOCKS) to cover tile loops, several
            # chunks per image and several channel blocks.
            self.block_p, self.block_c, self.tiles = INTERPRETER_BLOCKS
            self.num_warps = 4
        else:
            # 2048-element tiles at 8 warps: 8 fp32 accumulators and one 16-byte bf16 vector
            # per thread and tap. ptxas for sm_90 (AOT, no GPU, Triton's own flags):
            # 72–175 registers, no spills (64×64 spilled up to 236 bytes; 4 warps, more).
            # C ≤ 32 takes 64 px × 32 ch instead of masking half of a 64-channel block.
            self.block_p, self.block_c, self.num_warps = GPU_BLOCKS if c > 32 else GPU_BLOCKS_NARROW
            base = n * triton.cdiv(hw, self.block_p) * triton.cdiv(c, self.block_c)
            # Loop over tiles inside a program while ≥ 8 programs per SM remain: fewer,
            # larger partials (T·C·4 bytes each) without starving the GPU.
            index = device.index if device.index is not None else torch.cuda.current_device()
            self.tiles = max(1, min(8, base // (8 * _sm_count(index))))
        self.chunks = triton.cdiv(triton.cdiv(hw, self.block_p), self.tiles)
        self.chunk_p = self.tiles * self.block_p
        self.grid = (n * self.chunks, triton.cdiv(c, self.block_c))

    @property
    def rows(self) -> int:
        """Number of partial rows (one per program along axis 0)."""
        return self.n * self.chunks


def nhwc_strides(t: torch.Tensor) -> tuple[int, int, int, int]:
    """(n, h, w, c) strides of a 4-D [N, C, H, W] tensor."""
    sn, sc, sh, sw = t.stride()
    return sn, sh, sw, sc


def as_channels_last(t: torch.Tensor) -> torch.Tensor:
    """t itself when already NHWC-dense, else one conversion (the only copy NCHW costs)."""
    return t if t.is_contiguous(memory_format=torch.channels_last) else t.contiguous(memory_format=torch.channels_last)


def filter_taps(weight: torch.Tensor) -> torch.Tensor:
    """[C, 1, k, k] → [k*k, C] fp32, so each tap's weights are one contiguous vector."""
    c, _, k, _ = weight.shape
    return weight.reshape(c, k * k).t().to(torch.float32).contiguous()


def se_gate(pooled, srw, srb, sew, seb):
    """The tiny SE MLP on [N, C] in fp32: (h, silu(h), sigmoid gate)."""
    h = F.linear(pooled, srw, srb)
    h_act = F.silu(h)
    return h, h_act, torch.sigmoid(F.linear(h_act, sew, seb))


def fp32(*tensors):
    return [t.detach().to(torch.float32).contiguous() for t in tensors]
