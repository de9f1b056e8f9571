"""Loading image-classification data sets: bundled MNIST, IDX folders, .npz, Keras.

Everything downstream (training, calibration, parity, benchmarks) receives the same
:class:`Dataset` of raw uint8 images and integer labels, so preprocessing happens in
exactly one place (:func:`preprocess`) and is recorded in the artifacts' manifest.
This module needs only numpy; it never imports TensorFlow unless ``source="keras"``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.idx import parse_idx, read_idx_bytes
from edge_runtime.records.manifest import InputSpec

BUNDLED_DIR = Path(__file__).resolve().parent / "mnist"

# sha256 of the four gzip files shipped in train/mnist (same as ../shared/datasets/mnist).
BUNDLED_SHA256 = {
    "train-images-idx3-ubyte.gz": "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
    "train-labels-idx1-ubyte.gz": "1787548bbe0bff1ec2ecdc0ef292b02df999e2d1a6002d27500982c652b17203",
    "t10k-images-idx3-ubyte.gz": "1a1a05eab793c14bb050b398624a11b0ffd1a2953baed553b1b9bd079e2a20be",
    "t10k-labels-idx1-ubyte.gz": "b91679a0acfe4ba0e50a2437a903084cba1f5f92592b016a25a7dfd00455798b",
}

# The four roles of an IDX data set and the file-name stems that fill them
# ("train-images-idx3-ubyte", "train-images.idx3-ubyte", "t10k-..."), with or without ".gz".
_ROLES = {
    "x_train": r"train-images[-.]idx3-ubyte",
    "y_train": r"train-labels[-.]idx1-ubyte",
    "x_test": r"t10k-images[-.]idx3-ubyte",
    "y_test": r"t10k-labels[-.]idx1-ubyte",
}

PIXEL_SCALE = 1.0 / 255.0


@dataclass(frozen=True)
class Dataset:
    """Raw images (uint8, ``(N, H, W)``) and integer labels for training and test.

    ``sha256`` maps each source file name to its digest, so a training record can
    say exactly which bytes it was trained on.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes: one more than the largest label in either split."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))

    @property
    def input(self) -> InputSpec:
        """The raw input description: single-channel MNIST-style digits."""
        return InputSpec("image", (*self.image_shape, 1), "grayscale", digits=True)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(str(i) for i in range(self.num_classes))

    @property
    def split(self) -> dict[str, object]:
        return {"kind": "given"}


