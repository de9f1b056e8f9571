"""Execute an ``.onnx`` model with NumPy, read with the ``onnx`` package.

Supported operators are those keras2edge's ONNX artifacts use (tf2onnx float32,
``quantize_static`` QDQ per tensor or per channel, and ``quantize_dynamic``) for
common Keras layers, plus their close relatives: MatMul, Gemm, Add, Sub, Mul,
Div, Relu, Clip, Softmax, Reshape, Flatten, Transpose, Shape, Gather, Slice,
Concat, Unsqueeze, Squeeze, Cast, Identity, Constant, Conv (plain and depthwise),
MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, QuantizeLinear,
DequantizeLinear, DynamicQuantizeLinear, MatMulInteger and ConvInteger. Any other
operator is refused at load time with a :class:`~edge_runtime.errors.BackendError`
naming it.

Quantisation follows the ONNX operator specs (round half to even, saturation,
per-axis scales); integer products are accumulated exactly. Subgraphs whose
inputs are all constants (weight DequantizeLinear, reshapes of weights) are
evaluated once at load time.

QDQ models are not run literally as DequantizeLinear → float op → QuantizeLinear
everywhere: ONNX Runtime fuses such groups into integer kernels (QLinearConv,
QGemm, QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool, QLinearSoftmax)
whose rounding differs from the float reading by an int8 step now and then, which
later layers and a softmax can amplify. :func:`rewrite_int8_pairs_as_uint8` and
:func:`fuse_qdq` make the same decisions as ONNX Runtime's x86 CPU provider about
which groups to fuse, and the fused kernels compute the way its kernels do (exact
int32 accumulation, float32 requantisation, round-to-nearest-even; the softmax
through its 256-entry exp table), so both backends agree bit for bit wherever
ONNX Runtime's own int8 arithmetic is exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edge_runtime.backends import numpy_kernels as K
from edge_runtime.errors import BackendError, ModelLoadError

# ONNX TensorProto element types -> numpy dtypes.
_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64
}

Kernel = Callable[..., Any]


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _conv_pads(
    attrs: dict[str, Any], shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """ONNX pads/auto_pad for NCHW ``shape`` as (top, bottom, left, right)."""
    auto_pad = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        top, bottom = K.same_padding(shape[2], kernel[0], stride[0], dilation[0])
        left, right = K.same_padding(shape[3], kernel[1], stride[1], dilation[1])
        if auto_pad == "SAME_LOWER":
            top, bottom, left, right = bottom, top, right, left
        return top, bottom, left, right
    if auto_pad == "VALID":
        return 0, 0, 0, 0
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    return pads[0], pads[2], pads[1], pads[3]


Convolve = Callable[..., np.ndarray]


def _conv_geometry(
    attrs: dict[str, Any], weight_shape: tuple[int, ...]
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], Convolve]:
    """Kernel size, strides, dilations and the NHWC kernel for a Conv's ``group``.

    ``group = 1`` is a plain convolution; one input channel per group (weights
    ``(C * M, 1, KH, KW)``) is a depthwise convolution, what tf2onnx makes of
    Keras' DepthwiseConv2D and SeparableConv2D. Other groupings are refused.
    """
    if len(weight_shape) != 4:
        raise BackendError("the NumPy backend implements 2-D convolutions only")
    group = attrs.get("group", 1)
    if group == 1:
        convolve = K.conv2d_nhwc
    elif weight_shape[1] == 1:
        convolve = K.depthwise_conv2d_nhwc
    else:
        raise BackendError(
            f"grouped Conv with group={group} and {weight_shape[1]} channels per group is not supported "
            "by the NumPy backend (only depthwise)"
        )
    kernel = tuple(attrs.get("kernel_shape", weight_shape[2:]))
    return kernel, tuple(attrs.get("strides", (1, 1))), tuple(attrs.get("dilations", (1, 1))), convolve


def _conv(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    w = consts[1]
    if w is None:
        raise BackendError("Conv with non-constant weights is not supported by the NumPy backend")
    kernel, stride, dilation, convolve = _conv_geometry(attrs, w.shape)
    hwio = np.ascontiguousarray(w.transpose(2, 3, 1, 0), dtype=np.float32)

    def conv(x: np.ndarray, _w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
        pads = _conv_pads(attrs, x.shape, kernel, stride, dilation)
        y = convolve(x.transpose(0, 2, 3, 1), hwio, stride, dilation, pads)
        if b is not None:
            y += b
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    return conv


def _conv_integer(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    w = consts[1]
    if w is None:
        raise BackendError("ConvInteger with non-constant weights is not supported by the NumPy backend")
    kernel, stride, dilation, convolve = _conv_geometry(attrs, w.shape)
    w_zp = consts[3] if len(consts) > 3 and consts[3] is not None else np.zeros(1, w.dtype)
    shifted = w.astype(np.int32) - K.per_axis(w_zp.astype(np.int32), 0, 4)
    acc_dtype = K.exact_dtype(int(np.prod(w.shape[1:])), int(np.abs(shifted).max(initial=0)))
    hwio = np.ascontiguousarray(shifted.transpose(2, 3, 1, 0).astype(acc_dtype))

    def conv_integer(x: np.ndarray, _w: np.ndarray, x_zp: np.ndarray | None = None, _w_zp: Any = None) -> np.ndarray:
        xs = x.astype(acc_dtype) - (0 if x_zp is None else acc_dtype(np.asarray(x_zp).ravel()[0]))
        pads = _conv_pads(attrs, x.shape, kernel, stride, dilation)
        y = convolve(xs.transpose(0, 2, 3, 1), hwio, stride, dilation, pads, dtype=acc_dtype)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2)).astype(np.int32)

    return conv_integer


def _pool_geometry(attrs: dict[str, Any], op: str) -> tuple[tuple[int, int], tuple[int, int]]:
    if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise BackendError(f"{op} with ceil_mode or dilations is not supported by the NumPy backend")
    kernel = tuple(attrs["kernel_shape"])
    if len(kernel) != 2:
        raise BackendError(f"the NumPy backend implements 2-D {op} only")
    return kernel, tuple(attrs.get("strides", (1, 1)))


def _max_pool(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    kernel, stride = _pool_geometry(attrs, "MaxPool")

    def max_pool(x: np.ndarray) -> np.ndarray:
        pads = _conv_pads(attrs, x.shape, kernel, stride, (1, 1))
        return np.ascontiguousarray(
            K.max_pool_nhwc(x.transpose(0, 2, 3, 1), kernel, stride, pads).transpose(0, 3, 1, 2)
        )

    return max_pool


def _average_pool(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    kernel, stride = _pool_geometry(attrs, "AveragePool")
    include_pad = bool(attrs.get("count_include_pad", 0))

    def average_pool(x: np.ndarray) -> np.ndarray:
        pads = _conv_pads(attrs, x.shape, kernel, stride, (1, 1))
        sums, counts = K.pool_sums_nhwc(x.transpose(0, 2, 3, 1), kernel, stride, pads)
        y = sums / np.float32(kernel[0] * kernel[1]) if include_pad else sums / counts
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2))

    return average_pool


def _clip(attrs: dict[str, Any], consts: list[Any], opset: int) -> Kernel:
    if opset < 11:  # bounds were attributes before opset 11
        lo, hi = attrs.get("min", -np.inf), attrs.get("max", np.inf)
        return lambda x: np.clip(x, lo, hi).astype(x.dtype, copy=False)

    def clip(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        if lo is None and hi is None:
            return x
        return np.clip(x, lo, hi).astype(x.dtype, copy=False)

    return clip


def _gemm(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    alpha, beta = np.float32(attrs.get("alpha", 1.0)), np.float32(attrs.get("beta", 1.0))
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)

    def gemm(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> np.ndarray:
        y = (a.T if trans_a else a) @ (b.T if trans_b else b)
        if alpha != 1:
            y = y * alpha
        if c is not None:
            y = y + (c * beta if beta != 1 else c)
        return y

    return gemm


def _matmul_integer(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    def matmul_integer(
        a: np.ndarray, b: np.ndarray, a_zp: np.ndarray | None = None, b_zp: np.ndarray | None = None
    ) -> np.ndarray:
        a64 = a.astype(np.float64) - (0 if a_zp is None else a_zp.astype(np.float64))
        b64 = b.astype(np.float64) - (0 if b_zp is None else b_zp.astype(np.float64))
        return (a64 @ b64).astype(np.int32)

    return matmul_integer


def _quantize_linear(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    axis = attrs.get("axis", 1)

    def quantize_linear(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> np.ndarray:
        dtype = np.uint8 if zp is None else zp.dtype
        s = K.per_axis(scale.astype(np.float32), axis, x.ndim)
        z = 0 if zp is None else K.per_axis(zp.astype(np.float32), axis, x.ndim)
        return K.saturate(np.rint(x / s) + z, np.dtype(dtype))

    return quantize_linear


def _dequantize_linear(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    axis = attrs.get("axis", 1)

    def dequantize_linear(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None = None) -> np.ndarray:
        s = K.per_axis(scale.astype(np.float32), axis, x.ndim)
        z = np.float32(0) if zp is None else K.per_axis(zp.astype(np.float32), axis, x.ndim)
        return ((x.astype(np.float32) - z) * s).astype(np.float32)

    return dequantize_linear


def _dynamic_quantize_linear(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    def dynamic_quantize_linear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.float32
        lo, hi = min(f(x.min()), f(0)), max(f(x.max()), f(0))
        scale = f((hi - lo) / f(255)) if hi != lo else f(1)
        zp = f(np.rint(np.clip(f(0) - lo / scale, 0, 255)))
        y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
        return y, np.array(scale, dtype=np.float32), np.array(zp, dtype=np.uint8)

    return dynamic_quantize_linear


def _softmax(attrs: dict[str, Any], consts: list[Any], opset: int) -> Kernel:
    if opset >= 13:
        axis = attrs.get("axis", -1)
        return lambda x: K.softmax(x, axis=axis)
    axis = attrs.get("axis", 1)  # opset < 13: softmax over the flattened trailing dims

    def softmax_coerced(x: np.ndarray) -> np.ndarray:
        rows = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
        return K.softmax(rows, axis=1).reshape(x.shape)

    return softmax_coerced


def _reshape(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    allow_zero = attrs.get("allowzero", 0)

    def reshape(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
        dims = [int(d) for d in shape]
        if not allow_zero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)

    return reshape


def _slice(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    def slice_(
        x: np.ndarray, starts: np.ndarray, ends: np.ndarray, axes: np.ndarray | None = None,
        steps: np.ndarray | None = None,
    ) -> np.ndarray:
        index = [slice(None)] * x.ndim
        axes_list = range(len(starts)) if axes is None else [int(a) for a in axes]
        steps_list = [1] * len(starts) if steps is None else [int(s) for s in steps]
        for a, s, e, st in zip(axes_list, starts, ends, steps_list):
            index[a] = slice(int(s), int(e), st)
        return np.asarray(x[tuple(index)])

    return slice_


def _axes_op(fn: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> Callable[[dict[str, Any], list[Any]], Kernel]:
    def build(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
        def apply(x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:
            chosen = attrs.get("axes") if axes is None else [int(a) for a in axes]
            return fn(x, tuple(chosen) if chosen is not None else None)

        return apply

    return build


def _squeeze(x: np.ndarray, axes: tuple[int, ...] | None) -> np.ndarray:
    return np.squeeze(x, axis=axes)


def _unsqueeze(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.expand_dims(x, axis=tuple(a % (x.ndim + len(axes)) for a in axes))


def _batch_norm(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    eps = np.float32(attrs.get("epsilon", 1e-5))

    def batch_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv = (scale / np.sqrt(var + eps)).reshape(shape)
        return ((x - mean.reshape(shape)) * inv + bias.reshape(shape)).astype(np.float32)

    return batch_norm


def _cast(attrs: dict[str, Any], consts: list[Any]) -> Kernel:
    to = attrs["to"]
    if to not in _DTYPES:
        raise BackendError(f"Cast to ONNX type {to} is not supported by the NumPy backend")
    dtype = _DTYPES[to]
    return lambda x: np.asarray(x).astype(dtype)


def _simple(fn: Kernel) -> Callable[[dict[str, Any], list[Any]], Kernel]:
    return lambda attrs, consts: fn


def _with_attrs(fn: Callable[[dict[str, Any]], Kernel]) -> Callable[[dict[str, Any], list[Any]], Kernel]:
    return lambda attrs, consts: fn(attrs)


BUILDERS: dict[str, Callable[..., Kernel]] = {
    "Conv": _conv,
    "ConvInteger": _conv_integer,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _simple(lambda x: x.mean(axis=tuple(range(2, x.ndim)), keepdims=True, dtype=np.float32)),
    "Clip": _clip,
    "Gemm": _gemm,
    "MatMul": _simple(np.matmul),
    "MatMulInteger": _matmul_integer,
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    "DynamicQuantizeLinear": _dynamic_quantize_linear,
    "Add": _simple(np.add),
    "Sub": _simple(np.subtract),
    "Mul": _simple(np.multiply),
    "Div": _simple(np.divide),
    "Relu": _simple(lambda x: np.maximum(x, np.zeros((), x.dtype))),
    "Reshape": _reshape,
    "Flatten": _with_attrs(
        lambda a: lambda x: x.reshape(int(np.prod(x.shape[: a.get("axis", 1)], dtype=np.int64)), -1)
    ),
    "Transpose": _with_attrs(lambda a: lambda x: np.ascontiguousarray(x.transpose(a.get("perm")))),
    "Shape": _with_attrs(lambda a: lambda x: np.array(x.shape[a.get("start", 0) : a.get("end")], dtype=np.int64)),
    "Gather": _with_attrs(lambda a: lambda x, i: np.take(x, i, axis=a.get("axis", 0))),
    "Slice": _slice,
    "Concat": _with_attrs(lambda a: lambda *xs: np.concatenate(xs, axis=a["axis"])),
    "Unsqueeze": _axes_op(_unsqueeze),
    "Squeeze": _axes_op(_squeeze),
    "Cast": _cast,
    "Identity": _simple(lambda x: x),
    "BatchNormalization": _batch_norm,
    "Softmax": _softmax,
}
# Operators whose meaning changed between opsets: their builders also take the opset.
_OPSET_DEPENDENT = {"Softmax", "Clip"}


# --- QDQ fusion, mirroring ONNX Runtime's x86 QDQ → QLinearConv / QGemm / QLinear* ---------------


def _scalar(constants: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    value = constants.get(name)
    return None if value is None or value.size != 1 else value.reshape(())


def _qparams(node: Any, constants: dict[str, np.ndarray]) -> tuple[np.float32, np.ndarray] | None:
    """(scale, zero_point) of a QuantizeLinear/DequantizeLinear with scalar constant params."""
    if len(node.input) < 3 or not node.input[2]:
        return None
    scale, zp = _scalar(constants, node.input[1]), _scalar(constants, node.input[2])
    if scale is None or zp is None or zp.dtype not in (np.int8, np.uint8):
        return None
    return np.float32(scale), zp


def _output_scale(a_scale: np.float32, w_scale: np.ndarray, y_scale: np.float32) -> np.ndarray:
    """ONNX Runtime's requantisation multiplier, in its float32 operation order."""
    return ((a_scale * w_scale.astype(np.float32)).astype(np.float32) / y_scale).astype(np.float32)


