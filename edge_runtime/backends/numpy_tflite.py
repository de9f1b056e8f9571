"""Execute a ``.tflite`` flatbuffer with NumPy, read through the pure-Python ``tflite`` package.

Supported builtin operators are those the keras2edge converter emits for common
Keras layers (Dense, Conv2D, DepthwiseConv2D, SeparableConv2D, folded
BatchNormalization, Max/AveragePooling2D, GlobalAveragePooling2D, ReLU / ReLU6,
Softmax, Add, Concatenate, Reshape / Flatten, and a feature model's Normalization)
in all four TFLite flavours (float32, float16 weights, dynamic-range int8, full
int8): FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D, MAX_POOL_2D, AVERAGE_POOL_2D,
MEAN, ADD, SUB (float), MUL,
CONCATENATION, SOFTMAX, RELU, RELU6, RESHAPE, SHAPE, STRIDED_SLICE, PACK,
TRANSPOSE, QUANTIZE and DEQUANTIZE. Any other operator is refused at load time
with a :class:`~edge_runtime.errors.BackendError` naming it.

Quantised kernels follow the TFLite quantisation spec (int8 activations with a
zero point, symmetric int8 weights, per-channel for FULLY_CONNECTED, CONV_2D and
DEPTHWISE_CONV_2D, int32 bias at ``input_scale * weight_scale``) and round the way
LiteRT's default XNNPACK path does, so full-int8 results are bit-identical to it.
Dynamic-range ("hybrid") kernels quantise activations asymmetrically to int8 at
run time, as XNNPACK does: per row for FULLY_CONNECTED and 1×1 convolutions, per
image for other convolutions.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.backends import numpy_kernels as K
from edge_runtime.errors import BackendError, ModelLoadError

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_, 7: np.int16, 9: np.int8}
# Errors the flatbuffer accessors raise on damaged input.
PARSE_ERRORS = (struct.error, IndexError, ValueError, TypeError, AttributeError, KeyError, OverflowError, MemoryError)
# Fused activation -> (low, high) bounds in real values.
_ACTIVATIONS = {0: (-np.inf, np.inf), 1: (0.0, np.inf), 2: (-1.0, 1.0), 3: (0.0, 6.0)}


@dataclass
class Tensor:
    """One tensor of the subgraph: static facts plus the constant value if it has one."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    axis: int
    value: np.ndarray | None

    def qparams(self) -> tuple[float, int]:
        """Per-tensor (scale, zero_point); BackendError if the tensor has none."""
        if self.scale is None or self.zero_point is None:
            raise BackendError(f"tensor '{self.name}' has no quantisation parameters")
        return float(self.scale[0]), int(self.zero_point[0])


Kernel = Callable[..., np.ndarray]


@functools.cache
def _builtin_names() -> dict[int, str]:
    from tflite.BuiltinOperator import BuiltinOperator

    return {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}


def operator_name(code: Any) -> str:
    """The schema name of a TFLite ``OperatorCode`` (``tflite`` package accessor).

    Models written since TensorFlow 2.4 keep codes above 127 in ``BuiltinCode`` and
    older ones only in ``DeprecatedBuiltinCode``, so the larger of the two is the
    operator. Custom operators are ``CUSTOM:<custom code>``; a number this
    ``tflite`` package does not know is ``BUILTIN_<number>``. The NumPy backend and
    the microcontroller export name operators the same way.

    Examples
    --------
    >>> operator_name(model.OperatorCodes(0))  # doctest: +SKIP
    'FULLY_CONNECTED'
    """
    number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    name = _builtin_names().get(number, f"BUILTIN_{number}")
    if name == "CUSTOM":
        name = f"CUSTOM:{(code.CustomCode() or b'?').decode(errors='replace')}"
    return name


def _options(op: Any, cls_name: str) -> Any:
    import tflite

    table = op.BuiltinOptions()
    options = getattr(tflite, cls_name)()
    if table is None:
        return None
    options.Init(table.Bytes, table.Pos)
    return options


def _activation_bounds(code: int) -> tuple[float, float]:
    if code not in _ACTIVATIONS:
        raise BackendError(f"fused activation {code} is not supported by the NumPy backend")
    return _ACTIVATIONS[code]


def _float_activation(code: int) -> Callable[[np.ndarray], np.ndarray]:
    lo, hi = _activation_bounds(code)
    if lo == -np.inf and hi == np.inf:
        return lambda y: y
    return lambda y: np.clip(y, np.float32(lo), np.float32(hi))


