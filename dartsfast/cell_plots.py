"""Pictures of a search's cells: the derived genotype drawn as two graphs (PNG) and the
per-epoch softmaxed alphas of both cells as an animated GIF.

Drawn with matplotlib's object-oriented API (``Figure`` + the Agg canvas) rather than
pyplot: no graphviz binary, no global figure registry to leak frames into, and no
backend switch that could disturb another caller's pyplot. The layout is computed apart
from the rendering (:func:`cell_layout`), so what is drawn where can be checked without
reading pixels. Both files are written atomically (temp file + rename): a failed render
leaves the previous picture in place.

This module sits in the lowest layer beside ``viz`` (which calls it at the end of a
search), so it reads a genotype by its fields, a ``Genotype`` or its ``to_dict()`` form
alike, instead of importing ``dartsfast.search``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from dartsfast._io import atomic_write

INPUT_NODES = ("c_{k-2}", "c_{k-1}")   # states 0 and 1: the outputs of the two previous cells
OUTPUT_NODE = "c_{k}"
CELLS = (("normal", "normal cell"), ("reduce", "reduction cell"))

# Layout units: one unit between stacked nodes, at least LAYER_GAP between DAG layers plus
# GAP_PER_EDGE for each op edge past four ending in the layer (their labels need room to
# stagger), drawn at INCH_PER_UNIT.
LAYER_GAP = 3.0
GAP_PER_EDGE = 0.7
NODE_RADIUS = 0.34
INCH_PER_UNIT = 0.55
LABEL_FONT_PT = 6.5
# A label's footprint in layout units, for keeping labels apart: an op name in DejaVu Sans
# measured about 0.6 em per character on the rendered picture, 0.7 with the white box
# behind it; the height includes that box too.
CHAR_WIDTH = 0.7 * LABEL_FONT_PT / 72 / INCH_PER_UNIT
LABEL_HEIGHT = 1.6 * LABEL_FONT_PT / 72 / INCH_PER_UNIT
# Where along its edge a label may sit, in order of preference: a little past the middle
# first (edges into one node fan apart there, while two crossing edges meet at their
# common middle), then alternately nearer either end.
LABEL_TS = (0.55, 0.64, 0.46, 0.72, 0.38, 0.8, 0.3, 0.86, 0.22)


@dataclasses.dataclass(frozen=True)
class CellEdge:
    source: str
    target: str
    label: str                          # the op name; "" for the edges into the output node
    rad: float                          # matplotlib arc3 curvature (0: straight)
    label_xy: tuple[float, float]       # where the label is centred, on the drawn curve (unlabelled: its middle)
    label_angle: float                  # degrees, along the curve at label_xy


@dataclasses.dataclass(frozen=True)
class CellLayout:
    kind: str
    nodes: dict[str, tuple[float, float]]    # name -> (x, y); x grows from the inputs to the output
    edges: tuple[CellEdge, ...]              # the genotype's op edges in order, then the concat edges

    def bounds(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) holding every node, curve apex and label, with a margin."""
        xs = [p[0] for p in self.nodes.values()]
        ys = [p[1] for p in self.nodes.values()]
        for e in self.edges:
            ys.append(_curve_point(self.nodes[e.source], self.nodes[e.target], e.rad, 0.5)[0][1])
            ys.append(e.label_xy[1])
        margin = NODE_RADIUS + 0.3
        return min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin


def _field(genotype: object, name: str):
    if isinstance(genotype, Mapping):
        if name not in genotype:
            raise ValueError(f"genotype has no {name!r} field")
        return genotype[name]
    if not hasattr(genotype, name):
        raise ValueError(f"genotype has no {name!r} field (got a {type(genotype).__name__})")
    return getattr(genotype, name)


