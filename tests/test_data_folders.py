"""Image folders (the Keras image_dataset_from_directory layout): decoding, options, split, memory, bad input."""

from __future__ import annotations

import hashlib
import shutil
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import DataError
from edge_runtime.images import decode_image, resize_image
from tests.datasets import EXIF_ORIENTATION, write_shape_folder
from train.data import load_dataset
from train.image_folder import FOLDER_SUFFIXES


def _rows(x: np.ndarray, y: np.ndarray) -> Counter:
    return Counter((int(label), hashlib.sha256(row.tobytes()).hexdigest()) for row, label in zip(x, y))


def _expected_rows(root: Path, classes: tuple[str, ...], color_mode: str, size=None, crop=False) -> Counter:
    """What decode_image + resize_image (the device's functions) give for every image file, with its label."""
    expected = Counter()
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            pixels = decode_image(path, color_mode)
            if size is not None:
                pixels = resize_image(pixels, size, crop_to_aspect_ratio=crop)
            expected[(label, hashlib.sha256(pixels.tobytes()).hexdigest())] += 1
    return expected


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


def test_rgb_folder_loads_every_file_as_the_device_decodes_it(rgb_folder):
    ds = load_dataset(rgb_folder)
    assert ds.class_names == ("circle", "square", "triangle")
    assert ds.x_train.dtype == np.uint8 and ds.x_train.shape[1:] == (40, 48, 3)
    assert len(ds.x_train) + len(ds.x_test) == 3 * 60
    assert ds.input.shape == (40, 48, 3) and ds.input.color_mode == "rgb" and not ds.input.digits
    assert ds.image_shape == (40, 48) and ds.num_classes == 3
    loaded = _rows(ds.x_train, ds.y_train) + _rows(ds.x_test, ds.y_test)
    assert loaded == _expected_rows(rgb_folder, ds.class_names, "rgb")


def test_exif_orientation_is_applied_before_sizes_are_compared(rgb_folder):
    from PIL import Image

    sideways = rgb_folder / "circle" / "001.jpg"
    with Image.open(sideways) as img:
        assert img.size == (40, 48) and img.getexif()[EXIF_ORIENTATION] == 6  # stored 48 high, 40 wide
    ds = load_dataset(rgb_folder)  # no --image-size needed: displayed, it is 40 high like the others
    upright = decode_image(sideways, "rgb")
    assert upright.shape == (40, 48, 3)
    assert any(np.array_equal(row, upright) for row in np.concatenate([ds.x_train, ds.x_test]))


def test_transparent_pixels_are_composited_onto_white(rgb_folder):
    ds = load_dataset(rgb_folder)
    everything = np.concatenate([ds.x_train, ds.x_test])
    white_top = [row for row in everything if (row[:10] == 255).all()]
    assert len(white_top) == 1  # only the RGBA image: every background is darker than 90


def test_grayscale_folder_with_train_and_test_folders_keeps_the_given_split(gray_folder):
    ds = load_dataset(gray_folder)
    assert ds.split == {"kind": "given", "shuffle_seed": 0}
    assert ds.x_train.shape == (120, 28, 28) and ds.x_test.shape == (30, 28, 28)  # one channel: (N, H, W), as MNIST
    assert np.bincount(ds.y_train).tolist() == [40, 40, 40] and np.bincount(ds.y_test).tolist() == [10, 10, 10]
    assert ds.input.color_mode == "grayscale" and ds.input.shape == (28, 28, 1) and not ds.input.digits
    expected = _expected_rows(gray_folder / "test", ds.class_names, "grayscale")
    assert _rows(ds.x_test, ds.y_test) == expected


def test_colour_mode_defaults_to_rgb_when_one_image_has_colour(gray_folder, tmp_path):
    from PIL import Image

    # The gray folder holds L and LA PNGs, L JPEGs, a BMP and a GIF with a gray palette: all gray.
    assert load_dataset(gray_folder).input.color_mode == "grayscale"
    folder = _copy(gray_folder, tmp_path)
    Image.new("RGB", (28, 28), (200, 30, 30)).save(folder / "test" / "square" / "red.png")
    assert load_dataset(folder).input.color_mode == "rgb"
    palette = Image.new("RGB", (28, 28), (20, 200, 30)).convert("P")
    (folder / "test" / "square" / "red.png").unlink()
    palette.save(folder / "test" / "square" / "green.gif")
    assert load_dataset(folder).input.color_mode == "rgb"


