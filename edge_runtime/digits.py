"""MNIST-style digits from photos and scans: the steps only digit models need.

MNIST digits are light strokes on a dark background, centred by centre of mass in
a 20×20 box inside 28×28. A photo of a digit written on paper is the opposite: dark
ink on light paper, any size, off-centre, and the paper itself is not one tone:
light falls off across the page, shadows lie on it, the camera adds blur, noise and
a colour cast. :func:`to_mnist_digit` bridges the two so a digit model sees what it
was trained on. It is applied only to models whose manifest says their data are
MNIST-style digits; every other image model gets a plain resize
(:func:`edge_runtime.images.resize_image`), as in training.

Steps, for an image that is not already the model's size:

1. **Downscale** a large photo by an integer factor (box average) until its shorter
   side is near :data:`WORK_SIDE`: plenty of pixels for a 20-pixel digit, and every
   later step then costs the same for a 12-megapixel photo as for a scan.
2. **Polarity**: the ink is dark unless both the histogram and the shapes say it is
   light (:func:`_light_on_dark`).
3. **Paper**: a grey-level closing with a large square (:data:`PAPER_SQUARE` of the
   shorter side) fills in the strokes and keeps everything wider, so light falling
   off across the page, a shadow's edge and the table beyond the page's edge stay
   paper, not one tone taken from the border. How much darker than it each pixel
   is, is the ink signal.
4. **Ink**: signal above a threshold chosen from its own histogram (Otsu's
   between-class variance), but never below the noise (:data:`NOISE_SIGMAS` robust
   standard deviations) nor :data:`MIN_CONTRAST` grey levels; a page where nothing
   stands out that far is blank.
5. **The digit**: connected groups of ink pixels (labelled run by run, in numpy and
   a short loop); page edges and the table reach the image's sides and are
   dropped, the heaviest remaining group of digit size is the digit, and the groups
   near it carrying at least :data:`MIN_PART` of its ink are its other strokes.
   Specks are too small or too far away to count.
6. **As MNIST was made** (from binary NIST scans): the digit's ink, as a binary
   image, is cropped, its longer side scaled to 20/28 of the target with
   antialiasing (which gives the strokes MNIST's soft edges), and centred by
   centre of mass.

An image that already has the target size is only inverted (when its border is
light), so MNIST images saved as PNG come back bit-identical. Needs numpy and
Pillow only: no OpenCV or SciPy, which a Raspberry Pi may not have.
"""

from __future__ import annotations

import numpy as np

# Fraction of the target side the digit's longer side is scaled to (MNIST: 20 of 28).
DIGIT_FRACTION = 20 / 28
# Photos are box-downscaled by the integer factor that brings their shorter side nearest this.
WORK_SIDE = 200
# Squares, as fractions of the image's shorter side: the ink's polarity is judged with one
# about as wide as a stroke of a large digit (wider, and the gaps between strokes count
# too), the paper found with one wider than any stroke.
POLARITY_SQUARE = 0.1
PAPER_SQUARE = 0.25
# Ink must stand at least this many grey levels out from the paper...
MIN_CONTRAST = 20.0
# ...and this many robust standard deviations of the paper's noise above its median.
NOISE_SIGMAS = 6.0
# A group of ink pixels is part of the digit when it has at least this fraction of the
# main group's ink and lies within this fraction of the digit's size from it.
MIN_PART = 0.05
PART_DISTANCE = 0.5
# A digit smaller than this fraction of the image's shorter side is a speck: blank page.
MIN_DIGIT_SIZE = 0.05


def _downscale(gray: np.ndarray) -> np.ndarray:
    """``gray`` box-averaged by the integer factor that brings its shorter side nearest :data:`WORK_SIDE`."""
    factor = round(min(gray.shape) / WORK_SIDE)
    if factor < 2:
        return gray
    from edge_runtime.images import pillow

    return np.asarray(pillow().fromarray(gray).reduce(factor))


