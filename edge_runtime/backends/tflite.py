"""TFLite artifacts on a native interpreter: LiteRT, tflite-runtime or TensorFlow Lite.

The three packages ship the same ``Interpreter`` API, so one class drives all of
them; only the import differs. A model converted with a fixed batch of 1 is
resized to the caller's batch (once per change of batch size), so a batch runs as
one ``invoke`` instead of a Python loop. Only if the graph itself cannot take
another batch size (a hard-coded reshape) does it fall back to one invoke per sample.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Any

import numpy as np

from edge_runtime.backends.base import Backend, TensorSpec
from edge_runtime.errors import BackendError, ModelLoadError

# backend name -> (module holding Interpreter, pip requirement to suggest)
MODULES = {
    "litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow.lite.python.interpreter", "tensorflow"),
}


def interpreter_class(name: str) -> Callable[..., Any]:
    """Import the ``Interpreter`` class of backend ``name``; ImportError if absent."""
    return import_module(MODULES[name][0]).Interpreter


# LiteRT announces its CPU delegate on file descriptor 2 on every load; a CLI whose
# errors are one line cannot have that line in front of them.
_DELEGATE_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


def _scratch_file() -> Any:
    """An anonymous file for captured output.

    ``memfd_create`` (Linux, so every Raspberry Pi OS) needs no import; importing
    ``tempfile`` costs a few milliseconds of every cold start, which is why it is only
    the fallback.
    """
    if hasattr(os, "memfd_create"):
        return open(os.memfd_create("keras2edge-native-stderr"), "w+b")
    import tempfile

    return tempfile.TemporaryFile()


@contextlib.contextmanager
def _native_stderr(messages: list[str]) -> Iterator[None]:
    """Capture what native code writes to fd 2 into ``messages`` (minus the delegate notice)."""
    sys.stderr.flush()
    with _scratch_file() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace")
            messages.extend(line for line in text.splitlines() if line.strip() and line.strip() != _DELEGATE_NOTICE)


def _spec(detail: dict[str, Any]) -> TensorSpec:
    signature = detail.get("shape_signature")
    shape = detail["shape"] if signature is None or len(signature) == 0 else signature
    scale, zero_point = detail.get("quantization", (0.0, 0))
    quant = (float(scale), int(zero_point)) if scale else None
    return TensorSpec(detail["name"], tuple(int(d) for d in shape), np.dtype(detail["dtype"]), quant)


class TFLiteBackend(Backend):
    """A TFLite flatbuffer on one of the native interpreters.

    Parameters
    ----------
    name : str
        ``"litert"``, ``"tflite_runtime"`` or ``"tensorflow"``.
    data : bytes
        The ``.tflite`` file content (already checked for the ``TFL3`` identifier).
    threads : int or None
        Interpreter threads; None lets the interpreter choose.
    """

    def __init__(self, name: str, data: bytes, threads: int | None) -> None:
        interpreter = interpreter_class(name)
        self.name = name
        self.threads = threads
        messages: list[str] = []
        try:
            with _native_stderr(messages):
                self._interp = interpreter(model_content=data, num_threads=threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            detail = " ".join(str(exc).split()) or "; ".join(messages)
            raise ModelLoadError(f"{name} cannot load this TFLite model: {detail}") from None
        if messages:
            print("\n".join(messages), file=sys.stderr)
        in_details = self._interp.get_input_details()
        out_details = self._interp.get_output_details()
        if len(in_details) != 1 or len(out_details) != 1:
            raise BackendError(
                f"expected a model with one input and one output, got {len(in_details)} and {len(out_details)}"
            )
        self.inputs = [_spec(in_details[0])]
        self.outputs = [_spec(out_details[0])]
        self._in_index = in_details[0]["index"]
        self._out_index = out_details[0]["index"]
        self._sample_shape = tuple(int(d) for d in in_details[0]["shape"][1:])
        self._batch = int(in_details[0]["shape"][0])
        self._loop = False
        self.run = self._bind_run()

    def _bind_run(self) -> Callable[[np.ndarray], np.ndarray]:
        """``run`` as a closure over the interpreter's bound methods.

        At batch 1 an MLP inference takes a few microseconds, so the attribute
        lookups of a plain method are a measurable share; a closure reads its
        variables directly. Only the current batch size changes, and it is read
        from ``self``.
        """
        set_tensor, invoke, get_tensor = self._interp.set_tensor, self._interp.invoke, self._interp.get_tensor
        in_index, out_index = self._in_index, self._out_index

        def run(x: np.ndarray) -> np.ndarray:
            if x.shape[0] != self._batch:
                return self._run_other_batch(x)
            set_tensor(in_index, x)
            invoke()
            return get_tensor(out_index)

        return run

    def _run_other_batch(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if not self._loop:
            try:
                self._interp.resize_tensor_input(self._in_index, (n, *self._sample_shape), strict=False)
                self._interp.allocate_tensors()
            except (ValueError, RuntimeError):
                # The graph hard-codes its batch (e.g. a Reshape to [1, ...]): restore it
                # and run one invoke per sample, the only thing such a model can do.
                self._interp.resize_tensor_input(self._in_index, (self._batch, *self._sample_shape), strict=False)
                self._interp.allocate_tensors()
                self._loop = True
            else:
                self._batch = n
                return self.run(x)
        if self._batch != 1:
            raise BackendError(f"this model only accepts batches of exactly {self._batch}; got {n}")
        return np.concatenate([self.run(x[i : i + 1]) for i in range(n)])

    def details(self) -> dict[str, Any]:
        package = MODULES[self.name][1]
        return {"library": package, "library_version": _package_version(package), "batch_loop": self._loop}


@functools.cache
def _package_version(package: str) -> str:
    """The installed version of ``package``, looked up once per process.

    ``importlib.metadata`` searches ``sys.path`` on disk (about 0.4 ms), and ``serve``
    answers ``/v1/model`` from :meth:`TFLiteBackend.details` on every request; not at
    load, which must stay cheap for a cold start.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # tensorflow may be installed as tensorflow-cpu
        return "unknown"
