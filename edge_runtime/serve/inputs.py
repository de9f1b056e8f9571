"""Request body -> the array handed to ``Model.predict``: the only place that knows input formats.

Accepted bodies:

- ``image/*`` (PNG, JPEG, GIF, BMP, WebP, TIFF: whatever Pillow reads): one image,
  decoded in memory by :func:`edge_runtime.images.load_image` (nothing is written to
  disk, no path is taken from the client) as the model's input description says (size,
  colour mode, digits);
- ``application/json`` ``{"images": [...]}``: a list of 2-D pixel arrays (or
  height x width x channels arrays for colour models), uint8 integers 0..255 or
  floats already scaled to [0, 1];
- ``application/json`` ``{"images_b64": [...]}``: a list of base64-encoded image files;
- ``application/json`` ``{"features": [[...], ...]}``: for feature models (``model.input.kind
  == "features"``), a list of rows of F raw feature values each, in the manifest's
  ``feature_names`` order (the model standardises them itself).

Keeping every input format in this one module means a new kind of input (colour
images, feature vectors) changes this file and nothing in the HTTP, batching or
worker code, which only ever sees the returned array.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from http import HTTPStatus
from typing import Any

import numpy as np

from edge_runtime.errors import Keras2EdgeError
from edge_runtime.images import load_image
from edge_runtime.records.manifest import InputSpec
from edge_runtime.serve.http import HTTPError


def decode_request(body: bytes, content_type: str, spec: InputSpec, max_images: int) -> np.ndarray:
    """Turn one request body into one batch for a single ``predict`` call.

    Parameters
    ----------
    body
        The request body.
    content_type
        The request's ``Content-Type`` header (parameters such as ``charset`` are ignored).
    spec
        The model's input description (``model.input``): how images are decoded.
    max_images
        More images are refused with 413 before any of them is decoded.

    Returns
    -------
    numpy.ndarray
        Images: uint8 or float32 ``(N, H, W)`` / ``(N, H, W, C)``; the dtype is kept so
        that ``predict`` applies the same scaling rules to JSON input as to an array
        passed in Python. Features: float32 ``(N, F)``.

    Raises
    ------
    HTTPError
        415 unknown content type (or an image sent to a feature model), 400 malformed
        body (the message names the item) or the wrong kind of input for the model,
        413 too many images or rows.

    Examples
    --------
    >>> decode_request(b'{"images": [[[0, 255]]]}', "application/json", InputSpec(shape=(1, 2, 1)), 8)
    array([[[  0, 255]]], dtype=uint8)
    >>> decode_request(b'{"images": []}', "application/json", InputSpec(), 8)
    Traceback (most recent call last):
    ...
    edge_runtime.serve.http.HTTPError: no images in the request
    >>> decode_request(b'{"features": [[1, 2.5]]}', "application/json", InputSpec("features", (2,), None), 8)
    array([[1. , 2.5]], dtype=float32)
    """
    media_type = content_type.split(";")[0].strip().lower()
    if media_type.startswith("image/"):  # the content decides the format; Pillow refuses what it cannot read
        if not spec.is_image:
            raise HTTPError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f'this model takes {spec.describe()}, not images: send JSON {{"features": [[...], ...]}}',
            )
        return _decode_image(body, "body", spec)[np.newaxis]
    if media_type != "application/json":
        raise HTTPError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type must be an image type (image/png, image/jpeg, ...) or application/json, "
            f"not {media_type[:60] or 'missing'!r}",
        )
    if spec.is_image:
        pixels = _integer_pixel_body(body)
        if pixels is not None and len(pixels) <= max_images:
            return pixels
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"body is not valid JSON: {exc}") from None
    keys = sorted(set(document) & {"images", "images_b64", "features"}) if isinstance(document, dict) else []
    if len(keys) != 1 or not isinstance(document[keys[0]], list):
        raise HTTPError(
            HTTPStatus.BAD_REQUEST,
            'JSON body must be an object with a list "images" or "images_b64" (image models) or "features"',
        )
    items = document[keys[0]]
    if (keys[0] == "features") == spec.is_image:
        wanted = '"images" or "images_b64"' if spec.is_image else '"features"'
        raise HTTPError(HTTPStatus.BAD_REQUEST, f'this model takes {spec.describe()}: send {wanted}, not "{keys[0]}"')
    what = "rows" if keys[0] == "features" else "images"
    if not items:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"no {what} in the request")
    if len(items) > max_images:
        raise HTTPError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"{len(items)} {what} in one request; the limit is {max_images} (--max-images)",
        )
    if keys[0] == "features":
        return _feature_rows(items, spec.shape[0])
    if keys[0] == "images_b64":
        return np.stack([_decode_image(_b64(item, i), f"images_b64[{i}]", spec) for i, item in enumerate(items)])
    return _pixel_array(items)


def _b64(item: object, index: int) -> bytes:
    if not isinstance(item, str):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"images_b64[{index}] must be a base64 string")
    try:
        return base64.b64decode(item, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"images_b64[{index}] is not valid base64: {exc}") from None


def _decode_image(data: bytes, where: str, spec: InputSpec) -> np.ndarray:
    """PNG/JPEG bytes -> model-sized uint8 image; errors name ``where`` (``body``, ``images_b64[3]``), never a path."""
    try:
        return load_image(
            data,
            spec.image_size,
            color_mode=spec.color_mode,
            digits=spec.digits,
            crop_to_aspect_ratio=spec.crop_to_aspect_ratio,
            name=where,
        )
    except Keras2EdgeError as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, str(exc)) from None


def _feature_rows(rows: list[Any], count: int) -> np.ndarray:
    """JSON rows of raw feature values -> float32 ``(N, F)``; errors name the row."""
    values: list[list[float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != count:
            got = f"{len(row)} values" if isinstance(row, list) else type(row).__name__
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"features[{i}] must be a list of {count} numbers, got {got}")
        values.append([_finite(value, i) for value in row])
    return np.asarray(values, dtype=np.float32)


def _finite(value: object, row: int) -> float:
    """One feature value; bool (an int to Python) and json.loads's NaN/Infinity are not measurements."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    except OverflowError:  # an integer too large for a float
        pass
    raise HTTPError(HTTPStatus.BAD_REQUEST, f"features[{row}] must hold only finite numbers, got {str(value)[:40]}")