def _fused_matmul(
    node: Any, attrs: dict[str, Any], a: tuple, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, y: tuple
) -> Kernel | None:
    if node.op_type == "Gemm" and (
        attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
    ):
        return None
    weights = (w.T if attrs.get("transB", 0) else w).astype(np.float64)
    multiplier = _output_scale(a[0], w_scale, y[0])
    a_zp = float(a[1])

    def qgemm(x: np.ndarray) -> np.ndarray:
        acc = (x.astype(np.float64) - a_zp) @ weights
        if bias is not None:
            acc += bias
        return K.requantize(acc, multiplier, int(y[1]), y[1].dtype)

    return qgemm


def _fused_conv(
    node: Any, attrs: dict[str, Any], a: tuple, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray | None, y: tuple
) -> Kernel | None:
    kernel, stride, dilation, convolve = _conv_geometry(attrs, w.shape)
    acc_dtype = K.exact_dtype(int(np.prod(w.shape[1:])), int(np.abs(w).max(initial=0)))
    hwio = np.ascontiguousarray(w.transpose(2, 3, 1, 0).astype(acc_dtype))
    multiplier = _output_scale(a[0], w_scale, y[0]).reshape(-1)
    a_zp = acc_dtype(a[1])

    def qlinear_conv(x: np.ndarray) -> np.ndarray:
        pads = _conv_pads(attrs, x.shape, kernel, stride, dilation)
        acc = convolve(
            (x.astype(acc_dtype) - a_zp).transpose(0, 2, 3, 1), hwio, stride, dilation, pads, dtype=acc_dtype
        )
        acc = acc.astype(np.float64)
        if bias is not None:
            acc += bias
        return np.ascontiguousarray(K.requantize(acc, multiplier, int(y[1]), y[1].dtype).transpose(0, 3, 1, 2))

    return qlinear_conv


