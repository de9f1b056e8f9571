"""Reading image files (PNG, JPEG, BMP, GIF, WebP, TIFF) as a model's uint8 pixels.

One implementation serves everything that turns an image into model input: the
training data loader (image folders), calibration and parity, and on the device
the CLI, the HTTP service and the camera loop. Training and the device therefore
see the same pixels for the same file:

1. :func:`decode_image` decodes a path, bytes or binary stream (images over
   :data:`MAX_PIXELS` are refused from their header, before decoding), applies
   the EXIF orientation, composites transparency onto white and converts to the
   colour mode (Pillow's ITU-R 601 luma for grayscale, as Keras' ``load_img``);
2. :func:`resize_image` resizes as Keras' ``image_dataset_from_directory`` does
   (bilinear with half-pixel centres and no antialiasing, as
   ``tf.image.resize``; optionally the largest centred crop of the target's aspect
   ratio first, as ``crop_to_aspect_ratio=True``), then rounds to uint8;
3. :func:`fit_image` turns decoded pixels into what the model takes: converts the
   colour mode, then resizes (step 2), or for models of MNIST-style digits hands
   the grayscale image to :func:`edge_runtime.digits.to_mnist_digit` instead;
4. :func:`load_image` decodes (step 1) and fits (step 3). A camera frame, already
   decoded, goes straight to :func:`fit_image`, so files, HTTP bodies and video
   frames reach the model through the same code.

Pillow is an optional dependency (``pip install 'keras2edge[image]'``); without it
a :class:`DataError` says so.
"""

from __future__ import annotations

import io
import os
from typing import Any, BinaryIO, Union

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.files import read_user_file
from edge_runtime.records.manifest import COLOR_MODES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
PILLOW_HINT = "reading image files needs Pillow: pip install 'keras2edge[image]' (or pip install pillow)"
# Decompression-bomb guard: images declaring more pixels are refused before decoding.
MAX_PIXELS = 4096 * 4096
# No photo a device classifies comes near this; it stops a path to a huge (or endless) file from filling memory.
MAX_IMAGE_BYTES = 128 * 2**20
ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]


def pillow() -> Any:
    """The ``PIL.Image`` module, or a :class:`DataError` saying how to install it."""
    try:
        from PIL import Image
    except ImportError:
        raise DataError(PILLOW_HINT) from None
    return Image


def check_color_mode(color_mode: str) -> None:
    """One-line ``DataError`` for a colour mode that is neither ``grayscale`` nor ``rgb``."""
    if color_mode not in COLOR_MODES:
        raise DataError(f"color_mode must be one of {', '.join(COLOR_MODES)}, got {color_mode!r}")


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
        raise DataError(f"{name}: more than {MAX_IMAGE_BYTES} bytes, too large for an image")
    return data, name


