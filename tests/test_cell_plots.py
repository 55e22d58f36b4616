"""The cell pictures (issue 17, item 5): the derived genotype as graphs (PNG) and the
per-epoch alphas as an animated GIF, their layout, their atomic writes and their errors."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text
from PIL import Image
from sample_genotypes import GENO_ALL, GENO_SKIP

from dartsfast import cell_plots, viz
from dartsfast.cell_plots import OUTPUT_NODE, alpha_frames, alphas_gif, cell_layout, draw_genotype, genotype_figure
from dartsfast.search import SearchConfig, search
from dartsfast.search.space import Genotype
from dartsfast.timing import num_threads

OPS = ("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "none")
EDGES = 14  # a 4-step cell: 2 + 3 + 4 + 5
CHAIN = Genotype(normal=(("dsconv_3x3", 0), ("mbconv_3x3", 1), ("skip_connect", 2), ("dsconv_3x3", 0),
                         ("fused_mbconv_3x3", 3), ("sep_conv_3x3", 1), ("max_pool_3x3", 4), ("dsconv_3x3", 2)),
                 normal_concat=(2, 3, 4, 5),
                 reduce=(("max_pool_3x3", 1), ("max_pool_3x3", 1), ("dsconv_3x3", 2), ("skip_connect", 0),
                         ("mbconv_3x3", 2), ("dsconv_3x3", 3), ("skip_connect", 4), ("dsconv_3x3", 0)),
                 reduce_concat=(1, 4, 5))


def _softmax_rows(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).tolist()


def _history(epochs=3, seed=0, ops=OPS, edges=EDGES):
    """Records shaped like the search's: alphas sharpening over the epochs."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(2, edges, len(ops)))
    return [{"epoch": k + 1, "alphas_normal": _softmax_rows(base[0] * k), "alphas_reduce": _softmax_rows(base[1] * k),
             "genotype": GENO_ALL.to_dict(), "train_loss": 2.0 / (k + 1), "val_loss": 2.1 / (k + 1),
             "train_acc": 0.1 * k, "val_acc": 0.09 * k} for k in range(epochs)]


def _gif_frames(path):
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
        return frames, im.info.get("loop")


# ----------------------------------------------------------------------------- layout

