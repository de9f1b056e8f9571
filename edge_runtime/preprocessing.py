"""Turning what a caller passes to ``predict`` into the model's input tensor.

Callers pass what a device program holds: uint8 images ``(H, W, C)`` or a batch
``(N, H, W, C)`` (``(H, W)`` / ``(N, H, W)`` for one channel, flat rows too), float
images with pixels in [0, 1] in the same layouts, or raw feature vectors ``(F,)`` /
``(N, F)``. The model wants ``(N, *model_input_shape)`` in its own dtype, after the
manifest's preprocessing ``(raw * scale + offset - mean[c]) / std[c]``, quantised
with its own scale and zero point if it is int8. All of that is decided once, at
load time, and reduced to the cheapest per-call work:

- uint8 pixels take one pass, into a buffer reused while the batch size stays the
  same: float32 arithmetic for float models, and for int8 models a wrapping add
  (when quantisation maps pixel p to p + k, as it does for 1/255 scaling), a
  256-entry lookup table, or one table per channel (per-channel mean/std);
- float input is checked for NaN/inf (and, for images, for the [0, 1] range), then
  preprocessed and cast or quantised.

Anything else raises :class:`~edge_runtime.errors.InputError` with what was expected.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edge_runtime.errors import InputError, ModelLoadError
from edge_runtime.records import manifest as records

_copyto, _multiply, _add = np.copyto, np.multiply, np.add  # bound once: the batch-1 path is µs-sized
_UINT8 = np.dtype(np.uint8)  # builtin dtypes are singletons: `is` is the cheapest test
_FLOAT32, _FLOAT64 = np.dtype(np.float32), np.dtype(np.float64)
_isfinite = math.isfinite
_QUANTIZED_IO = (np.dtype(np.int8), np.dtype(np.uint8))  # model input dtypes that carry scale/zero-point
INT_RANGES = {np.dtype(np.int8): (-128, 127), np.dtype(np.uint8): (0, 255), np.dtype(np.int32): (-(2**31), 2**31 - 1)}
# Float pixels may stray this far outside [0, 1] before they are taken for unscaled
# 0-255 values: resampling filters overshoot a little.
_RANGE_SLACK = 0.05


def saturate(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round half-to-even and clip into ``dtype``'s range, then cast.

    The one rounding rule of the runtime, shared by input quantisation and the
    NumPy backend's integer kernels, so the two cannot drift apart.
    """
    lo, hi = INT_RANGES[np.dtype(dtype)]
    return np.clip(np.rint(values), lo, hi).astype(dtype)


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    """Affine-quantise float ``x``: ``clip(round(x / scale) + zero_point)``.

    Rounding is half-to-even (``numpy.rint``), as ONNX ``QuantizeLinear`` specifies.
    TFLite's reference QUANTIZE rounds half away from zero; the two differ only when
    ``x / scale`` is exactly halfway between integers, which float inputs almost never
    hit (uint8 pixels take the precomputed table path instead).

    Examples
    --------
    >>> quantize(np.array([0.0, 1.0]), 1 / 255, -128, np.dtype(np.int8)).tolist()
    [-128, 127]
    """
    return saturate(np.asarray(x, dtype=np.float64) / scale + zero_point, dtype)


def apply_preprocessing(raw: np.ndarray, pre: records.Preprocessing) -> np.ndarray:
    """Raw samples to the model's float32 input: ``(raw * scale + offset - mean) / std``, then the layout.

    The reference arithmetic, in float32 and in this order, used wherever a model
    is fed outside the device fast path: training, calibration, the parity
    reference and the benchmarks' hand-written loop. The device's
    :class:`InputAdapter` must give the same numbers (tests pin it).

    Parameters
    ----------
    raw : numpy.ndarray
        A batch of raw samples, channels last: uint8 images ``(N, H, W)`` or
        ``(N, H, W, C)``, or feature vectors ``(N, F)``.
    pre : Preprocessing
        From the training record or the manifest.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, *pre.model_input_shape)``.

    Examples
    --------
    >>> pre = records.Preprocessing.for_mode("unit", "flat", (2,))
    >>> apply_preprocessing(np.array([[0, 255]], np.uint8), pre).tolist()
    [[0.0, 1.0]]
    """
    x = raw.astype(np.float32)
    x *= np.float32(pre.scale)
    if pre.offset:
        x += np.float32(pre.offset)
    if pre.standardizes:
        x -= np.asarray(pre.mean, dtype=np.float32)
        x /= np.asarray(pre.std, dtype=np.float32)
    return x.reshape((len(raw), *pre.model_input_shape))


