"""Photo-like JPEGs of handwritten digits, made from real MNIST test digits.

A digit model is judged on MNIST itself, but what a person sends it is a phone photo
of a digit written on paper. This module makes such photos reproducibly, so the
tests and the benchmark report can measure how well the whole path
(:func:`edge_runtime.images.load_image` → model) copes, and a regression shows
(:func:`measure_digit_photos` is the benchmark's measurement).

Each photo (:func:`photo_of_digit`) is one MNIST test digit written as dark ink
(pencil to felt pen) on a light page of its own paper tone; the digit is off-centre,
its longer side 45–80 % of the page's shorter side, rotated up to ±12°; the page is
blurred, lit so that the light falls off by up to 25 % across it in a random
direction, given a slight colour cast and a little noise, and saved as a JPEG of
quality 70–95 (the ranges are the constants below, drawn uniformly). Every random
choice comes from ``numpy.random.default_rng([seed, index])``, so photo ``i`` is the
same whatever the set's size: the tests' 200 photos are the first of the
benchmark's 500.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.records.manifest import Manifest

# The seed of the published figures; change it and every photo changes.
PHOTO_SEED = 16
# Photos in the benchmark report's figure, in a full and a --quick run (the tests use 200).
BENCHMARK_PHOTOS = 500
QUICK_PHOTOS = 200
SKIPPED_NO_DATA = "skipped: no MNIST data"

# The conditions, as ranges the generator draws uniformly from.
PAGE_SHORT_SIDE = (240, 400)  # pixels
PAGE_ASPECT = (1.0, 1.45)  # longer / shorter side
DIGIT_FRACTION = (0.45, 0.80)  # digit's longer side / page's shorter side
ROTATION_DEGREES = 12.0
PAPER_TONE = (175, 245)  # grey level of the page where the light is brightest
INK_DARKNESS = (0.45, 0.85)  # fraction of the light the ink absorbs: pencil to felt pen
BLUR_SIGMA = (0.15, 0.5)  # Gaussian blur, in MNIST pixels (the digit's own scale)
LIGHT_FALLOFF = (0.0, 0.25)  # fraction of the light lost from one side of the page to the other
COLOUR_CAST = 0.06  # per-channel gain 1 ± this
NOISE_SIGMA = (1.5, 6.0)  # grey levels, per channel
JPEG_QUALITY = (70, 95)


def _ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of the digit's non-zero pixels (the whole image if blank)."""
    rows = np.flatnonzero(digit.any(axis=1))
    cols = np.flatnonzero(digit.any(axis=0))
    if rows.size == 0:
        return 0, digit.shape[0], 0, digit.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def photo_of_digit(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """One photo-like JPEG of an MNIST digit (light on dark, ``(28, 28)`` uint8) written on paper.

    Parameters
    ----------
    digit : numpy.ndarray
        uint8 ``(28, 28)``, MNIST form.
    rng : numpy.random.Generator
        Source of every random choice (see the module docstring for the ranges).

    Returns
    -------
    bytes
        An RGB JPEG.

    Examples
    --------
    >>> from PIL import Image
    >>> digit = np.zeros((28, 28), np.uint8); digit[4:24, 13:16] = 255
    >>> jpeg = photo_of_digit(digit, np.random.default_rng(0))
    >>> Image.open(io.BytesIO(jpeg)).format
    'JPEG'
    """
    from PIL import Image, ImageFilter

    short = int(rng.integers(PAGE_SHORT_SIDE[0], PAGE_SHORT_SIDE[1] + 1))
    long = int(round(short * rng.uniform(*PAGE_ASPECT)))
    height, width = (long, short) if rng.random() < 0.5 else (short, long)

    top, bottom, left, right = _ink_box(digit)
    ink = digit[top:bottom, left:right]
    scale = rng.uniform(*DIGIT_FRACTION) * short / max(ink.shape)  # page pixels per MNIST pixel
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    strokes = Image.fromarray(ink).resize(size, Image.Resampling.BICUBIC)
    strokes = strokes.rotate(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES), Image.Resampling.BICUBIC,
                             expand=True, fillcolor=0)
    coverage = np.asarray(strokes, dtype=np.float64) / 255.0
    # Off-centre: anywhere the whole digit stays on the page.
    y = int(rng.integers(0, max(1, height - coverage.shape[0]) + 1))
    x = int(rng.integers(0, max(1, width - coverage.shape[1]) + 1))
    cover = np.zeros((height, width))
    patch = coverage[: height - y, : width - x]
    cover[y : y + patch.shape[0], x : x + patch.shape[1]] = patch

    page = rng.uniform(*PAPER_TONE) * (1.0 - rng.uniform(*INK_DARKNESS) * cover)
    page_img = Image.fromarray(np.clip(np.rint(page), 0, 255).astype(np.uint8))
    blurred = np.asarray(page_img.filter(ImageFilter.GaussianBlur(rng.uniform(*BLUR_SIGMA) * scale)),
                         dtype=np.float64)

    # Light falls off linearly along a random direction, by up to LIGHT_FALLOFF across the page.
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    along = np.cos(angle) * xx + np.sin(angle) * yy
    along = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    light = 1.0 - rng.uniform(*LIGHT_FALLOFF) * along

    gains = 1.0 + rng.uniform(-COLOUR_CAST, COLOUR_CAST, size=3)
    rgb = (blurred * light)[..., None] * gains
    rgb += rng.normal(0.0, rng.uniform(*NOISE_SIGMA), size=rgb.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1)))
    return buffer.getvalue()


