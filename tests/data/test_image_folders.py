"""dartsfast.data for a user's image folder: the scan and its errors, junk, corrupt files,
image modes, decoding against numpy, normalisation statistics, the resident/streamed choice."""
import os

import numpy as np
import pytest
import torch
from image_folders import make_image_folder, write_image
from PIL import Image

from dartsfast.data import ImageFolderSource, load_dataset, open_run_data, scan_image_folder
from dartsfast.data.decode import FolderImages, channel_stats, decode_image, default_image_size
from dartsfast.data.imagefolder import data_budget_bytes
from dartsfast.runtime import device_memory_bytes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """3 classes x 40 training images, no test/: 10% of each class held out."""
    return make_image_folder(tmp_path_factory.mktemp("good"), classes=3, per_class=40)


# ----------------------------------------------------------------------------- good folders

def test_scan_holds_out_a_fixed_stratified_tenth(folder):
    scan = scan_image_folder(folder)
    assert scan.classes == ("class_0", "class_1", "class_2") and scan.mode == "RGB" and scan.in_channels == 3
    assert len(scan.train) == 3 * 36 and len(scan.test) == 3 * 4  # round(40 * 0.1) = 4 per class
    for c in range(3):
        assert sum(label == c for _, label in scan.test) == 4
    train_paths, test_paths = {p for p, _ in scan.train}, {p for p, _ in scan.test}
    assert not train_paths & test_paths and len(train_paths | test_paths) == 120
    for path, label in scan.train + scan.test:  # every label is the folder the file is in
        assert os.path.basename(os.path.dirname(path)) == f"class_{label}"
    assert "3 classes, 108 training and 12 test images (held out: 10% of train/" in scan.report()
    again = scan_image_folder(folder)  # fixed: the same split and order every time
    assert again.train == scan.train and again.test == scan.test
    # The training list is shuffled (max_train_samples takes a mix), not sorted by class.
    assert len({label for _, label in scan.train[:12]}) == 3
    assert 12 <= scan.median_side <= 16


@pytest.mark.parametrize("held", ["test", "val"])
def test_a_test_or_val_folder_is_the_held_out_set(tmp_path, held):
    root = make_image_folder(tmp_path, classes=2, per_class=10, test_per_class=3, held=held)
    scan = scan_image_folder(root)
    assert len(scan.train) == 20 and len(scan.test) == 6 and scan.test_source == f"{held}/"
    assert all(f"{os.sep}{held}{os.sep}" in p for p, _ in scan.test)


def test_test_folder_wins_over_val_and_may_lack_a_class(tmp_path):
    root = make_image_folder(tmp_path, classes=3, per_class=6, test_per_class=2)
    make_image_folder(tmp_path / "v", classes=3, per_class=0, test_per_class=1, held="val")
    os.rename(tmp_path / "v" / "val", root / "val")
    for f in (root / "test" / "class_2").iterdir():
        f.unlink()
    (root / "test" / "class_2").rmdir()
    scan = scan_image_folder(root)
    assert scan.test_source == "test/" and sorted(label for _, label in scan.test) == [0, 0, 1, 1]


def test_nested_junk_is_ignored_and_counted(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=5)
    rng, proto = np.random.default_rng(1), np.array([100.0, 50, 200])
    write_image(root / "train" / "class_0" / "more" / "deeper.png", rng, proto)  # nested: counts as class_0
    junk = [root / "train" / ".DS_Store", root / "train" / "README.txt", root / "train" / "class_1" / "notes.txt",
            root / "train" / "class_1" / ".hidden.png", root / "train" / "class_0" / "._img_000.png"]
    for path in junk:
        path.write_bytes(b"junk")
    (root / "train" / "class_0" / "empty").mkdir()
    (root / "train" / ".cache").mkdir()
    (root / "train" / "class_1" / ".git").mkdir()
    scan = scan_image_folder(root)
    assert scan.classes == ("class_0", "class_1")
    assert len(scan.train) + len(scan.test) == 11 and not scan.corrupt
    # 5 junk files, the empty folder, the hidden folder beside the classes, the one inside class_1
    assert scan.ignored == 8 and "8 non-image or hidden entries ignored" in scan.report()


