"""Reading PNG/JPEG/BMP/GIF files as MNIST-like uint8 images.

MNIST digits are light strokes on a dark background, centred by centre of mass in
a 20×20 box inside 28×28. A photo or scan of ink on paper is the opposite: dark on
light, any size, off-centre. :func:`load_image` bridges the two so the model sees
what it was trained on:

1. decode (EXIF rotation applied, transparency composited onto white), grayscale;
2. invert when the background (the median of the border pixels) is light;
3. if the image is not already the model's size: subtract the paper tone, stretch
   the strokes to full white, crop to the ink, scale its longer side to 20/28 of the
   target, and centre it by centre of mass, as MNIST was made.

An image that already has the target size is only converted and inverted, so MNIST
images saved as PNG come back bit-identical. Pillow is an optional dependency
(``pip install 'keras2edge[image]'``); without it a :class:`DataError` says so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PILLOW_HINT = "reading image files needs Pillow: pip install 'keras2edge[image]' (or pip install pillow)"
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


def _decode(path: Path) -> np.ndarray:
    image_mod, image_ops = _pillow()
    try:
        with image_mod.open(path) as img:
            img.load()
            img = image_ops.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = image_mod.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = image_mod.alpha_composite(background, rgba)
            return np.asarray(img.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an image file") from None
    except image_mod.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


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
    rows = np.flatnonzero((gray > peak * INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((gray > peak * INK_THRESHOLD).any(axis=0))
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


def load_image(path: str | os.PathLike[str], image_shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read an image file as light-on-dark uint8 pixels of ``image_shape``.

    Parameters
    ----------
    path : str or path-like
        A PNG, JPEG, BMP, GIF, WebP or TIFF file.
    image_shape : (height, width)
        The model's image size (the manifest's ``preprocessing.image_shape``).

    Returns
    -------
    numpy.ndarray
        uint8 ``image_shape`` array, digit light on dark, ready for ``Model.predict``.

    Raises
    ------
    DataError
        Missing or unreadable file, not an image, or Pillow is not installed.

    Examples
    --------
    >>> pixels = load_image("photo_of_a_seven.jpg")  # doctest: +SKIP
    >>> pixels.shape, pixels.dtype
    ((28, 28), dtype('uint8'))
    """
    p = Path(path)
    gray = _decode(p)
    if gray.ndim != 2 or gray.size == 0:
        raise DataError(f"{p}: image has no pixels")
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray = 255 - gray
        background = 255 - background
    if gray.shape == tuple(image_shape):
        return np.ascontiguousarray(gray)
    return _centre(gray, background, tuple(image_shape))