def _fused_softmax(node: Any, attrs: dict[str, Any], a: tuple, y: tuple, opset: int) -> Kernel | None:
    if opset < 13 or attrs.get("axis", -1) not in (-1,):
        return None
    x_scale, x_zp = a
    y_scale, y_zp = y
    inv_y = np.float32(np.floor(np.float32(1) / y_scale))  # ONNX Runtime uses floor(1 / y_scale)

    def qlinear_softmax(x: np.ndarray) -> np.ndarray:
        depth = x.shape[-1]
        shift = max(0.0, np.log(float(np.finfo(np.float32).max) / depth) - 5) / float(x_scale)
        table = np.exp((np.arange(256, dtype=np.float64) - 255 + shift) * float(x_scale)).astype(np.float32)
        q = x.astype(np.int64) - int(x_zp)
        e = table[255 - q.max(axis=-1, keepdims=True) + q]
        total = e[..., 0].copy()
        for j in range(1, depth):  # sequential float32 sum, as the kernel does
            total += e[..., j]
        out = np.rint((e * inv_y) / total[..., None]) + np.float32(y_zp)
        return K.saturate(out, y_zp.dtype)

    return qlinear_softmax


def _fused_average_pool(attrs: dict[str, Any], a: tuple, y: tuple) -> Kernel:
    """QLinearAveragePool: float32 average of the dequantised window, then ``round(avg / y_scale + y_zp)``.

    A window covering the whole unpadded image is computed by ONNX Runtime with
    its global-average kernel instead, and so here.
    """
    kernel, stride = _pool_geometry(attrs, "AveragePool")
    include_pad = bool(attrs.get("count_include_pad", 0))
    (x_scale, x_zp), (y_scale, y_zp) = a, y
    f = np.float32
    global_pool = _fused_global_average_pool(a, y)

    def qlinear_average_pool(x: np.ndarray) -> np.ndarray:
        pads = _conv_pads(attrs, x.shape, kernel, stride, (1, 1))
        if x.shape[2:] == kernel and not any(pads):
            return global_pool(x)
        real = (x.astype(f) - f(x_zp)) * x_scale
        sums, counts = K.pool_sums_nhwc(real.transpose(0, 2, 3, 1), kernel, stride, pads)
        avg = sums / (f(kernel[0] * kernel[1]) if include_pad else counts)
        return np.ascontiguousarray(K.saturate(avg / y_scale + f(y_zp), y_zp.dtype).transpose(0, 3, 1, 2))

    return qlinear_average_pool