# ----------------------------------------------------------------------------- bad folders

@pytest.mark.parametrize("case, phrase", [
    ("missing", "does not exist"),
    ("a-file", "is not a directory"),
    ("empty", "has no train/ folder"),
    ("no-classes", "holds no class folders"),
    ("single-class", "holds a single class folder (only)"),
    ("all-empty", "holds no images at all in its 2 class folders"),
    ("one-class-empty", "class folder {root}/train/class_1 holds no images"),
    ("extra-test-class", "has class folder(s) class_9 that train/ lacks"),
    ("empty-test", "test holds no images"),
])
def test_bad_folders_are_named(tmp_path, case, phrase):
    root = tmp_path / "data"
    if case == "a-file":
        root.write_text("x")
    elif case != "missing":
        root.mkdir()
    if case == "no-classes":
        (root / "train").mkdir()
        (root / "train" / "stray.png").write_bytes(b"x")
    if case == "single-class":
        make_image_folder(tmp_path / "one", classes=1, per_class=3)
        os.rename(tmp_path / "one" / "train", root / "train")
        os.rename(root / "train" / "class_0", root / "train" / "only")
    if case in ("all-empty", "one-class-empty", "extra-test-class", "empty-test"):
        make_image_folder(root, classes=2, per_class=0 if case == "all-empty" else 3)
        for c in ("class_0", "class_1"):
            (root / "train" / c).mkdir(parents=True, exist_ok=True)
    if case == "one-class-empty":
        for f in (root / "train" / "class_1").iterdir():
            f.unlink()
        (root / "train" / "class_1" / "readme.txt").write_text("not an image")
    if case == "extra-test-class":
        (root / "test" / "class_9").mkdir(parents=True)
        write_image(root / "test" / "class_9" / "a.png", np.random.default_rng(0), np.zeros(3))
    if case == "empty-test":
        (root / "test" / "class_0").mkdir(parents=True)
    with pytest.raises(ValueError) as info:
        scan_image_folder(root)
    assert phrase.format(root=root) in str(info.value)


def test_no_data_dir_is_named():
    with pytest.raises(ValueError, match="needs --data-dir"):
        scan_image_folder(None)


def _corrupt(root):
    """A .png of random bytes (header unreadable) and a truncated JPEG (header fine, pixels not)."""
    (root / "train" / "class_0" / "garbage.png").write_bytes(np.random.default_rng(3).bytes(300))
    good = (root / "train" / "class_1" / "img_001.jpg").read_bytes()
    (root / "train" / "class_1" / "truncated.jpg").write_bytes(good[:-50])  # the last 50 bytes of scan data
    return root / "train" / "class_0" / "garbage.png", root / "train" / "class_1" / "truncated.jpg"


def test_corrupt_images_are_skipped_counted_and_named(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=20, test_per_class=2)
    garbage, truncated = _corrupt(root)
    scan = scan_image_folder(root)
    assert scan.corrupt == [str(garbage)] and "1 unreadable image(s) skipped (" + str(garbage) in scan.report()
    assert str(truncated) in {p for p, _ in scan.train}  # its header reads: found at decode time
    with pytest.raises(ValueError, match=f"cannot decode image {truncated}"):
        decode_image(str(truncated), "RGB", 8)
    resident = open_run_data("imagefolder", device=CPU, data_dir=root, image_size=8, log=lambda line: None)
    assert not resident.streamed and len(resident.train) == 40 and resident.skipped_images() == 2
    streamed = open_run_data("imagefolder", device=CPU, data_dir=root, image_size=8, data_memory_gb=0,
                             data_workers=0, log=lambda line: None)
    assert streamed.streamed and len(streamed.train) == 41 and streamed.skipped_images() == 2
    # Streamed, the truncated image is replaced by the next one that decodes: the batch keeps its size.
    images = streamed.train.images
    i = [p for p, _ in images.samples].index(str(truncated))
    x, label, failed = images[i]
    nxt = images.samples[(i + 1) % len(images)]
    assert failed == i and label == nxt[1] and torch.equal(x, decode_image(nxt[0], "RGB", 8))
    assert images[(i + 1) % len(images)][2] == -1
    batches = streamed.train.batches(41, generator=torch.Generator().manual_seed(0), drop_last=False)
    xb, yb = batches.next_batch()
    assert xb.shape == (41, 3, 8, 8) and batches.skipped == {i}


