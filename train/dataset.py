"""The in-memory form every data source is loaded into, and the train/test split.

Training, calibration, parity and the benchmarks all receive one :class:`Dataset`:
raw samples exactly as a device will hold them (uint8 pixels or raw feature values),
integer labels, the class names, the input description the manifest will carry, and
where the data came from (digests, split, loader options). Keeping the samples raw
means preprocessing happens in one place, :func:`edge_runtime.preprocessing.apply_preprocessing`,
driven by a recorded :class:`~edge_runtime.records.manifest.Preprocessing`.
Only numpy is needed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.records.manifest import InputSpec


def input_for_arrays(x: np.ndarray, *, digits: bool = True) -> InputSpec:
    """The input description of samples shaped like ``x`` (batch axis first).

    ``(N, H, W)`` uint8 is a grayscale image, MNIST-style digits unless ``digits``
    is false (the convention of IDX data, which is what such arrays have always
    been here); ``(N, H, W, 3)`` an RGB image; ``(N, F)`` a feature vector.

    Examples
    --------
    >>> input_for_arrays(np.zeros((2, 28, 28), np.uint8)).describe()
    'image 28×28 grayscale (MNIST-style digits)'
    >>> input_for_arrays(np.zeros((2, 13), np.float32)).describe()
    '13 features'
    """
    if x.ndim == 2:
        return InputSpec("features", (int(x.shape[1]),), None, digits=False)
    if x.ndim == 3:
        return InputSpec("image", (int(x.shape[1]), int(x.shape[2]), 1), "grayscale", digits=digits)
    if x.ndim == 4 and x.shape[3] == 3:
        return InputSpec("image", tuple(int(d) for d in x.shape[1:]), "rgb", digits=False)
    raise DataError(
        f"samples of shape {tuple(x.shape[1:])} are neither images (H, W) / (H, W, 3) nor feature vectors (F,)"
    )


@dataclass(frozen=True)
class Dataset:
    """Raw training and test samples, integer labels, and what they are.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        Images as uint8 ``(N, H, W)`` (one channel, as MNIST) or ``(N, H, W, 3)``;
        feature vectors as float32 ``(N, F)``.
    y_train, y_test : numpy.ndarray
        int64 labels in ``0 .. num_classes - 1``.
    source : str
        What was loaded (a path, or ``keras.datasets.mnist``).
    sha256 : dict
        Digest of every source file (a folder: one digest over its sorted relative
        paths and contents), so a record says exactly which bytes were used.
    input : InputSpec
        What a device holds for one sample. Derived from the arrays when not given
        (grayscale arrays are taken to be MNIST-style digits, as IDX data are).
    class_names : tuple of str
        Label ``i`` is ``class_names[i]``; ``"0" .. "K-1"`` when not given.
    split : dict
        How train and test were separated: ``{"kind": "given"}`` (the source's own
        split; ``shuffle_seed`` when the loader put it in a seeded random order) or
        ``{"kind": "stratified", "test_fraction": f, "seed": s}``.
    load_options : dict
        The keyword arguments of :func:`train.data.load_dataset` that rebuild this
        data set from ``source`` (the same split, size and colour mode).
    skipped : tuple of str
        Unreadable files left out (``skip_bad_images``), relative to the source.

    Raises
    ------
    DataError
        The arrays do not form a valid classification data set (wrong dtype or
        shape, length mismatch, empty split, labels out of range, one class).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str] = field(default_factory=dict)
    input: InputSpec = None  # type: ignore[assignment]  # derived in __post_init__ when None
    class_names: tuple[str, ...] = ()
    split: dict[str, Any] = field(default_factory=lambda: {"kind": "given"})
    load_options: dict[str, Any] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        x_train, y_train = _checked(self.x_train, self.y_train, "train", self.source)
        x_test, y_test = _checked(self.x_test, self.y_test, "test", self.source)
        if x_train.shape[1:] != x_test.shape[1:]:
            what = "images" if x_train.ndim > 2 else "feature vectors"
            raise DataError(
                f"{self.source}: train {what} are {x_train.shape[1:]} but test {what} are {x_test.shape[1:]}"
            )
        spec = self.input if self.input is not None else input_for_arrays(x_train)
        if spec.shape != _sample_shape(x_train):
            raise DataError(
                f"{self.source}: input {spec.describe()} does not describe samples of shape {x_train.shape[1:]}"
            )
        top = int(max(y_train.max(), y_test.max()))
        names = tuple(self.class_names) or tuple(str(i) for i in range(top + 1))
        if top >= len(names):
            raise DataError(f"{self.source}: label {top} is out of range for {len(names)} class names")
        if len(names) < 2:
            raise DataError(f"{self.source}: only one class ({names[0]!r}); a classifier needs at least two")
        for key, value in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test),
                           ("input", spec), ("class_names", names)):
            object.__setattr__(self, key, value)

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        """True for image data, false for feature vectors."""
        return self.input.is_image

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the images; DataError for feature data."""
        if not self.is_image:
            raise DataError(f"{self.source}: holds feature vectors, not images")
        return self.input.image_size

    def describe(self) -> str:
        """One line for the command line: sizes, input and classes.

        Examples
        --------
        >>> x = np.zeros((4, 3), np.float32)
        >>> Dataset(x, np.array([0, 1, 0, 1]), x[:2], np.array([0, 1]), "demo.csv").describe()
        'demo.csv: 4 train / 2 test samples of 3 features, 2 classes'
        """
        what = "images" if self.is_image else "samples"
        return (f"{self.source}: {len(self.x_train)} train / {len(self.x_test)} test {what} of "
                f"{self.input.describe().removeprefix('image ')}, {self.num_classes} classes")


def _sample_shape(x: np.ndarray) -> tuple[int, ...]:
    shape = tuple(int(d) for d in x.shape[1:])
    return (*shape, 1) if x.ndim == 3 else shape


def _checked(x: np.ndarray, y: np.ndarray, split: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 2:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise DataError(f"{source}: {split} feature vectors must be numbers, got {x.dtype}")
        x = x.astype(np.float32, copy=False)
        if not np.isfinite(x).all():
            raise DataError(f"{source}: {split} feature vectors contain NaN or inf")
    elif x.ndim in (3, 4):
        if x.ndim == 4 and x.shape[3] != 3:
            raise DataError(f"{source}: {split} images must have 1 or 3 channels, got shape {x.shape}")
        if x.dtype != np.uint8:
            raise DataError(f"{source}: {split} images must be uint8 pixels, got {x.dtype}")
    else:
        raise DataError(
            f"{source}: {split} samples must be images (N, H, W) / (N, H, W, 3) or feature vectors (N, F), "
            f"got {x.shape}"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {split} labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: {split} has {len(x)} {'images' if x.ndim > 2 else 'samples'} but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{source}: {split} split is empty")
    if y.min() < 0:
        raise DataError(f"{source}: {split} labels must be >= 0, found {int(y.min())}")
    return x, y.astype(np.int64)


def check_test_fraction(value: float) -> float:
    """``value`` if it is a usable test fraction (strictly between 0 and 1), else DataError.

    Examples
    --------
    >>> check_test_fraction(0.2)
    0.2
    """
    if not (math.isfinite(value) and 0.0 < value < 1.0):
        raise DataError(f"test fraction must be between 0 and 1 (exclusive), got {value}")
    return float(value)


def check_image_size(size: object) -> tuple[int, int] | None:
    """``size`` as ``(height, width)`` if it is None or two positive integers, else DataError.

    Examples
    --------
    >>> check_image_size([48, 64])
    (48, 64)
    """
    if size is None:
        return None
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)):
        raise DataError(f"image_size must be two positive integers (height, width), got {size!r}")
    return (int(size[0]), int(size[1]))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test samples, the same fraction of every class in each.

    Every class with at least two samples keeps at least one in each split. Both
    index arrays come in a seeded random order: files are listed class by class,
    and Keras' ``validation_split`` takes the *last* part of the training data, so
    a sorted training split would validate on one class only.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer label of every sample.
    test_fraction : float
        Share of each class that goes to the test split (rounded per class).
    seed : int
        Seeds the choice and the order; the same labels and seed give the same split.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Training indices, test indices.

    Examples
    --------
    >>> train, test = stratified_split(np.array([0] * 5 + [1] * 5), 0.2, seed=0)
    >>> sorted(np.bincount(np.array([0] * 5 + [1] * 5)[test]).tolist()), len(train)
    ([1, 1], 8)
    """
    check_test_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    train_parts, test_parts = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        n_test = int(math.floor(len(members) * test_fraction + 0.5))
        if len(members) >= 2:
            n_test = min(max(n_test, 1), len(members) - 1)
        else:
            n_test = 0
        test_parts.append(members[:n_test])
        train_parts.append(members[n_test:])
    train, test = np.concatenate(train_parts), np.concatenate(test_parts)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def split_record(seed: int, test_fraction: float | None = None) -> dict[str, Any]:
    """``Dataset.split`` of a split the loader made (with ``test_fraction``) or only shuffled (without).

    Examples
    --------
    >>> split_record(0, 0.2)
    {'kind': 'stratified', 'test_fraction': 0.2, 'seed': 0}
    """
    if test_fraction is not None:
        return {"kind": "stratified", "test_fraction": test_fraction, "seed": seed}
    return {"kind": "given", "shuffle_seed": seed}
