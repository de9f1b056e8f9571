"""Representative data for int8 calibration, drawn from the training split only.

Activation ranges measured on the test images would leak the evaluation set into
the artifact and make parity numbers look better than they are, so this module
takes its samples from ``Dataset.x_train`` and nothing else. One object serves both
quantisers: TFLite's ``representative_dataset`` generator and ONNX Runtime's
``CalibrationDataReader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from edge_runtime.errors import DataError
from train.data import Dataset, preprocess


class CalibrationData:
    """A fixed random sample of preprocessed training images in the model's input layout.

    Parameters
    ----------
    dataset : Dataset
        The data set; only its training split is read.
    input_shape : tuple of int
        Per-sample model input shape, e.g. ``(784,)`` or ``(28, 28, 1)``.
    samples : int
        How many training images to use (without replacement).
    seed : int
        Seed of the sample, recorded in the manifest so calibration is repeatable.

    Examples
    --------
    >>> from train.data import load_dataset
    >>> calib = CalibrationData(load_dataset(), (784,), samples=8, seed=0)
    >>> calib.inputs.shape, calib.inputs.dtype
    ((8, 784), dtype('float32'))
    """

    split = "train"

    def __init__(self, dataset: Dataset, input_shape: tuple[int, ...], samples: int, seed: int) -> None:
        available = len(dataset.x_train)
        if not 1 <= samples <= available:
            raise DataError(f"--calibration-samples must be between 1 and {available} (the training split size), got {samples}")
        per_sample = int(np.prod(input_shape))
        pixels = int(np.prod(dataset.x_train.shape[1:]))
        if per_sample != pixels:
            raise DataError(
                f"calibration images are {'×'.join(map(str, dataset.x_train.shape[1:]))} ({pixels} values) "
                f"but the model input {tuple(input_shape)} needs {per_sample}"
            )
        self.samples = samples
        self.seed = seed
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(available, size=samples, replace=False))
        self.inputs: np.ndarray = preprocess(dataset.x_train[indices]).reshape((samples, *input_shape))

    def representative_dataset(self) -> Iterator[list[np.ndarray]]:
        """Yield one-image batches, the form ``TFLiteConverter.representative_dataset`` wants."""
        for row in self.inputs:
            yield [row[np.newaxis]]

    def onnx_reader(self, input_name: str, batch_size: int = 50) -> Any:
        """A fresh ``onnxruntime.quantization.CalibrationDataReader`` over the same samples.

        A reader is consumed once, so each quantisation run asks for a new one.
        """
        from onnxruntime.quantization import CalibrationDataReader

        inputs = self.inputs

        class _Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._batches = iter(range(0, len(inputs), batch_size))

            def get_next(self) -> dict[str, np.ndarray] | None:
                start = next(self._batches, None)
                if start is None:
                    return None
                return {input_name: inputs[start : start + batch_size]}

            def rewind(self) -> None:
                self._batches = iter(range(0, len(inputs), batch_size))

        return _Reader()

    def describe(self) -> dict[str, Any]:
        """The manifest's ``calibration`` record."""
        return {"split": self.split, "samples": self.samples, "seed": self.seed}