def _cell(genotype: object, kind: str) -> tuple[list[tuple[str, int]], list[int]]:
    """The (op, input) edges and concat states of one cell, checked as ``Genotype`` checks them."""
    if kind not in dict(CELLS):
        raise ValueError(f"cell kind must be one of {[k for k, _ in CELLS]}, got {kind!r}")
    raw_edges, raw_concat = _field(genotype, kind), _field(genotype, f"{kind}_concat")
    if not isinstance(raw_edges, (list, tuple)) or not isinstance(raw_concat, (list, tuple)):
        raise ValueError(f"genotype {kind} and {kind}_concat must be lists, got {raw_edges!r} and {raw_concat!r}")
    edges = []
    for e, edge in enumerate(raw_edges):
        if not isinstance(edge, (tuple, list)) or len(edge) != 2 or not isinstance(edge[0], str) \
                or isinstance(edge[1], bool) or not isinstance(edge[1], int):
            raise ValueError(f"genotype {kind} edge {e} is {edge!r}; expected a pair [op, input_index]")
        if not 0 <= edge[1] < 2 + e // 2:
            raise ValueError(f"genotype {kind} edge {e} takes input {edge[1]}, but node {e // 2} "
                             f"can only read states 0..{1 + e // 2}")
        edges.append((edge[0], edge[1]))
    if not edges or len(edges) % 2:
        raise ValueError(f"genotype {kind} cell has {len(edges)} edges; expected two per node (at least one node)")
    steps = len(edges) // 2
    concat = list(raw_concat)
    if not concat or any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < 2 + steps for i in concat):
        raise ValueError(f"genotype {kind}_concat {concat} must name states 0..{1 + steps}")
    return edges, concat


def _curve_point(p0, p2, rad: float, t: float) -> tuple[tuple[float, float], float]:
    """Point and tangent angle (degrees) at ``t`` of matplotlib's arc3 curve from p0 to p2.

    arc3 is the quadratic Bezier whose control point lies ``rad`` times the chord length
    off the chord's middle, to the chord's right; with equal axis scales (the figure keeps
    them) data and display coordinates agree, so the label lands on the drawn curve.
    """
    (x0, y0), (x2, y2) = p0, p2
    dx, dy = x2 - x0, y2 - y0
    cx, cy = (x0 + x2) / 2 + rad * dy, (y0 + y2) / 2 - rad * dx
    s = 1 - t
    point = (s * s * x0 + 2 * s * t * cx + t * t * x2, s * s * y0 + 2 * s * t * cy + t * t * y2)
    tx, ty = 2 * s * (cx - x0) + 2 * t * (x2 - cx), 2 * s * (cy - y0) + 2 * t * (y2 - cy)
    return point, math.degrees(math.atan2(ty, tx))


def _label_segment(xy, angle: float, label: str):
    """The label's centre line: a segment along the edge, as long as the text."""
    half = len(label) * CHAR_WIDTH / 2
    dx, dy = half * math.cos(math.radians(angle)), half * math.sin(math.radians(angle))
    return (xy[0] - dx, xy[1] - dy), (xy[0] + dx, xy[1] + dy)


def _point_segment_distance(p, a, b) -> float:
    ax, ay = a
    vx, vy = b[0] - ax, b[1] - ay
    length2 = vx * vx + vy * vy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((p[0] - ax) * vx + (p[1] - ay) * vy) / length2))
    return math.dist(p, (ax + t * vx, ay + t * vy))