def digit_photos(images: np.ndarray, count: int, seed: int = PHOTO_SEED) -> list[bytes]:
    """Photos of the first ``count`` of ``images`` (MNIST form), photo ``i`` from ``default_rng([seed, i])``.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(N, 28, 28)`` digits, e.g. ``load_dataset().x_test``.
    count : int
        How many photos; at most ``N``.
    seed : int
        Seed of the set (:data:`PHOTO_SEED` for the published figures).

    Returns
    -------
    list of bytes
        JPEG bytes, in the order of ``images``; their labels are ``labels[:count]``.

    Raises
    ------
    ValueError
        ``count`` is not between 1 and ``len(images)``.

    Examples
    --------
    >>> digits = np.zeros((3, 28, 28), np.uint8); digits[:, 4:24, 12:16] = 255
    >>> photos = digit_photos(digits, 3)
    >>> len(photos), photos[:2] == digit_photos(digits, 2), photos == digit_photos(digits, 3, seed=1)
    (3, True, False)
    """
    if not 0 < count <= len(images):
        raise ValueError(f"count must be between 1 and {len(images)}, got {count}")
    return [photo_of_digit(images[i], np.random.default_rng([seed, i])) for i in range(count)]


def photo_of_size(digit: np.ndarray, megapixels: float, seed: int = PHOTO_SEED) -> bytes:
    """A photo of ``digit`` scaled up to about ``megapixels`` (keeping its aspect ratio), as a phone sends it.

    For timing and size limits: the digit step's cost grows with the pixels it is
    handed, and a 12-megapixel phone photo is what a user sends first.

    Parameters
    ----------
    digit : numpy.ndarray
        uint8 ``(28, 28)``, MNIST form.
    megapixels : float
        The photo's size in millions of pixels.
    seed : int
        Seed of the photo's conditions (those of photo 0 of :func:`digit_photos`).

    Returns
    -------
    bytes
        An RGB JPEG of quality 90.

    Examples
    --------
    >>> from PIL import Image
    >>> digit = np.zeros((28, 28), np.uint8); digit[4:24, 12:16] = 255
    >>> size = Image.open(io.BytesIO(photo_of_size(digit, 0.25))).size
    >>> round(size[0] * size[1] / 1e6, 2)
    0.25
    """
    from PIL import Image

    with Image.open(io.BytesIO(photo_of_digit(digit, np.random.default_rng([seed, 0])))) as small:
        factor = math.sqrt(megapixels * 1e6 / (small.width * small.height))
        big = small.resize((round(small.width * factor), round(small.height * factor)), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def digit_step_ms(megapixels: float, repeats: int) -> float:
    """Median milliseconds a JPEG photo of ``megapixels`` takes to become a model's 28×28 digit.

    What the CLI and ``serve`` pay before inference: :func:`edge_runtime.images.load_image`
    (a JPEG decoded at a reduced scale, then :mod:`edge_runtime.digits`). The digit
    is one of the samples embedded in ``edge_runtime``, so this runs on a device
    without the MNIST data set too.

    Parameters
    ----------
    megapixels : float
        Size of the photo (see :func:`photo_of_size`).
    repeats : int
        Timed runs; their median is returned.

    Returns
    -------
    float
        Milliseconds per photo.
    """
    from edge_runtime.images import load_image
    from edge_runtime.sample_set import embedded_digits

    photo = photo_of_size(embedded_digits().inputs[0], megapixels)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        load_image(photo)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def _mnist_test() -> tuple[np.ndarray, np.ndarray] | None:
    """The MNIST test split, or ``None`` where it is not installed (a device's wheel leaves it out)."""
    from edge_runtime.errors import DataError

    try:
        from train.data import load_dataset

        data = load_dataset()
    except (ImportError, DataError, OSError):
        return None
    return data.x_test, data.y_test


def _accuracy(model: Any, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a loaded ``edge_runtime`` model on uint8 ``images`` (MNIST, or photos read by
    ``load_image``)."""
    predicted = np.argmax(model.predict(images), axis=1)
    return float(np.mean(predicted == np.asarray(labels)))


def measure_digit_photos(artifact_dir: Path, manifest: Manifest, quick: bool = False) -> dict[str, Any]:
    """Accuracy of every artifact on the photo set next to plain MNIST, and the digit step's time per photo.

    Parameters
    ----------
    artifact_dir : Path
        The artifacts and their ``manifest.json``.
    manifest : Manifest
        The directory's manifest record; only models whose input is MNIST-style
        digits (``input.digits``) are measured.
    quick : bool
        :data:`QUICK_PHOTOS` photos and 3 timed runs per size instead of
        :data:`BENCHMARK_PHOTOS` and 7.

    Returns
    -------
    dict
        ``status`` ("measured" or why not), ``photos``, ``seed``, ``step_ms``
        (per photo at 1 and 12 megapixels) and ``artifacts`` (name, backend,
        ``mnist_accuracy``, ``photo_accuracy``, or ``error``).
    """
    if not manifest.input.digits:
        return {"status": "skipped: the model does not read MNIST-style digits"}
    import edge_runtime
    from edge_runtime.errors import Keras2EdgeError
    from edge_runtime.images import load_image

    count = QUICK_PHOTOS if quick else BENCHMARK_PHOTOS
    result: dict[str, Any] = {"status": "measured", "photos": count, "seed": PHOTO_SEED,
                              "step_ms": {f"{mp} MP": digit_step_ms(mp, 3 if quick else 7) for mp in (1, 12)},
                              "artifacts": []}
    data = _mnist_test()
    if data is None:
        result["status"] = SKIPPED_NO_DATA
        return result
    images, labels = data
    photos = None
    for art in manifest.artifacts:
        try:
            model = edge_runtime.load(artifact_dir / art.file)
        except Keras2EdgeError as exc:
            result["artifacts"].append({"name": art.name, "error": str(exc)})
            continue
        if photos is None:  # every artifact of a manifest reads the same images
            photos = np.stack([load_image(jpeg, model.input.image_size) for jpeg in digit_photos(images, count)])
        result["artifacts"].append({"name": art.name, "backend": model.backend,
                                    "mnist_accuracy": _accuracy(model, images, labels),
                                    "photo_accuracy": _accuracy(model, photos, labels[:count])})
    return result