def test_color_mode_grayscale_reads_rgb_images_as_luma(rgb_folder):
    ds = load_dataset(rgb_folder, color_mode="grayscale")
    assert ds.x_train.shape[1:] == (40, 48) and ds.input.shape == (40, 48, 1)
    loaded = _rows(ds.x_train, ds.y_train) + _rows(ds.x_test, ds.y_test)
    assert loaded == _expected_rows(rgb_folder, ds.class_names, "grayscale")


@pytest.mark.parametrize("crop", [False, True])
def test_image_size_resizes_like_keras_and_records_the_crop(rgb_folder, crop):
    ds = load_dataset(rgb_folder, image_size=(32, 32), crop_to_aspect_ratio=crop)
    assert ds.x_train.shape[1:] == (32, 32, 3)
    assert ds.input.shape == (32, 32, 3) and ds.input.crop_to_aspect_ratio is crop
    assert ds.load_options["image_size"] == [32, 32] and ds.load_options["crop_to_aspect_ratio"] is crop
    loaded = _rows(ds.x_train, ds.y_train) + _rows(ds.x_test, ds.y_test)
    assert loaded == _expected_rows(rgb_folder, ds.class_names, "rgb", (32, 32), crop)


def test_mixed_sizes_need_image_size(rgb_folder, tmp_path):
    from PIL import Image

    folder = _copy(rgb_folder, tmp_path)
    Image.new("RGB", (64, 64), (10, 10, 10)).save(folder / "square" / "big.png")
    with pytest.raises(DataError, match=r"different sizes .*big.png is 64x64.*pass --image-size HxW"):
        load_dataset(folder)
    assert load_dataset(folder, image_size=(40, 48)).x_train.shape[1:] == (40, 48, 3)


def test_stratified_split_is_seeded_recorded_and_keeps_class_shares(rgb_folder):
    ds = load_dataset(rgb_folder)
    assert ds.split == {"kind": "stratified", "test_fraction": 0.2, "seed": 0}
    assert np.bincount(ds.y_test).tolist() == [12, 12, 12] and np.bincount(ds.y_train).tolist() == [48, 48, 48]
    again = load_dataset(rgb_folder)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    other = load_dataset(rgb_folder, seed=1)
    assert _rows(other.x_test, other.y_test) != _rows(ds.x_test, ds.y_test)
    half = load_dataset(rgb_folder, test_fraction=0.5)
    assert np.bincount(half.y_test).tolist() == [30, 30, 30]
    assert half.split["test_fraction"] == 0.5


