"""The TensorFlow Lite Micro interpreter on the build machine: arena size, parity, timing.

``tflite-micro`` (PyPI) wraps the same C++ interpreter firmware links, with its
reference kernels, so it answers on the host what would otherwise be found out on
the board: how large the tensor arena must be, and whether the micro runtime gives
the answers LiteRT gives for the very same flatbuffer and input bytes.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from edge_runtime.errors import BackendError, ModelLoadError

MCU_EXTRA_HINT = "pip install 'keras2edge[mcu]' (tflite-micro publishes wheels for x86-64 Linux only)"

# The arena is measured on a 64-bit host with the reference kernels. Firmware differs:
# optimised kernels (CMSIS-NN on Cortex-M, ESP-NN on ESP32) ask for scratch buffers
# the reference kernels do not, and the allocator's bookkeeping and alignment depend
# on the target. 25% (at least 1 KiB) covers the scratch buffers of the small
# convolutions keras2edge makes; check interpreter.arena_used_bytes() on the board.
ARENA_MARGIN_FRACTION = 0.25
ARENA_MARGIN_MIN_BYTES = 1024
ARENA_ALIGNMENT = 16
_ARENA_SEARCH_LIMIT = 1 << 31
# The Python wrapper does not check that its allocator fits the arena: below about
# 460 bytes it crashes the process instead of raising. The search never goes there;
# a model that runs in less is reported as needing this much.
ARENA_SEARCH_FLOOR = 1024


def micro_runtime() -> Any:
    """Import ``tflite_micro.runtime``; one-line :class:`BackendError` if it is absent.

    Raises
    ------
    BackendError
        tflite-micro is not installed (or has no wheel for this machine).
    """
    try:
        from tflite_micro import runtime
    except ImportError:
        raise BackendError(f"the TensorFlow Lite Micro interpreter is not installed: {MCU_EXTRA_HINT}") from None
    return runtime


def _interpreter(runtime: Any, data: bytes, arena_bytes: int) -> Any:
    return runtime.Interpreter.from_bytes(data, arena_size=arena_bytes)


def _runs_in(runtime: Any, data: bytes, arena_bytes: int, sample: np.ndarray) -> bool:
    try:
        interpreter = _interpreter(runtime, data, arena_bytes)
        interpreter.set_input(sample, 0)
        interpreter.invoke()
    except (RuntimeError, ValueError):
        return False
    return True


def measure_arena(runtime: Any, data: bytes, sample: np.ndarray) -> int:
    """The smallest tensor arena in which the interpreter allocates and invokes the model.

    Why a search rather than the allocator's own figure: the Python interpreter only
    prints its ``RecordingMicroAllocator`` report as text on stderr; the size that
    makes ``AllocateTensors`` and ``Invoke`` succeed is the number firmware needs,
    and it is measured directly (allocation is deterministic, so the search is exact).

    Parameters
    ----------
    runtime : module
        ``tflite_micro.runtime``.
    data : bytes
        The ``.tflite`` flatbuffer.
    sample : numpy.ndarray
        One model input (batch 1, model dtype) to invoke with.

    Returns
    -------
    int
        Bytes; at least :data:`ARENA_SEARCH_FLOOR`.

    Raises
    ------
    ModelLoadError
        The interpreter cannot run the model with any arena up to 2 GiB.
    """
    from convert._quiet import captured_output

    with captured_output():  # every failed allocation prints why on stderr
        if _runs_in(runtime, data, ARENA_SEARCH_FLOOR, sample):
            return ARENA_SEARCH_FLOOR
        low, high = ARENA_SEARCH_FLOOR, max(2 * ARENA_SEARCH_FLOOR, len(data))  # invariant: low fails
        while not _runs_in(runtime, data, high, sample):
            if high >= _ARENA_SEARCH_LIMIT:
                raise ModelLoadError(
                    "TensorFlow Lite Micro cannot allocate or run this model with any arena up to 2 GiB"
                )
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            if _runs_in(runtime, data, middle, sample):
                high = middle
            else:
                low = middle
    return high


def arena_budget(measured: int) -> dict[str, Any]:
    """The arena to configure: ``measured`` plus the stated margin, 16-byte aligned.

    Examples
    --------
    >>> arena_budget(10456)["recommended_bytes"], arena_budget(1000)["recommended_bytes"]
    (13072, 2032)
    """
    margin = max(ARENA_MARGIN_MIN_BYTES, math.ceil(measured * ARENA_MARGIN_FRACTION))
    recommended = -(-(measured + margin) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return {
        "measured_bytes": measured,
        "margin_bytes": recommended - measured,
        "recommended_bytes": recommended,
        "margin": (
            f"{ARENA_MARGIN_FRACTION:.0%} (at least {ARENA_MARGIN_MIN_BYTES} bytes), rounded up to {ARENA_ALIGNMENT}: "
            "for optimised kernels' scratch buffers (CMSIS-NN, ESP-NN) and target alignment"
        ),
    }


def tensor_details(details: dict[str, Any]) -> dict[str, Any]:
    """A TensorFlow Lite Micro tensor description in the manifest's terms."""
    quant = details["quantization_parameters"]
    scales, zero_points = list(quant["scales"]), list(quant["zero_points"])
    return {
        "shape": [int(d) for d in details["shape"]],
        "dtype": np.dtype(details["dtype"]).name,
        "scale": float(scales[0]) if scales else 0.0,
        "zero_point": int(zero_points[0]) if zero_points else 0,
    }