def _quant_bounds(code: int, out: Tensor) -> tuple[int, int]:
    """The int range of ``out`` after a fused activation (the activation as a clamp)."""
    lo, hi = _activation_bounds(code)
    scale, zp = out.qparams()
    qmin, qmax = K.INT_RANGES[out.dtype]
    if lo != -np.inf:
        qmin = max(qmin, zp + int(np.rint(lo / scale)))
    if hi != np.inf:
        qmax = min(qmax, zp + int(np.rint(hi / scale)))
    return qmin, qmax


def _product_multiplier(in_scale: float, w_scale: np.ndarray, out_scale: float) -> np.ndarray:
    """``in_scale * w_scale / out_scale`` in float32, in XNNPACK's order: the last bit decides rare ties."""
    f = np.float32
    return (f(in_scale) * np.asarray(w_scale, dtype=f) / f(out_scale)).astype(f)


def _requantizer(multiplier: np.ndarray | float, out: Tensor, activation: int) -> Callable[[np.ndarray], np.ndarray]:
    _, zp = out.qparams()
    bounds = _quant_bounds(activation, out)
    mult = np.asarray(multiplier, dtype=np.float32)
    return lambda acc: K.requantize(acc, mult, zp, out.dtype, bounds)


def _dynamic_quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric int8 quantisation of each row at run time: ``(q - zero_point, scale)``.

    This is XNNPACK's ``qd8`` scheme (LiteRT's default CPU path for dynamic-range
    models): float32 arithmetic, the zero point nudged from whichever range end
    gives the smaller error, round-to-nearest-even.
    """
    f = np.float32
    rmin = np.minimum(x.min(axis=1, keepdims=True), 0).astype(f)
    rmax = np.maximum(x.max(axis=1, keepdims=True), 0).astype(f)
    flat = rmin == rmax
    inv = np.where(flat, f(1), f(255) / np.where(flat, f(1), rmax - rmin)).astype(f)
    low, high = rmin * inv, rmax * inv
    zero_point = np.rint(
        np.clip(np.where((f(-128) + low) + (f(127) + high) > 0, f(-128) - low, f(127) - high), -128, 127)
    )
    q = np.clip(np.rint(x * inv) + zero_point, -128, 127)
    return (q - zero_point).astype(np.float64), (f(1) / inv).astype(f)


# --- operator builders: (graph, op, inputs, outputs) -> kernel(*input_values) ---------------


def _fully_connected(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "FullyConnectedOptions")
    activation = opts.FusedActivationFunction() if opts else 0
    if opts is not None and opts.WeightsFormat() != 0:
        raise BackendError("FULLY_CONNECTED with shuffled weights is not supported by the NumPy backend")
    x_t, w_t, b_t, out = ins[0], ins[1], ins[2] if len(ins) > 2 else None, outs[0]
    if w_t.value is None:
        raise BackendError("FULLY_CONNECTED with non-constant weights is not supported by the NumPy backend")
    units, depth = w_t.value.shape
    bias = b_t.value if b_t is not None else None
    keep_dims = bool(opts.KeepNumDims()) if opts else False

    def rows(x: np.ndarray) -> np.ndarray:
        return x.reshape(-1, depth)

    def shaped(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return y.reshape(*x.shape[:-1], units) if keep_dims else y

    if x_t.dtype == np.float32 and w_t.dtype == np.float32:
        weights = w_t.value.T.astype(np.float32)
        fbias = None if bias is None else bias.astype(np.float32)
        act = _float_activation(activation)

        def fc_float(x: np.ndarray, *_: Any) -> np.ndarray:
            y = rows(x) @ weights
            if fbias is not None:
                y += fbias
            return shaped(act(y), x)

        return fc_float
    if x_t.dtype == np.float32 and w_t.dtype == np.int8:
        w_scale = w_t.scale.astype(np.float32)
        weights = w_t.value.T.astype(np.float64)
        fbias = None if bias is None else bias.astype(np.float32)
        act = _float_activation(activation)

        def fc_hybrid(x: np.ndarray, *_: Any) -> np.ndarray:
            q, scale = _dynamic_quantize_rows(rows(x))
            y = (q @ weights).astype(np.float32) * (scale * w_scale)
            if fbias is not None:
                y += fbias
            return shaped(act(y), x)

        return fc_hybrid
    if x_t.dtype == np.int8 and w_t.dtype == np.int8:
        in_scale, in_zp = x_t.qparams()
        out_scale, _ = out.qparams()
        weights = w_t.value.T.astype(np.float64)
        ibias = None if bias is None else bias.astype(np.float64)
        requant = _requantizer(_product_multiplier(in_scale, w_t.scale, out_scale), out, activation)

        def fc_int8(x: np.ndarray, *_: Any) -> np.ndarray:
            acc = (rows(x).astype(np.float64) - in_zp) @ weights
            if ibias is not None:
                acc += ibias
            return shaped(requant(acc), x)

        return fc_int8
    raise BackendError(
        f"FULLY_CONNECTED with {x_t.dtype.name} input and {w_t.dtype.name} weights "
        "is not supported by the NumPy backend"
    )


def _padding(
    code: int, h: int, w: int, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]
) -> tuple[int, int, int, int]:
    if code == 1:  # VALID
        return (0, 0, 0, 0)
    return (*K.same_padding(h, kh, stride[0], dilation[0]), *K.same_padding(w, kw, stride[1], dilation[1]))


def _convolution(kind: str) -> Callable[[Any, list[Tensor | None], list[Tensor]], Kernel]:
    """Builder for CONV_2D (OHWI filters) or DEPTHWISE_CONV_2D (``1, H, W, C*M`` filters).

    Both become HWIO filters (I = 1 for depthwise) and differ only in the NumPy
    kernel that applies them, so float, hybrid and int8 arithmetic is written once.
    """
    depthwise = kind == "DEPTHWISE_CONV_2D"
    convolve = K.depthwise_conv2d_nhwc if depthwise else K.conv2d_nhwc

    def build(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
        opts = _options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
        x_t, w_t, b_t, out = ins[0], ins[1], ins[2] if len(ins) > 2 else None, outs[0]
        if w_t.value is None:
            raise BackendError(f"{kind} with non-constant filters is not supported by the NumPy backend")
        # OHWI -> HWIO; depthwise (1, KH, KW, C*M) -> (KH, KW, 1, C*M).
        filters = w_t.value.transpose(1, 2, 0, 3) if depthwise else w_t.value.transpose(1, 2, 3, 0)
        kh, kw, cin, cout = filters.shape
        channels = x_t.shape[-1]
        if depthwise and channels != -1 and cout % channels:
            raise BackendError(
                f"DEPTHWISE_CONV_2D with {cout} filters for {channels} channels is not supported by the NumPy backend"
            )
        if not depthwise and channels not in (cin, -1):
            raise BackendError("grouped CONV_2D is not supported by the NumPy backend")
        stride = (opts.StrideH(), opts.StrideW())
        dilation = (opts.DilationHFactor(), opts.DilationWFactor())
        activation = opts.FusedActivationFunction()
        bias = b_t.value if b_t is not None else None
        depth = kh * kw * cin  # products summed into one output value

        def pads(x: np.ndarray) -> tuple[int, int, int, int]:
            return _padding(opts.Padding(), x.shape[1], x.shape[2], kh, kw, stride, dilation)

        if x_t.dtype == np.float32 and w_t.dtype == np.float32:
            wf = filters.astype(np.float32)
            fbias = None if bias is None else bias.astype(np.float32)
            act = _float_activation(activation)

            def conv_float(x: np.ndarray, *_: Any) -> np.ndarray:
                y = convolve(x, wf, stride, dilation, pads(x))
                if fbias is not None:
                    y += fbias
                return act(y)

            return conv_float
        if x_t.dtype == np.float32 and w_t.dtype == np.int8:
            w_scale = w_t.scale.astype(np.float32)
            acc_dtype = K.exact_dtype(depth)
            wq = filters.astype(acc_dtype)
            fbias = None if bias is None else bias.astype(np.float32)
            act = _float_activation(activation)

            # XNNPACK runs a 1×1, stride-1 convolution as a fully connected layer over
            # pixels, so it quantises each pixel; any other one per image.
            per_pixel = not depthwise and (kh, kw, *stride) == (1, 1, 1, 1)

            def conv_hybrid(x: np.ndarray, *_: Any) -> np.ndarray:
                q, scale = _dynamic_quantize_rows(x.reshape(-1, x.shape[-1]) if per_pixel else x.reshape(len(x), -1))
                y = convolve(q.reshape(x.shape), wq, stride, dilation, pads(x), dtype=acc_dtype)
                y = (y.astype(np.float32)
                     * (scale.reshape(*y.shape[:3], 1) if per_pixel else scale.reshape(-1, 1, 1, 1))
                     * w_scale)
                if fbias is not None:
                    y += fbias
                return act(y)

            return conv_hybrid
        if x_t.dtype == np.int8 and w_t.dtype == np.int8:
            in_scale, in_zp = x_t.qparams()
            out_scale, _ = out.qparams()
            acc_dtype = K.exact_dtype(depth)
            wq = filters.astype(acc_dtype)
            ibias = None if bias is None else bias.astype(np.float64)
            requant = _requantizer(_product_multiplier(in_scale, w_t.scale, out_scale), out, activation)

            def conv_int8(x: np.ndarray, *_: Any) -> np.ndarray:
                # Shift by the zero point first, so padding with 0 pads with real zero.
                acc = convolve(
                    x.astype(acc_dtype) - in_zp, wq, stride, dilation, pads(x), dtype=acc_dtype
                ).astype(np.float64)
                if ibias is not None:
                    acc += ibias
                return requant(acc)

            return conv_int8
        raise BackendError(
            f"{kind} with {x_t.dtype.name} input and {w_t.dtype.name} filters is not supported by the NumPy backend"
        )

    return build


def _round_half_away(values: np.ndarray) -> np.ndarray:
    """Round half away from zero, TFLite's rounding for integer averages."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def _pool_2d(kind: str) -> Callable[[Any, list[Tensor | None], list[Tensor]], Kernel]:
    """Builder for MAX_POOL_2D and AVERAGE_POOL_2D (padded cells never count)."""

    def build(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
        opts = _options(op, "Pool2DOptions")
        kernel = (opts.FilterHeight(), opts.FilterWidth())
        stride = (opts.StrideH(), opts.StrideW())
        activation = opts.FusedActivationFunction()
        x_t, out = ins[0], outs[0]
        if out.dtype == np.float32:
            act = _float_activation(activation)
        else:
            if x_t.qparams() != out.qparams():
                raise BackendError(
                    f"{kind} with different input and output quantisation is not supported by the NumPy backend"
                )
            qmin, qmax = _quant_bounds(activation, out)

            def act(y: np.ndarray) -> np.ndarray:
                return np.clip(y, qmin, qmax).astype(out.dtype)

        def pads(x: np.ndarray) -> tuple[int, int, int, int]:
            return _padding(opts.Padding(), x.shape[1], x.shape[2], kernel[0], kernel[1], stride, (1, 1))

        if kind == "MAX_POOL_2D":
            return lambda x: act(K.max_pool_nhwc(x, kernel, stride, pads(x)))
        if out.dtype == np.float32:

            def average_pool_float(x: np.ndarray) -> np.ndarray:
                sums, counts = K.pool_sums_nhwc(x, kernel, stride, pads(x))
                return act(sums / counts)

            return average_pool_float

        def average_pool_int8(x: np.ndarray) -> np.ndarray:
            # Same scale in and out: the average of the stored integers, rounded half away from zero.
            sums, counts = K.pool_sums_nhwc(x, kernel, stride, pads(x), dtype=np.float64)
            return act(_round_half_away(sums / counts))

        return average_pool_int8

    return build


def _mean(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "ReducerOptions")
    keep_dims = bool(opts.KeepDims()) if opts else False
    x_t, axes_t, out = ins[0], ins[1], outs[0]
    if axes_t.value is None:
        raise BackendError("MEAN with non-constant axes is not supported by the NumPy backend")
    ndim = len(x_t.shape)
    axes = tuple(sorted({int(a) % ndim for a in axes_t.value.ravel()}))
    if out.dtype == np.float32:
        return lambda x, _axes: np.mean(x, axis=axes, keepdims=keep_dims, dtype=np.float32)
    in_scale, in_zp = x_t.qparams()
    out_scale, out_zp = out.qparams()

    def mean_int8(x: np.ndarray, _axes: np.ndarray) -> np.ndarray:
        count = int(np.prod([x.shape[a] for a in axes]))
        acc = np.sum(x.astype(np.float64) - in_zp, axis=axes, keepdims=keep_dims)
        return K.requantize(acc, np.float32(in_scale / (out_scale * count)), out_zp, out.dtype)

    return mean_int8


def _concatenation(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "ConcatenationOptions")
    axis, activation, out = opts.Axis(), opts.FusedActivationFunction(), outs[0]
    if out.dtype == np.float32:
        act = _float_activation(activation)
        return lambda *xs: act(np.concatenate(xs, axis=axis))
    if out.dtype not in (np.int8, np.uint8):
        if activation:
            raise BackendError(
                f"CONCATENATION of {out.dtype.name} with a fused activation is not supported by the NumPy backend"
            )
        return lambda *xs: np.concatenate(xs, axis=axis)
    # The TFLite int8 spec requires inputs quantised exactly like the output.
    if any(t.qparams() != out.qparams() for t in ins):
        raise BackendError(
            "CONCATENATION of int8 inputs quantised unlike its output is not supported by the NumPy backend"
        )
    qmin, qmax = _quant_bounds(activation, out)
    return lambda *xs: np.clip(np.concatenate(xs, axis=axis), qmin, qmax).astype(out.dtype)


# Element-wise binary builtins: their options table and NumPy function. SUB comes from
# Keras' Normalization layer ((x - mean) * 1/std), which float artifacts keep inside.
_BINARY = {"ADD": ("AddOptions", np.add), "MUL": ("MulOptions", np.multiply), "SUB": ("SubOptions", np.subtract)}


def _binary(kind: str) -> Callable[[Any, list[Tensor | None], list[Tensor]], Kernel]:
    options, fn = _BINARY[kind]

    def build(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
        opts = _options(op, options)
        activation = opts.FusedActivationFunction() if opts else 0
        a_t, b_t, out = ins[0], ins[1], outs[0]
        if out.dtype == np.float32:
            act = _float_activation(activation)
            return lambda a, b: act(fn(a, b))
        if out.dtype == np.int32:
            return lambda a, b: fn(a, b).astype(np.int32)
        if kind == "SUB":
            raise BackendError(
                "the NumPy backend does not implement the TFLite operator SUB on int8 tensors; use backend 'litert'"
            )
        (sa, za), (sb, zb), (so, _) = a_t.qparams(), b_t.qparams(), out.qparams()
        if kind == "MUL":
            requant = _requantizer(_product_multiplier(sa, sb, so), out, activation)
            return lambda a, b: requant((a.astype(np.float64) - za) * (b.astype(np.float64) - zb))
        return _add_int8(a_t, b_t, out, activation)

    return build


def _add_int8(a_t: Tensor, b_t: Tensor, out: Tensor, activation: int) -> Kernel:
    """Quantised ADD in XNNPACK's fixed-point form (LiteRT's default path).

    Each input's scale ratio to the output becomes an integer multiplier with 20
    fractional bits for the larger ratio; the sum is shifted back, rounding half
    up. A float reading of the same formula disagrees by one step now and then.
    """
    (sa, za), (sb, zb), (so, zo) = a_t.qparams(), b_t.qparams(), out.qparams()
    ratios = np.array([np.float32(sa) / np.float32(so), np.float32(sb) / np.float32(so)], dtype=np.float32)
    exponent = int(np.frexp(ratios.max())[1]) - 1  # floor(log2(largest ratio))
    shift = 20 - exponent
    ma, mb = (int(m) for m in np.rint(np.ldexp(ratios, shift)))
    bias = (1 << (shift - 1)) - ma * za - mb * zb
    qmin, qmax = _quant_bounds(activation, out)

    def add_int8(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        acc = a.astype(np.int64) * ma + b.astype(np.int64) * mb + bias
        return np.clip((acc >> shift) + zo, qmin, qmax).astype(out.dtype)

    return add_int8


def _softmax(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "SoftmaxOptions")
    beta = opts.Beta() if opts else 1.0
    x_t, out = ins[0], outs[0]
    if out.dtype == np.float32:
        return lambda x: K.softmax(x, beta=beta)
    in_scale, in_zp = x_t.qparams()
    out_scale, out_zp = out.qparams()
    return lambda x: K.saturate(
        K.softmax((x.astype(np.float32) - in_zp) * np.float32(in_scale), beta=beta) / out_scale + out_zp, out.dtype
    )


def _relu(activation: int) -> Callable[[Any, list[Tensor | None], list[Tensor]], Kernel]:
    """Builder for RELU (fused-activation code 1) and RELU6 (code 3) as standalone operators."""

    def build(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
        out = outs[0]
        if out.dtype == np.float32:
            return _float_activation(activation)
        x_scale, x_zp = ins[0].qparams()
        out_scale, _ = out.qparams()
        requant = _requantizer(1.0, out, activation)
        return lambda x: requant((x.astype(np.float64) - x_zp) * (x_scale / out_scale))

    return build


def _dequantize(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    x_t = ins[0]
    if x_t.dtype == np.float16:
        return lambda x: x.astype(np.float32)
    scale = K.per_axis(x_t.scale.astype(np.float32), x_t.axis, len(x_t.shape))
    zp = K.per_axis(x_t.zero_point.astype(np.float32), x_t.axis, len(x_t.shape))
    return lambda x: ((x.astype(np.float32) - zp) * scale).astype(np.float32)


def _quantize(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    x_t, out = ins[0], outs[0]
    out_scale, out_zp = out.qparams()
    if x_t.dtype == np.float32:
        return lambda x: K.saturate(x / np.float32(out_scale) + out_zp, out.dtype)
    in_scale, in_zp = x_t.qparams()
    return lambda x: K.saturate((x.astype(np.float64) - in_zp) * (in_scale / out_scale) + out_zp, out.dtype)


def _reshape(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    if len(ins) > 1 and ins[1] is not None:
        return lambda x, shape: x.reshape(tuple(int(d) for d in np.asarray(shape).ravel()))
    opts = _options(op, "ReshapeOptions")
    new_shape = tuple(int(d) for d in opts.NewShapeAsNumpy()) if opts is not None else outs[0].shape
    return lambda x: x.reshape(new_shape)


def _shape(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    dtype = outs[0].dtype
    return lambda x: np.array(x.shape, dtype=dtype)


def _strided_slice(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "StridedSliceOptions")
    if opts.EllipsisMask() or opts.NewAxisMask():
        raise BackendError("STRIDED_SLICE with ellipsis or new-axis masks is not supported by the NumPy backend")
    begin_mask, end_mask, shrink, offset = opts.BeginMask(), opts.EndMask(), opts.ShrinkAxisMask(), bool(opts.Offset())

    def strided_slice(x: np.ndarray, begin: np.ndarray, end: np.ndarray, strides: np.ndarray) -> np.ndarray:
        index: list[Any] = []
        for axis, (b, e, s) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist())):
            if shrink >> axis & 1:
                index.append(b)
                continue
            start = None if begin_mask >> axis & 1 else b
            stop = None if end_mask >> axis & 1 else (b + e if offset else e)
            index.append(slice(start, stop, s))
        return np.asarray(x[tuple(index)])

    return strided_slice


def _pack(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    opts = _options(op, "PackOptions")
    axis = opts.Axis() if opts else 0
    return lambda *xs: np.stack(xs, axis=axis)


def _transpose(op: Any, ins: list[Tensor | None], outs: list[Tensor]) -> Kernel:
    return lambda x, perm: np.ascontiguousarray(x.transpose(tuple(int(p) for p in perm)))


BUILDERS: dict[str, Callable[[Any, list[Tensor | None], list[Tensor]], Kernel]] = {
    "FULLY_CONNECTED": _fully_connected,
    "CONV_2D": _convolution("CONV_2D"),
    "DEPTHWISE_CONV_2D": _convolution("DEPTHWISE_CONV_2D"),
    "MAX_POOL_2D": _pool_2d("MAX_POOL_2D"),
    "AVERAGE_POOL_2D": _pool_2d("AVERAGE_POOL_2D"),
    "MEAN": _mean,
    "CONCATENATION": _concatenation,
    "ADD": _binary("ADD"),
    "MUL": _binary("MUL"),
    "SUB": _binary("SUB"),
    "SOFTMAX": _softmax,
    "RELU": _relu(1),
    "RELU6": _relu(3),
    "DEQUANTIZE": _dequantize,
    "QUANTIZE": _quantize,
    "RESHAPE": _reshape,
    "SHAPE": _shape,
    "STRIDED_SLICE": _strided_slice,
    "PACK": _pack,
    "TRANSPOSE": _transpose,
}


def _read_tensor(model: Any, tensor: Any, data: bytes) -> Tensor:
    type_code = tensor.Type()
    if type_code not in _DTYPES:
        raise BackendError(f"tensor type {type_code} is not supported by the NumPy backend")
    dtype = np.dtype(_DTYPES[type_code])
    signature = tensor.ShapeSignatureAsNumpy() if tensor.ShapeSignatureLength() else tensor.ShapeAsNumpy()
    shape = tuple(int(d) for d in signature) if not isinstance(signature, int) else ()
    quant = tensor.Quantization()
    scale = zero_point = None
    axis = 0
    if quant is not None and quant.ScaleLength():
        scale = quant.ScaleAsNumpy().astype(np.float64)
        zero_point = (quant.ZeroPointAsNumpy().astype(np.int64) if quant.ZeroPointLength()
                      else np.zeros(len(scale), np.int64))
        axis = quant.QuantizedDimension()
    value = None
    buffer = model.Buffers(tensor.Buffer())
    if buffer is not None:
        if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = data[buffer.Offset() : buffer.Offset() + buffer.Size()]
        else:
            raw = buffer.DataAsNumpy().tobytes() if buffer.DataLength() else b""
        if raw:
            flat = np.frombuffer(raw, dtype=dtype)
            static = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            if flat.size != int(np.prod(static, dtype=np.int64)):
                raise ModelLoadError(
                    f"tensor '{tensor.Name().decode(errors='replace')}' has {flat.size} values for shape {static}"
                )
            value = flat.reshape(static)
    return Tensor(tensor.Name().decode(errors="replace"), shape, dtype, scale, zero_point, axis, value)


class TFLiteGraph:
    """A parsed subgraph 0 of a ``.tflite`` model, ready to run.

    ``data`` must already have passed
    :func:`~edge_runtime.backends.tflite_format.verify_tflite` (``open_backend``
    does that for every TFLite backend), so offsets and indices are in range here.

    Raises
    ------
    ModelLoadError
        The flatbuffer cannot be parsed.
    BackendError
        It uses an operator, option or type the NumPy backend does not implement.
    """

    def __init__(self, data: bytes) -> None:
        import tflite

        try:
            model = tflite.Model.GetRootAs(data, 0)
            graph = model.Subgraphs(0)
            self.tensors = [_read_tensor(model, graph.Tensors(i), data) for i in range(graph.TensorsLength())]
            self.input_ids = [int(i) for i in graph.InputsAsNumpy()]
            self.output_ids = [int(i) for i in graph.OutputsAsNumpy()]
            self.steps: list[tuple[Kernel, list[int], list[int]]] = []
            self.op_names: list[str] = []
            for i in range(graph.OperatorsLength()):
                op = graph.Operators(i)
                name = operator_name(model.OperatorCodes(op.OpcodeIndex()))
                builder = BUILDERS.get(name)
                if builder is None:
                    raise BackendError(
                        f"the NumPy backend does not implement the TFLite operator {name}; use backend 'litert'"
                    )
                in_ids = [int(t) for t in op.InputsAsNumpy()] if op.InputsLength() else []
                out_ids = [int(t) for t in op.OutputsAsNumpy()]
                kernel = builder(op, [self.tensors[t] if t >= 0 else None for t in in_ids],
                                 [self.tensors[t] for t in out_ids])
                used = [t for t in in_ids if t >= 0]
                self.op_names.append(name)
                if used and all(self.tensors[t].value is not None for t in used):
                    # Constant folding: float16 weights pass through DEQUANTIZE once, here,
                    # so the kernels that consume them see plain float32 constants.
                    self.tensors[out_ids[0]].value = kernel(*[self.tensors[t].value for t in used])
                    continue
                self.steps.append((kernel, used, out_ids))
        except (BackendError, ModelLoadError):
            raise
        except PARSE_ERRORS as exc:
            raise ModelLoadError(f"corrupt TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
        if len(self.input_ids) != 1 or len(self.output_ids) != 1:
            raise BackendError(
                f"expected one input and one output, got {len(self.input_ids)} and {len(self.output_ids)}"
            )
        self._constants = [t.value for t in self.tensors]

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run every operator in order on input ``x``; return output 0."""
        values = list(self._constants)
        values[self.input_ids[0]] = x
        for kernel, in_ids, out_ids in self.steps:
            values[out_ids[0]] = kernel(*[values[i] for i in in_ids])
        return values[self.output_ids[0]]
