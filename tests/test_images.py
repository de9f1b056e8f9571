"""edge_runtime.images.load_image: photos and scans become MNIST-like 28×28 pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

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


def _png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bytes_and_binary_stream_decode_like_the_file(mnist, tmp_path):
    photo = tmp_path / "p.jpg"
    _photo_of(mnist.x_test[5], photo, np.random.default_rng(1))
    from_file = load_image(photo)
    data = photo.read_bytes()
    np.testing.assert_array_equal(load_image(data), from_file)
    np.testing.assert_array_equal(load_image(bytearray(data)), from_file)
    with photo.open("rb") as stream:
        np.testing.assert_array_equal(load_image(stream), from_file)


def test_image_over_the_pixel_limit_is_refused_before_decoding(monkeypatch):
    bomb = io.BytesIO()
    Image.new("1", (5000, 4000)).save(bomb, format="PNG")  # 20 Mpx in a few kB
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(DataError, match="5000x4000 pixels, more than the limit of 16777216"):
        load_image(bomb.getvalue())
    assert decoded == []


def test_pixel_limit_is_configurable(mnist):
    data = _png_bytes(mnist.x_test[0])
    np.testing.assert_array_equal(load_image(data, max_pixels=28 * 28), mnist.x_test[0])
    with pytest.raises(DataError, match="more than the limit of 783"):
        load_image(data, max_pixels=28 * 28 - 1)


def test_errors_on_bytes_use_the_given_name(mnist):
    with pytest.raises(DataError, match=r"^images_b64\[2\]: cannot read image"):
        load_image(b"not an image", name="images_b64[2]")
    with pytest.raises(DataError, match=r"^image bytes: cannot read image"):
        load_image(_png_bytes(mnist.x_test[0])[:60])


def test_text_mode_stream_raises_data_error(tmp_path):
    (tmp_path / "t.png").write_bytes(b"abc")
    with (tmp_path / "t.png").open("r") as stream, pytest.raises(DataError, match="binary mode"):
        load_image(stream)


def test_faint_noise_below_the_ink_threshold_does_not_move_the_digit(tmp_path):
    page = np.zeros((100, 100), np.uint8)
    page[30:70, 45:55] = 100  # a faint stroke: the brightest thing on the page
    clean = tmp_path / "clean.png"
    Image.fromarray(page).save(clean)
    page[2, 2] = 10  # a speck at 10% of the stroke, below the 20% ink threshold
    specked = tmp_path / "specked.png"
    Image.fromarray(page).save(specked)
    np.testing.assert_array_equal(load_image(specked), load_image(clean))


def test_resize_matches_tensorflow_bilinear_within_rounding():
    import tensorflow as tf

    from edge_runtime.images import resize_image

    rng = np.random.default_rng(0)
    for h, w, c, oh, ow in [(5, 7, 1, 3, 4), (28, 28, 1, 56, 40), (100, 80, 3, 32, 32), (33, 47, 3, 48, 64)]:
        x = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        expected = tf.image.resize(x.astype(np.float32), (oh, ow), method="bilinear").numpy()
        # 0.51: rounding to uint8, plus float32 noise
        assert np.abs(resize_image(x, (oh, ow)).astype(np.float64) - expected).max() <= 0.51


def test_crop_to_aspect_ratio_takes_the_pixels_keras_smart_resize_takes():
    from keras.preprocessing.image import smart_resize

    from edge_runtime.images import resize_image

    x = np.random.default_rng(1).integers(0, 256, (340, 500, 3), dtype=np.uint8)
    expected = np.asarray(smart_resize(x.astype(np.float32), (200, 150)))
    # 0.51: rounding to uint8, plus float32 noise
    assert np.abs(resize_image(x, (200, 150), crop_to_aspect_ratio=True) - expected).max() <= 0.51


def test_rgb_decoding_keeps_colour_and_grayscale_uses_pillow_luma(tmp_path):
    from edge_runtime.images import decode_image

    pixels = np.zeros((4, 6, 3), np.uint8)
    pixels[..., 0] = 200  # red
    Image.fromarray(pixels).save(tmp_path / "red.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "red.png", "rgb"), pixels)
    assert decode_image(tmp_path / "red.png").tolist() == np.full((4, 6), 60).tolist()  # 200 * 299 / 1000


def test_rgb_model_images_are_resized_not_treated_as_digits(tmp_path):
    page = np.full((60, 80, 3), 240, np.uint8)
    page[20:40, 30:50] = (255, 0, 0)
    Image.fromarray(page).save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png", (30, 40), color_mode="rgb", digits=False)
    assert out.shape == (30, 40, 3) and tuple(out[15, 20]) == (255, 0, 0) and tuple(out[0, 0]) == (240, 240, 240)


def test_unknown_colour_mode_and_colour_digits_are_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "z.png")
    with pytest.raises(DataError, match="color_mode must be one of grayscale, rgb, got 'cmyk'"):
        load_image(tmp_path / "z.png", color_mode="cmyk", digits=False)
    with pytest.raises(DataError, match="digit pipeline reads grayscale"):
        load_image(tmp_path / "z.png", color_mode="rgb")


def test_big_jpeg_decodes_at_reduced_scale_only_when_asked_and_only_for_jpeg(mnist):
    from benchmarks.digit_photos import photo_of_size
    from edge_runtime.images import decode_image

    jpeg = photo_of_size(mnist.x_test[0], 4)
    full = decode_image(jpeg)
    reduced = decode_image(jpeg, min_side=400)
    assert min(reduced.shape) >= 400 and reduced.size * 4 <= full.size  # the decoder's 1/2 scale or less
    png = _png_bytes(np.asarray(Image.open(io.BytesIO(jpeg)).convert("L")))
    assert decode_image(png, min_side=400).shape == full.shape  # only JPEG decoders can scale


def test_digit_photos_read_the_same_from_a_reduced_scale_decode(mnist, small_mlp_artifacts):
    from benchmarks.digit_photos import photo_of_size
    from edge_runtime.digits import to_mnist_digit
    from edge_runtime.images import decode_image

    model = edge_runtime.load(small_mlp_artifacts / "tflite_int8.tflite")
    photos = [photo_of_size(mnist.x_test[i], 4, seed=100 + i) for i in range(12)]
    full = np.stack([to_mnist_digit(decode_image(p)) for p in photos])  # every pixel decoded
    fast = np.stack([load_image(p) for p in photos])  # what the CLI and serve do: reduced-scale decode
    assert model.classify(fast) == model.classify(full)
