"""MNIST-style digits from photos and scans: the steps only digit models need.

MNIST digits are light strokes on a dark background, centred by centre of mass in
a 20×20 box inside 28×28. A photo or scan of ink on paper is the opposite: dark on
light, any size, off-centre. :func:`to_mnist_digit` bridges the two so a digit
model sees what it was trained on. It is applied only to models whose manifest
says their data are MNIST-style digits (``input.digits``); every other image model
gets a plain resize (:func:`edge_runtime.images.resize_image`), as in training.

Steps: invert when the background (the median of the border pixels) is light;
then, if the image is not already the model's size: subtract the paper tone,
stretch the strokes to full white, crop to the ink, scale its longer side to 20/28
of the target, and centre it by centre of mass, as MNIST was made. An image that
already has the target size is only inverted (when light), so MNIST images saved
as PNG come back bit-identical.
"""

from __future__ import annotations

import numpy as np

# Fraction of the target side the digit's longer side is scaled to (MNIST: 20 of 28).
DIGIT_FRACTION = 20 / 28
# A pixel is ink when it is brighter than this fraction of the brightest pixel.
INK_THRESHOLD = 0.2


def _centre(gray: np.ndarray, background: float, shape: tuple[int, int]) -> np.ndarray:
    """Remove the paper tone, crop to the ink, fit it in the MNIST box, centre by mass."""
    from edge_runtime.images import pillow

    image_mod = pillow()
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


def to_mnist_digit(gray: np.ndarray, shape: tuple[int, int] = (28, 28)) -> np.ndarray:
    """A grayscale photo, scan or drawing of one digit as MNIST-like light-on-dark pixels.

    Parameters
    ----------
    gray : numpy.ndarray
        uint8 ``(H, W)`` grayscale image, any size, ink dark on light or light on dark.
    shape : (height, width)
        The model's image size.

    Returns
    -------
    numpy.ndarray
        uint8 ``shape`` array, digit light on dark, centred by mass in a 20/28 box.

    Examples
    --------
    >>> page = np.full((60, 40), 230, np.uint8); page[10:50, 18:22] = 20  # a dark "1"
    >>> digit = to_mnist_digit(page)
    >>> digit.shape, int(digit.max()), int(digit[0, 0])
    ((28, 28), 255, 0)
    """
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray = 255 - gray
        background = 255 - background
    if gray.shape == tuple(shape):
        return np.ascontiguousarray(gray)
    return _centre(gray, background, tuple(shape))
