"""The bad-input corpus (issue 15): what a demanding new user tried against the CLI and the
Python API, each case with the exit status (or exception) and a phrase of the message.

CLI cases run ``dartsfast.cli.main`` in this process and fail before any data is loaded
or network built (a few ms each), except those that need a search's real checkpoint,
which share one tiny search. The exit statuses are the CLI's contract (README): 1 the run
failed on its own terms, 2 bad usage or input, 3 I/O or environment, 4 internal error.
"""
import errno
import json
import os
import zipfile

import pytest
from sample_genotypes import GENO_SKIP

from dartsfast.cli import EXIT_ENVIRONMENT, EXIT_FAILURE, EXIT_INTERNAL, EXIT_USAGE, main
from dartsfast.rundir import run_directory
from dartsfast.search import SearchConfig, search
from dartsfast.search.checkpoint import CHECKPOINT_FILE
from dartsfast.search.space import Genotype
from dartsfast.train import TrainConfig, train

QUICK = ["--device", "cpu", "--no-progress"]
SEARCH = ["search", *QUICK, "--no-plots", "--out", "{out}"]
# The tiny search of tests/cli/test_cli.py: ~2 s on 2 cores.
TINY = [*SEARCH, "--dataset", "synthetic", "--synthetic-size", "96", "--image-size", "8", "--epochs", "1",
        "--batch-size", "16", "--layers", "3", "--channels", "4", "--ops", "skip_connect,dsconv_3x3,none"]
TRAIN = ["train", *QUICK, "--genotype", "{genotype}"]


def _genotype(**changes) -> str:
    d = GENO_SKIP.to_dict()
    for key, value in changes.items():
        cell, _, index = key.partition("__")
        if index:
            d[cell][int(index)] = value
        else:
            d[cell] = value
    return json.dumps(d)


