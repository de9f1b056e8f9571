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
from edge_runtime.preprocessing import apply_preprocessing
from edge_runtime.records.manifest import Preprocessing
from train.data import Dataset


class CalibrationData:
    """A fixed random sample of training inputs, preprocessed as the artifact expects.

    The sample is drawn uniformly at random over the whole training split: an
    image folder is read class by class, so its first N images would all be one
    class, and a calibration set like that costs a conv net several points of int8
    accuracy.

    Parameters
    ----------
    dataset : Dataset
        The data set; only its training split is read.
    preprocessing : Preprocessing
        How raw inputs become the model's input (scale, offset, mean/std, layout).
    samples : int
        How many training inputs to use (without replacement).
    seed : int
        Seed of the sample, recorded in the manifest so calibration is repeatable.

    Examples
    --------
    >>> from train.data import load_dataset
    >>> from edge_runtime.records.manifest import Preprocessing
    >>> calib = CalibrationData(load_dataset(), Preprocessing.for_mode("unit", "flat", (784,)), samples=8, seed=0)
    >>> calib.inputs.shape, calib.inputs.dtype
    ((8, 784), dtype('float32'))
    """

    split = "train"

    def __init__(self, dataset: Dataset, preprocessing: Preprocessing, samples: int, seed: int) -> None:
        available = len(dataset.x_train)
        if not 1 <= samples <= available:
            raise DataError(
                f"--calibration-samples must be between 1 and {available} (the training split size), got {samples}"
            )
        input_shape = preprocessing.model_input_shape
        per_sample = int(np.prod(input_shape))
        values = int(np.prod(dataset.x_train.shape[1:]))
        if per_sample != values:
            raise DataError(
                f"calibration inputs are {'×'.join(map(str, dataset.x_train.shape[1:]))} ({values} values) "
                f"but the model input {tuple(input_shape)} needs {per_sample}"
            )
        self.samples = samples
        self.seed = seed
        rng = np.random.default_rng(seed)
        indices = np.sort(rng.choice(available, size=samples, replace=False))
        self.inputs: np.ndarray = apply_preprocessing(dataset.x_train[indices], preprocessing)

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
        return {"split": self.split, "samples": self.samples, "seed": self.seed, "draw": "uniform random"}
