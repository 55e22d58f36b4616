"""Genotypes the network, training and genotype-file tests share.

Importable as ``sample_genotypes`` from any test: pytest (prepend import mode) puts the
directory of the root ``tests/conftest.py`` on sys.path.
"""
from dartsfast.search.space import Genotype

CONCAT = (2, 3, 4, 5)
# Every op kind in the cells (mbconv only in the shape tests: its reference path is slow on CPU).
GENO_ALL = Genotype(
    normal=(("dsconv_3x3", 0), ("skip_connect", 1), ("mbconv_3x3", 0), ("fused_mbconv_3x3", 2),
            ("sep_conv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 3), ("dsconv_3x3", 4)),
    normal_concat=CONCAT,
    reduce=(("max_pool_3x3", 0), ("dsconv_3x3", 1), ("skip_connect", 2), ("fused_mbconv_3x3", 1),
            ("mbconv_3x3", 0), ("skip_connect", 2), ("sep_conv_3x3", 3), ("max_pool_3x3", 4)),
    reduce_concat=CONCAT)
GENO_FAST = Genotype(
    normal=(("dsconv_3x3", 0), ("skip_connect", 1), ("sep_conv_3x3", 0), ("fused_mbconv_3x3", 2),
            ("dsconv_3x3", 1), ("max_pool_3x3", 2), ("skip_connect", 3), ("dsconv_3x3", 4)),
    normal_concat=CONCAT,
    reduce=(("max_pool_3x3", 0), ("dsconv_3x3", 1), ("skip_connect", 2), ("dsconv_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("sep_conv_3x3", 3), ("max_pool_3x3", 4)),
    reduce_concat=CONCAT)
GENO_SKIP = Genotype(normal=(("skip_connect", 0), ("skip_connect", 1)) * 4, normal_concat=CONCAT,
                     reduce=(("skip_connect", 0), ("skip_connect", 1)) * 4, reduce_concat=CONCAT)