def _fused_global_average_pool(a: tuple, y: tuple) -> Kernel:
    """QLinearGlobalAveragePool: exact integer sum, one float32 multiplier ``x_scale / (y_scale * count)``."""
    (x_scale, x_zp), (y_scale, y_zp) = a, y
    f = np.float32

    def qlinear_global_average_pool(x: np.ndarray) -> np.ndarray:
        count = int(np.prod(x.shape[2:]))
        acc = x.reshape(*x.shape[:2], count).astype(np.int64).sum(axis=-1) - int(x_zp) * count
        multiplier = f(x_scale / f(y_scale * f(count)))
        return K.requantize(acc, multiplier, int(y_zp), y_zp.dtype).reshape(*x.shape[:2], *([1] * (x.ndim - 2)))

    return qlinear_global_average_pool


def _fused_add(a: tuple, b: tuple, y: tuple) -> Kernel:
    """QLinearAdd as ONNX Runtime's AVX2 kernel computes it.

    ``a * (sa / sy) + (b * (sb / sy) + fixed)`` in float32 with two fused
    multiply-adds (emulated exactly: the float64 products and sums are exact,
    so one rounding to float32 is the FMA's), rounded half to even.
    """
    f = np.float32
    (sa, za), (sb, zb), (sy, zy) = a, b, y
    ra, rb = f(sa / sy), f(sb / sy)
    fixed = f(f(zy) - f(f(ra * f(za)) + f(rb * f(zb))))

    def qlinear_add(x_a: np.ndarray, x_b: np.ndarray) -> np.ndarray:
        inner = (x_b.astype(np.float64) * float(rb) + float(fixed)).astype(f)
        out = (x_a.astype(np.float64) * float(ra) + inner.astype(np.float64)).astype(f)
        return K.saturate(out, zy.dtype)

    return qlinear_add