def _segment_distance(a, b, c, d) -> float:
    def side(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    if side(a, b, c) * side(a, b, d) < 0 and side(c, d, a) * side(c, d, b) < 0:
        return 0.0  # they cross
    return min(_point_segment_distance(c, a, b), _point_segment_distance(d, a, b),
               _point_segment_distance(a, c, d), _point_segment_distance(b, c, d))


def _overlap(seg, others, nodes) -> float:
    """How deep a label on ``seg`` runs into the other labels and the nodes (0: clear); a
    node counts thrice: a label over a node or an arrowhead hides the graph itself."""
    return sum(max(0.0, LABEL_HEIGHT - _segment_distance(*seg, *o)) for o in others) + \
        3 * sum(max(0.0, NODE_RADIUS + LABEL_HEIGHT / 2 - _point_segment_distance(n, *seg)) for n in nodes)


def _place_labels(options: dict[int, list], nodes) -> dict[int, int]:
    """The spot (index into LABEL_TS) of each label: greedily in ``options``' order, the
    first clear spot or else the least overlapping one; then rounds of moving one label at
    a time where it overlaps the others less (two labels on crossing edges get apart only
    when one of them gives way)."""
    choice: dict[int, int] = {}

    def cost(i, k):
        return _overlap(options[i][k][2], [options[j][choice[j]][2] for j in choice if j != i], nodes)

    for i in options:
        choice[i] = min(range(len(LABEL_TS)), key=lambda k: (round(cost(i, k), 9), k))
    for _ in range(4):
        moves = 0
        for i in options:
            best = min(range(len(LABEL_TS)), key=lambda k: (round(cost(i, k), 9), k))
            if cost(i, best) < cost(i, choice[i]) - 1e-9:
                choice[i], moves = best, moves + 1
        if not moves:
            break
    return choice


def _bow(p0, p2, span: int, repeat: int, others) -> float:
    """arc3 curvature of an edge: the least bow (none between adjacent layers, some for an
    edge that skips layers, more for a repeated pair) whose curve clears every other node,
    tried away from the cell's middle first (a repeat flips the side); else the first try."""
    middle = (p0[1] + p2[1]) / 2 or p0[1]   # an edge across the middle: its source's side
    side = (-1.0 if middle >= 0 else 1.0) * (-1.0 if repeat % 2 else 1.0)  # arc3: negative bows up
    first = (0.0 if span <= 1 else 0.45) + 0.35 * repeat
    tries = [(sign, first + 0.4 * k) for sign in (side, -side) for k in range(4)]
    chord = math.dist(p0, p2)
    for sign, apex in tries:  # apex: units off the chord at its middle
        rad = sign * 2 * apex / chord
        curve = [_curve_point(p0, p2, rad, t / 24)[0] for t in range(1, 24)]
        if all(math.dist(c, n) > NODE_RADIUS + 0.15 for c in curve for n in others):
            return rad
    return tries[0][0] * 2 * tries[0][1] / chord


def cell_layout(genotype: object, kind: str) -> CellLayout:
    """Node positions and labelled edges of one cell of ``genotype`` (``"normal"``/``"reduce"``).

    Layered left to right: the two inputs, then each intermediate node one layer past its
    deepest input, then the output node fed by the ``*_concat`` states. Nodes of one layer
    are stacked and centred; a layer's gap fits two of its incoming labels end to end (two
    crossing edges' labels can then part) plus room for a crowd of edges. Edges bow around
    the nodes in their way (:func:`_bow`); each op label lies along its edge at the first of
    a few spots that clears the labels placed before it and the nodes.
    """
    edges, concat = _cell(genotype, kind)
    steps = len(edges) // 2
    names = [*INPUT_NODES, *(str(i) for i in range(steps))]
    depth = [0, 0]
    for node in range(steps):
        depth.append(1 + max(depth[j] for _, j in edges[2 * node:2 * node + 2]))
    into, longest = [0] * (max(depth) + 2), [0] * (max(depth) + 2)   # per layer: op edges, label length
    for e, (op, _) in enumerate(edges):
        into[depth[2 + e // 2]] += 1
        longest[depth[2 + e // 2]] = max(longest[depth[2 + e // 2]], len(op))
    xs = [0.0]
    for d in range(1, max(depth) + 2):
        fit = 2 * longest[d] * CHAR_WIDTH + 2 * NODE_RADIUS + 0.2
        xs.append(xs[-1] + max(LAYER_GAP, fit) + GAP_PER_EDGE * max(0, into[d] - 4))
    nodes, layer_of = {}, {OUTPUT_NODE: max(depth) + 1}
    for d in sorted(set(depth)):
        states = [s for s, ds in enumerate(depth) if ds == d]
        for r, state in enumerate(states):  # first state on top
            nodes[names[state]] = (xs[d], (len(states) - 1) / 2 - r)
            layer_of[names[state]] = d
    nodes[OUTPUT_NODE] = (xs[-1], 0.0)

    pairs = [(names[j], names[2 + e // 2], op) for e, (op, j) in enumerate(edges)]
    pairs += [(names[s], OUTPUT_NODE, "") for s in concat]
    seen: dict[tuple[str, str], int] = {}
    rads = []
    for source, target, _ in pairs:
        repeat = seen[(source, target)] = seen.get((source, target), -1) + 1
        others = [xy for name, xy in nodes.items() if name not in (source, target)]
        rads.append(_bow(nodes[source], nodes[target], layer_of[target] - layer_of[source], repeat, others))
    spots, options = {}, {}
    # Short edges first: they have the fewest free spots, a long edge can dodge their labels.
    for i in sorted(range(len(pairs)), key=lambda i: math.dist(nodes[pairs[i][0]], nodes[pairs[i][1]])):
        p0, p2 = nodes[pairs[i][0]], nodes[pairs[i][1]]
        if pairs[i][2]:
            curve = [_curve_point(p0, p2, rads[i], t) for t in LABEL_TS]
            options[i] = [(xy, a, _label_segment(xy, a, pairs[i][2])) for xy, a in curve]
        else:  # an unlabelled concat edge: only its middle, for the bounds
            spots[i] = _curve_point(p0, p2, rads[i], 0.5)
    for i, k in _place_labels(options, list(nodes.values())).items():
        spots[i] = options[i][k][:2]
    laid = [CellEdge(source, target, label, rads[i], *spots[i]) for i, (source, target, label) in enumerate(pairs)]
    return CellLayout(kind, nodes, tuple(laid))


def _draw_cell(ax, layout: CellLayout, title: str) -> None:
    from matplotlib.patches import Circle, FancyArrowPatch

    x0, x1, y0, y1 = layout.bounds()
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")   # the label positions assume equal scales
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    shrink = NODE_RADIUS * INCH_PER_UNIT * 72  # points: arrows end on the node circles
    for e in layout.edges:
        concat = not e.label
        ax.add_patch(FancyArrowPatch(
            layout.nodes[e.source], layout.nodes[e.target], connectionstyle=f"arc3,rad={e.rad}",
            arrowstyle="-|>", mutation_scale=9, shrinkA=shrink, shrinkB=shrink, lw=0.9,
            color="0.55" if concat else "0.15", linestyle="--" if concat else "-", zorder=1))
        if e.label:
            ax.text(*e.label_xy, e.label, fontsize=LABEL_FONT_PT, ha="center", va="center", rotation=e.label_angle,
                    rotation_mode="anchor", zorder=3,
                    bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.85))
    colours = {name: "#c1e1c1" for name in INPUT_NODES} | {OUTPUT_NODE: "#eee8aa"}
    for name, xy in layout.nodes.items():
        ax.add_patch(Circle(xy, NODE_RADIUS, fc=colours.get(name, "#add8e6"), ec="0.2", lw=0.9, zorder=2))
        text = f"${name}$" if name.startswith("c_") else name  # c_{k-2} etc. as mathtext
        ax.text(*xy, text, fontsize=8, ha="center", va="center", zorder=4)


def genotype_figure(genotype: object):
    """A matplotlib ``Figure`` of both cells (normal above reduction), not yet saved."""
    from matplotlib.figure import Figure

    layouts = [(cell_layout(genotype, kind), title) for kind, title in CELLS]
    title_in, pad_in = 0.35, 0.1
    sizes = [((b[1] - b[0]) * INCH_PER_UNIT, (b[3] - b[2]) * INCH_PER_UNIT)
             for b in (layout.bounds() for layout, _ in layouts)]
    width = max(w for w, _ in sizes) + 2 * pad_in
    height = sum(h + title_in for _, h in sizes) + pad_in
    fig = Figure(figsize=(width, height))
    top = height
    # Axes boxes sized to their data in inches, so equal scaling leaves them as placed.
    for (layout, title), (w, h) in zip(layouts, sizes):
        top -= title_in + h
        ax = fig.add_axes(((width - w) / 2 / width, top / height, w / width, h / height))
        _draw_cell(ax, layout, title)
    return fig


def draw_genotype(genotype: object, path: str, dpi: int = 120) -> None:
    """Write both cells of ``genotype`` (a ``Genotype`` or its dict) as one PNG, atomically."""
    fig = genotype_figure(genotype)   # a bad genotype raises here, before the file is touched
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, facecolor="white"))


# ----------------------------------------------------------------------------- alphas GIF

def _edge_names(num_edges: int, where: str) -> list[str]:
    """Row labels "input→node" of a cell with ``num_edges`` edges (node i has 2 + i inputs)."""
    steps, total = 0, 0
    while total < num_edges:
        total += 2 + steps
        steps += 1
    if total != num_edges:
        raise ValueError(f"{where} has {num_edges} rows, which is no cell's edge count (2+3+...: 2, 5, 9, 14, ...)")
    states = [f"${n}$" for n in INPUT_NODES] + [str(i) for i in range(steps)]
    return [f"{states[j]}→{node}" for node in range(steps) for j in range(2 + node)]


def _alpha_arrays(history: Sequence[Mapping], op_names: Sequence[str]) -> list[tuple[object, np.ndarray, np.ndarray]]:
    """(epoch, normal, reduce) per record as float arrays [edges, ops], checked."""
    if isinstance(history, (str, bytes)) or not isinstance(history, Sequence) or not history:
        raise ValueError("alphas_gif needs a non-empty history (a list of epoch records)")
    if isinstance(op_names, str) or not op_names or not all(isinstance(n, str) for n in op_names):
        raise ValueError(f"op_names must be a non-empty list of op names, got {op_names!r}")
    rows, shapes = [], {}
    for i, record in enumerate(history):
        if not isinstance(record, Mapping):
            raise ValueError(f"history record {i} is a {type(record).__name__}, not an epoch record (a dict)")
        epoch = record.get("epoch", i + 1)
        arrays = []
        for key in ("alphas_normal", "alphas_reduce"):
            where = f"history record {i} (epoch {epoch}) {key}"
            if key not in record:
                raise ValueError(f"history record {i} (epoch {epoch}) has no {key!r}")
            try:
                a = np.asarray(record[key], dtype=float)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{where} is not a [edges][ops] table of numbers: {e}") from e
            if a.ndim != 2 or a.shape[0] == 0:
                raise ValueError(f"{where} has shape {a.shape}; expected [edges][ops]")
            if a.shape[1] != len(op_names):
                raise ValueError(f"{where} has {a.shape[1]} ops per edge but {len(op_names)} op names were "
                                 f"given ({', '.join(op_names)})")
            if shapes.setdefault(key, a.shape) != a.shape:
                raise ValueError(f"{where} has shape {a.shape}, but record 0's has {shapes[key]}")
            arrays.append(a)
        rows.append((epoch, *arrays))
    return rows


def alpha_frames(history: Sequence[Mapping], op_names: Sequence[str], dpi: int = 80):
    """One RGB ``PIL.Image`` per record: both cells' alphas as heat maps [edge × op] on a
    fixed 0..1 colour scale (so brightness compares across frames), titled with the epoch.

    One figure is drawn once and only its image data and titles change per frame, which
    keeps a long history fast to render and its memory at one figure plus the frames.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    rows = _alpha_arrays(history, op_names)
    _, first_normal, first_reduce = rows[0]
    edges = max(len(first_normal), len(first_reduce))
    fig = Figure(figsize=(3.4 + 0.9 * len(op_names), 1.4 + 0.16 * edges), dpi=dpi, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    images = []
    for ax, data, (_kind, title) in zip(axes, (first_normal, first_reduce), CELLS):
        images.append(ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto", interpolation="nearest"))
        ax.set_xticks(range(len(op_names)), op_names, rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(len(data)), _edge_names(len(data), f"alphas of the {title}"), fontsize=6)
        ax.set_title(title, fontsize=9)
    fig.colorbar(images[0], ax=list(axes), label="softmax(α)", shrink=0.9)
    heading = fig.suptitle("", fontsize=10)
    frames = []
    for i, (epoch, normal, reduce) in enumerate(rows):
        images[0].set_data(normal)
        images[1].set_data(reduce)
        # The frame count also keeps two records with equal alphas and epoch distinct:
        # Pillow merges identical consecutive GIF frames, and each record must stay a frame.
        heading.set_text(f"epoch {epoch}  ({i + 1}/{len(rows)})")
        canvas.draw()
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        frames.append(Image.fromarray(np.ascontiguousarray(rgb)).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=256))
    return frames


def alphas_gif(history: Sequence[Mapping], op_names: Sequence[str], path: str, fps: float = 2) -> None:
    """Write the per-epoch alphas of both cells as an animated GIF (one frame per history
    record, looping, the last frame held three times as long), atomically."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 50:
        raise ValueError(f"fps must be a number in (0, 50], got {fps!r}")
    frames = alpha_frames(history, op_names)
    step_ms = max(20, round(1000 / fps))   # GIF delays are in 10 ms units; browsers floor tiny ones
    durations = [step_ms] * (len(frames) - 1) + [3 * step_ms]
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=durations, loop=0, disposal=1))