def _running(image: np.ndarray, size: int, op: np.ufunc) -> np.ndarray:
    """``op`` (``np.maximum`` or ``np.minimum``) over the ``size`` x ``size`` square centred on each pixel.

    The image's edge pixels are repeated outwards. Each axis takes about log2(size)
    whole-array steps (windows of 1, 2, 4, ... pixels, then one overlapping step),
    so a large square costs little more than a small one.
    """
    half = size // 2
    out = np.pad(image, half, mode="edge")
    length = 2 * half + 1
    for axis in (0, 1):
        out = np.moveaxis(out, axis, 0)
        width = 1
        while 2 * width <= length:
            out = op(out[:-width], out[width:])
            width *= 2
        if width < length:
            out = op(out[: len(out) - (length - width)], out[length - width :])
        out = np.moveaxis(out, 0, axis)
    return out


def _closing(image: np.ndarray, size: int) -> np.ndarray:
    """Grey-level closing: dark features narrower than ``size`` filled in with what surrounds them."""
    return _running(_running(image, size, np.maximum), size, np.minimum)


def _opening(image: np.ndarray, size: int) -> np.ndarray:
    """Grey-level opening: light features narrower than ``size`` levelled with what surrounds them."""
    return _running(_running(image, size, np.minimum), size, np.maximum)