def io_details(runtime: Any, data: bytes, arena_bytes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Input 0 and output 0 as the micro interpreter (so the firmware) sees them."""
    interpreter = _interpreter(runtime, data, arena_bytes)
    return tensor_details(interpreter.get_input_details(0)), tensor_details(interpreter.get_output_details(0))


def run_micro(runtime: Any, data: bytes, arena_bytes: int, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run every row of ``inputs`` through one micro interpreter, one invoke each.

    Microcontrollers run batch 1, so does this. The interpreter is created with the
    recommended arena, which this therefore proves sufficient on the host.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        The raw outputs ``(N, *output shape[1:])`` and the seconds each
        ``set_input`` + ``invoke`` + ``get_output`` took.
    """
    interpreter = _interpreter(runtime, data, arena_bytes)
    set_input, invoke, get_output = interpreter.set_input, interpreter.invoke, interpreter.get_output
    outputs, seconds = [], np.empty(len(inputs))
    clock = time.perf_counter
    for i in range(len(inputs)):
        start = clock()
        set_input(inputs[i : i + 1], 0)
        invoke()
        out = get_output(0)
        seconds[i] = clock() - start
        outputs.append(out[0].copy())
    return np.stack(outputs), seconds


def litert_outputs(data: bytes, inputs: np.ndarray, *, delegates: bool) -> np.ndarray:
    """LiteRT's raw outputs for every row of ``inputs``, one invoke each like the micro runtime.

    ``delegates=True`` is LiteRT as keras2edge runs it everywhere else (its default
    XNNPACK delegate); ``False`` uses LiteRT's built-in kernels, whose integer
    arithmetic is the specification TensorFlow Lite Micro's reference kernels follow,
    so a difference against the one but not the other is XNNPACK's rounding.

    Raises
    ------
    BackendError
        ai-edge-litert is not installed.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise BackendError("LiteRT is not installed: pip install ai-edge-litert") from None
    from convert._quiet import captured_output

    kind = OpResolverType.AUTO if delegates else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with captured_output():  # LiteRT announces its delegate on stderr
        interpreter = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=kind)
        interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for i in range(len(inputs)):
        interpreter.set_tensor(in_index, inputs[i : i + 1])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out_index)[0].copy())
    return np.stack(outputs)


def compare_outputs(micro: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How far the micro interpreter's raw outputs are from another's for the same inputs.

    Integer outputs are compared in quantisation steps: one step is the smallest
    change the int8 output can make.

    Examples
    --------
    >>> micro = np.array([[-128, 100], [90, -128]], np.int8)
    >>> reference = np.array([[-128, 101], [-128, 90]], np.int8)
    >>> m = compare_outputs(micro, reference)
    >>> m["agreement"], m["identical"], m["max_step_difference"]
    (0.5, 0.0, 218)
    """
    n = len(micro)
    steps = np.abs(micro.astype(np.int64) - reference.astype(np.int64)).reshape(n, -1)
    return {
        "agreement": float(np.mean(top1(micro) == top1(reference))),
        "identical": float(np.mean(steps.max(axis=1) == 0)),
        "max_step_difference": int(steps.max()),
        "mean_step_difference": float(steps.mean()),
    }


def top1(outputs: np.ndarray) -> np.ndarray:
    """The index of the largest output of each row (the predicted class)."""
    return outputs.reshape(len(outputs), -1).argmax(axis=1)


def timing(seconds: np.ndarray) -> dict[str, Any]:
    """Median, 90th percentile and mean of per-inference times, in milliseconds."""
    ms = seconds * 1e3
    return {
        "inferences": int(len(ms)),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.percentile(ms, 90)),
        "mean_ms": float(ms.mean()),
    }