CLI_CASES = [
    # --- flags and values (argparse types) ------------------------------------------------
    ("epochs-zero", [*SEARCH, "--epochs", "0"], EXIT_USAGE, "expected a positive integer, got 0"),
    ("epochs-negative", [*SEARCH, "--epochs", "-3"], EXIT_USAGE, "expected a positive integer"),
    ("epochs-text", [*SEARCH, "--epochs", "ten"], EXIT_USAGE, "got 'ten'"),
    ("epochs-float", [*SEARCH, "--epochs", "2.5"], EXIT_USAGE, "got '2.5'"),
    ("batch-size-zero", [*SEARCH, "--batch-size", "0"], EXIT_USAGE, "--batch-size"),
    ("channels-zero", [*SEARCH, "--channels", "0"], EXIT_USAGE, "--channels"),
    ("image-size-zero", [*SEARCH, "--image-size", "0"], EXIT_USAGE, "--image-size"),
    ("synthetic-size-zero", [*SEARCH, "--synthetic-size", "0"], EXIT_USAGE, "--synthetic-size"),
    ("partial-channels-zero", [*SEARCH, "--partial-channels", "0"], EXIT_USAGE, "--partial-channels"),
    ("max-train-samples-zero", [*SEARCH, "--max-train-samples", "0"], EXIT_USAGE, "--max-train-samples"),
    ("threads-zero", [*SEARCH, "--threads", "0"], EXIT_USAGE, "--threads"),
    ("seed-huge", [*SEARCH, "--seed", "99999999999999999999"], EXIT_USAGE, "expected a seed in [0, 4294967295]"),
    ("seed-2-to-the-32", [*SEARCH, "--seed", str(2**32)], EXIT_USAGE, "expected a seed"),
    ("seed-negative", [*SEARCH, "--seed", "-1"], EXIT_USAGE, "expected a seed"),
    ("seed-float", [*SEARCH, "--seed", "1.5"], EXIT_USAGE, "expected an integer seed"),
    ("order-3", [*SEARCH, "--order", "3"], EXIT_USAGE, "invalid choice: 3"),
    ("amp-fp8", [*SEARCH, "--amp", "fp8"], EXIT_USAGE, "invalid choice: 'fp8'"),
    ("dataset-unknown", [*SEARCH, "--dataset", "imagenet"], EXIT_USAGE, "invalid choice: 'imagenet'"),
    ("backend-unknown", [*SEARCH, "--backend", "opencl"], EXIT_USAGE, "invalid choice: 'opencl'"),
    ("compile-unknown", [*SEARCH, "--compile", "tvm"], EXIT_USAGE, "invalid choice: 'tvm'"),
    ("ops-unknown", [*SEARCH, "--ops", "dsconv_3x3,conv_9x9"], EXIT_USAGE, "unknown op(s) 'conv_9x9'"),
    ("ops-bad-variant", [*SEARCH, "--ops", "mbconv_3x3_e99"], EXIT_USAGE, "unknown op"),
    ("train-fraction-above-1", [*SEARCH, "--train-fraction", "1.5"], EXIT_USAGE, "SearchConfig.train_fraction"),
    ("train-fraction-nan", [*SEARCH, "--train-fraction", "nan"], EXIT_USAGE, "SearchConfig.train_fraction"),
    ("w-lr-negative", [*SEARCH, "--w-lr", "-0.1"], EXIT_USAGE, "SearchConfig.w_lr"),
    ("w-lr-inf", [*SEARCH, "--w-lr", "inf"], EXIT_USAGE, "SearchConfig.w_lr"),
    ("alpha-lr-zero", [*SEARCH, "--alpha-lr", "0"], EXIT_USAGE, "SearchConfig.alpha_lr"),
    ("warmup-takes-every-epoch", [*SEARCH, "--epochs", "2", "--warmup-epochs", "2"], EXIT_USAGE,
     "SearchConfig.warmup_epochs"),
    ("warmup-negative", [*SEARCH, "--warmup-epochs", "-1"], EXIT_USAGE, "--warmup-epochs"),
    ("beta-decay-negative", [*SEARCH, "--beta-decay", "-1"], EXIT_USAGE, "SearchConfig.beta_decay"),
    ("beta-decay-nan", [*SEARCH, "--beta-decay", "nan"], EXIT_USAGE, "beta"),
    ("layers-2", [*SEARCH, "--layers", "2"], EXIT_USAGE, "SearchConfig.layers"),
    ("latency-weight-negative", [*SEARCH, "--latency-lut", "auto", "--latency-weight", "-1"], EXIT_USAGE,
     "SearchConfig.latency_weight"),
    ("latency-weight-nan", [*SEARCH, "--latency-lut", "auto", "--latency-weight", "nan"], EXIT_USAGE,
     "SearchConfig.latency_weight"),
    ("latency-weight-without-lut", [*SEARCH, "--latency-weight", "1"], EXIT_USAGE, "needs SearchConfig.latency_lut"),
    ("latency-target-zero", [*SEARCH, "--latency-lut", "auto", "--latency-target", "0"], EXIT_USAGE,
     "SearchConfig.latency_target_ms"),
    ("latency-constraint-without-target", [*SEARCH, "--latency-lut", "auto", "--latency-form", "constraint"],
     EXIT_USAGE, "needs SearchConfig.latency_target_ms"),
    ("latency-form-unknown", [*SEARCH, "--latency-form", "flops"], EXIT_USAGE, "invalid choice: 'flops'"),
    ("latency-lut-missing", [*TINY, "--latency-lut", "{tmp}/none.json"], EXIT_USAGE, "none.json"),
    ("latency-lut-not-json", [*TINY, "--latency-lut", "{file}"], EXIT_USAGE, "is not valid JSON"),
    ("device-cuda-without-gpu", [*SEARCH, "--device", "cuda:0"], EXIT_USAGE, "no CUDA device is visible"),
    ("device-garbage", [*SEARCH, "--device", "warp9"], EXIT_USAGE, "SearchConfig.device"),
    ("no-subcommand", [], EXIT_USAGE, "required"),
    # --- sizes that cannot fit, refused up front with the estimate ----------------------------
    ("channels-100000", [*SEARCH, "--channels", "100000"], EXIT_USAGE, "needs at least"),
    ("image-size-10000", [*SEARCH, "--image-size", "10000"], EXIT_USAGE, "needs at least"),
    ("synthetic-size-1e9", [*SEARCH, "--dataset", "synthetic", "--synthetic-size", "1000000000"],
     EXIT_USAGE, "or --synthetic-size"),
    ("batch-size-1e7", [*SEARCH, "--batch-size", "10000000"], EXIT_USAGE, "lower --batch-size"),
    ("train-channels-100000", [*TRAIN, "--channels", "100000"], EXIT_USAGE, "needs at least"),
    # --- the run directory ------------------------------------------------------------------
    ("resume-and-overwrite", [*SEARCH, "--resume", "--overwrite"], EXIT_USAGE, "exclude each other"),
    ("resume-without-checkpoint", [*SEARCH, "--resume"], EXIT_USAGE, "no checkpoint at"),
    ("out-is-a-file", [*SEARCH[:-1], "{file}"], EXIT_USAGE, "is a file, not a directory"),
    ("out-under-a-file", [*SEARCH[:-1], "{file}/run"], EXIT_USAGE, "which is a file"),
    ("out-in-use", [*SEARCH, "@locked"], EXIT_USAGE, "in use by another dartsfast run (PID"),
    ("train-out-is-a-file", [*TRAIN, "--out", "{file}"], EXIT_USAGE, "is a file, not a directory"),
    # --- data ---------------------------------------------------------------------------------
    ("fashion-mnist-no-dir", [*SEARCH, "--dataset", "fashion-mnist"], EXIT_USAGE, "Fashion-MNIST"),
    ("fashion-mnist-empty-dir", [*SEARCH, "--dataset", "fashion-mnist", "--data-dir", "{tmp}"],
     EXIT_USAGE, "pass --download"),
    ("fashion-mnist-empty-files", [*SEARCH, "--dataset", "fashion-mnist", "--data-dir", "{tmp}", "@fmnist-empty"],
     EXIT_USAGE, "is empty (0 bytes)"),
    ("fashion-mnist-garbage", [*SEARCH, "--dataset", "fashion-mnist", "--data-dir", "{tmp}", "@fmnist-garbage"],
     EXIT_USAGE, "is not a valid idx file"),
    ("cifar10-garbage", [*SEARCH, "--dataset", "cifar10", "--data-dir", "{tmp}", "@cifar-garbage"],
     EXIT_USAGE, "is not a valid CIFAR-10 pickle"),
    ("batch-larger-than-data", [*SEARCH, "--batch-size", "5000"], EXIT_USAGE, "exceeds"),
    # --- your own image folder (--dataset imagefolder) --------------------------------------------
    ("imagefolder-no-data-dir", [*SEARCH, "--dataset", "imagefolder"], EXIT_USAGE,
     "SearchConfig.data_dir must be the image folder"),
    ("imagefolder-missing", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}/none"], EXIT_USAGE,
     "none does not exist"),
    ("imagefolder-is-a-file", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{file}"], EXIT_USAGE,
     "is not a directory"),
    ("imagefolder-no-train", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}"], EXIT_USAGE,
     "has no train/ folder"),
    ("imagefolder-single-class", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}/imf", "@imf-single"],
     EXIT_USAGE, "holds a single class folder (cats)"),
    ("imagefolder-empty-class", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}/imf", "@imf-empty-class"],
     EXIT_USAGE, "imf/train/dogs holds no images"),
    ("imagefolder-only-corrupt", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}/imf", "@imf-corrupt"],
     EXIT_USAGE, "imf/train/dogs holds no readable images"),
    ("imagefolder-mixed-modes", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}/imf", "@imf-mixed"],
     EXIT_USAGE, "pass --image-mode rgb"),
    ("train-imagefolder-no-train", [*TRAIN, "--dataset", "imagefolder", "--data-dir", "{tmp}"], EXIT_USAGE,
     "has no train/ folder"),
    ("image-mode-unknown", [*SEARCH, "--image-mode", "cmyk"], EXIT_USAGE, "invalid choice: 'cmyk'"),
    ("data-memory-negative", [*SEARCH, "--data-memory-gb", "-1"], EXIT_USAGE, "SearchConfig.data_memory_gb"),
    ("data-memory-nan", [*TRAIN, "--data-memory-gb", "nan"], EXIT_USAGE, "TrainConfig.data_memory_gb"),
    ("data-workers-negative", [*SEARCH, "--data-workers", "-1"], EXIT_USAGE, "--data-workers"),
    # sized before the scan (no dataset term: the folder may be streamed), so refused before reading it
    ("imagefolder-image-size-10000", [*SEARCH, "--dataset", "imagefolder", "--data-dir", "{tmp}", "--image-size",
                                      "10000"], EXIT_USAGE, "needs at least"),
    # --- genotype files for train ---------------------------------------------------------------
    ("genotype-missing", ["train", *QUICK, "--genotype", "{tmp}/none.json"], EXIT_USAGE, "genotype file not found"),
    ("genotype-not-json", [*TRAIN, "@genotype:{not json"], EXIT_USAGE, "genotype"),
    ("genotype-index-float", [*TRAIN, "@genotype:" + _genotype(normal__0=["skip_connect", 1.7])],
     EXIT_USAGE, "1.7 (float)"),
    ("genotype-index-bool", [*TRAIN, "@genotype:" + _genotype(normal__1=["skip_connect", True])],
     EXIT_USAGE, "True (bool)"),
    ("genotype-index-str", [*TRAIN, "@genotype:" + _genotype(normal__0=["skip_connect", "1"])],
     EXIT_USAGE, "'1' (str)"),
    ("genotype-index-infinity", [*TRAIN, "@genotype:" + _genotype(normal__0=["skip_connect", float("inf")])],
     EXIT_USAGE, "inf"),
    ("genotype-concat-float", [*TRAIN, "@genotype:" + _genotype(normal_concat=[2, 3, 4, 5.5])],
     EXIT_USAGE, "normal_concat has 5.5"),
    ("genotype-unknown-op", [*TRAIN, "@genotype:" + _genotype(reduce__2=["warp", 0])], EXIT_USAGE, "unknown op 'warp'"),
    ("train-cutout-negative", [*TRAIN, "--cutout", "-1"], EXIT_USAGE, "TrainConfig.cutout"),
    ("train-drop-path-1", [*TRAIN, "--drop-path", "1.0"], EXIT_USAGE, "TrainConfig.drop_path_prob"),
    ("train-lr-zero", [*TRAIN, "--lr", "0"], EXIT_USAGE, "TrainConfig.lr"),
    ("train-seed-huge", [*TRAIN, "--seed", str(2**70)], EXIT_USAGE, "expected a seed"),
    # --- other commands' outputs, checked before the work ------------------------------------------
    ("profile-out-under-a-file", ["profile", "--device", "cpu", "--blocks", "dsconv", "--out", "{file}/p.json",
                                  "@profile"], EXIT_USAGE, "which is a file; pick another --out"),
    ("bench-compare-json-is-a-dir", ["bench", "compare", "{tmp}/a.json", "{tmp}/a.json", "--json", "{tmp}",
                                     "@bench-result"], EXIT_USAGE, "is a directory; give a file name"),
    ("bench-ops-json-under-a-file", ["bench", "ops", "--json", "{file}/ops.json"], EXIT_USAGE, "which is a file"),
    ("bench-compare-missing", ["bench", "compare", "{tmp}/none.json", "{tmp}/none.json"], EXIT_USAGE, "none.json"),
    # --- evaluate and random-search (issue 17): refused before any data is loaded ------------------
    ("evaluate-no-genotype", ["evaluate", *QUICK, "--out", "{out}"], EXIT_USAGE, "GENOTYPE"),
    ("evaluate-seeds-zero", ["evaluate", *QUICK, "ref:all-dsconv", "--seeds", "0", "--out", "{out}"], EXIT_USAGE,
     "expected a positive integer, got 0"),
    ("evaluate-unknown-ref", ["evaluate", *QUICK, "ref:resnet50", "--out", "{out}"], EXIT_USAGE,
     "unknown reference genotype 'resnet50'; known: ref:all-dsconv"),
    ("evaluate-ref-without-prefix", ["evaluate", *QUICK, "all-mbconv", "--out", "{out}"], EXIT_USAGE,
     "write ref:all-mbconv"),
    ("evaluate-genotype-missing", ["evaluate", *QUICK, "{tmp}/none.json", "--out", "{out}"], EXIT_USAGE,
     "none.json not found"),
    ("evaluate-genotype-corrupt", ["evaluate", *QUICK, "{genotype}", "@genotype:{not json", "--out", "{out}"],
     EXIT_USAGE, "is not valid JSON"),
    ("evaluate-genotype-unknown-op", ["evaluate", *QUICK, "{genotype}", "@genotype:" + _genotype(reduce__2=["warp", 0]),
                                      "--out", "{out}"], EXIT_USAGE, "unknown op 'warp'"),
    ("evaluate-listed-twice", ["evaluate", *QUICK, "ref:all-dsconv", "ref:all-dsconv", "--out", "{out}"], EXIT_USAGE,
     "listed twice: ref:all-dsconv"),
    ("evaluate-latency-batch-zero", ["evaluate", *QUICK, "ref:all-dsconv", "--latency-batch", "0"], EXIT_USAGE,
     "--latency-batch"),
    ("evaluate-seed-base-huge", ["evaluate", *QUICK, "ref:all-dsconv", "--seed-base", str(2**32)], EXIT_USAGE,
     "expected a seed"),
    ("evaluate-seeds-past-max-seed", ["evaluate", *QUICK, "ref:all-dsconv", "--seed-base", str(2**32 - 1),
                                      "--seeds", "2", "--out", "{out}"], EXIT_USAGE, "seed_base"),
    ("evaluate-out-is-a-file", ["evaluate", *QUICK, "ref:all-dsconv", "--out", "{file}"], EXIT_USAGE,
     "is a file, not a directory"),
    ("random-search-no-budget", ["random-search", *QUICK, "--out", "{out}"], EXIT_USAGE,
     "give the random search a budget"),
    ("random-search-budget-below-samples", ["random-search", *QUICK, "--budget-epochs", "2", "--samples", "3",
                                            "--out", "{out}"], EXIT_USAGE, "too small for 3 samples"),
    ("random-search-budget-below-one-sample", ["random-search", *QUICK, "--budget-epochs", "2",
                                               "--epochs-per-sample", "3", "--out", "{out}"], EXIT_USAGE,
     "too small for one sample of 3 epochs"),
    ("random-search-samples-over-budget", ["random-search", *QUICK, "--budget-epochs", "4", "--samples", "3",
                                           "--epochs-per-sample", "2", "--out", "{out}"], EXIT_USAGE,
     "need 6 epochs, more than the budget of 4"),
    ("random-search-budget-seconds-zero", ["random-search", *QUICK, "--budget-seconds", "0"], EXIT_USAGE,
     "--budget-seconds"),
    ("random-search-samples-zero", ["random-search", *QUICK, "--samples", "0"], EXIT_USAGE, "--samples"),
    ("random-search-only-none", ["random-search", *QUICK, "--samples", "2", "--ops", "none"], EXIT_USAGE,
     "besides 'none'"),
    ("random-search-out-is-a-file", ["random-search", *QUICK, "--samples", "2", "--out", "{file}"], EXIT_USAGE,
     "is a file, not a directory"),
]


