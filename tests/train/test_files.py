"""dartsfast.train's files: load_model's errors, and load_genotype (an alias of Genotype.load)."""
import errno

import pytest
from sample_genotypes import GENO_ALL

from dartsfast.search.space import Genotype
from dartsfast.train import load_genotype, load_model
from dartsfast.train.files import save_model


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


class _DiskFullAfter:
    """A file whose disk fills after ``room`` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("room", [0, 1000])
def test_a_full_disk_while_saving_the_model_is_an_oserror(room, tmp_path, monkeypatch):
    # torch.save straight into the file turned ENOSPC into "RuntimeError: ... unexpected pos".
    from dartsfast.search.network import DiscreteNetwork
    from dartsfast.train import TrainConfig

    model = DiscreteNetwork(GENO_ALL, 4, 10, 3, 1)
    monkeypatch.setattr("dartsfast.train.files.atomic_write", lambda path, write: write(_DiskFullAfter(room)))
    with pytest.raises(OSError) as info:
        save_model(str(tmp_path), model, GENO_ALL, TrainConfig(), 10, 1, 0.5)
    assert info.value.errno == errno.ENOSPC
