"""edge_runtime.images.load_image: photos and scans become MNIST-like 28×28 pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import edge_runtime
from edge_runtime import DataError
from edge_runtime.images import load_image


def _photo_of(digit: np.ndarray, path, rng: np.random.Generator, mode: str = "RGB") -> None:
    """Dark ink on a light, larger, off-centre page, saved lossy: what a phone camera gives."""
    page = np.full((150, 130), 235, np.uint8)
    ink = np.asarray(Image.fromarray(255 - digit).resize((96, 96), Image.Resampling.BICUBIC))
    top, left = rng.integers(5, 45), rng.integers(5, 25)
    page[top : top + 96, left : left + 96] = np.minimum(page[top : top + 96, left : left + 96], ink)
    Image.fromarray(page).convert(mode).save(path, quality=85)


def test_mnist_png_round_trips_bit_identical(mnist, tmp_path):
    for i in range(20):
        Image.fromarray(mnist.x_test[i]).save(tmp_path / "d.png")
        np.testing.assert_array_equal(load_image(tmp_path / "d.png"), mnist.x_test[i])


def test_dark_on_light_image_is_inverted(mnist, tmp_path):
    Image.fromarray(255 - mnist.x_test[3]).save(tmp_path / "ink.png")
    np.testing.assert_array_equal(load_image(tmp_path / "ink.png"), mnist.x_test[3])


def test_photos_of_ink_on_paper_classify_like_the_original_digits(mnist, small_mlp_artifacts, tmp_path):
    model = edge_runtime.load(small_mlp_artifacts / "tflite_float32.tflite")
    originals = mnist.x_test[:40]
    expected = model.classify(originals)
    rng = np.random.default_rng(0)
    photos = []
    for i, digit in enumerate(originals):
        _photo_of(digit, tmp_path / f"p{i}.jpg", rng)
        photos.append(load_image(tmp_path / f"p{i}.jpg"))
    agreement = np.mean(np.array(model.classify(np.stack(photos))) == np.array(expected))
    assert agreement >= 0.9, agreement  # measured 0.975 (0.97 on 200 images) when written


def test_transparent_png_is_composited_on_white_then_inverted(mnist, tmp_path):
    digit = mnist.x_test[7]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = digit  # black ink whose opacity is the digit, on a fully transparent page
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    np.testing.assert_array_equal(load_image(tmp_path / "t.png"), digit)


def test_blank_page_gives_an_all_zero_image(tmp_path):
    Image.fromarray(np.full((64, 64), 250, np.uint8)).save(tmp_path / "blank.png")
    out = load_image(tmp_path / "blank.png")
    assert out.shape == (28, 28) and out.dtype == np.uint8 and not out.any()


def test_large_image_is_centred_by_mass_in_a_20_pixel_box(tmp_path):
    page = np.zeros((200, 300), np.uint8)
    page[10:60, 200:230] = 255  # a bar far from the centre
    Image.fromarray(page).save(tmp_path / "bar.png")
    out = load_image(tmp_path / "bar.png").astype(float)
    rows, cols = np.nonzero(out > 127)
    assert rows.max() - rows.min() + 1 == 20
    cy, cx = (out.sum(axis=1) * np.arange(28)).sum() / out.sum(), (out.sum(axis=0) * np.arange(28)).sum() / out.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("garbage.png", b"definitely not an image" * 10),
        ("truncated.png", None),
        ("empty.jpg", b""),
    ],
)
def test_unreadable_image_raises_data_error(tmp_path, mnist, name, content):
    path = tmp_path / name
    if content is None:
        Image.fromarray(mnist.x_test[0]).save(tmp_path / "full.png")
        content = (tmp_path / "full.png").read_bytes()[:60]
    path.write_bytes(content)
    with pytest.raises(DataError, match="cannot read image"):
        load_image(path)


def test_missing_image_and_directory_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_image(tmp_path / "absent.png")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_image(folder)