def _prepare(argv: list, tmp) -> list:
    """Make the files a case names, and fill in its paths."""
    genotype = tmp / "genotype.json"
    genotype.write_text(GENO_SKIP.to_json())
    (tmp / "file").write_text("not a directory")
    out = []
    for arg in argv:
        if arg.startswith("@genotype:"):
            genotype.write_text(arg[len("@genotype:"):])
        elif arg in ("@fmnist-empty", "@fmnist-garbage"):
            raw = tmp / "FashionMNIST" / "raw"
            raw.mkdir(parents=True)
            for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                         "t10k-labels-idx1-ubyte"):
                (raw / name).write_bytes(b"" if arg == "@fmnist-empty" else os.urandom(64))
        elif arg == "@cifar-garbage":
            base = tmp / "cifar-10-batches-py"
            base.mkdir()
            for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
                (base / name).write_bytes(b"\x80\x04garbage" + os.urandom(32))
        elif arg.startswith("@imf-"):
            _image_folder(tmp / "imf", arg)
        elif arg == "@bench-result":
            (tmp / "a.json").write_text(json.dumps({"schema": 1, "records": []}))
        elif arg not in ("@locked", "@profile"):
            out.append(arg.format(tmp=tmp, out=tmp / "out", file=tmp / "file", genotype=genotype))
    return out