def rewrite_int8_pairs_as_uint8(nodes: list[Any], constants: dict[str, np.ndarray], graph_outputs: set[str]) -> None:
    """Do to the graph what ONNX Runtime's x86 CPU provider does before fusing QDQ groups.

    x86 has no fast int8 × int8 product, so ONNX Runtime gives every
    DequantizeLinear a consumer of its own and then rewrites each int8
    QuantizeLinear → DequantizeLinear pair whose QuantizeLinear feeds exactly one
    DequantizeLinear as uint8, zero point + 128. The numbers are the same, but two
    things follow that decide its results: a tensor read by two nodes stays int8,
    and a group DQ → op → Q fuses into an integer kernel only when its inputs and
    output have one type; and the kernels that add the zero point before rounding
    (QLinearAveragePool, QLinearAdd) round ties differently with the uint8 one.
    The pairs are rewritten in place (new uint8 zero-point constants).

    Examples
    --------
    >>> from onnx import helper
    >>> q = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"])
    >>> dq = helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])
    >>> constants = {"s": np.array(0.1, np.float32), "z": np.array(-5, np.int8)}
    >>> rewrite_int8_pairs_as_uint8([q, dq, helper.make_node("Relu", ["xd"], ["y"])], constants, {"y"})
    >>> q.input[2], dq.input[2], int(constants[q.input[2]])
    ('z::uint8', 'z::uint8', 123)
    """
    consumers: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in nodes:
        if node.op_type != "QuantizeLinear" or node.output[0] in graph_outputs or len(node.input) < 3:
            continue
        users = consumers.get(node.output[0], [])
        edges = sum(
            max(1, len(consumers.get(u.output[0], [])) + (u.output[0] in graph_outputs))
            if u.op_type == "DequantizeLinear" else 1
            for u in users
        )
        if edges != 1 or users[0].op_type != "DequantizeLinear" or len(users[0].input) < 3:
            continue
        q_zp, dq_zp = _scalar(constants, node.input[2]), _scalar(constants, users[0].input[2])
        if q_zp is None or dq_zp is None or q_zp.dtype != np.int8 or dq_zp.dtype != np.int8 or q_zp != dq_zp:
            continue
        name = f"{node.input[2]}::uint8"
        constants[name] = np.array(int(q_zp) + 128, dtype=np.uint8)
        node.input[2] = users[0].input[2] = name


