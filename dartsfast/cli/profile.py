"""``dartsfast profile``: block latency and accelerator use, and the search space's latency LUT.

    dartsfast profile --preset effnetv2-s --dtypes bf16 --layouts channels_last --batch-sizes 128 \\
        --modes training --out prof.json --markdown prof.md --plot stages.png --roofline roofline.png
    dartsfast profile --shape 48,64,96,96,2,4 --blocks mbconv,fused_mbconv,dsconv --device cpu
    dartsfast profile --lut lut.json --space dsconv_3x3,mbconv_3x3,fused_mbconv_3x3,none

Without ``--preset``/``--shape`` it profiles EfficientNetV2-S, unless ``--lut`` is given
(then it only builds the LUT). Bad values (unknown preset, malformed ``--shape``, unknown
dtype ...) raise ValueError, which ``dartsfast.cli.main`` reports with exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys

from dartsfast import records
from dartsfast.backend import BACKENDS, BackendUnavailableError, why_unavailable
from dartsfast.cli._argtypes import non_negative_int, positive_float, positive_int
from dartsfast.profiling import plots, presets, report
from dartsfast.profiling.ceilings import DTYPES
from dartsfast.profiling.lut import build_lut, save_lut
from dartsfast.profiling.models import MODES
from dartsfast.profiling.profiler import DTYPE_ALIASES, IMPLS, LAYOUT_ALIASES, LAYOUTS, ProfileRun, iter_cases
from dartsfast.rundir import check_output_file
from dartsfast.runtime import resolve_device
from dartsfast.search import DEFAULT_OPS
from dartsfast.search.space import check_op_names
from dartsfast.timing import num_threads

DEFAULT_DTYPES = {"cuda": "bf16", "cpu": "fp32"}
DEFAULT_LAYOUTS = {"cuda": "channels_last", "cpu": "nchw"}
DEFAULT_BATCH = {"cuda": "128", "cpu": "8"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "profile", help="block latency, TFLOP/s, GB/s and memory (MBConv vs Fused-MBConv); latency LUT",
        description="Block latency, TFLOP/s, GB/s and memory per block × dtype × layout × impl × mode × "
                    "batch (MBConv vs Fused-MBConv per stage), and the search space's latency LUT.")
    what = p.add_argument_group("what to profile")
    what.add_argument("--blocks", default="mbconv,fused_mbconv",
                      help=f"comma list of {', '.join(presets.BLOCKS)} (default mbconv,fused_mbconv)")
    what.add_argument("--se", default="", help="SE ratio per block, e.g. fused_mbconv=0.25 (default: "
                      "EfficientNetV2's: mbconv 0.25, fused_mbconv 0, dsconv 0.25)")
    what.add_argument("--preset", action="append", default=[],
                      help=f"{' | '.join(presets.PRESETS)}; repeatable or a comma list")
    what.add_argument("--shape", action="append", default=[], help=f"a user shape {presets.SHAPE_FORMAT}; repeatable")
    what.add_argument("--input-size", type=positive_int, default=None,
                      help="input resolution (default: effnetv2-s 384, effnet-b0 224, seed and LUT 28)")
    what.add_argument("--channels", type=positive_int, default=presets.SEED_CHANNELS,
                      help="first-cell channels of the seed preset and the LUT (default 16)")
    what.add_argument("--layers", type=positive_int, default=presets.SEED_LAYERS,
                      help="cells of the seed preset and the LUT supernet (default 8)")
    how = p.add_argument_group("how")
    how.add_argument("--dtypes", default=None,
                     help="comma list of fp32, bf16, fp16 (default bf16 on CUDA, fp32 on CPU)")
    how.add_argument("--layouts", default=None,
                     help="comma list of nchw, channels_last (default channels_last on CUDA, nchw on CPU)")
    how.add_argument("--impls", default="eager,compile,fused", help="comma list of eager, compile, fused")
    how.add_argument("--modes", default="inference,training", help="comma list of inference, training")
    how.add_argument("--batch-sizes", default=None, help="comma list (default 128 on CUDA, 8 on CPU)")
    how.add_argument("--device", default="auto", help="'auto' (CUDA if visible), 'cpu', 'cuda:1', ...")
    how.add_argument("--repeats", type=positive_int, default=20, help="timed calls per case (default 20)")
    how.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls per case (default 5)")
    how.add_argument("--cuda-graph", action="store_true", help="also time CUDA-graph replay (launch overhead)")
    how.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; CPU aot_eager)")
    how.add_argument("--fused-backend", choices=BACKENDS, default="auto", help="dartsfast backend of the fused impl")
    how.add_argument("--max-seconds", type=positive_float, default=None, help="skip the cases left after this")
    how.add_argument("--compile-budget", type=positive_float, default=None,
                     help="seconds of compilation after which compile cases are skipped")
    how.add_argument("--threads", type=positive_int, default=None, help="CPU threads (1 is robust on shared runners)")
    how.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    out = p.add_argument_group("outputs")
    out.add_argument("--out", default=None, help="records as JSON (schema: dartsfast.records)")
    out.add_argument("--markdown", default=None, help="Markdown report: MBConv vs Fused-MBConv per stage + records")
    out.add_argument("--plot", default=None, help="PNG: latency per stage for each block")
    out.add_argument("--roofline", default=None, help="PNG: roofline with every block as a point")
    out.add_argument("--plot-size", default="1200x700", help="PNG size in pixels, WIDTHxHEIGHT (default 1200x700)")
    out.add_argument("--lut", default=None, help="write the search space's latency lookup table here (JSON)")
    out.add_argument("--space", default=",".join(DEFAULT_OPS), help=f"LUT ops (default {','.join(DEFAULT_OPS)})")
    out.add_argument("--lut-mode", choices=("inference", "training"), default="inference",
                     help="LUT timing: forward, or forward + backward")
    p.set_defaults(handler=run)
    return p


def _batch_sizes(text: str) -> tuple[int, ...]:
    values = []
    for field in str(text).split(","):
        try:
            value = int(field.strip())
        except ValueError:
            raise ValueError(f"--batch-sizes {text!r}: {field.strip()!r} is not an integer") from None
        if value < 1:
            raise ValueError(f"--batch-sizes {text!r}: batch sizes must be ≥ 1, got {value}")
        values.append(value)
    return tuple(dict.fromkeys(values))


def _shapes(args) -> list:
    names = presets.parse_list(",".join(args.preset), presets.PRESETS, "preset(s)") if args.preset else ()
    if not names and not args.shape and not args.lut:
        names = ("effnetv2-s",)
    shapes = []
    for name in names:
        if name == "seed":
            shapes += presets.seed(args.channels, args.layers, args.input_size or presets.SEED_IMAGE_SIZE)
        else:
            shapes += presets.preset_shapes(name, args.input_size)
    return shapes + [presets.parse_shape(s) for s in args.shape]


def _parent(path: str | None, flag: str) -> None:
    if path:
        check_output_file(path, flag)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def run(args: argparse.Namespace) -> int:
    try:
        device = resolve_device(args.device, "--device")
    except RuntimeError as exc:  # torch.device("gpu") raises RuntimeError
        raise ValueError(f"--device {args.device!r}: {exc}") from None
    kind = device.type if device.type in DEFAULT_DTYPES else "cpu"
    dtypes = presets.parse_list(args.dtypes or DEFAULT_DTYPES[kind], tuple(DTYPES), "dtype(s)", DTYPE_ALIASES)
    layouts = presets.parse_list(args.layouts or DEFAULT_LAYOUTS[kind], LAYOUTS, "layout(s)", LAYOUT_ALIASES)
    impls = presets.parse_list(args.impls, IMPLS, "impl(s)")
    modes = presets.parse_list(args.modes, MODES, "mode(s)")
    blocks = presets.parse_list(args.blocks, presets.BLOCKS, "block(s)")
    se = presets.parse_se(args.se)
    batch_sizes = _batch_sizes(args.batch_sizes or DEFAULT_BATCH[kind])
    size = plots.parse_size(args.plot_size)
    if "fused" in impls:
        reason = why_unavailable(args.fused_backend)
        if reason:  # every fused case would fail the same way: say so once, up front
            raise BackendUnavailableError(f"--fused-backend {args.fused_backend}: {reason}")
    shapes = _shapes(args)
    lut_ops = _lut_ops(args, dtypes, layouts, batch_sizes) if args.lut else ()  # checked before a long sweep
    for flag, path in (("--out", args.out), ("--markdown", args.markdown), ("--plot", args.plot),
                       ("--roofline", args.roofline), ("--lut", args.lut)):
        _parent(path, flag)
    if shapes:
        specs = presets.block_specs(shapes, blocks, se)
        _profile(args, device, specs, dtypes, layouts, impls, modes, batch_sizes, size)
    if args.lut:
        _lut(args, device, lut_ops, dtypes[0], layouts[0], batch_sizes[0])
    return 0


def _profile(args, device, specs, dtypes, layouts, impls, modes, batch_sizes, size) -> None:
    run = ProfileRun(device, dtypes, warmup=args.warmup, repeats=args.repeats, cuda_graph=args.cuda_graph,
                     compile_backend=args.compile_backend, fused_backend=args.fused_backend,
                     max_seconds=args.max_seconds, compile_budget_s=args.compile_budget,
                     progress=args.progress, threads=args.threads)
    config = dict(blocks=list(dict.fromkeys(s.block for s in specs)),
                  se_ratio={s.block: s.se_ratio for s in specs}, dtypes=list(dtypes), layouts=list(layouts),
                  impls=list(impls), modes=list(modes), batch_sizes=list(batch_sizes),
                  presets=list(args.preset), shapes=list(args.shape), input_size=args.input_size)
    complete = False
    try:
        run.run(iter_cases(specs, dtypes, layouts, impls, modes, batch_sizes))
        complete = True
    finally:  # an interrupted sweep still leaves what it measured (marked incomplete)
        doc = run.document(config, complete=complete)
        if args.out:
            records.write_document(args.out, doc)
        if args.markdown:
            report.write_markdown(args.markdown, doc)
    if args.plot:
        plots.plot_stage_latency(doc["records"], args.plot, size=size)
    if args.roofline:
        plots.plot_roofline(doc["records"], doc["ceilings"], args.roofline, size=size)
    counts = {s: sum(r["status"] == s for r in doc["records"]) for s in records.PROFILE_STATUSES}
    print(report.comparison_markdown(doc["records"]))
    print(f"profile: {len(doc['records'])} records ({', '.join(f'{n} {s}' for s, n in counts.items() if n)}) "
          f"on {doc['environment']['device_name']} in {doc['seconds']:.1f} s"
          + "".join(f"; {what} {p}" for what, p in (("records", args.out), ("report", args.markdown),
                                                     ("stage plot", args.plot), ("roofline", args.roofline)) if p))
    for r in doc["records"]:
        if r["status"] == "error":
            print(f"profile: error in {r['block']}@{r['label']} {r['dtype']} {r['impl']} {r['mode']}: {r['reason']}",
                  file=sys.stderr)


def _lut_ops(args, dtypes, layouts, batch_sizes) -> tuple:
    for what, values in (("--dtypes", dtypes), ("--layouts", layouts), ("--batch-sizes", batch_sizes)):
        if len(values) != 1:
            raise ValueError(f"a LUT is measured for one dtype, layout and batch size; {what} gave {list(values)}")
    return check_op_names(s.strip() for s in args.space.split(",") if s.strip())


def _lut(args, device, ops, dtype, layout, batch) -> None:
    with num_threads(args.threads if device.type == "cpu" else None):
        lut = build_lut(ops, channels=args.channels, layers=args.layers, image_size=args.input_size or 28,
                        device=device, dtype=dtype, layout=layout, mode=args.lut_mode, batch=batch,
                        warmup=args.warmup, repeats=args.repeats, progress=args.progress)
    save_lut(args.lut, lut)
    print(f"lut: {len(lut.entries)} entries ({len(ops)} ops × {len(lut.entries) // len(ops)} cell positions) "
          f"on {lut.header['device_name']}, {lut.header['dtype']}, {lut.header['layout']}, batch "
          f"{lut.header['batch']} → {args.lut}")