def _image_folder(root, case: str) -> None:
    """Two classes of one 8x8 image each, broken as ``case`` says."""
    from PIL import Image

    for name, mode in (("cats", "RGB"), ("dogs", "L" if case == "@imf-mixed" else "RGB")):
        (root / "train" / name).mkdir(parents=True)
        if case == "@imf-single" and name == "dogs":
            (root / "train" / name).rmdir()
        elif case == "@imf-empty-class" and name == "dogs":
            (root / "train" / name / "notes.txt").write_text("no images here")
        elif case == "@imf-corrupt" and name == "dogs":
            (root / "train" / name / "broken.png").write_bytes(os.urandom(200))
        else:
            Image.new(mode, (8, 8), 90).save(root / "train" / name / "a.png")


@pytest.mark.parametrize("argv, status, phrase", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_case(argv, status, phrase, tmp_path, capsys):
    args = _prepare(argv, tmp_path)
    try:
        if "@locked" in argv:
            with run_directory(str(tmp_path / "out")):
                code = main(args)
        else:
            code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == status, err
    last = err.strip().splitlines()[-1]  # argparse puts its usage above the line
    assert last.startswith("dartsfast") and phrase in last and "Traceback" not in err, err
    if status != 0 and "@locked" not in argv and "out" in [a.rsplit("/", 1)[-1] for a in args]:
        assert not (tmp_path / "out").exists(), "a failed start left --out behind"


def test_the_corpus_is_large_enough():
    assert len(CLI_CASES) + len(API_CASES) + len(RUN_CASES) >= 60


# ----------------------------------------------------------------------------- the Python API
API_CASES = [
    ("seed-2-to-the-70", lambda: SearchConfig(seed=2**70), ValueError, "SearchConfig.seed"),
    ("seed-negative", lambda: TrainConfig(seed=-5), ValueError, "TrainConfig.seed"),
    ("seed-bool", lambda: SearchConfig(seed=True), ValueError, "SearchConfig.seed"),
    ("alpha-betas-float", lambda: SearchConfig(alpha_betas=0.5), ValueError, "SearchConfig.alpha_betas"),
    ("alpha-betas-three", lambda: SearchConfig(alpha_betas=(0.5, 0.9, 0.9)), ValueError, "alpha_betas"),
    ("alpha-betas-one", lambda: SearchConfig(alpha_betas=(0.5, 1.0)), ValueError, "alpha_betas"),
    ("alpha-betas-str", lambda: SearchConfig(alpha_betas="ab"), ValueError, "alpha_betas"),
    ("resume-without-out", lambda: SearchConfig(resume=True), ValueError, "resume needs"),
    ("resume-and-overwrite", lambda: SearchConfig(out="x", resume=True, overwrite=True), ValueError,
     "exclude each other"),
    ("epochs-bool", lambda: SearchConfig(epochs=True), ValueError, "SearchConfig.epochs"),
    ("device-int", lambda: SearchConfig(device=3), ValueError, "SearchConfig.device"),
    ("search-dataset-str", lambda: search(SearchConfig(device="cpu"), dataset="digits"), TypeError,
     "dataset must be a dartsfast.data.ImageDataset"),
    ("search-config-dict", lambda: search({"epochs": 1}), TypeError, "config must be a SearchConfig"),
    ("train-dataset-str", lambda: train(GENO_SKIP, TrainConfig(device="cpu"), dataset="digits"), TypeError,
     "dataset must be"),
    ("train-genotype-int", lambda: train(5, TrainConfig(device="cpu")), TypeError, "genotype must be"),
    ("genotype-concat-bool", lambda: Genotype.from_json(_genotype(reduce_concat=[2, True, 4, 5])), ValueError,
     "reduce_concat has True"),
    ("genotype-index-float", lambda: Genotype.from_json(_genotype(reduce__0=["skip_connect", 0.0])), ValueError,
     "0.0 (float)"),
    ("channels-100000", lambda: search(SearchConfig(device="cpu", channels=100000)), ValueError, "needs at least"),
    ("image-mode-cmyk", lambda: SearchConfig(image_mode="cmyk"), ValueError, "SearchConfig.image_mode"),
    ("data-workers-float", lambda: TrainConfig(data_workers=1.5), ValueError, "TrainConfig.data_workers"),
    ("data-memory-str", lambda: SearchConfig(data_memory_gb="4"), ValueError, "SearchConfig.data_memory_gb"),
    ("imagefolder-no-data-dir", lambda: TrainConfig(dataset="imagefolder"), ValueError, "TrainConfig.data_dir"),
]


@pytest.mark.parametrize("call, error, phrase", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_case(call, error, phrase):
    with pytest.raises(error) as info:
        call()
    assert phrase in str(info.value)


# ----------------------------------------------------------------------------- a real run's files
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One tiny search's directory, copied per case (never changed)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    assert main([a.format(out=out) for a in TINY]) == 0
    return out


def _flip_tensor_bytes(path) -> None:
    """16 bytes flipped in the middle of the largest tensor's storage, zip structure intact."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "r+b") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (int.from_bytes(f.read(2), "little") for _ in range(2))
        f.seek(info.header_offset + 30 + name_len + extra_len + info.file_size // 2)
        data = f.read(16)
        f.seek(-16, os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in data))


def _full_disk(monkeypatch):
    def no_space(path, state):
        raise OSError(errno.ENOSPC, "No space left on device", path)
    monkeypatch.setattr("dartsfast.search.outputs.save_checkpoint", no_space)


def _no_memory(monkeypatch):
    def allocator(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 123456789012 bytes.")
    monkeypatch.setattr("dartsfast.search.loop.SearchRun.__init__", allocator)


def _read_only(monkeypatch):
    def acquire(path):
        raise OSError(errno.EROFS, "Read-only file system", path)
    monkeypatch.setattr("dartsfast.rundir._acquire", acquire)


def _bug(monkeypatch):
    monkeypatch.setattr("dartsfast.search.loop.SearchRun.__init__", lambda *a, **k: {}["missing"])


def _diverge(monkeypatch):
    monkeypatch.setattr("dartsfast.search.loop.SearchRun.__init__",
                        lambda *a, **k: (_ for _ in ()).throw(FloatingPointError("search diverged in epoch 1")))


RUN_CASES = [
    # (id, change to the finished run's files, extra flags, monkeypatch, status, phrase)
    ("checkpoint-tensor-bytes-flipped", _flip_tensor_bytes, ["--resume"], None, EXIT_USAGE,
     "does not match the digest written with it"),
    ("checkpoint-torn", lambda p: p.write_bytes(p.read_bytes()[:1000]), ["--resume"], None, EXIT_USAGE,
     "corrupt or unreadable"),
    ("checkpoint-garbage", lambda p: p.write_bytes(os.urandom(4096)), ["--resume"], None, EXIT_USAGE,
     "corrupt or unreadable"),
    ("checkpoint-exists-no-resume", None, ["--epochs", "1"], None, EXIT_USAGE, "pass resume=True (--resume)"),
    ("checkpoint-other-settings", None, ["--resume", "--seed", "3"], None, EXIT_USAGE, "seed: 0 != 3"),
    ("disk-full-at-checkpoint", None, ["--overwrite"], _full_disk, EXIT_ENVIRONMENT, "No space left on device"),
    ("read-only-out", None, ["--overwrite"], _read_only, EXIT_ENVIRONMENT, "the file system is read-only"),
    ("out-of-memory", None, ["--overwrite"], _no_memory, EXIT_ENVIRONMENT, "out of memory"),
    ("internal-error", None, ["--overwrite"], _bug, EXIT_INTERNAL, "internal error KeyError"),
    ("diverged", None, ["--overwrite"], _diverge, EXIT_FAILURE, "failed: search diverged"),
]


@pytest.mark.parametrize("change, flags, patch, status, phrase", [c[1:] for c in RUN_CASES],
                         ids=[c[0] for c in RUN_CASES])
def test_run_case(change, flags, patch, status, phrase, finished_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for f in finished_run.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    checkpoint = out / CHECKPOINT_FILE
    if change is not None:
        change(checkpoint)
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    if patch is not None:
        patch(monkeypatch)
    code = main([a.format(out=out) for a in TINY] + flags)
    err = capsys.readouterr().err
    assert code == status, err
    assert phrase in err and "Traceback" not in err, err
    if change is not None or status == EXIT_USAGE:  # refused: every file left as it was
        assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    if patch is _full_disk:  # the checkpoint is written first: no history.json ahead of it
        assert json.loads((out / "history.json").read_text()) == json.loads(before["history.json"])


def test_debug_prints_the_traceback(finished_run, tmp_path, capsys, monkeypatch):
    _bug(monkeypatch)
    assert main(["--debug", *[a.format(out=tmp_path / "out") for a in TINY]]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err


def test_resume_rewrites_the_files_a_kill_after_the_checkpoint_skipped(finished_run, tmp_path, capsys):
    """Killed between checkpoint.pt and history.json: the checkpoint holds the epoch, and
    --resume writes history.json and genotype.json from it before going on."""
    out = tmp_path / "out"
    out.mkdir()
    (out / CHECKPOINT_FILE).write_bytes((finished_run / CHECKPOINT_FILE).read_bytes())
    (out / ".history.json.Ab3dE6fG.tmp").write_bytes(b"")  # the killed write's temp file
    assert main([a.format(out=out) for a in TINY] + ["--resume"]) == 0
    assert json.loads((out / "history.json").read_text()) == json.loads((finished_run / "history.json").read_text())
    assert (out / "genotype.json").read_text() == (finished_run / "genotype.json").read_text()
    assert sorted(os.listdir(out)) == [CHECKPOINT_FILE, "genotype.json", "history.json"]


@pytest.mark.parametrize("command", ["search", "train"])
def test_threads_flag_sets_torch_threads_for_the_run(command, tmp_path, monkeypatch, capsys):
    import torch

    seen = []

    def record(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise ValueError("stop here")
    monkeypatch.setattr(f"dartsfast.cli.{command}.{command}", record)
    before = torch.get_num_threads()
    argv = SEARCH if command == "search" else TRAIN
    assert main(_prepare(argv, tmp_path) + ["--threads", "1"]) == EXIT_USAGE
    assert seen == [1] and torch.get_num_threads() == before
