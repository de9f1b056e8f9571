"""The JSON pixel-list fast path of ``serve``: the same array as ``json.loads``, or it steps aside.

``edge_runtime.serve.inputs._integer_pixel_body`` reads ``{"images": [...]}`` of
integers without building Python lists; for every body it takes it must give exactly
what the general path (``json.loads`` and ``numpy.asarray``) gives, and every body it
cannot vouch for (not JSON, ragged, floats, out of range) must go to the general path,
whose answer, array or error, the client then gets.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.records.manifest import InputSpec
from edge_runtime.serve.http import HTTPError
from edge_runtime.serve.inputs import _integer_pixel_body, decode_request

RGB = InputSpec(shape=(3, 4, 3), color_mode="rgb")
GRAY = InputSpec(shape=(3, 4, 1))


def _general(body: bytes) -> np.ndarray:
    """What the JSON path makes of ``body`` (the fast path bypassed)."""
    array = np.asarray(json.loads(body)["images"])
    assert array.dtype.kind in "iu" and array.min() >= 0 and array.max() <= 255
    return array.astype(np.uint8)


@pytest.mark.parametrize("shape", [(1, 3, 4), (5, 3, 4), (1, 3, 4, 3), (2, 3, 4, 3), (1, 1, 1), (2, 1, 1, 1)])
@pytest.mark.parametrize("dumps", [
    lambda doc: json.dumps(doc),
    lambda doc: json.dumps(doc, separators=(",", ":")),
    lambda doc: json.dumps(doc, indent=2),
    lambda doc: "\r\n " + json.dumps(doc).replace(", ", " ,\t") + " \n",
])
def test_integer_pixel_lists_are_read_exactly_as_json_reads_them(shape, dumps):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    pixels.flat[0], pixels.flat[-1] = 0, 255
    body = dumps({"images": pixels.tolist()}).encode()
    fast = _integer_pixel_body(body)
    assert fast is not None, body[:80]
    assert fast.dtype == np.uint8 and fast.shape == shape
    np.testing.assert_array_equal(fast, _general(body))


@pytest.mark.parametrize("body", [
    b'{"images": [[[1, 2], [3]]]}',  # ragged
    b'{"images": [[[1, 2], [3, 4]], [[5, 6]]]}',  # ragged at another depth
    b'{"images": [[[1], [2]], [[3, 4]]]}',  # as many numbers as a regular array, still ragged
    b'{"images": [[[1, 2], [3, 4], []]]}',
    b'{"images": [[[,3]]]}',  # empty slot: not JSON, numpy would read 0
    b'{"images": [[[1,,3]]]}',
    b'{"images": [[[1,]]]}',
    b'{"images": [[[]]]}',
    b'{"images": [[[007]]]}',  # leading zero: not JSON
    b'{"images": [[[1 2]]]}',  # two numbers in one slot
    b'{"images": [[[256]]]}',
    b'{"images": [[[99999999999999999999999]]]}',
    b'{"images": [[[-1]]]}',
    b'{"images": [[[0.5]]]}',
    b'{"images": [[[1e2]]]}',
    b'{"images": [[1, 2]]}',  # 1-D items
    b'{"images": [[[[[1]]]]]}',  # 4-D items
    b'{"images": []}',
    b'{"images": [[[1]]], "x": 1}',
    b'{"images": [[[1]]]',  # truncated
    b'{"images": [[[1]]]}}',
    b'{"images_b64": [[[1]]]}',
    b'{"features": [[1, 2]]}',
    b'[[[[1]]]]',
])
def test_anything_else_goes_to_the_general_path(body):
    assert _integer_pixel_body(body) is None


def test_decode_request_answers_the_fast_path_and_the_general_path_alike():
    pixels = np.arange(36, dtype=np.uint8).reshape(1, 3, 4, 3)
    body = json.dumps({"images": pixels.tolist()}).encode()
    np.testing.assert_array_equal(decode_request(body, "application/json", RGB, 8), pixels)
    floats = json.dumps({"images": (pixels / 255).tolist()}).encode()  # general path: float32 pixels
    assert decode_request(floats, "application/json", RGB, 8).dtype == np.float32
    with pytest.raises(HTTPError, match="integer pixels must be in 0..255"):
        decode_request(b'{"images": [[[256]]]}', "application/json", GRAY, 8)
    with pytest.raises(HTTPError, match="2 images in one request; the limit is 1"):
        decode_request(b'{"images": [[[1]], [[2]]]}', "application/json", GRAY, 1)
    with pytest.raises(HTTPError, match="not valid JSON"):
        decode_request(b'{"images": [[[007]]]}', "application/json", GRAY, 8)
