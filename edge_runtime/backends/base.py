"""What every backend provides to :class:`edge_runtime.Model`.

A backend only executes the graph: it takes an input tensor already in the model's
own dtype and layout (float32, or int8/uint8 already quantised) with a batch axis,
and returns the raw first output. Preprocessing, quantisation of inputs,
dequantisation of outputs and the softmax for logit models live in the ``Model``,
once, so all backends agree on them by construction.
"""


from typing import Any, NamedTuple

import numpy as np


class TensorSpec(NamedTuple):
    """One graph input or output as the backend sees it.

    ``shape`` includes the batch axis; ``-1`` marks a dynamic dimension.
    ``quantization`` is ``(scale, zero_point)`` for a quantised tensor, else None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quantization: tuple[float, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, in the layout of the manifest's ``inputs``/``outputs``."""
        quant = (None if self.quantization is None
                 else {"scale": self.quantization[0], "zero_point": self.quantization[1]})
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype.name, "quantization": quant}


class Backend:
    """Base class: ``name``, ``inputs``, ``outputs``, ``threads`` and :meth:`run`.

    Backends are not thread-safe: an interpreter has one set of input/output
    buffers. Use one :class:`~edge_runtime.Model` per thread, or a lock.
    """

    name: str = "?"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    threads: int | None = None

    def run(self, x: np.ndarray) -> np.ndarray:
        """Execute the graph on ``x`` (batch first, model dtype) and return output 0."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """Backend-specific facts for ``Model.info()`` (library version, providers...)."""
        return {}