def preprocess(images: np.ndarray) -> np.ndarray:
    """Scale uint8 pixels to float32 in [0, 1], the input the reference model expects.

    Examples
    --------
    >>> preprocess(np.array([[0, 255]], dtype=np.uint8)).tolist()
    [[0.0, 1.0]]
    """
    return images.astype(np.float32) * np.float32(PIXEL_SCALE)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Encode integer labels as float32 one-hot rows of ``num_classes`` entries.

    Examples
    --------
    >>> one_hot(np.array([2]), 4).tolist()
    [[0.0, 0.0, 1.0, 0.0]]
    """
    return np.eye(num_classes, dtype=np.float32)[labels]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _validate(x: np.ndarray, y: np.ndarray, split: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim != 3:
        raise DataError(f"{source}: {split} images must have shape (N, H, W), got {x.shape}")
    if x.dtype != np.uint8:
        raise DataError(f"{source}: {split} images must be uint8 pixels, got {x.dtype}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{source}: {split} labels must be a 1-D integer array, got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise DataError(f"{source}: {split} has {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{source}: {split} split is empty")
    if y.min() < 0:
        raise DataError(f"{source}: {split} labels must be >= 0, found {int(y.min())}")
    return x, y.astype(np.int64)


def _make(arrays: dict[str, np.ndarray], source: str, digests: dict[str, str]) -> Dataset:
    x_train, y_train = _validate(arrays["x_train"], arrays["y_train"], "train", source)
    x_test, y_test = _validate(arrays["x_test"], arrays["y_test"], "test", source)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{source}: train images are {x_train.shape[1:]} but test images are {x_test.shape[1:]}")
    return Dataset(x_train, y_train, x_test, y_test, source=source, sha256=digests)


def _find_idx_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    names = sorted(p.name for p in directory.iterdir() if p.is_file())
    for role, stem in _ROLES.items():
        matches = [n for n in names if re.fullmatch(stem + r"(\.gz)?", n)]
        if not matches:
            raise DataError(
                f"{directory}: no file matching '{stem.replace('[-.]', '-')}[.gz]'; "
                "a data directory needs the four IDX files train-images, train-labels, t10k-images, t10k-labels"
            )
        if len(matches) > 1:
            raise DataError(f"{directory}: ambiguous {role} files {matches}; keep only one")
        found[role] = directory / matches[0]
    return found


def _load_idx_dir(directory: Path, expected_sha256: dict[str, str] | None = None) -> Dataset:
    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    for role, path in _find_idx_files(directory).items():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
        digest = _sha256(raw)
        if expected_sha256 is not None and expected_sha256.get(path.name) != digest:
            raise DataError(
                f"{path}: checksum mismatch (sha256 {digest[:12]}…, expected "
                f"{expected_sha256.get(path.name, '?')[:12]}…); the bundled data is damaged, reinstall keras2edge"
            )
        digests[path.name] = digest
        arrays[role] = parse_idx(read_idx_bytes(path), name=str(path))
    return _make(arrays, str(directory), digests)


def _load_npz(path: Path) -> Dataset:
    try:
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _ROLES if k not in npz.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; expected keras layout x_train, y_train, x_test, y_test")
            arrays = {k: npz[k] for k in _ROLES}
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends from a damaged archive
        raise DataError(f"{path}: corrupt .npz file ({type(exc).__name__}: {exc})") from None
    return _make(arrays, str(path), {path.name: _sha256(raw)})


def _load_keras() -> Dataset:
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except ImportError:
        raise DataError("--data keras needs Keras: pip install 'keras2edge[train]'") from None
    except Exception as exc:  # network failures surface as many exception types
        raise DataError(f"could not download MNIST through keras.datasets ({exc}); use the bundled copy instead") from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _make(arrays, "keras.datasets.mnist", {})


def load_dataset(
    source: str | os.PathLike[str] | None = None,
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    crop_to_aspect_ratio: bool = False,
) -> Dataset:
    """Load a data set from the bundled copy, an IDX directory, an .npz file or Keras.

    Parameters
    ----------
    source : str, path or None
        ``None`` or ``"bundled"``: the MNIST copy shipped with keras2edge, verified by
        sha256. A directory: the four IDX files (``train-images-idx3-ubyte`` or
        ``train-images.idx3-ubyte`` style names, gzip or raw). A ``.npz`` file in the
        layout of ``keras.datasets`` (``x_train, y_train, x_test, y_test``).
        ``"keras"``: ``keras.datasets.mnist.load_data()``, which needs the internet.

    Returns
    -------
    Dataset
        uint8 images ``(N, H, W)`` and int64 labels.

    Raises
    ------
    DataError
        The source is missing, damaged, or not laid out as described.

    Examples
    --------
    >>> ds = load_dataset()
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    ((60000, 28, 28), (10000, 28, 28), 10)
    """
    data = _load(source)
    if (image_size is not None and tuple(image_size) != data.image_shape) or color_mode not in (None, "grayscale"):
        raise DataError(f"{data.source}: images are {data.image_shape[0]}x{data.image_shape[1]} grayscale, "
                        f"not {image_size} {color_mode}")
    return data


def _load(source: str | os.PathLike[str] | None) -> Dataset:
    if source is None or str(source) == "bundled":
        return _load_idx_dir(BUNDLED_DIR, expected_sha256=BUNDLED_SHA256)
    if str(source) == "keras":
        return _load_keras()
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; pass an IDX directory, an .npz file, 'bundled' or 'keras'")
    if path.is_dir():
        return _load_idx_dir(path)
    if path.suffix == ".npz":
        return _load_npz(path)
    raise DataError(f"{path}: unsupported data source; pass an IDX directory, an .npz file, 'bundled' or 'keras'")