@pytest.mark.parametrize("genotype", [GENO_ALL, GENO_SKIP, CHAIN], ids=["all", "skip", "chain"])
@pytest.mark.parametrize("kind", ["normal", "reduce"])
def test_layout_has_every_state_and_labels_every_edge_with_its_op(genotype, kind):
    layout = cell_layout(genotype, kind)
    ops = getattr(genotype, kind)
    concat = getattr(genotype, f"{kind}_concat")
    names = ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3"]
    assert set(layout.nodes) == {*names, OUTPUT_NODE}
    op_edges, concat_edges = layout.edges[:len(ops)], layout.edges[len(ops):]
    assert [(e.source, e.target, e.label) for e in op_edges] == \
        [(names[j], str(e // 2), op) for e, (op, j) in enumerate(ops)]
    assert [(e.source, e.target, e.label) for e in concat_edges] == [(names[s], OUTPUT_NODE, "") for s in concat]
    for e in layout.edges:  # layered: every edge runs left to right, the output is rightmost
        assert layout.nodes[e.source][0] < layout.nodes[e.target][0]
    assert layout.nodes[OUTPUT_NODE][0] == max(x for x, _ in layout.nodes.values())
    assert len(set(layout.nodes.values())) == len(layout.nodes)  # no two nodes on one spot
    assert cell_layout(genotype, kind) == layout  # deterministic


@pytest.mark.parametrize("genotype", [GENO_ALL, GENO_SKIP, CHAIN], ids=["all", "skip", "chain"])
def test_op_labels_stay_apart_and_off_the_nodes(genotype):
    for kind in ("normal", "reduce"):
        layout = cell_layout(genotype, kind)
        labels = [e.label_xy for e in layout.edges if e.label]
        for a, b in itertools.combinations(labels, 2):
            assert math.dist(a, b) > 0.2, (kind, a, b)
        segments = [cell_plots._label_segment(e.label_xy, e.label_angle, e.label) for e in layout.edges if e.label]
        for a, b in itertools.combinations(segments, 2):  # the text boxes, as the placer models them
            assert cell_plots._segment_distance(*a, *b) >= cell_plots.LABEL_HEIGHT, (kind, a, b)
        for xy in labels:
            assert min(math.dist(xy, p) for p in layout.nodes.values()) > cell_plots.NODE_RADIUS


def test_chain_edges_that_skip_layers_bow_around_the_nodes_between():
    layout = cell_layout(CHAIN, "normal")
    layer_xs = sorted({x for x, _ in layout.nodes.values()})
    x = {name: xy[0] for name, xy in layout.nodes.items()}
    for e in layout.edges:
        skips = layer_xs.index(x[e.target]) - layer_xs.index(x[e.source]) > 1
        assert (e.rad != 0) == skips, e


def test_the_drawn_figure_shows_each_op_name_on_its_edges():
    fig = genotype_figure(GENO_ALL)
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.findobj(Text)]
    for op in {op for op, _ in GENO_ALL.normal + GENO_ALL.reduce}:
        assert texts.count(op) == [op for op, _ in GENO_ALL.normal + GENO_ALL.reduce].count(op), op
    assert {"normal cell", "reduction cell", "$c_{k}$", "$c_{k-2}$"} <= set(texts)


# ----------------------------------------------------------------------------- files

def test_genotype_png_is_readable_and_the_same_from_a_genotype_or_its_dict(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    draw_genotype(GENO_ALL, str(a))
    draw_genotype(GENO_ALL.to_dict(), str(b))
    with Image.open(a) as im:
        assert im.format == "PNG"
        assert im.size[0] > 200 and im.size[1] > 200
        pixels = np.asarray(im.convert("RGB"))
    with Image.open(b) as im:
        assert np.array_equal(pixels, np.asarray(im.convert("RGB")))
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]  # no temp files left


def test_gif_has_one_frame_per_record_and_loops(tmp_path):
    path = tmp_path / "alphas.gif"
    alphas_gif(_history(epochs=4), OPS, str(path), fps=4)
    frames, loop = _gif_frames(path)
    assert len(frames) == 4 and loop == 0
    with Image.open(path) as im:
        assert im.info["duration"] == 250  # 1000 ms / fps for the first frame
    assert os.listdir(tmp_path) == ["alphas.gif"]


def test_records_with_equal_alphas_still_give_a_frame_each(tmp_path):
    record = _history(epochs=1)[0]
    path = tmp_path / "same.gif"
    alphas_gif([record, dict(record), dict(record)], OPS, str(path))
    with Image.open(path) as im:
        assert im.n_frames == 3


def test_frames_change_exactly_where_the_alphas_change():
    history = _history(epochs=3, seed=1)
    changed = [dict(r) for r in history]
    changed[1] = dict(changed[1], alphas_reduce=_softmax_rows(np.eye(EDGES, len(OPS)) * 9))
    same, other = [[np.asarray(f.convert("RGB")) for f in alpha_frames(h, OPS)] for h in (history, changed)]
    assert np.array_equal(same[0], other[0]) and np.array_equal(same[2], other[2])
    assert not np.array_equal(same[1], other[1])


@pytest.mark.parametrize("write, name", [(lambda p: draw_genotype(GENO_ALL.to_dict(), p), "g.png"),
                                         (lambda p: alphas_gif(_history(2), OPS, p), "a.gif")])
def test_an_existing_file_is_replaced_whole(tmp_path, write, name):
    path = tmp_path / name
    path.write_bytes(b"\xff" * 3_000_000)  # larger than the picture: a plain overwrite would leave a tail
    write(str(path))
    with Image.open(path) as im:
        im.load()
    assert path.stat().st_size < 3_000_000 and not path.read_bytes().endswith(b"\xff" * 64)
    assert os.listdir(tmp_path) == [name]


def _failing_writer(self, fp, *args, **kwargs):
    fp.write(b"half a picture")
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("target, write, name", [
    ("matplotlib.figure.Figure.savefig", lambda p: draw_genotype(GENO_ALL, p), "g.png"),
    ("PIL.Image.Image.save", lambda p: alphas_gif(_history(2), OPS, p), "a.gif"),
])
def test_a_failing_render_leaves_the_previous_file_untouched(tmp_path, monkeypatch, target, write, name):
    path = tmp_path / name
    path.write_bytes(b"the previous picture")
    monkeypatch.setattr(target, _failing_writer)
    with pytest.raises(OSError, match="simulated"):
        write(str(path))
    assert path.read_bytes() == b"the previous picture"
    assert os.listdir(tmp_path) == [name]


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("history, ops, message", [
    ([], OPS, "non-empty history"),
    ([{"epoch": 1, "alphas_normal": [[0.25] * 4] * EDGES}], OPS, "has no 'alphas_reduce'"),
    ([{"epoch": 1, "train_loss": 1.0}], OPS, "has no 'alphas_normal'"),
    (_history(2), OPS[:3], "4 ops per edge but 3 op names"),
    (_history(1, edges=13), OPS, "13 rows, which is no cell's edge count"),
    (_history(1)[:1] + _history(1, edges=9), OPS, "has shape \\(9, 4\\), but record 0's has \\(14, 4\\)"),
    ([{"epoch": 1, "alphas_normal": "x", "alphas_reduce": [[0.25] * 4] * EDGES}], OPS, "not a \\[edges\\]\\[ops\\]"),
    ([[0.25] * 4], OPS, "record 0 is a list"),
    (_history(1), [], "op_names must be a non-empty list"),
])
def test_bad_alpha_input_is_a_value_error_naming_the_problem(tmp_path, history, ops, message):
    with pytest.raises(ValueError, match=message):
        alphas_gif(history, ops, str(tmp_path / "a.gif"))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("fps", [0, -1, float("nan"), True])
def test_bad_fps_is_a_value_error(tmp_path, fps):
    with pytest.raises(ValueError, match="fps"):
        alphas_gif(_history(1), OPS, str(tmp_path / "a.gif"), fps=fps)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("reduce_concat"), "no 'reduce_concat' field"),
    (lambda d: d["normal"].__setitem__(2, ["dsconv_3x3", 3]), "edge 2 takes input 3, but node 1 can only read"),
    (lambda d: d["normal"].pop(), "7 edges; expected two per node"),
    (lambda d: d.__setitem__("reduce_concat", [6]), "reduce_concat \\[6\\] must name states 0..5"),
    (lambda d: d["reduce"].__setitem__(0, ["dsconv_3x3", 1.0]), "reduce edge 0 is"),
    (lambda d: d.__setitem__("normal", None), "normal and normal_concat must be lists"),
])
def test_a_malformed_genotype_is_a_value_error(tmp_path, change, message):
    data = GENO_ALL.to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        draw_genotype(data, str(tmp_path / "g.png"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="cell kind"):
        cell_layout(GENO_ALL, "middle")


# ----------------------------------------------------------------------------- end of a search

def test_plot_search_adds_the_gif_and_the_genotype_picture(tmp_path):
    names = [viz.ALPHAS_PNG, viz.EDGES_PNG, viz.CURVES_PNG, viz.ALPHAS_GIF, viz.GENOTYPE_PNG]
    assert viz.plot_search(_history(2), OPS, str(tmp_path)) == [str(tmp_path / n) for n in names]
    assert sorted(os.listdir(tmp_path)) == sorted(names)
    older = tmp_path / "older"  # records without a genotype: the rest is still drawn
    older.mkdir()
    history = [{k: v for k, v in r.items() if k != "genotype"} for r in _history(2)]
    assert viz.plot_search(history, OPS, str(older)) == [str(older / n) for n in names[:-1]]


def test_a_tiny_search_ends_with_genotype_png_and_alphas_gif(tmp_path):
    config = SearchConfig(dataset="synthetic", synthetic_size=32, image_size=8, epochs=2, batch_size=8, layers=3,
                          channels=4, ops=("skip_connect", "avg_pool_3x3", "dsconv_3x3", "none"), out=str(tmp_path),
                          progress=False, plots=True, device="cpu", alpha_lr=0.05)
    with num_threads(1):  # an OpenMP team on 2 busy shared cores waits out descheduled siblings
        result = search(config)
    with Image.open(tmp_path / viz.GENOTYPE_PNG) as im:
        assert im.format == "PNG"
    frames, _ = _gif_frames(tmp_path / viz.ALPHAS_GIF)
    assert len(frames) == len(result.history) == 2