def test_split_order_is_shuffled_so_a_validation_tail_holds_every_class(rgb_folder, gray_folder):
    # Keras' validation_split takes the last part of the training data; files are listed class by class.
    for folder in (rgb_folder, gray_folder):
        ds = load_dataset(folder)
        assert set(ds.y_train[-len(ds.y_train) // 10:].tolist()) == {0, 1, 2}


def test_folder_digest_covers_names_and_contents(rgb_folder, tmp_path):
    digest = load_dataset(rgb_folder).sha256
    assert list(digest) == ["shapes/"]
    folder = _copy(rgb_folder, tmp_path)
    assert load_dataset(folder).sha256["shapes/"] == digest["shapes/"]
    (folder / "circle" / "000.png").rename(folder / "circle" / "zzz.png")
    renamed = load_dataset(folder).sha256["shapes/"]
    assert renamed != digest["shapes/"]
    from PIL import Image

    Image.new("RGB", (48, 40), (1, 2, 3)).save(folder / "square" / "000.png")
    assert load_dataset(folder).sha256["shapes/"] not in (renamed, digest["shapes/"])


def test_hidden_files_and_other_suffixes_are_ignored(rgb_folder, tmp_path):
    folder = _copy(rgb_folder, tmp_path)
    (folder / "circle" / "notes.txt").write_text("not an image")
    (folder / "circle" / "._000.png").write_bytes(b"macOS resource fork, not an image")
    (folder / ".cache").mkdir()
    assert load_dataset(folder).num_classes == 3
    assert set(FOLDER_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def test_images_in_nested_subfolders_belong_to_their_class(rgb_folder, tmp_path):
    folder = _copy(rgb_folder, tmp_path)
    (folder / "circle" / "more").mkdir()
    shutil.copy(folder / "circle" / "000.png", folder / "circle" / "more" / "extra.png")
    ds = load_dataset(folder)
    assert np.bincount(np.concatenate([ds.y_train, ds.y_test])).tolist() == [61, 60, 60]


def test_memory_is_the_result_array_plus_a_small_constant(rgb_folder):
    size = (96, 96)  # decoded at 40x48 and enlarged: the result dwarfs any per-image buffer
    load_dataset(rgb_folder)  # first use imports Pillow's plugins: not the loader's memory
    tracemalloc.start()
    try:
        ds = load_dataset(rgb_folder, image_size=size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    result = ds.x_train.nbytes + ds.x_test.nbytes
    assert result == 180 * 96 * 96 * 3
    assert peak < result + 1_000_000, f"peak {peak} bytes for a {result}-byte result"
    for x in (ds.x_train, ds.x_test):
        assert x.dtype == np.uint8 and x.flags.c_contiguous


def test_progress_bar_is_drawn_only_when_asked_or_on_a_terminal(rgb_folder, capsys):
    load_dataset(rgb_folder, progress=True)
    err = capsys.readouterr().err
    assert "\rdecoding images: 180/180 (100%)\n" in err
    load_dataset(rgb_folder)  # pytest's stderr is not a terminal
    assert capsys.readouterr().err == ""


# --- bad input: one DataError line each -------------------------------------------------------


def test_empty_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no data found"):
        load_dataset(tmp_path)


def test_class_folder_without_images_is_a_data_error(rgb_folder, tmp_path):
    folder = _copy(rgb_folder, tmp_path)
    (folder / "hexagon").mkdir()
    (folder / "hexagon" / "readme.txt").write_text("no images yet")
    with pytest.raises(DataError, match=r"hexagon: class folder has no images"):
        load_dataset(folder)


def test_different_classes_in_train_and_test_is_a_data_error(gray_folder, tmp_path):
    folder = _copy(gray_folder, tmp_path)
    (folder / "test" / "triangle").rename(folder / "test" / "hexagon")
    with pytest.raises(DataError, match=r"different classes \(only in train/: triangle; only in test/: hexagon\)"):
        load_dataset(folder)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_image_is_named_and_can_be_skipped(rgb_folder, tmp_path, damage):
    folder = _copy(rgb_folder, tmp_path)
    bad = folder / "square" / "006.png"
    if damage == "garbage":
        bad.write_bytes(b"this is not a PNG")  # fails in the header pass
    else:
        bad.write_bytes(bad.read_bytes()[:200])  # a valid header, then nothing: fails while decoding
    with pytest.raises(DataError, match=r"square/006.png: cannot read image .*--skip-bad-images"):
        load_dataset(folder)
    ds = load_dataset(folder, skip_bad_images=True)
    assert ds.skipped == ("square/006.png",)
    assert len(ds.x_train) + len(ds.x_test) == 179
    assert len(ds.x_train) == len(ds.y_train) and ds.x_train.flags.c_contiguous


def test_a_class_whose_images_are_all_unreadable_is_a_data_error(rgb_folder, tmp_path):
    folder = _copy(rgb_folder, tmp_path)
    for path in (folder / "triangle").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DataError, match="triangle: class folder has no readable images"):
        load_dataset(folder, skip_bad_images=True)


def test_one_class_only_is_a_data_error(rgb_folder, tmp_path):
    folder = tmp_path / "one"
    shutil.copytree(rgb_folder / "circle", folder / "circle")
    with pytest.raises(DataError, match=r"only one class \('circle'\)"):
        load_dataset(folder)


def test_a_bad_image_size_or_colour_mode_is_a_data_error(rgb_folder):
    with pytest.raises(DataError, match=r"image_size must be two positive integers .*got \(0, 32\)"):
        load_dataset(rgb_folder, image_size=(0, 32))
    with pytest.raises(DataError, match="color_mode must be one of grayscale, rgb, got 'cmyk'"):
        load_dataset(rgb_folder, color_mode="cmyk")
    with pytest.raises(DataError, match="test fraction must be between 0 and 1"):
        load_dataset(rgb_folder, test_fraction=1.0)


def test_a_small_generated_folder_is_deterministic(tmp_path):
    a = write_shape_folder(tmp_path / "a", per_class=3, special_files=False)
    b = write_shape_folder(tmp_path / "b", per_class=3, special_files=False)
    assert [p.read_bytes() for p in sorted(a.rglob("*.*"))] == [p.read_bytes() for p in sorted(b.rglob("*.*"))]
