"""dartsfast.train's files: load_model's errors, and load_genotype (an alias of Genotype.load)."""
import pytest
from sample_genotypes import GENO_ALL

from dartsfast.search.space import Genotype
from dartsfast.train import load_genotype, load_model


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.pt"):
        load_model(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_model(tmp_path / "model.pt")


def test_load_genotype_is_genotype_load(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(GENO_ALL.to_json())
    assert load_genotype(path) == Genotype.load(path) == GENO_ALL
    assert load_genotype(tmp_path) == GENO_ALL  # a directory means DIR/genotype.json