# Fusible float op -> (number of activation inputs, whether int8 activations fuse on x86).
_FUSIBLE = {
    "Conv": (1, False),
    "MatMul": (1, False),
    "Gemm": (1, True),
    "Softmax": (1, True),
    "AveragePool": (1, True),
    "GlobalAveragePool": (1, True),
    "Add": (2, True),
}


def fuse_qdq(nodes: list[Any], constants: dict[str, np.ndarray], graph_outputs: set[str], opset: int) -> list[Any]:
    """Replace DequantizeLinear → op → QuantizeLinear groups with the integer kernels ONNX Runtime uses.

    Mirrors ONNX Runtime's x86 CPU provider, after :func:`rewrite_int8_pairs_as_uint8`:
    a group is fused (QLinearConv, QGemm, QLinearSoftmax, QLinearAveragePool,
    QLinearGlobalAveragePool, QLinearAdd) when its inputs and output have one
    integer type, and Conv / MatMul only when that type is uint8; every other group
    runs literally, in float between its DequantizeLinear and QuantizeLinear, as
    ONNX Runtime runs it. (Ops that only move or pick values, such as MaxPool,
    Reshape or Concat, give the same numbers either way.) On ARM ONNX Runtime keeps
    int8, fuses more groups and rounds some differently, by an int8 step at most.

    Returns the node list with each fused group's float op and QuantizeLinear
    replaced by one ``(name, kernel, [quantised inputs], [quantised output])`` tuple.
    """
    producer = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    def dq_of(name: str) -> Any | None:
        n = producer.get(name)
        return n if n is not None and n.op_type == "DequantizeLinear" else None

    replaced: dict[int, tuple | None] = {}
    for node in nodes:
        if node.op_type not in _FUSIBLE or node.output[0] in graph_outputs:
            continue
        n_act, int8_fuses = _FUSIBLE[node.op_type]
        users = consumers.get(node.output[0], [])
        dqs = [dq_of(name) for name in node.input[:n_act]]
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or None in dqs or len(node.input) < n_act:
            continue
        acts, y = [_qparams(dq, constants) for dq in dqs], _qparams(users[0], constants)
        if y is None or None in acts or any(dq.input[0] in constants for dq in dqs):
            continue
        types = {a[1].dtype for a in acts} | {y[1].dtype}
        if len(types) != 1 or (types == {np.dtype(np.int8)} and not int8_fuses):
            continue
        attrs = _attrs(node)
        if node.op_type == "Softmax":
            kernel = _fused_softmax(node, attrs, acts[0], y, opset)
        elif node.op_type == "AveragePool":
            kernel = _fused_average_pool(attrs, acts[0], y)
        elif node.op_type == "GlobalAveragePool":
            kernel = _fused_global_average_pool(acts[0], y)
        elif node.op_type == "Add":
            kernel = _fused_add(acts[0], acts[1], y)
        else:
            dq_w = dq_of(node.input[1]) if len(node.input) > 1 else None
            if dq_w is None or dq_w.input[0] not in constants or len(dq_w.input) < 3:
                continue
            w_q, w_scale, w_zp = constants[dq_w.input[0]], constants.get(dq_w.input[1]), constants.get(dq_w.input[2])
            # ONNX Runtime pairs int8 activations with int8 weights only; uint8 ones with either.
            if (
                w_q.dtype not in (np.int8, np.uint8)
                or (w_q.dtype == np.uint8 and types == {np.dtype(np.int8)})
                or w_scale is None
                or w_zp is None
            ):
                continue
            w = w_q.astype(np.int32) - K.per_axis(w_zp.astype(np.int32), _attrs(dq_w).get("axis", 1), w_q.ndim)
            bias = None
            if len(node.input) > 2 and node.input[2]:
                dq_b = dq_of(node.input[2])
                if dq_b is None or dq_b.input[0] not in constants or constants[dq_b.input[0]].dtype != np.int32:
                    continue
                bias = constants[dq_b.input[0]].astype(np.float64).reshape(-1)  # per output channel
            build = _fused_conv if node.op_type == "Conv" else _fused_matmul
            kernel = build(node, attrs, acts[0], w, w_scale.reshape(-1), bias, y)
        if kernel is None:
            continue
        replaced[id(node)] = (f"QDQ:{node.op_type}", kernel, [dq.input[0] for dq in dqs], [users[0].output[0]])
        replaced[id(users[0])] = None
    return [replaced.get(id(n), n) for n in nodes if replaced.get(id(n), n) is not None]