def test_mixed_modes_name_a_file_and_rgb_fixes_them(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=6)
    odd = root / "train" / "class_1" / "zz_gray.png"
    write_image(odd, np.random.default_rng(0), np.array([90.0, 90, 90]), mode="L")
    with pytest.raises(ValueError) as info:
        scan_image_folder(root)
    assert f"1 grayscale image(s) such as {odd}" in str(info.value) and "--image-mode rgb" in str(info.value)
    source = ImageFolderSource(root, image_size=8, image_mode="rgb")
    assert source.in_channels == 3 and source.scan.mode == "RGB"
    assert ImageFolderSource(root, image_size=8, image_mode="gray").in_channels == 1


def test_an_all_gray_folder_is_one_channel(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=6, mode="L")
    data = load_dataset("imagefolder", data_dir=root, image_size=10)
    assert data.in_channels == 1 and data.train_x.shape[1:] == (1, 10, 10)


# ----------------------------------------------------------------------------- decoding

def test_decode_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (10, 24, 3), dtype=np.uint8)  # H 10, W 24
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x = decode_image(str(tmp_path / "a.png"), "RGB", 10)  # no resize: the centre 10 columns
    assert x.dtype == torch.uint8 and torch.equal(x, torch.from_numpy(pixels[:, 7:17].transpose(2, 0, 1).copy()))
    small = decode_image(str(tmp_path / "a.png"), "RGB", 5)  # halved to 5 x 12, columns 3..8
    ref = np.asarray(Image.fromarray(pixels).resize((12, 5), Image.BILINEAR))[:, 3:8]
    assert torch.equal(small, torch.from_numpy(ref.transpose(2, 0, 1).copy()))
    gray = decode_image(str(tmp_path / "a.png"), "L", 10)
    assert gray.shape == (1, 10, 10)


def test_channel_stats_match_the_decoded_pixels(folder):
    scan = scan_image_folder(folder)
    images = FolderImages(scan.train, scan.mode, 8)
    mean, std, failed = channel_stats(images)  # 108 images < 2000: all of them
    x = torch.stack([decode_image(p, scan.mode, 8) for p, _ in scan.train]).double() / 255
    torch.testing.assert_close(torch.tensor(mean, dtype=torch.float64), x.mean((0, 2, 3)))
    torch.testing.assert_close(torch.tensor(std, dtype=torch.float64), x.std((0, 2, 3), unbiased=False))
    assert failed == []
    data = load_dataset("imagefolder", data_dir=folder, image_size=8)
    torch.testing.assert_close(data.train_x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    assert data.mean == mean and data.num_classes == 3 and data.test_x.shape == (12, 3, 8, 8)


def test_default_image_size_is_the_median_side_up_to_32(folder):
    assert default_image_size(14) == 14 and default_image_size(500) == 32
    source = ImageFolderSource(folder)
    assert source.image_size == source.scan.median_side


def test_the_memory_budget_decides_resident_or_streamed(folder):
    assert data_budget_bytes(CPU, None) == device_memory_bytes(CPU) // 4
    assert data_budget_bytes(CPU, 0.5) == 2**29
    lines = []
    kinds = [open_run_data("imagefolder", device=CPU, data_dir=folder, image_size=8, data_memory_gb=gb,
                           data_workers=0, log=lines.append).streamed for gb in (None, 0, 5e-5, 1e-4)]
    # 120 images x 3 x 8 x 8 x 4 bytes = 92,160 bytes: over 5e-5 GiB (53,687), under 1e-4 GiB (107,374).
    assert kinds == [False, True, True, False]
    assert "device-resident" in lines[1] and "streamed from the files" in lines[3] and "fits" in lines[7]
