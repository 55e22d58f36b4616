"""dartsfast: fast differentiable architecture search over EfficientNetV2 blocks."""
__version__ = "0.1.0"

from dartsfast import nn, ops
from dartsfast.backend import get_backend, set_backend, use_backend

__all__ = ["__version__", "get_backend", "nn", "ops", "set_backend", "use_backend"]