class OnnxGraph:
    """A parsed ONNX graph, topologically ordered as stored, ready to run.

    Raises
    ------
    ModelLoadError
        The protobuf cannot be parsed or the graph is malformed.
    BackendError
        It uses an operator or attribute the NumPy backend does not implement.
    """

    def __init__(self, data: bytes) -> None:
        import onnx
        from onnx import numpy_helper

        try:
            model = onnx.load_model_from_string(data)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ModelLoadError(f"cannot parse ONNX protobuf ({type(exc).__name__}: {exc})") from None
        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset == 0 or not graph.node:
            raise ModelLoadError("ONNX model has no default-domain opset or no nodes (damaged file?)")
        try:
            self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        except Exception as exc:  # malformed TensorProto
            raise ModelLoadError(f"corrupt ONNX initializer ({type(exc).__name__}: {exc})") from None
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) < 1:
            raise BackendError(f"expected one input and at least one output, got {len(inputs)} and {len(graph.output)}")
        self.input_name, self.input_shape, self.input_dtype = self._value_info(inputs[0])
        self.output_name, self.output_shape, self.output_dtype = self._value_info(graph.output[0])
        self.steps: list[tuple[Kernel, list[str], list[str]]] = []
        self.op_names: list[str] = []
        graph_outputs = {o.name for o in graph.output}
        rewrite_int8_pairs_as_uint8(list(graph.node), self.constants, graph_outputs)
        for node in fuse_qdq(list(graph.node), self.constants, graph_outputs, opset):
            if isinstance(node, tuple):
                self.op_names.append(node[0])
                self.steps.append(node[1:])
            else:
                self._add_node(node, opset, numpy_helper)

    @staticmethod
    def _value_info(info: Any) -> tuple[str, tuple[int, ...], np.dtype]:
        tensor = info.type.tensor_type
        if tensor.elem_type not in _DTYPES:
            raise BackendError(f"ONNX tensor '{info.name}' has unsupported element type {tensor.elem_type}")
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        return info.name, shape, np.dtype(_DTYPES[tensor.elem_type])

    def _add_node(self, node: Any, opset: int, numpy_helper: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            raise BackendError(
                f"the NumPy backend does not implement the ONNX operator {node.domain}.{node.op_type}; "
                "use backend 'onnxruntime'"
            )
        attrs = _attrs(node)
        self.op_names.append(node.op_type)
        if node.op_type == "Constant":
            if "value" not in attrs:
                raise BackendError("Constant nodes other than 'value' tensors are not supported by the NumPy backend")
            self.constants[node.output[0]] = numpy_helper.to_array(attrs["value"])
            return
        builder = BUILDERS.get(node.op_type)
        if builder is None:
            raise BackendError(
                f"the NumPy backend does not implement the ONNX operator {node.op_type}; use backend 'onnxruntime'"
            )
        if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            raise BackendError("MaxPool with an Indices output is not supported by the NumPy backend")
        in_names = list(node.input)
        while in_names and not in_names[-1]:
            in_names.pop()
        consts = [self.constants.get(n) for n in in_names]
        kernel = builder(attrs, consts, opset) if node.op_type in _OPSET_DEPENDENT else builder(attrs, consts)
        outputs = [o for o in node.output if o]
        if all(c is not None or not n for c, n in zip(consts, in_names)) and in_names:
            # Every input is known now (weights, their DequantizeLinear, shape
            # arithmetic on constants): evaluate once instead of on every call.
            self._store(outputs, kernel(*consts), self.constants)
            return
        self.steps.append((kernel, in_names, outputs))

    @staticmethod
    def _store(names: list[str], result: Any, values: dict[str, Any]) -> None:
        if isinstance(result, tuple):
            for name, value in zip(names, result):
                values[name] = value
        else:
            values[names[0]] = result

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run every node in order on input ``x``; return output 0."""
        values = dict(self.constants)
        values[self.input_name] = x
        try:
            for kernel, in_names, out_names in self.steps:
                self._store(out_names, kernel(*[values[n] if n else None for n in in_names]), values)
        except KeyError as exc:
            raise BackendError(
                f"ONNX graph uses tensor {exc} before it is produced (nodes not in topological order?)"
            ) from None
        return values[self.output_name]