class InputAdapter:
    """Validates ``predict`` input and converts it to the model's input tensor.

    Parameters
    ----------
    spec : InputSpec
        What the caller holds (image of ``(H, W, C)`` or ``F`` features).
    pre : Preprocessing
        Scale, offset, mean/std and layout, from the manifest or defaults.
    dtype : numpy.dtype
        The model input's dtype (float32, int8 or uint8).
    quantization : (scale, zero_point) or None
        The model input's quantisation, required when ``dtype`` is an integer type.

    Raises
    ------
    ModelLoadError
        The model's input dtype is not float32/int8/uint8, or int8 without parameters.

    Notes
    -----
    Not thread-safe: the output buffer is reused between calls.
    """

    def __init__(self, spec: records.InputSpec, pre: records.Preprocessing, dtype: np.dtype,
                 quantization: tuple[float, int] | None) -> None:
        self.spec = spec
        self.sample_shape = tuple(pre.model_input_shape)
        self._raw_shape = tuple(spec.shape)
        shapes = {self.sample_shape, self._raw_shape, (spec.size,)}
        if spec.is_image and spec.channels == 1:
            shapes.add(spec.image_size)
        self._sample_shapes = shapes
        self.dtype = np.dtype(dtype)
        self._quant = quantization
        if self.dtype in _QUANTIZED_IO and quantization is None:
            raise ModelLoadError(f"model input is {self.dtype.name} but has no quantisation parameters")
        if self.dtype not in _QUANTIZED_IO and self.dtype != np.float32:
            raise ModelLoadError(f"model input dtype {self.dtype.name} is not supported (float32, int8 or uint8)")
        self._pre = pre
        # Float images are pixels / 255: folding the 255 into the scale makes them raw pixels.
        self._float_pre = pre._replace(scale=pre.scale * 255.0) if spec.is_image else pre
        self._mean = np.asarray(pre.mean, dtype=np.float32)
        self._std = np.asarray(pre.std, dtype=np.float32)
        self._standardize = pre.standardizes
        fp = self._float_pre
        self._float_identity = self._quant is None and fp.scale == 1.0 and not fp.offset and not self._standardize
        self._pixels_into, self._pixel_dtype = self._pixel_converter() if spec.is_image else (None, self.dtype)
        self._quantize_features = self._feature_quantizer() if not spec.is_image and quantization is not None else None
        # float32 rows of the model's shape -> its input; None: they already are its input.
        self._features_into = self._quantize_features or (
            None if self._float_identity else (lambda rows: apply_preprocessing(rows, self._float_pre)))
        self._last_features: tuple[int, ...] | None = None  # shape of the last float32 feature rows
        self._buffer = np.empty((0, *self.sample_shape), dtype=self.dtype)
        self._last_pixels: tuple[int, ...] | None = None  # shape of the last uint8 input
        self._pixel_view = self._buffer  # the buffer as the converter writes it, in that shape

    def _pixel_converter(self) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], np.dtype]:
        """The cheapest exact uint8 -> model-input conversion, chosen once.

        Returns the converter ``f(pixels, out)`` and the dtype ``out`` must be viewed
        as (the int8 wrapping add writes the bit pattern as uint8); ``out`` has the
        shape of ``pixels``, so steady-state calls need no reshape.

        float32 models: the reference arithmetic of :func:`apply_preprocessing`, op
        for op, so the numbers are identical. Quantised models whose quantisation
        maps pixel p to ``p + k`` (scale 1/255, zero point -128: every MNIST model
        this toolkit makes): one wrapping uint8 add written straight into the int8
        buffer. Otherwise a 256-entry lookup table, one per channel when mean/std
        differ per channel.
        """
        pre, channels = self._pre, self.spec.channels
        if self._quant is None:
            scale, offset = np.float32(pre.scale), np.float32(pre.offset)
            mean, std, standardize = self._mean, self._std, self._standardize
            raw_shape = self._raw_shape

            def scale_pixels(x: np.ndarray, out: np.ndarray) -> np.ndarray:
                # A plain cast then in-place arithmetic beats one casting multiply.
                _copyto(out, x)
                return _multiply(out, scale, out=out)

            def full_arithmetic(x: np.ndarray, out: np.ndarray) -> np.ndarray:
                scale_pixels(x, out)
                if offset:
                    _add(out, offset, out=out)
                if standardize:  # along the channel axis of the raw layout
                    view = out.reshape((-1, *raw_shape))
                    view -= mean
                    view /= std
                return out

            return (scale_pixels if not offset and not standardize else full_arithmetic), self.dtype
        values = np.arange(256, dtype=np.float64)[:, None] * pre.scale + pre.offset
        values = (values - np.asarray(pre.mean)) / np.asarray(pre.std)  # (256, 1) or (256, C)
        tables = self._quantize(values)
        if tables.shape[1] == 1 or np.all(tables == tables[:, :1]):
            lut = np.ascontiguousarray(tables[:, 0])
            shift = int(lut[0])
            if np.array_equal(lut.astype(np.int64), np.arange(256) + shift):
                k = np.uint8(shift % 256)  # p + shift, as the int8/uint8 bit pattern
                return (lambda x, out: _add(x, k, out=out)), _UINT8
            return (lambda x, out: np.take(lut, x, out=out)), self.dtype
        flat = np.ascontiguousarray(tables.T).reshape(-1)  # channel c's table at [256 c, 256 c + 256)
        offsets = np.arange(channels, dtype=np.intp) * 256
        raw_shape = self._raw_shape

        def per_channel(x: np.ndarray, out: np.ndarray) -> np.ndarray:
            index = x.reshape((-1, *raw_shape)).astype(np.intp) + offsets
            return np.take(flat, index.reshape(x.shape), out=out)

        return per_channel, self.dtype

    def _feature_quantizer(self) -> Callable[[np.ndarray], np.ndarray]:
        """Raw features straight to the int8 input: one multiply-add in float64, rounded and clipped.

        ``(x * scale + offset - mean) / std / q_scale + zero_point`` folded into per-feature
        constants at load, so a batch-1 call of a sensor model is five numpy operations
        (it was the slowest per call against the hand-written loop). The float64
        arithmetic can round a value sitting exactly halfway between two int8 steps
        differently from the float32 reference; the converter's gates cover that.
        """
        pre, (q_scale, zero_point) = self._pre, self._quant
        std = np.asarray(pre.std, dtype=np.float64)
        factor = pre.scale / std / q_scale
        shift = (pre.offset - np.asarray(pre.mean, dtype=np.float64)) / std / q_scale + zero_point
        lo, hi = INT_RANGES[self.dtype]
        dtype = self.dtype

        def quantize_features(rows: np.ndarray) -> np.ndarray:
            t = _multiply(rows, factor)
            _add(t, shift, out=t)
            np.rint(t, out=t)
            np.clip(t, lo, hi, out=t)
            return t.astype(dtype)

        return quantize_features

    def _quantize(self, x: np.ndarray) -> np.ndarray:
        return quantize(x, self._quant[0], self._quant[1], self.dtype)

    def describe_shapes(self) -> str:
        """Accepted shapes, for error messages: ``(28, 28), (28, 28, 1), ... or a batch``."""
        shapes = sorted(self._sample_shapes, key=lambda s: (len(s), s))
        return ", ".join(f"{s}" for s in shapes) + " or a batch of them (N, ...)"

    def batch_shape(self, shape: tuple[int, ...]) -> int:
        """The batch size of an input of ``shape``; InputError if no layout fits."""
        if shape in self._sample_shapes:
            return 1
        if len(shape) >= 2 and shape[1:] in self._sample_shapes:
            if shape[0] == 0:
                raise InputError("empty batch: the input has 0 samples")
            return shape[0]
        what = "image" if self.spec.is_image else "feature vector"
        raise InputError(f"input shape {shape} does not fit the model's {what}; expected {self.describe_shapes()}")

    def __call__(self, x: object) -> np.ndarray:
        """Return ``x`` as a C-contiguous ``(N, *sample_shape)`` array in the model dtype.

        Raises
        ------
        InputError
            Unsupported dtype, shape that fits no accepted layout, empty batch,
            NaN/inf, or float pixels outside [0, 1].
        """
        if x.__class__ is np.ndarray and x.shape == self._last_pixels and x.dtype is _UINT8:
            # Same uint8 layout as last time (the serving case): nothing to re-check,
            # and the buffer view of that layout is already made.
            self._pixels_into(x, self._pixel_view)
            return self._buffer
        if (x.__class__ is np.ndarray and x.shape == self._last_features and x.dtype is _FLOAT32
                and x.flags.c_contiguous):
            # Same float32 feature rows as last time (a sensor loop): only the values are new.
            if not _isfinite(_add.reduce(x, axis=None, dtype=_FLOAT64)) and not np.isfinite(x).all():
                raise InputError("input contains NaN or inf")
            return x if self._features_into is None else self._features_into(x)
        if type(x) is not np.ndarray:
            try:
                x = np.asarray(x)
            except (ValueError, TypeError) as exc:
                raise InputError(f"input is not an array of numbers ({exc})") from None
        shape = x.shape
        n = 1 if shape in self._sample_shapes else self.batch_shape(shape)
        if x.dtype is _UINT8 and self._pixels_into is not None:
            out = self._buffer if self._buffer.shape[0] == n else self._out(n)
            self._pixel_view = out.view(self._pixel_dtype).reshape(shape)
            self._last_pixels = shape
            self._pixels_into(x, self._pixel_view)
            return out
        if self.spec.is_image and (x.dtype.kind != "f" or x.dtype.itemsize > 8):  # any byte order; not longdouble
            raise InputError(
                f"input dtype {x.dtype} is not supported; pass uint8 pixels (0-255) or float pixels in [0, 1]"
            )
        if x.dtype.kind not in "fiu" or x.dtype.itemsize > 8:
            raise InputError(f"input dtype {x.dtype} is not supported; pass the feature values as numbers")
        if self.spec.is_image:
            lo, hi = float(x.min()), float(x.max())  # NaN and inf show up here too
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise InputError("input contains NaN or inf")
            if lo < -_RANGE_SLACK or hi > 1 + _RANGE_SLACK:
                raise InputError(
                    f"float input ranges over [{lo:g}, {hi:g}] but float pixels must be in [0, 1]; "
                    "pass uint8 pixels, or divide by 255"
                )
        # One reduction finds NaN and inf (the sum is then not finite), summed in float64 so
        # float32 values cannot overflow it; only a float64 sum of huge but finite values
        # needs the element-wise look.
        elif not _isfinite(_add.reduce(x, axis=None, dtype=_FLOAT64)) and not np.isfinite(x).all():
            raise InputError("input contains NaN or inf")
        if (not self.spec.is_image and x.dtype is _FLOAT32 and x.flags.c_contiguous
                and x.shape == (n, *self.sample_shape)):
            self._last_features = x.shape
            return x if self._features_into is None else self._features_into(x)
        if self._float_identity and x.dtype == np.float32 and x.flags.c_contiguous:
            return x.reshape((n, *self.sample_shape))  # already the model's float input: no copy
        if self._quantize_features is not None:
            return self._quantize_features(x.reshape((n, *self.sample_shape)))
        rows = apply_preprocessing(x.reshape((n, *self._raw_shape)), self._float_pre)
        return rows if self._quant is None else self._quantize(rows)

    def _out(self, n: int) -> np.ndarray:
        if self._buffer.shape[0] != n:
            self._buffer = np.empty((n, *self.sample_shape), dtype=self.dtype)
            self._last_pixels = None
        return self._buffer
