"""Helpers the tests of dartsfast.nn share (imported as ``block_helpers``: pytest puts a test
file's own directory on sys.path)."""
import torch
import torch.nn as nn

from dartsfast.testing import random_tensor


def out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random weights everywhere, including BN affine and running stats, so that no
    term (bias, running mean, BN scale) can be silently dropped and still pass."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()  # keeps activations O(1) through the block
                m.weight.copy_(random_tensor(m.weight.shape, generator=generator, scale=fan_in ** -0.5))
                if m.bias is not None:
                    m.bias.copy_(random_tensor(m.bias.shape, generator=generator, scale=0.3))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(random_tensor((c,), generator=generator, scale=0.3, offset=1.0))
                m.bias.copy_(random_tensor((c,), generator=generator, scale=0.3))
                m.running_mean.copy_(random_tensor((c,), generator=generator, scale=0.3))
                m.running_var.copy_(random_tensor((c,), generator=generator, scale=0.3).abs() + 0.5)
                m.num_batches_tracked.fill_(7)
    return module


def last_norm(block: nn.Module) -> nn.BatchNorm2d:
    return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
