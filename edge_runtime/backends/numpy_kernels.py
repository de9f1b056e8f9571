"""NumPy kernels shared by the pure-NumPy TFLite and ONNX executors.

Integer arithmetic follows the TFLite and ONNX quantisation specs: real value =
``scale * (q - zero_point)``, int8 × int8 products accumulated exactly (in float64,
which holds every int32 accumulator these models produce exactly and lets BLAS do
the work), then requantised with one float multiply and round-to-nearest-even, as
XNNPACK and ONNX Runtime do.

Convolutions are written once, for NHWC input and ``(KH, KW, Cin, Cout)`` filters;
the ONNX executor transposes NCHW around them.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.preprocessing import INT_RANGES, saturate  # noqa: F401  (saturate: the kernels share the runtime's rounding rule)


def per_axis(values: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """Reshape a per-channel parameter vector to broadcast along ``axis`` of an ``ndim`` array."""
    values = np.asarray(values)
    if values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def softmax(x: np.ndarray, axis: int = -1, beta: float = 1.0) -> np.ndarray:
    """Numerically stable softmax in float32."""
    shifted = (x - x.max(axis=axis, keepdims=True)) * np.float32(beta)
    e = np.exp(shifted)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite/ONNX ``SAME_UPPER`` padding: output ``ceil(size / stride)``, extra pad at the end."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """Patches of NHWC ``x`` as a view ``(N, OH, OW, C, KH, KW)``."""
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    view = np.lib.stride_tricks.sliding_window_view(x, (eh, ew), axis=(1, 2))
    return view[:, :: stride[0], :: stride[1], :, :: dilation[0], :: dilation[1]]


def pad_nhwc(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0) -> np.ndarray:
    """Pad H and W of an NHWC array by ``(top, bottom, left, right)``."""
    if not any(pads):
        return x
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def conv2d_nhwc(
    x: np.ndarray,
    weights: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
    pad_value: float = 0,
    dtype: type = np.float32,
) -> np.ndarray:
    """2-D convolution (cross-correlation) of NHWC ``x`` with ``(KH, KW, Cin, Cout)`` weights.

    ``dtype`` is the accumulation type: float32 for float models, float64 for exact
    integer accumulation of (already zero-point-shifted) int8 values.
    """
    kh, kw, cin, cout = weights.shape
    if (kh, kw, *stride) == (1, 1, 1, 1) and not any(pads):  # pointwise: already one row per pixel
        rows = np.asarray(x, dtype=dtype).reshape(-1, cin)
        return (rows @ weights.reshape(cin, cout).astype(dtype, copy=False)).reshape(*x.shape[:3], cout)
    patches = _windows(pad_nhwc(x, pads, pad_value), kh, kw, stride, dilation)
    n, oh, ow = patches.shape[:3]
    # (N, OH, OW, C, KH, KW) -> rows of (KH, KW, C) to match the weight layout.
    cols = np.ascontiguousarray(patches.transpose(0, 1, 2, 4, 5, 3), dtype=dtype).reshape(n * oh * ow, kh * kw * cin)
    out = cols @ weights.reshape(kh * kw * cin, cout).astype(dtype, copy=False)
    return out.reshape(n, oh, ow, cout)


def depthwise_conv2d_nhwc(
    x: np.ndarray,
    weights: np.ndarray,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pads: tuple[int, int, int, int],
    pad_value: float = 0,
    dtype: type = np.float32,
) -> np.ndarray:
    """Depthwise convolution of NHWC ``x`` with ``(KH, KW, 1, C * M)`` weights.

    Output channel ``c * M + m`` filters input channel ``c`` (TFLite's
    ``depth_multiplier`` layout and ONNX's ``group = C``). One multiply-add of the
    whole image per filter tap: a depthwise filter has too few taps per output
    for im2col's matmul to pay for the copy.

    Examples
    --------
    A 2×2 box filter on each of two channels (values 0, 2, 4, 6 and 1, 3, 5, 7):

    >>> x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    >>> depthwise_conv2d_nhwc(x, np.ones((2, 2, 1, 2), np.float32), (1, 1), (1, 1), (0, 0, 0, 0)).ravel().tolist()
    [12.0, 16.0]
    """
    kh, kw, _, cout = weights.shape
    x = np.ascontiguousarray(pad_nhwc(np.asarray(x, dtype=dtype), pads, pad_value))
    if cout != x.shape[3]:
        x = np.repeat(x, cout // x.shape[3], axis=3)
    taps = weights.reshape(kh * kw, cout).astype(dtype, copy=False)
    views = _tap_views(x, kh, kw, stride, dilation)
    out = views[0] * taps[0]
    for view, tap in zip(views[1:], taps[1:]):
        out += view * tap
    return out


def pool_sums_nhwc(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
    dtype: type = np.float32,
) -> tuple[np.ndarray, np.ndarray]:
    """Window sums of NHWC ``x`` and how many real (unpadded) cells each window covers.

    Average pooling is ``sums / counts`` (TFLite, ONNX ``count_include_pad=0``) or
    ``sums / (KH * KW)``; the integer kernels round the quotient their own way.
    Taps are added one at a time, row by row, the order ONNX Runtime's pooling
    loops use, so float32 sums match it bit for bit (padding adds exact zeros).
    ``counts`` has shape ``(1, OH, OW, 1)``.

    Examples
    --------
    A 3×3 window, stride 2, padded by 1: every window of a 3×3 image covers 4 real cells.

    >>> sums, counts = pool_sums_nhwc(np.ones((1, 3, 3, 1), np.float32), (3, 3), (2, 2), (1, 1, 1, 1))
    >>> sums.ravel().tolist(), counts.ravel().tolist()
    ([4.0, 4.0, 4.0, 4.0], [4.0, 4.0, 4.0, 4.0])
    """
    ones = np.ones((1, x.shape[1], x.shape[2], 1), dtype=dtype)
    return _tap_sums(np.asarray(x, dtype=dtype), kernel, stride, pads), _tap_sums(ones, kernel, stride, pads)


def _tap_sums(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int]
) -> np.ndarray:
    views = _tap_views(np.ascontiguousarray(pad_nhwc(x, pads)), kernel[0], kernel[1], stride, (1, 1))
    out = views[0].copy()
    for view in views[1:]:
        out += view
    return out


def _tap_views(x: np.ndarray, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]) -> list[np.ndarray]:
    """For each filter tap, row by row, the view of (padded) NHWC ``x`` it touches at every output position."""
    oh = (x.shape[1] - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (x.shape[2] - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    return [
        x[
            :,
            i * dilation[0] : i * dilation[0] + (oh - 1) * stride[0] + 1 : stride[0],
            j * dilation[1] : j * dilation[1] + (ow - 1) * stride[1] + 1 : stride[1],
        ]
        for i in range(kh)
        for j in range(kw)
    ]


def max_pool_nhwc(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int]
) -> np.ndarray:
    """Max pooling of NHWC ``x``; padded cells never win."""
    if any(pads):
        low = np.finfo(x.dtype).min if x.dtype.kind == "f" else np.iinfo(x.dtype).min
        x = pad_nhwc(x, pads, low)
    views = _tap_views(np.ascontiguousarray(x), kernel[0], kernel[1], stride, (1, 1))
    out = views[0].copy()
    for view in views[1:]:
        np.maximum(out, view, out=out)
    return out


def exact_dtype(depth: int, weight_bound: int = 128) -> type:
    """The cheapest float type that accumulates ``depth`` integer products exactly.

    Each product is a zero-point-shifted 8-bit activation (magnitude <= 255) times
    a weight of magnitude <= ``weight_bound`` (128 for symmetric int8 weights, up
    to 255 for uint8 weights with a zero point). float32 is exact while every
    partial sum stays below 2**24; otherwise float64.

    Examples
    --------
    >>> exact_dtype(9).__name__, exact_dtype(1152).__name__, exact_dtype(300, weight_bound=255).__name__
    ('float32', 'float64', 'float64')
    """
    return np.float32 if depth * 255 * weight_bound < 2**24 else np.float64


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, zero_point: int, dtype: np.dtype, bounds: tuple[int, int] | None = None
) -> np.ndarray:
    """int32 accumulator -> quantised output: ``clip(rint(acc * multiplier) + zero_point)``.

    The product is taken in float32, like XNNPACK's and ONNX Runtime's fp32
    requantisation. ``bounds`` narrows the clip to a fused activation's range;
    by default it is ``dtype``'s range.
    """
    lo, hi = INT_RANGES[np.dtype(dtype)] if bounds is None else bounds
    y = acc.astype(np.float32)
    y *= multiplier
    np.rint(y, out=y)
    y += zero_point
    return np.clip(y, lo, hi, out=y).astype(dtype)
