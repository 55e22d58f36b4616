"""Reference genotypes and genotype arguments by name or file (issue 17)."""
import pytest

from dartsfast.evaluation import REFERENCE_GENOTYPES, reference_genotype, resolve_genotype, resolve_genotypes
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.space import DEFAULT_OPS, NONE, Genotype


def test_the_shipped_references():
    assert set(REFERENCE_GENOTYPES) == {"all-dsconv", "all-mbconv", "all-fused-mbconv", "seed-fmnist"}
    for op in ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3"):
        g = REFERENCE_GENOTYPES["all-" + op[:-4].replace("_", "-")]
        # The documented chain: node i reads states i and i + 1; concat of the four nodes.
        chain = tuple((op, s) for i in range(4) for s in (i, i + 1))
        assert g.normal == g.reduce == chain
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5)


def test_every_reference_lies_in_the_default_space_and_builds():
    for name, g in REFERENCE_GENOTYPES.items():
        ops = {op for cell in (g.normal, g.reduce) for op, _ in cell}
        assert ops <= set(DEFAULT_OPS) - {NONE}, name
        for cell in (g.normal, g.reduce):
            assert all(cell[2 * i][1] != cell[2 * i + 1][1] for i in range(4)), name
        DiscreteNetwork(g, channels=4, num_classes=10, layers=3, in_channels=1)


def test_the_seed_result_keeps_its_all_dsconv_normal_cell():
    # The field notes: "its normal cell came out all DSConv"; its reduction cell mixes all three.
    g = REFERENCE_GENOTYPES["seed-fmnist"]
    assert {op for op, _ in g.normal} == {"dsconv_3x3"}
    assert {op for op, _ in g.reduce} == {"dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3"}


def test_names_with_and_without_prefix():
    assert reference_genotype("ref:all-mbconv") is REFERENCE_GENOTYPES["all-mbconv"]
    assert reference_genotype("all-mbconv") is REFERENCE_GENOTYPES["all-mbconv"]
    assert resolve_genotype("ref:all-dsconv") == ("ref:all-dsconv", REFERENCE_GENOTYPES["all-dsconv"])


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        reference_genotype("ref:resnet")
    assert "'resnet'" in str(info.value)
    assert all("ref:" + k in str(info.value) for k in REFERENCE_GENOTYPES)


def test_files_directories_genotypes_and_pairs(tmp_path):
    g = REFERENCE_GENOTYPES["seed-fmnist"]
    g.save(tmp_path / "genotype.json")
    assert resolve_genotype(str(tmp_path / "genotype.json")) == (str(tmp_path / "genotype.json"), g)
    assert resolve_genotype(tmp_path) == (str(tmp_path), g)  # a directory holding genotype.json
    assert resolve_genotype(g) == ("genotype", g)
    assert resolve_genotype(("mine", g)) == ("mine", g)


def test_bad_files(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="none.json not found"):
        resolve_genotype(str(tmp_path / "none.json"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="write ref:all-dsconv"):
        resolve_genotype("all-dsconv")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not valid JSON"):
        resolve_genotype(str(tmp_path / "bad.json"))
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match="empty.json"):
        resolve_genotype(str(tmp_path / "empty.json"))


def test_lists():
    g = Genotype(REFERENCE_GENOTYPES["all-dsconv"].normal, (2, 3, 4, 5), REFERENCE_GENOTYPES["all-mbconv"].reduce,
                 (2, 3, 4, 5))
    assert [label for label, _ in resolve_genotypes(["ref:all-dsconv", ("mixed", g)])] == ["ref:all-dsconv", "mixed"]
    with pytest.raises(ValueError, match="no genotypes to evaluate.*ref:all-dsconv"):
        resolve_genotypes([])
    with pytest.raises(ValueError, match="listed twice: ref:all-dsconv"):
        resolve_genotypes(["ref:all-dsconv", "ref:all-dsconv"])
    with pytest.raises(TypeError):
        resolve_genotypes("ref:all-dsconv")
    with pytest.raises(TypeError):
        resolve_genotype(42)
    with pytest.raises(TypeError):
        resolve_genotype(("label", "not a genotype"))