def _light_on_dark(gray: np.ndarray, image: np.ndarray) -> bool:
    """Whether the ink is lighter than the paper: only when two independent signs agree.

    Ink on paper is by far the usual photo, and each sign alone can mislead: the
    histogram is skewed towards the ink (the background, the majority, sits at its
    other end), but a shadow over most of the page skews it too; the ink is what is
    thin, so an opening (which removes light features narrower than a stroke of a
    large digit) removes at least as much as a closing does, but the gaps inside a
    small digit are thin as well. (Strokes wider than the square leave both at
    zero: then the histogram decides.) Within half a square of the image's sides
    either can be wrong (what lies beyond is unknown), so those pixels do not count.
    """
    counts = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    median = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2))
    if counts @ (np.arange(256, dtype=np.float64) - median) ** 3 <= 0:
        return False
    size = max(3, round(min(image.shape) * POLARITY_SQUARE))
    # Half a square from the image's sides, what lies beyond them is unknown: left out.
    inner = (slice(size // 2, -(size // 2) or None),) * 2
    light = image - _opening(image, size)
    dark = _closing(image, size) - image
    return bool(np.sum(light[inner]) >= np.sum(dark[inner]))


def _ink_signal(gray: np.ndarray) -> np.ndarray:
    """How far each pixel stands out from the paper towards the ink: ink positive, paper near zero.

    The paper is the image with its strokes closed: a grey-level closing with a
    square of :data:`PAPER_SQUARE` fills every dark feature narrower than it (the
    strokes, even thick ones) and keeps what is wider (light falling off across the
    page, a shadow's edge, the table beyond the page's edge) exactly where it is.
    The ink is how much darker than that paper each pixel is. Light ink on a dark
    ground gets the mirror image, an opening.
    """
    image = gray.astype(np.float32)
    size = max(3, round(min(image.shape) * PAPER_SQUARE))
    if _light_on_dark(gray, image):
        return image - _opening(image, size)
    return _closing(image, size) - image


def _otsu(signal: np.ndarray, top: float) -> float:
    """Otsu's threshold of ``signal`` (values in ``[0, top]``): the split with the largest between-class variance."""
    bins = np.minimum((signal * (256 / top)).astype(np.intp), 255)
    counts = np.bincount(bins.ravel(), minlength=256).astype(np.float64)
    below = np.cumsum(counts)[:-1]
    mass = np.cumsum(counts * np.arange(256))
    above = below[-1] + counts[-1] - below
    with np.errstate(divide="ignore", invalid="ignore"):
        between = below * above * (mass[:-1] / below - (mass[-1] - mass[:-1]) / above) ** 2
    return (int(np.argmax(np.nan_to_num(between))) + 1) * top / 256


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Horizontal runs of True in ``mask``: row, first column, column after the last; in row-major order."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def _run_components(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, height: int) -> np.ndarray:
    """Component label of every run, runs touching across rows (8-connectivity) joined by union-find.

    Working on runs rather than pixels keeps this pure-Python loop short (a digit
    crosses a row a few times), so no SciPy is needed for labelling.
    """
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(height + 1)).tolist()
    s, e = starts.tolist(), ends.tolist()
    for y in range(1, height):
        i, i_end, j, j_end = first[y - 1], first[y], first[y], first[y + 1]
        while i < i_end and j < j_end:
            if s[j] <= e[i] and s[i] <= e[j]:  # overlapping or diagonally adjacent
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if e[i] < e[j]:
                i += 1
            else:
                j += 1
    return np.array([root(i) for i in range(len(rows))], dtype=np.intp)


def _digit_mask(ink: np.ndarray) -> np.ndarray:
    """The ink pixels that make up the digit: specks and page edges dropped (all False for none)."""
    height, width = ink.shape
    rows, starts, ends = _runs(ink)
    if rows.size == 0:
        return np.zeros(ink.shape, dtype=bool)
    labels = _run_components(rows, starts, ends, height)
    ids, run_label = np.unique(labels, return_inverse=True)
    count = len(ids)
    mass = np.bincount(run_label, ends - starts, minlength=count)  # ink pixels per component
    top, bottom = np.full(count, height), np.zeros(count, np.intp)
    left, right = np.full(count, width), np.zeros(count, np.intp)
    np.minimum.at(top, run_label, rows)
    np.maximum.at(bottom, run_label, rows + 1)
    np.minimum.at(left, run_label, starts)
    np.maximum.at(right, run_label, ends)
    # Page edges and the table beyond them reach the image's sides; a digit seldom does. The
    # digit is the heaviest group of digit size away from the sides, else (a tightly cropped
    # digit) the heaviest one touching a single side: a page edge crosses the photo to another.
    sides = (top == 0).astype(np.intp) + (bottom == height) + (left == 0) + (right == width)
    sized = np.maximum(bottom - top, right - left) >= MIN_DIGIT_SIZE * min(height, width)
    for candidates in (sized & (sides == 0), sized & (sides == 1)):
        if candidates.any():
            main = int(np.argmax(np.where(candidates, mass, -1)))
            break
    else:
        return np.zeros(ink.shape, dtype=bool)  # only specks and page edges: a blank page
    reach = PART_DISTANCE * max(bottom[main] - top[main], right[main] - left[main])
    near = ((top < bottom[main] + reach) & (bottom > top[main] - reach)
            & (left < right[main] + reach) & (right > left[main] - reach))
    keep = near & (mass >= MIN_PART * mass[main]) & (sides == 0)
    keep[main] = True
    kept = keep[run_label]
    # Paint the kept runs: +1 at each start, -1 after each end, cumulative sum along the rows.
    paint = np.zeros((height, width + 1), np.int32)
    np.add.at(paint, (rows[kept], starts[kept]), 1)
    np.add.at(paint, (rows[kept], ends[kept]), -1)
    return np.cumsum(paint, axis=1)[:, :width] > 0


def _centre(ink: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fit the cropped ink's longer side in the MNIST box, then place it centred by mass."""
    from edge_runtime.images import pillow

    image_mod = pillow()
    out = np.zeros(shape, dtype=np.uint8)
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
        uint8 ``shape`` array, digit light on dark, centred by mass in a 20/28 box;
        all zeros for a blank page.

    Examples
    --------
    >>> page = np.full((60, 40), 230, np.uint8); page[10:50, 18:22] = 20  # a dark "1"
    >>> digit = to_mnist_digit(page)
    >>> digit.shape, int(digit.max()), int(digit[0, 0])
    ((28, 28), 255, 0)
    """
    shape = (int(shape[0]), int(shape[1]))
    if gray.shape == shape:
        # Already framed as MNIST: the border is background, light when the ink is dark.
        border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
        return np.ascontiguousarray(255 - gray if np.median(border) > 127 else gray)
    signal = _ink_signal(_downscale(gray))  # >= 0: a closing never darkens, an opening never lightens
    peak = float(signal.max())
    if peak < MIN_CONTRAST:
        return np.zeros(shape, dtype=np.uint8)  # blank page: nothing stands out
    sample = signal[::2, ::2]  # a quarter of the pixels estimate the noise as well
    median = float(np.median(sample))
    floor = median + max(NOISE_SIGMAS * 1.4826 * float(np.median(np.abs(sample - median))), MIN_CONTRAST)
    mask = _digit_mask(signal > max(_otsu(signal, peak), floor))
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(shape, dtype=np.uint8)  # only specks and page edges
    cols = np.flatnonzero(mask.any(axis=0))
    ink = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return _centre(ink.astype(np.uint8) * np.uint8(255), shape)
