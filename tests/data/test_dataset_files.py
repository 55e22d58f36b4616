"""dartsfast.data.files: damaged dataset files under --data-dir are refused with a ValueError
naming the file and what is wrong (issue 15), never a raw AssertionError / RuntimeError /
pickle error; well-formed files load to exactly what was written."""
import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch

from dartsfast.data import CIFAR10_MEAN, CIFAR10_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD, files, load_dataset

N_TRAIN, N_TEST = 6, 4


# ----------------------------------------------------------------------------- Fashion-MNIST

def _idx(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = {3: 2051, 1: 2049}[array.ndim] if magic is None else magic
    return struct.pack(">" + "I" * (array.ndim + 1), magic, *array.shape) + array.tobytes()


def _fashion_arrays():
    rng = np.random.default_rng(0)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": np.arange(N_TRAIN, dtype=np.uint8) % 10,
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": (np.arange(N_TEST, dtype=np.uint8) * 3) % 10}


def _write_fashion(root, gz=False):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = _fashion_arrays()
    for name, a in arrays.items():
        if gz:
            (raw / f"{name}.gz").write_bytes(gzip.compress(_idx(a)))
        else:
            (raw / name).write_bytes(_idx(a))
    return raw, arrays


def _unnormalise(x, mean, std):
    return x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_fashion_mnist_valid_files_load_exactly(tmp_path, gz):
    _, arrays = _write_fashion(tmp_path, gz=gz)
    ds = load_dataset("fashion-mnist", data_dir=str(tmp_path))
    assert ds.train_x.shape == (N_TRAIN, 1, 28, 28) and ds.test_x.shape == (N_TEST, 1, 28, 28)
    for x, y, prefix in [(ds.train_x, ds.train_y, "train"), (ds.test_x, ds.test_y, "t10k")]:
        pixels = _unnormalise(x, FASHION_MNIST_MEAN, FASHION_MNIST_STD).mul(255).round().to(torch.uint8)
        assert torch.equal(pixels[:, 0], torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte"]))
        assert y.dtype == torch.int64 and y.tolist() == arrays[f"{prefix}-labels-idx1-ubyte"].tolist()
    if gz:  # read in memory: nothing is extracted beside them
        names = sorted(p.name for p in (tmp_path / "FashionMNIST" / "raw").iterdir())
        assert names == sorted(f"{f}.gz" for f in arrays)


def _replace(name, data):
    def corrupt(raw):
        (raw / name).write_bytes(data(raw / name) if callable(data) else data)
        return [raw / name]
    return corrupt


def _as_directory(raw):
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").mkdir()
    return [raw / "t10k-labels-idx1-ubyte"]


def _gz(name, data):
    def corrupt(raw):
        (raw / name).unlink()
        (raw / f"{name}.gz").write_bytes(data(_idx(_fashion_arrays()[name])))
        return [raw / f"{name}.gz"]
    return corrupt


def _relabel(raw):
    labels = np.arange(N_TRAIN) % 10
    labels[3] = 12
    return _replace("train-labels-idx1-ubyte", _idx(labels))(raw)


def _fewer_labels(raw):
    _replace("train-labels-idx1-ubyte", _idx(np.arange(N_TRAIN - 1) % 10))(raw)
    return [raw / "train-images-idx3-ubyte", raw / "train-labels-idx1-ubyte"]


GARBAGE = np.random.default_rng(5).integers(0, 256, 4000, dtype=np.uint8).tobytes()
IMAGES_SIZE = 16 + N_TRAIN * 28 * 28

FASHION_CASES = {
    "empty": (_replace("train-images-idx3-ubyte", b""), "is empty (0 bytes)"),
    "garbage": (_replace("train-images-idx3-ubyte", GARBAGE), "is not a valid idx file (bad magic number"),
    "labels-magic-in-images": (_replace("t10k-images-idx3-ubyte", _idx(np.zeros(4), magic=2049)),
                               "bad magic number 2049 (0x00000801); expected 2051"),
    "images-magic-in-labels": (_replace("t10k-labels-idx1-ubyte", lambda p: b"\0\0\x08\x03" + p.read_bytes()[4:]),
                               "bad magic number 2051 (0x00000803); expected 2049"),
    "truncated": (_replace("train-images-idx3-ubyte", lambda p: p.read_bytes()[:-100]),
                  f"truncated: expected {IMAGES_SIZE} bytes for {N_TRAIN} images, found {IMAGES_SIZE - 100}"),
    "truncated-header": (_replace("train-images-idx3-ubyte", lambda p: p.read_bytes()[:10]),
                         "truncated: expected at least 16 bytes of header, found 10"),
    "tiny": (_replace("train-labels-idx1-ubyte", b"\0\0"), "truncated: expected at least 8 bytes of header, found 2"),
    "too-long": (_replace("train-images-idx3-ubyte", lambda p: p.read_bytes() + b"\0" * 7),
                 f"too long: expected {IMAGES_SIZE} bytes for {N_TRAIN} images, found {IMAGES_SIZE + 7}"),
    "wrong-image-size": (_replace("train-images-idx3-ubyte", _idx(np.zeros((N_TRAIN, 32, 32)))),
                         "wrong shape: images of 32x32 pixels, expected 28x28"),
    "label-out-of-range": (_relabel, "has label 12 at index 3 (Fashion-MNIST labels are 0-9)"),
    "mismatched-counts": (_fewer_labels, f"do not match: {N_TRAIN} images but {N_TRAIN - 1} labels"),
    "directory": (_as_directory, "is a directory, not a file"),
    "gzip-without-suffix": (_replace("train-labels-idx1-ubyte", lambda p: gzip.compress(p.read_bytes())),
                            "it is gzip-compressed: decompress it, or rename it to train-labels-idx1-ubyte.gz"),
    "gz-garbage": (_gz("train-images-idx3-ubyte", lambda data: GARBAGE), "is not a valid gzip file"),
    "gz-truncated": (_gz("train-images-idx3-ubyte", lambda data: gzip.compress(data)[:200]),
                     "is a truncated gzip file"),
    "gz-empty": (_gz("t10k-images-idx3-ubyte", lambda data: b""), "is empty (0 bytes)"),
    "gz-of-nothing": (_gz("t10k-images-idx3-ubyte", lambda data: gzip.compress(b"")),
                      "is empty (0 bytes once decompressed)"),
}


@pytest.mark.parametrize("case", FASHION_CASES)
def test_fashion_mnist_bad_file_is_named(tmp_path, case):
    corrupt, phrase = FASHION_CASES[case]
    raw, _ = _write_fashion(tmp_path)
    bad_paths = corrupt(raw)
    with pytest.raises(ValueError) as info:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    message = str(info.value)
    assert type(info.value) is ValueError and phrase in message, message
    assert all(str(p) in message for p in bad_paths), message
    assert "--download" in message and files.FASHION_MNIST_SOURCE in message


def test_fashion_mnist_one_file_missing_is_still_file_not_found(tmp_path):
    raw, _ = _write_fashion(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


# ----------------------------------------------------------------------------- CIFAR-10

def _batch(n, seed, protocol=pickle.DEFAULT_PROTOCOL, **override):
    rng = np.random.default_rng(seed)
    batch = {"batch_label": f"batch {seed}", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             "labels": [(i + seed) % 10 for i in range(n)], "filenames": [f"{i}.png" for i in range(n)]}
    batch.update(override)
    return pickle.dumps(batch, protocol=protocol)


def _write_cifar(root, monkeypatch):
    """A tiny CIFAR-10 set: 5 train batches of 3 images and a test batch of 2 (one pickled with
    protocol 2, as the original python-2 files were), md5s accepted as the originals'."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for i in range(1, 6):
        (base / f"data_batch_{i}").write_bytes(_batch(3, i, protocol=2 if i == 1 else pickle.DEFAULT_PROTOCOL))
    (base / "test_batch").write_bytes(_batch(2, 9))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    _accept_md5s(base, monkeypatch)
    return base


def _accept_md5s(base, monkeypatch):
    monkeypatch.setattr(files, "CIFAR10_MD5", {p.name: hashlib.md5(p.read_bytes()).hexdigest()
                                               for p in base.iterdir() if p.is_file()})


def test_cifar10_valid_files_load_exactly(tmp_path, monkeypatch):
    base = _write_cifar(tmp_path, monkeypatch)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    assert ds.train_x.shape == (15, 3, 32, 32) and ds.test_x.shape == (2, 3, 32, 32)
    batches = [pickle.loads((base / f).read_bytes()) for f in files.CIFAR10_FILES[:6]]
    for x, y, group in [(ds.train_x, ds.train_y, batches[:5]), (ds.test_x, ds.test_y, batches[5:])]:
        pixels = _unnormalise(x, CIFAR10_MEAN, CIFAR10_STD).mul(255).round().to(torch.uint8)
        want = np.concatenate([b["data"] for b in group]).reshape(-1, 3, 32, 32)
        assert torch.equal(pixels, torch.from_numpy(want))
        assert y.dtype == torch.int64 and y.tolist() == [label for b in group for label in b["labels"]]


def _python2_batch(raw: bytes, labels) -> bytes:
    """A batch pickled the way the original files were (Python 2, protocol 2, numpy 1): the
    array's bytes are a py2 ``str``, rebuilt by numpy.core.multiarray._reconstruct. Written
    opcode by opcode, as numpy's own tests of old pickles are."""
    n = len(raw) // 3072
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01K"
             + bytes([n]) + b"M\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R(K\x01U\x01|NN"
             b"J\xff\xff\xff\xffJ\xff\xff\xff\xfftb\x89T" + struct.pack("<i", len(raw)) + raw + b"tb")
    return (b"\x80\x02}(U\x04data" + array + b"U\x06labels]" + b"".join(b"K" + bytes([y]) + b"a" for y in labels)
            + b"u.")


def test_cifar10_python2_pickle_loads(tmp_path, monkeypatch):
    base = _write_cifar(tmp_path, monkeypatch)
    raw = np.random.default_rng(7).integers(0, 256, 2 * 3072, dtype=np.uint8).tobytes()
    (base / "test_batch").write_bytes(_python2_batch(raw, [3, 7]))
    _accept_md5s(base, monkeypatch)
    ds = load_dataset("cifar10", data_dir=str(tmp_path))
    pixels = _unnormalise(ds.test_x, CIFAR10_MEAN, CIFAR10_STD).mul(255).round().to(torch.uint8)
    assert pixels.flatten().numpy().tobytes() == raw and ds.test_y.tolist() == [3, 7]


class _OpensAFile:
    """Unpickling this calls open(path, "w") (io.open): the marker file shows whether it ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _cifar_replace(name, data):
    def corrupt(base):
        (base / name).write_bytes(data(base) if callable(data) else data)
        return base / name
    return corrupt


def _cifar_directory(base):
    (base / "data_batch_2").unlink()
    (base / "data_batch_2").mkdir()
    return base / "data_batch_2"


CIFAR_CASES = {
    "empty": (_cifar_replace("data_batch_3", b""), "is empty (0 bytes)"),
    "garbage": (_cifar_replace("data_batch_3", GARBAGE), "is not a valid CIFAR-10 pickle"),
    "truncated": (_cifar_replace("test_batch", lambda base: (base / "test_batch").read_bytes()[:3000]),
                  "is not a valid CIFAR-10 pickle (UnpicklingError: pickle data was truncated)"),
    "a-list": (_cifar_replace("data_batch_1", pickle.dumps([1, 2, 3])),
               "is not a CIFAR-10 batch: expected a dict with 'data' and 'labels', found a list"),
    "no-labels": (_cifar_replace("data_batch_1", pickle.dumps({"data": np.zeros((2, 3072), np.uint8)})),
                  "found a dict with keys 'data'"),
    "wrong-shape": (_cifar_replace("data_batch_4", _batch(3, 4, data=np.zeros((3, 1024), np.uint8))),
                    "has the wrong 'data': expected a uint8 array of shape (N, 3072), found a uint8 array of "
                    "shape (3, 1024)"),
    "wrong-dtype": (_cifar_replace("data_batch_4", _batch(3, 4, data=np.zeros((3, 3072), np.float32))),
                    "found a float32 array of shape (3, 3072)"),
    "label-out-of-range": (_cifar_replace("data_batch_5", _batch(3, 5, labels=[1, 12, 3])),
                           "has label 12 at index 1 (CIFAR-10 labels are 0-9)"),
    "negative-label": (_cifar_replace("data_batch_5", _batch(3, 5, labels=np.array([1, 2, -1]))),
                       "has label -1 at index 2"),
    "mismatched-lengths": (_cifar_replace("test_batch", _batch(2, 9, labels=[1])),
                           "has mismatched lengths: 2 images but 1 labels"),
    "text-labels": (_cifar_replace("test_batch", _batch(2, 9, labels=["cat", "dog"])),
                    "has the wrong 'labels': expected a list of integers, found a list holding str values such as "
                    "'cat'"),
    "float-labels": (_cifar_replace("test_batch", _batch(2, 9, labels=np.array([1.0, 2.0]))),
                     "has the wrong 'labels': expected a list of integers, found a float64 array of shape (2,)"),
    "bad-meta": (_cifar_replace("batches.meta", pickle.dumps({"names": []})),
                 "is not CIFAR-10 metadata: expected a dict with 'label_names', found a dict with keys 'names'"),
    "directory": (_cifar_directory, "is a directory, not a file"),
    "md5-mismatch": (_cifar_replace("data_batch_2", lambda base: _batch(3, 2) + b"\0"),
                     "differs from the original CIFAR-10 file (md5 "),
}


@pytest.mark.parametrize("case", CIFAR_CASES)
def test_cifar10_bad_file_is_named(tmp_path, monkeypatch, case):
    corrupt, phrase = CIFAR_CASES[case]
    base = _write_cifar(tmp_path, monkeypatch)
    bad_path = corrupt(base)
    if case != "md5-mismatch":
        _accept_md5s(base, monkeypatch)  # so only the damage itself can be what is reported
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", data_dir=str(tmp_path))
    message = str(info.value)
    assert type(info.value) is ValueError and phrase in message, message
    assert f"CIFAR-10 file {bad_path} " in message and "--download" in message, message


def test_cifar10_pickle_that_would_run_code_is_refused_unrun(tmp_path, monkeypatch):
    base = _write_cifar(tmp_path, monkeypatch)
    marker = tmp_path / "marker"
    (base / "data_batch_1").write_bytes(pickle.dumps({"data": _OpensAFile(marker), "labels": []}))
    with pytest.raises(ValueError) as info:
        load_dataset("cifar10", data_dir=str(tmp_path))
    assert f"CIFAR-10 file {base / 'data_batch_1'} is not a valid CIFAR-10 pickle (it refers to io.open, which " \
        "no CIFAR-10 file holds; refused without loading it)" in str(info.value)
    assert not marker.exists()


def test_cifar10_one_file_missing_is_still_file_not_found(tmp_path, monkeypatch):
    base = _write_cifar(tmp_path, monkeypatch)
    (base / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dataset("cifar10", data_dir=str(tmp_path))