def _pixel_array(items: list[Any]) -> np.ndarray:
    """JSON nested lists -> uint8 (integers 0..255) or float32 (anything else numeric).

    Items are 2-D (grey) or 3-D (height x width x channels); whether they fit the
    model is for ``predict`` to say.
    """
    try:
        array = np.asarray(items)
    except ValueError as exc:  # ragged nesting
        raise HTTPError(HTTPStatus.BAD_REQUEST, f'"images" is not a list of equally sized 2-D arrays: {exc}') from None
    if array.ndim not in (3, 4):
        raise HTTPError(
            HTTPStatus.BAD_REQUEST, f'"images" must be a list of 2-D pixel arrays, got {array.ndim - 1}-D items'
        )
    if array.dtype.kind in "iu":
        if array.size and (array.min() < 0 or array.max() > 255):
            raise HTTPError(HTTPStatus.BAD_REQUEST, '"images" integer pixels must be in 0..255')
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    raise HTTPError(HTTPStatus.BAD_REQUEST, '"images" must contain only numbers')


# The start of {"images": [...]}, the usual JSON body: white space allowed as JSON allows it.
_IMAGES_KEY = re.compile(rb'\s*\{\s*"images"\s*:\s*')
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")
_WHITE_SPACE = b" \t\r\n"
_ZERO = ord("0")


def _integer_pixel_body(body: bytes) -> np.ndarray | None:
    """uint8 images from a body of integer pixel lists, read without building Python lists; else None.

    ``json.loads`` and the nested-list conversion cost about 4 ms for four 40x48 RGB
    images, twenty times their inference, and the serving process pays it on every
    request. The numbers are read by :func:`numpy.fromstring` instead and the lists'
    shape from their brackets (about 1 ms). Only ``{"images": ...}`` whose brackets
    and commas are exactly those of a regular 3-D or 4-D array, with one JSON integer
    0..255 in every slot, is taken; anything else returns None and goes through
    ``json.loads``, which gives the same array or the message for what is wrong.
    """
    key = _IMAGES_KEY.match(body)
    tail = body.rstrip(_WHITE_SPACE)
    if key is None or not tail.endswith(b"}"):
        return None
    payload = tail[key.end() : -1].rstrip(_WHITE_SPACE)
    if payload.translate(None, b"0123456789[]," + _WHITE_SPACE):  # floats, signs, other keys, strings
        return None
    shape = _regular_shape(payload.translate(None, b"0123456789" + _WHITE_SPACE))
    if shape is None:
        return None
    compact = np.frombuffer(payload.translate(None, _WHITE_SPACE), dtype=np.uint8)
    digit = (compact >= _ZERO) & (compact <= _ZERO + 9)
    starts = digit[1:] & ~digit[:-1]  # where a number begins (the payload begins with "[")
    if int(starts.sum()) != math.prod(shape):  # an empty slot, which numpy would read as 0
        return None
    if (starts[:-1] & (compact[1:-1] == _ZERO) & digit[2:]).any():  # a leading zero, not JSON
        return None
    try:
        values = np.fromstring(payload.translate(_BRACKETS_TO_SPACES), dtype=np.int64, sep=",")
    except ValueError:  # two numbers in one slot ("1 2")
        return None
    if values.size != math.prod(shape) or values.max() > 255:  # a number beyond int64 reads as its maximum
        return None
    return values.astype(np.uint8).reshape(shape)


def _regular_shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape of a 3-D or 4-D array whose JSON, without its numbers, is ``skeleton``; None if not regular.

    The first list at each depth gives that depth's length; the whole skeleton must
    then be exactly the one of that shape, so ragged lists never pass.

    >>> _regular_shape(b"[[[,],[,]]]")
    (1, 2, 2)
    >>> _regular_shape(b"[[[,],[]]]") is None
    True
    """
    depth = len(skeleton) - len(skeleton.lstrip(b"["))
    if depth not in (3, 4):
        return None
    lengths = []
    element = 0  # skeleton bytes of one element of the level being read: a number has none
    for level in range(depth):  # innermost first
        end = skeleton.find(b"]" * (level + 1))
        if end < 0:
            return None
        first = skeleton[depth - level - 1 : end + level + 1]  # "[" + ",".join([element] * n) + "]"
        lengths.append((len(first) - 1) // (element + 1))
        element = len(first)
    shape = tuple(reversed(lengths))
    expected = b""
    for n in lengths:
        expected = b"[" + b",".join([expected] * n) + b"]"
    return shape if all(shape) and skeleton == expected else None

