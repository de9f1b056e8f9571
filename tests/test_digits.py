"""edge_runtime.digits: photos of handwritten digits on real paper become MNIST-like digits.

The photo set comes from benchmarks/digit_photos.py (real MNIST test digits written as
ink on paper, off-centre, rotated, blurred, light falling off across the page, colour
cast, noise, JPEG); the benchmark report measures a larger set of the same photos.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import edge_runtime
from benchmarks import report
from benchmarks.digit_photos import (
    SKIPPED_NO_DATA,
    digit_photos,
    measure_digit_photos,
    photo_of_digit,
    photo_of_size,
)
from edge_runtime.digits import to_mnist_digit
from edge_runtime.images import decode_image, load_image
from edge_runtime.records.manifest import Manifest

TEST_PHOTOS = 200


@pytest.fixture(scope="module")
def photos(mnist) -> list[bytes]:
    return digit_photos(mnist.x_test, TEST_PHOTOS)


@pytest.fixture(scope="module")
def int8_model(small_mlp_artifacts):
    return edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")


def _page_with(digit: np.ndarray, *, size: tuple[int, int] = (200, 260), at: tuple[int, int] = (45, 75),
               digit_side: int = 110, paper: int = 220, ink: int = 60) -> np.ndarray:
    """A clean grayscale page with an MNIST digit written as binary ink at a known place.

    Two grey levels only, and small enough not to be downscaled even with the table
    around it, so any threshold between paper and ink finds the same strokes: what
    the tests compare is which strokes count as the digit.
    """
    page = np.full(size, paper, np.uint8)
    strokes = np.asarray(Image.fromarray(digit).resize((digit_side, digit_side), Image.Resampling.BICUBIC)) > 127
    page[at[0] : at[0] + digit_side, at[1] : at[1] + digit_side][strokes] = ink
    return page


def test_photos_of_handwritten_digits_classify_nearly_as_well_as_mnist(photos, mnist, int8_model):
    pixels = np.stack([load_image(jpeg) for jpeg in photos])
    on_photos = np.mean(np.argmax(int8_model.predict(pixels), 1) == mnist.y_test[:TEST_PHOTOS])
    on_mnist = np.mean(np.argmax(int8_model.predict(mnist.x_test[:TEST_PHOTOS]), 1) == mnist.y_test[:TEST_PHOTOS])
    # Measured when written, on these 200 photos: 0.94 (the same digits in MNIST form: 0.955);
    # the previous pipeline (one paper tone from the border, crop at 20 % of the peak) gave 0.83.
    assert on_photos >= 0.90, (on_photos, on_mnist)
    assert on_photos >= on_mnist - 0.05, (on_photos, on_mnist)


def test_mnist_form_images_come_back_bit_identical_and_ink_on_paper_ones_inverted(mnist):
    for digit in mnist.x_test:
        assert np.array_equal(to_mnist_digit(digit), digit)
        assert np.array_equal(to_mnist_digit(255 - digit), digit)


def test_blank_photos_of_paper_give_all_zero_images():
    blank = np.zeros((28, 28), np.uint8)
    for i in range(20):  # paper tone, shading, colour cast, noise and JPEG quality all vary
        gray = decode_image(photo_of_digit(blank, np.random.default_rng([3, i])))
        assert not to_mnist_digit(gray).any(), i


def test_specks_away_from_the_digit_are_ignored(mnist):
    page = _page_with(mnist.x_test[0])
    specked = page.copy()
    for y, x in [(5, 5), (20, 240), (180, 30), (190, 250), (100, 15), (10, 140), (175, 210)]:
        specked[y : y + 3, x : x + 3] = 40  # darker than the ink itself
    assert np.array_equal(to_mnist_digit(specked), to_mnist_digit(page))


def test_page_edges_and_the_table_beyond_them_are_not_taken_for_ink(mnist):
    page = _page_with(mnist.x_test[1])
    expected = to_mnist_digit(page)
    assert expected.any()
    # The photo shows the table on two sides of the page, and on another pair of sides.
    for pads, table in [(((40, 0), (60, 0)), 35), (((0, 40), (0, 70)), 110)]:
        np.testing.assert_array_equal(to_mnist_digit(np.pad(page, pads, constant_values=table)), expected)


def test_a_shadow_across_the_page_is_not_taken_for_ink(mnist, int8_model):
    digit = mnist.x_test[2]
    page = _page_with(digit).astype(np.float64)
    page[:, 200:] *= 0.6  # the phone's shadow over the right part of the page, past the digit
    out = to_mnist_digit(page.astype(np.uint8))
    np.testing.assert_array_equal(out, to_mnist_digit(_page_with(digit)))
    assert int8_model.classify(out) == [str(mnist.y_test[2])]


def test_light_ink_on_a_dark_ground_reads_like_dark_ink_on_paper(photos, int8_model):
    grays = [decode_image(jpeg) for jpeg in photos[:20]]
    dark_ink = np.stack([to_mnist_digit(gray) for gray in grays])
    light_ink = np.stack([to_mnist_digit(255 - gray) for gray in grays])
    # Equal but for rounding: downscaling rounds halves up, which is not symmetric under inversion.
    assert np.abs(light_ink.astype(int) - dark_ink).mean() < 1
    assert int8_model.classify(light_ink) == int8_model.classify(dark_ink)


def test_a_thin_pen_line_on_a_large_page_is_found():
    page = np.full((900, 1200), 225, np.uint8)
    page[200:700, 600:602] = 30  # two pixels wide, a thousandth of the page
    out = to_mnist_digit(page)
    rows, cols = np.nonzero(out > 127)
    assert rows.max() - rows.min() + 1 == 20 and cols.max() - cols.min() + 1 <= 3


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (3, 7), (28, 27), (600, 20)])
def test_any_image_size_gives_a_model_sized_uint8_image(shape):
    rng = np.random.default_rng(0)
    for gray in (rng.integers(0, 256, shape, dtype=np.uint8), np.full(shape, 240, np.uint8)):
        out = to_mnist_digit(gray)
        assert out.shape == (28, 28) and out.dtype == np.uint8


def test_a_twelve_megapixel_phone_photo_decodes_and_classifies(mnist, int8_model):
    jpeg = photo_of_size(mnist.x_test[0], 12)
    width, height = Image.open(io.BytesIO(jpeg)).size
    assert 11.5e6 <= width * height <= 12.5e6
    assert int8_model.classify(load_image(jpeg)) == [str(mnist.y_test[0])]


def test_photo_i_is_the_same_whatever_the_set_size_and_the_seed_changes_every_photo(mnist):
    few, more = digit_photos(mnist.x_test, 3), digit_photos(mnist.x_test, 5)
    assert few == more[:3]
    assert all(a != b for a, b in zip(few, digit_photos(mnist.x_test, 3, seed=1)))
    with pytest.raises(ValueError, match="count must be between 1 and 10000, got 0"):
        digit_photos(mnist.x_test, 0)


def test_photos_are_jpegs_of_the_stated_page_sizes(photos):
    for jpeg in photos[:50]:
        with Image.open(io.BytesIO(jpeg)) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert 240 <= min(image.size) <= 400 and max(image.size) <= 1.45 * min(image.size) + 1


def test_benchmark_measures_photo_accuracy_next_to_mnist(monkeypatch, small_mlp_artifacts):
    import benchmarks.digit_photos as digit_photos_module

    monkeypatch.setattr(digit_photos_module, "QUICK_PHOTOS", 40)
    manifest = Manifest.read(small_mlp_artifacts)
    result = measure_digit_photos(small_mlp_artifacts, manifest, quick=True)
    assert result["status"] == "measured" and result["photos"] == 40
    assert {a["name"] for a in result["artifacts"]} == {a.name for a in manifest.artifacts}
    for art in result["artifacts"]:
        assert 0.9 <= art["mnist_accuracy"] <= 1 and 0.5 <= art["photo_accuracy"] <= 1, art
    assert all(ms > 0 for ms in result["step_ms"].values()) and set(result["step_ms"]) == {"1 MP", "12 MP"}
    text = "\n".join(report._digit_photos({"digit_photos": result}))
    int8 = next(a for a in result["artifacts"] if a["name"] == "tflite_int8")
    assert f"| `tflite_int8` | {int8['backend']} | {report._fmt(int8['mnist_accuracy'], 4)} | " in text
    assert "ms at 12 MP" in text


def test_benchmark_skips_photo_accuracy_without_mnist_data(monkeypatch, tmp_path, small_mlp_artifacts):
    import train.data

    monkeypatch.setattr(train.data, "BUNDLED_DIR", tmp_path / "absent")  # as on a device: no MNIST copy
    manifest = Manifest.read(small_mlp_artifacts)
    result = measure_digit_photos(small_mlp_artifacts, manifest, quick=True)
    assert result["status"] == SKIPPED_NO_DATA and result["artifacts"] == []
    assert set(result["step_ms"]) == {"1 MP", "12 MP"}  # the digit step is still timed
    text = "\n".join(report._digit_photos({"digit_photos": result}))
    assert "skipped: no MNIST data" in text
    not_digits = manifest._replace(input=manifest.input._replace(digits=False))
    assert measure_digit_photos(small_mlp_artifacts, not_digits)["status"].startswith("skipped")
