"""``samples.npz``: a few test inputs as a device receives them, with their answers.

The converter writes ``samples.npz`` into every artifact directory: about 32 inputs
drawn from the test split of the data the model was converted with, raw (uint8
images, or feature vectors before any standardisation), their labels, their
positions in the test split, and the source Keras model's probabilities for them.
The device side needs nothing else to check a model: the self-test, ``serve``'s
``/healthz``, the bundle's reference outputs and the benchmarks' inputs all come
from it, so they work for an RGB camera classifier or a sensor model as for MNIST.

A directory converted before ``samples.npz`` existed (manifest schema 1: MNIST
digits) falls back to the 20 real MNIST test digits embedded in the package
(``edge_runtime/samples/mnist_test_samples.npz``).
"""


import io
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge_runtime.errors import DataError

SAMPLES_NAME = "samples.npz"
EMBEDDED_DIGITS = Path(__file__).resolve().parent / "samples" / "mnist_test_samples.npz"
_DIGITS_SHAPE = (28, 28)


class SampleSet(NamedTuple):
    """Raw inputs, true labels (class indices), test-split positions, and reference probabilities.

    ``probabilities`` are the source Keras model's (float32, ``(N, classes)``), or
    None for the embedded digits, which belong to no model.
    """

    inputs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    probabilities: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def write_samples(directory: str | Path, inputs: np.ndarray, labels: np.ndarray, indices: np.ndarray,
                  probabilities: np.ndarray) -> Path:
    """Write ``directory/samples.npz`` atomically and return its path.

    Examples
    --------
    >>> write_samples(out_dir, x_test[idx], y_test[idx], idx, keras_probs)  # doctest: +SKIP
    PosixPath('out/artifacts/samples.npz')
    """
    from edge_runtime.atomic import write_bytes

    if not (len(inputs) == len(labels) == len(indices) == len(probabilities)):
        raise ValueError("samples: inputs, labels, indices and probabilities must have the same length")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, inputs=inputs, labels=np.asarray(labels, np.int64),
                        indices=np.asarray(indices, np.int64), probabilities=np.asarray(probabilities, np.float32))
    target = Path(directory) / SAMPLES_NAME
    write_bytes(target, buffer.getvalue())
    return target


def _read(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in keys}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: samples are missing or damaged ({type(exc).__name__}: {exc})") from None


def embedded_digits() -> SampleSet:
    """The 20 real MNIST test digits shipped in the package (two of each class).

    Examples
    --------
    >>> s = embedded_digits()
    >>> s.inputs.shape, s.inputs.dtype.name, len(s)
    ((20, 28, 28), 'uint8', 20)
    """
    arrays = _read(EMBEDDED_DIGITS, ("images", "labels", "indices"))
    images, labels, indices = arrays["images"], arrays["labels"], arrays["indices"]
    if images.dtype != np.uint8 or images.shape[1:] != _DIGITS_SHAPE or labels.shape != (len(images),):
        raise DataError(f"{EMBEDDED_DIGITS}: embedded self-test digits have an unexpected layout; reinstall keras2edge")
    return SampleSet(images, labels.astype(np.int64), indices.astype(np.int64), None, "embedded MNIST test digits")


def load_samples(directory: str | Path, input_shape: tuple[int, ...] | None = None) -> SampleSet:
    """The samples of an artifact or bundle directory.

    Parameters
    ----------
    directory : str or Path
        Holds ``samples.npz`` (written by the converter, copied into bundles).
    input_shape : tuple of int, optional
        The model's raw input shape (``(H, W, C)`` or ``(F,)``). Without
        ``samples.npz``, a 28×28 single-channel model falls back to the embedded MNIST
        digits; any other model is an error.

    Returns
    -------
    SampleSet

    Raises
    ------
    DataError
        No usable samples, or a damaged file.

    Examples
    --------
    >>> load_samples("out/artifacts").inputs.shape  # doctest: +SKIP
    (32, 28, 28)
    """
    path = Path(directory) / SAMPLES_NAME
    if not path.is_file():
        if input_shape is None or tuple(input_shape) in ((*_DIGITS_SHAPE, 1), _DIGITS_SHAPE, (784,)):
            return embedded_digits()
        raise DataError(f"{directory}: no {SAMPLES_NAME}; convert the model again with 'python -m convert' to write it")
    arrays = _read(path, ("inputs", "labels", "indices", "probabilities"))
    inputs, labels, probs = arrays["inputs"], arrays["labels"], arrays["probabilities"]
    n = len(inputs)
    if n == 0 or labels.shape != (n,) or arrays["indices"].shape != (n,) or probs.ndim != 2 or len(probs) != n:
        raise DataError(f"{path}: samples have inconsistent lengths; convert the model again")
    if input_shape is not None and inputs.shape[1:] != tuple(input_shape) and not (
        len(input_shape) == 3 and input_shape[2] == 1 and inputs.shape[1:] == tuple(input_shape[:2])
    ):
        raise DataError(f"{path}: samples have shape {inputs.shape[1:]} but the model reads {tuple(input_shape)}")
    return SampleSet(inputs, labels.astype(np.int64), arrays["indices"].astype(np.int64), probs.astype(np.float32),
                     str(path))
