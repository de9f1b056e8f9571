"""Reading PNG/JPEG/BMP/GIF files as MNIST-like uint8 images.

MNIST digits are light strokes on a dark background, centred by centre of mass in
a 20×20 box inside 28×28. A photo or scan of ink on paper is the opposite: dark on
light, any size, off-centre. :func:`load_image` bridges the two so the model sees
what it was trained on:

1. decode from a path, bytes or a binary stream (images over :data:`MAX_PIXELS`
   are refused from their header, before decoding), EXIF rotation applied,
   transparency composited onto white; grayscale;
2. invert when the background (the median of the border pixels) is light;
3. if the image is not already the model's size: subtract the paper tone, stretch
   the strokes to full white, crop to the ink, scale its longer side to 20/28 of the
   target, and centre it by centre of mass, as MNIST was made.

An image that already has the target size is only converted and inverted, so MNIST
images saved as PNG come back bit-identical. Pillow is an optional dependency
(``pip install 'keras2edge[image]'``); without it a :class:`DataError` says so.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO, Union

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.files import read_user_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PILLOW_HINT = "reading image files needs Pillow: pip install 'keras2edge[image]' (or pip install pillow)"
# Decompression-bomb guard: images declaring more pixels are refused before decoding.
MAX_PIXELS = 4096 * 4096
# No digit image comes near this; it stops a path to a huge (or endless) file from filling memory.
MAX_IMAGE_BYTES = 128 * 2**20
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]
# Fraction of the target side the digit's longer side is scaled to (MNIST: 20 of 28).
DIGIT_FRACTION = 20 / 28
# A pixel is ink when it is brighter than this fraction of the brightest pixel.
INK_THRESHOLD = 0.2


def _pillow() -> Any:
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError(PILLOW_HINT) from None
    return Image, ImageOps


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Image file content -> grayscale uint8, refusing images over ``max_pixels``.

    The size is checked from the header, before the pixels are decompressed: a
    small file can declare gigapixels (a decompression bomb).
    """
    image_mod, image_ops = _pillow()
    try:
        with image_mod.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(f"{name}: image is {width}x{height} pixels, more than the limit of {max_pixels}")
            img.load()
            img = image_ops.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = image_mod.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = image_mod.alpha_composite(background, rgba)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except DataError:  # the size refusal above; DataError is a ValueError, keep it as it is
        raise
    except image_mod.UnidentifiedImageError:
        raise DataError(f"{name}: cannot read image (not a format Pillow can decode: PNG, JPEG, BMP, GIF, WebP, TIFF)") from None
    except image_mod.DecompressionBombError as exc:
        raise DataError(f"{name}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or damaged data
        raise DataError(f"{name}: cannot read image ({type(exc).__name__}: {exc})") from None


def _read(source: ImageSource) -> tuple[bytes, str]:
    """The bytes of ``source`` and the name errors should use for it."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "image bytes"
    elif hasattr(source, "read"):
        data, name = source.read(MAX_IMAGE_BYTES + 1), "image stream"
        if not isinstance(data, bytes):
            raise DataError("image stream must be opened in binary mode ('rb')")
    else:
        name = str(source)
        data = read_user_file(source, DataError, "an image file", limit=MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise DataError(f"{name}: more than {MAX_IMAGE_BYTES} bytes, too large for an image of a digit")
    return data, name


def _centre(gray: np.ndarray, background: float, shape: tuple[int, int]) -> np.ndarray:
    """Remove the paper tone, crop to the ink, fit it in the MNIST box, centre by mass."""
    image_mod, _ = _pillow()
    gray = np.clip(gray.astype(np.int16) - int(background), 0, 255)
    peak = int(gray.max())
    out = np.zeros(shape, dtype=np.uint8)
    if peak == 0:
        return out  # blank page: nothing to centre
    # Stretch so the strongest stroke is white, as in MNIST, whatever the lighting was.
    gray = (gray * (255.0 / peak)).round().astype(np.uint8)
    # After the stretch the strongest stroke is 255, so the threshold is relative to that.
    is_ink = gray > 255 * INK_THRESHOLD
    rows = np.flatnonzero(is_ink.any(axis=1))
    cols = np.flatnonzero(is_ink.any(axis=0))
    ink = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = max(1, round(min(shape) * DIGIT_FRACTION))
    factor = box / max(ink.shape)
    size = (max(1, round(ink.shape[1] * factor)), max(1, round(ink.shape[0] * factor)))
    digit = np.asarray(image_mod.fromarray(ink).resize(size, image_mod.Resampling.LANCZOS), dtype=np.float64)
    total = digit.sum()
    if total == 0:
        return out
    cy = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / total
    cx = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / total
    top = int(np.clip(round(shape[0] / 2 - cy), 0, shape[0] - digit.shape[0]))
    left = int(np.clip(round(shape[1] / 2 - cx), 0, shape[1] - digit.shape[1]))
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = np.clip(np.rint(digit), 0, 255).astype(np.uint8)
    return out


def load_image(
    source: ImageSource,
    image_shape: tuple[int, int] = (28, 28),
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image (file, bytes or binary stream) as light-on-dark uint8 pixels of ``image_shape``.

    Parameters
    ----------
    source : str, path-like, bytes or binary file object
        A PNG, JPEG, BMP, GIF, WebP or TIFF image: a path, its content (e.g. an
        HTTP request body, so a server never writes it to disk), or a stream
        opened with ``"rb"``.
    image_shape : (height, width)
        The model's image size (the manifest's ``preprocessing.image_shape``).
    name : str or None
        What error messages call the image; defaults to the path, or
        ``"image bytes"`` / ``"image stream"``.
    max_pixels : int
        Larger images are refused from their header, before decoding, so a small
        file declaring gigapixels cannot exhaust memory (default 4096 x 4096).

    Returns
    -------
    numpy.ndarray
        uint8 ``image_shape`` array, digit light on dark, ready for ``Model.predict``.

    Raises
    ------
    DataError
        Missing or unreadable file, not an image, more than ``max_pixels`` pixels or
        :data:`MAX_IMAGE_BYTES` bytes, or Pillow is not installed.

    Examples
    --------
    >>> pixels = load_image("photo_of_a_seven.jpg")  # doctest: +SKIP
    >>> pixels.shape, pixels.dtype  # doctest: +SKIP
    ((28, 28), dtype('uint8'))
    >>> load_image(request_body, name="body").shape  # doctest: +SKIP
    (28, 28)
    """
    data, default_name = _read(source)
    name = default_name if name is None else name
    gray = _decode(data, name, max_pixels)
    if gray.ndim != 2 or gray.size == 0:
        raise DataError(f"{name}: image has no pixels")
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray = 255 - gray
        background = 255 - background
    if gray.shape == tuple(image_shape):
        return np.ascontiguousarray(gray)
    return _centre(gray, background, tuple(image_shape))
