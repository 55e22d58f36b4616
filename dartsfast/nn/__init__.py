"""EfficientNetV2 blocks as nn.Modules, built on :mod:`dartsfast.ops` (imports only downward)."""
from dartsfast.nn.blocks import DSConv, FusedMBConv, MBConv
from dartsfast.nn.layers import DropPath, SqueezeExcite

__all__ = ["DSConv", "DropPath", "FusedMBConv", "MBConv", "SqueezeExcite"]
