"""Training a found architecture from scratch: settings, the loop, and its files.

The network itself is :class:`dartsfast.search.network.DiscreteNetwork` (built on the
supernet's layout); its names stay importable from here too.
"""
from dartsfast.runtime import AMP_MODES
from dartsfast.search.network import AuxiliaryHead, DiscreteCell, DiscreteNetwork
from dartsfast.train.config import TrainConfig
from dartsfast.train.files import HISTORY_FILE, MODEL_FILE, load_genotype, load_model
from dartsfast.train.loop import TrainResult, evaluate, train

__all__ = ["AMP_MODES", "HISTORY_FILE", "MODEL_FILE", "AuxiliaryHead", "DiscreteCell", "DiscreteNetwork",
           "TrainConfig", "TrainResult", "evaluate", "load_genotype", "load_model", "train"]