def decode_image(
    source: ImageSource,
    color_mode: str = "grayscale",
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> np.ndarray:
    """Decode an image file, bytes or binary stream to uint8 pixels at its own size.

    Parameters
    ----------
    source : str, path-like, bytes or binary file object
        A PNG, JPEG, BMP, GIF, WebP or TIFF image: a path, its content (e.g. an
        HTTP request body, so a server never writes it to disk), or a stream
        opened with ``"rb"``.
    color_mode : {"grayscale", "rgb"}
        ``"grayscale"`` gives ``(H, W)``, ``"rgb"`` gives ``(H, W, 3)``.
    name : str or None
        What error messages call the image; defaults to the path, or
        ``"image bytes"`` / ``"image stream"``.
    max_pixels : int
        Larger images are refused from their header, before decoding, so a small
        file declaring gigapixels cannot exhaust memory (default 4096 x 4096).
    min_side : int or None
        Let a JPEG decode at a reduced scale (the decoder's 1/2, 1/4 or 1/8) as long
        as its shorter side stays at least this long: a 12-megapixel phone photo
        then decodes in a fraction of the time. Only for callers that shrink the
        image anyway and need not match training's pixels exactly (the digit
        pipeline); None decodes every pixel.

    Returns
    -------
    numpy.ndarray
        uint8 pixels, EXIF orientation applied, transparency composited onto white.

    Raises
    ------
    DataError
        Missing or unreadable file, not an image, too large, an unknown
        ``color_mode``, or Pillow is not installed.

    Examples
    --------
    >>> decode_image("cat.jpg", "rgb").shape  # doctest: +SKIP
    (480, 640, 3)
    """
    check_color_mode(color_mode)
    data, default_name = _read(source)
    name = default_name if name is None else name
    image_mod = pillow()
    from PIL import ImageOps

    try:
        with image_mod.open(io.BytesIO(data)) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DataError(f"{name}: image is {width}x{height} pixels, more than the limit of {max_pixels}")
            if min_side is not None and img.format == "JPEG" and min(width, height) > 2 * min_side:
                factor = min_side / min(width, height)
                img.draft(img.mode, (max(1, int(width * factor)), max(1, int(height * factor))))
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = image_mod.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = image_mod.alpha_composite(background, rgba)
            pixels = np.asarray(img.convert("L" if color_mode == "grayscale" else "RGB"), dtype=np.uint8)
    except DataError:  # the size refusal above; DataError is a ValueError, keep it as it is
        raise
    except image_mod.UnidentifiedImageError:
        raise DataError(
            f"{name}: cannot read image (not a format Pillow can decode: PNG, JPEG, BMP, GIF, WebP, TIFF)"
        ) from None
    except image_mod.DecompressionBombError as exc:
        raise DataError(f"{name}: image too large ({exc})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # truncated or damaged data
        raise DataError(f"{name}: cannot read image ({type(exc).__name__}: {exc})") from None
    if pixels.size == 0:
        raise DataError(f"{name}: image has no pixels")
    return pixels


def aspect_crop(height: int, width: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of the largest centred crop with ``size``'s aspect ratio.

    The same integer arithmetic as Keras' ``smart_resize`` (``crop_to_aspect_ratio``),
    so a crop here takes exactly the pixels Keras took in training.

    Examples
    --------
    >>> aspect_crop(340, 500, (200, 200))
    (0, 80, 340, 340)
    """
    target_h, target_w = size
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def _bilinear_weights(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of ``tf.image.resize(method="bilinear")`` (half-pixel centres)."""
    position = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(position), in_size - 1).astype(np.intp)
    return lower, upper, (position - floor).astype(np.float32)


def resize_image(pixels: np.ndarray, size: tuple[int, int], *, crop_to_aspect_ratio: bool = False) -> np.ndarray:
    """Resize uint8 ``(H, W)`` or ``(H, W, C)`` pixels to ``size`` as Keras' data loader does.

    Bilinear interpolation with half-pixel centres and no antialiasing (what
    ``image_dataset_from_directory`` and ``tf.image.resize`` do by default), then
    rounded to uint8 so training data and device input are the same bytes.
    An image already of ``size`` is returned unchanged.

    Parameters
    ----------
    pixels : numpy.ndarray
        uint8 image, 2-D (one channel) or 3-D (channels last).
    size : (height, width)
        Target size.
    crop_to_aspect_ratio : bool
        First take the largest centred crop with the target's aspect ratio (no
        distortion), as Keras' ``crop_to_aspect_ratio=True``; otherwise the image
        is squashed to the target's aspect ratio.

    Returns
    -------
    numpy.ndarray
        uint8 of shape ``size`` (plus the channel axis if ``pixels`` had one).

    Examples
    --------
    >>> resize_image(np.array([[0, 255]], np.uint8), (1, 4)).tolist()
    [[0, 64, 191, 255]]
    """
    height, width = pixels.shape[:2]
    if crop_to_aspect_ratio:
        top, left, crop_h, crop_w = aspect_crop(height, width, size)
        pixels = pixels[top : top + crop_h, left : left + crop_w]
        height, width = crop_h, crop_w
    if (height, width) == tuple(size):
        return np.ascontiguousarray(pixels)
    y0, y1, wy = _bilinear_weights(size[0], height)
    x0, x1, wx = _bilinear_weights(size[1], width)
    image = pixels.astype(np.float32)
    if image.ndim == 3:
        wx, wy = wx[:, None], wy[:, None, None]
    else:
        wy = wy[:, None]
    # As TensorFlow: interpolate along x in the two source rows, then along y.
    top_row, bottom_row = image[y0], image[y1]
    top = top_row[:, x0] + (top_row[:, x1] - top_row[:, x0]) * wx
    bottom = bottom_row[:, x0] + (bottom_row[:, x1] - bottom_row[:, x0]) * wx
    out = top + (bottom - top) * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def load_image(
    source: ImageSource,
    image_shape: tuple[int, int] = (28, 28),
    *,
    color_mode: str = "grayscale",
    digits: bool = True,
    crop_to_aspect_ratio: bool = False,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray:
    """Read an image as the uint8 pixels a model of ``image_shape`` takes.

    Parameters
    ----------
    source : str, path-like, bytes or binary file object
        See :func:`decode_image`.
    image_shape : (height, width)
        The model's image size (the manifest's input description).
    color_mode : {"grayscale", "rgb"}
        The model's colour mode.
    digits : bool
        The model reads MNIST-style digits (light on dark, centred by mass): the
        image goes through :func:`edge_runtime.digits.to_mnist_digit` (grayscale
        only). Otherwise it is resized as in training (:func:`resize_image`).
    crop_to_aspect_ratio : bool
        Passed to :func:`resize_image` (the manifest records what training used).
    name : str or None
        What error messages call the image.
    max_pixels : int
        See :func:`decode_image`.

    Returns
    -------
    numpy.ndarray
        uint8 ``image_shape`` (grayscale) or ``(*image_shape, 3)`` (rgb), ready for
        ``Model.predict``.

    Raises
    ------
    DataError
        See :func:`decode_image`; also ``digits`` with ``color_mode="rgb"``.

    Examples
    --------
    >>> pixels = load_image("photo_of_a_seven.jpg")  # doctest: +SKIP
    >>> pixels.shape, pixels.dtype  # doctest: +SKIP
    ((28, 28), dtype('uint8'))
    >>> load_image("cat.jpg", (96, 128), color_mode="rgb", digits=False).shape  # doctest: +SKIP
    (96, 128, 3)
    """
    _check_digits(color_mode, digits)
    pixels = decode_image(source, color_mode, name=name, max_pixels=max_pixels, min_side=decode_min_side(digits))
    return fit_image(pixels, image_shape, color_mode=color_mode, digits=digits,
                     crop_to_aspect_ratio=crop_to_aspect_ratio)


def decode_min_side(digits: bool) -> int | None:
    """The ``min_side`` of :func:`decode_image` for a model's images: every caller decodes alike.

    The digit pipeline works on a copy of about ``WORK_SIDE`` pixels, so a large JPEG
    for a digit model may be decoded at a reduced scale (much faster, same result);
    any other model's image is decoded at full size. ``predict``, ``serve`` and
    ``watch`` must agree on this, or one photo would reach the model as different
    pixels depending on the command.
    """
    if not digits:
        return None
    from edge_runtime.digits import WORK_SIDE

    return 2 * WORK_SIDE


def _check_digits(color_mode: str, digits: bool) -> None:
    check_color_mode(color_mode)
    if digits and color_mode != "grayscale":
        raise DataError("the digit pipeline reads grayscale images; pass color_mode='grayscale' or digits=False")


def fit_image(
    pixels: np.ndarray,
    image_shape: tuple[int, int] = (28, 28),
    *,
    color_mode: str = "grayscale",
    digits: bool = True,
    crop_to_aspect_ratio: bool = False,
) -> np.ndarray:
    """Already-decoded pixels (a camera or video frame) as the uint8 input a model takes.

    What :func:`load_image` does after decoding, so a frame reaches the model
    exactly as the same picture saved to a file would: the colour conversion is
    Pillow's (ITU-R 601 luma for grayscale, as :func:`decode_image`), then the
    digit pipeline or the training resize.

    Parameters
    ----------
    pixels : numpy.ndarray
        uint8 ``(H, W)`` grayscale or ``(H, W, 3)`` **RGB** (convert OpenCV's BGR
        first: a colour model fed BGR sees red and blue swapped).
    image_shape : (height, width)
        The model's image size.
    color_mode : {"grayscale", "rgb"}
        The model's colour mode; ``pixels`` are converted to it when they differ.
    digits : bool
        MNIST-style digit model: :func:`edge_runtime.digits.to_mnist_digit`
        instead of a resize (grayscale only).
    crop_to_aspect_ratio : bool
        Take the largest centred crop of the model's aspect ratio before resizing
        (no distortion); otherwise squash. Ignored for digits, whose pipeline
        crops to the ink itself.

    Returns
    -------
    numpy.ndarray
        uint8 ``image_shape`` (grayscale) or ``(*image_shape, 3)`` (rgb).

    Raises
    ------
    DataError
        Not uint8 ``(H, W)`` / ``(H, W, 3)`` pixels, an unknown ``color_mode``,
        ``digits`` with ``color_mode="rgb"``, or Pillow is missing when a colour
        conversion or the digit pipeline needs it.

    Examples
    --------
    >>> frame = np.zeros((480, 640, 3), np.uint8); frame[..., 0] = 255  # pure red
    >>> fit_image(frame, (32, 32), color_mode="rgb", digits=False, crop_to_aspect_ratio=True)[0, 0].tolist()
    [255, 0, 0]
    >>> int(fit_image(frame, (8, 8), digits=False)[0, 0])  # luma of red: 0.299 * 255
    76
    """
    _check_digits(color_mode, digits)
    if (pixels.dtype != np.uint8 or not (pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 3))
            or pixels.size == 0):
        raise DataError(f"expected uint8 pixels of shape (H, W) or (H, W, 3), got {pixels.dtype} {pixels.shape}")
    if (pixels.ndim == 2) != (color_mode == "grayscale"):
        pixels = np.asarray(pillow().fromarray(pixels).convert("L" if color_mode == "grayscale" else "RGB"),
                            dtype=np.uint8)
    if digits:
        from edge_runtime.digits import to_mnist_digit

        return to_mnist_digit(pixels, tuple(image_shape))
    return resize_image(pixels, tuple(image_shape), crop_to_aspect_ratio=crop_to_aspect_ratio)
