"""Helpers shared by the op files: argument checks, output layout, output allocation."""
from __future__ import annotations

from typing import Sequence

import torch

# dtypes the fused kernels take as activations; float64 runs on the torch reference
# (it is what the tests use as the oracle).
ACTIVATION_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

_poison_outputs = False  # flipped by dartsfast.testing.poisoned_outputs()


def accumulate_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 accumulation for fp32/fp16/bf16 (one rounding at the end), fp64 for fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-D tensor laid out NHWC, otherwise contiguous.

    The real kernels and the fake (meta) kernels both use this rule, so outputs have
    the same strides under torch.compile as in eager mode.
    """
    if x.dim() != 4 or x.is_contiguous():
        return torch.contiguous_format
    if x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    # A channel slice of an NHWC tensor (one edge of a batched supernet state): channels
    # are still innermost, so its dense copy and the outputs computed from it stay NHWC.
    if x.stride(1) == 1 and x.shape[1] > 1 and x.stride(3) >= x.shape[1]:
        return torch.channels_last
    return torch.contiguous_format


def new_output(shape: Sequence[int], dtype: torch.dtype, device: torch.device,
               memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Allocate a kernel's output buffer; NaN-filled while tests poison outputs."""
    out = torch.empty(tuple(shape), dtype=dtype, device=device, memory_format=memory_format)
    if _poison_outputs:
        out.fill_(float("nan"))
    return out


def check_tensor(name: str, t: object, *, dims: int | None = None,
                 dtypes: Sequence[torch.dtype] | None = None) -> torch.Tensor:
    """TypeError/ValueError naming ``name`` unless ``t`` is a tensor of that rank and dtype."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dims is not None and t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; expected one of {names}")
    return t


def check_same_device(name: str, t: torch.Tensor, ref_name: str, ref: torch.Tensor) -> None:
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; put them on one device")


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int]) -> None:
    if tuple(t.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}, got {tuple(t.shape)}")


def check_param_dtype(name: str, t: torch.Tensor, activation_dtype: torch.dtype) -> None:
    """Parameters may be fp32 (autocast keeps master weights in fp32) or the activation dtype."""
    allowed = (activation_dtype, torch.float32)
    if t.dtype not in allowed:
        raise TypeError(f"{name} has dtype {str(t.dtype).replace('torch.', '')}; expected float32 "
                        f"or the input's dtype {str(activation_dtype).replace('torch.', '')}")
