"""One loader for every data source: image folders, CSV feature vectors, npz, IDX, MNIST.

Training, conversion (calibration), parity and the benchmarks all call
:func:`load_dataset` with the same options (see :mod:`train.data_options` for the
command-line flags) and receive one :class:`~train.dataset.Dataset` of raw samples:
uint8 images or raw feature values, integer labels, class names and the input
description the manifest will carry. Preprocessing is not applied here; it is
recorded and applied by :func:`edge_runtime.preprocessing.apply_preprocessing`.
This module needs only numpy (Pillow for image folders); it never imports
TensorFlow unless ``source="keras"``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.idx import parse_idx, read_idx_bytes
from edge_runtime.records.manifest import InputSpec
from train.dataset import Dataset, check_image_size, check_test_fraction, input_for_arrays
from train.feature_csv import load_csv_file, load_csv_folder
from train.image_folder import FOLDER_SUFFIXES, has_class_folders, load_image_folder

__all__ = ["BUNDLED_DIR", "BUNDLED_SHA256", "Dataset", "load_dataset", "one_hot"]

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
_SOURCES_HINT = (
    "pass an image folder (DIR/<class>/*.png), a folder with train.csv and test.csv, a .csv or .npz file, "
    "an IDX directory, 'bundled' or 'keras'"
)


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


def _array_input(
    x: np.ndarray, source: str, digits: bool, image_size: tuple[int, int] | None, color_mode: str | None, crop: bool
) -> InputSpec:
    """The input of in-memory arrays, after checking the image options fit them (arrays are never resized)."""
    spec = input_for_arrays(x, digits=digits)
    if not spec.is_image:
        _refuse_image_options(source, image_size, color_mode, crop)
        return spec
    if image_size is not None and image_size != spec.image_size:
        raise DataError(
            f"--image-size {image_size[0]}x{image_size[1]} does not match the {spec.shape[0]}x{spec.shape[1]} images "
            f"of {source}; only image folders are resized"
        )
    if color_mode is not None and color_mode != spec.color_mode:
        raise DataError(f"--color-mode {color_mode} does not match the {spec.color_mode} images of {source}")
    return spec._replace(crop_to_aspect_ratio=bool(crop))


def _refuse_image_options(source: str, image_size: tuple[int, int] | None, color_mode: str | None, crop: bool) -> None:
    given = [name for name, value in (("--image-size", image_size), ("--color-mode", color_mode),
                                      ("--crop-to-aspect-ratio", crop)) if value]
    if given:
        raise DataError(f"{given[0]} applies to images, but {source} holds feature vectors")


def _find_idx_files(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    try:
        names = sorted(p.name for p in directory.iterdir() if p.is_file())
    except OSError as exc:  # e.g. the bundled MNIST, which a device wheel leaves out
        raise DataError(f"{directory}: cannot list the IDX files ({exc.strerror or exc})") from None
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


def _has_idx_files(directory: Path) -> bool:
    pattern = re.compile("|".join(f"(?:{stem})" for stem in _ROLES.values()) + r"(\.gz)?")
    return any(pattern.fullmatch(p.name) for p in directory.iterdir() if p.is_file())


def _load_idx_dir(directory: Path, expected_sha256: dict[str, str] | None = None, **image_options: Any) -> Dataset:
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
    return _from_arrays(arrays, str(directory), digests, digits=True, **image_options)


def _from_arrays(
    arrays: dict[str, np.ndarray],
    source: str,
    digests: dict[str, str],
    *,
    digits: bool,
    class_names: tuple[str, ...] = (),
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    crop_to_aspect_ratio: bool = False,
) -> Dataset:
    x_train = arrays["x_train"]
    spec = None
    if x_train.ndim in (2, 3) or (x_train.ndim == 4 and x_train.shape[3] == 3):
        spec = _array_input(x_train, source, digits, image_size, color_mode, crop_to_aspect_ratio)
    options = {"crop_to_aspect_ratio": True} if crop_to_aspect_ratio and spec is not None and spec.is_image else {}
    return Dataset(
        x_train, arrays["y_train"], arrays["x_test"], arrays["y_test"],
        source=source, sha256=digests, input=spec, class_names=class_names, load_options=options,
    )


def _labels(y: np.ndarray, key: str, path: Path) -> tuple[np.ndarray, int | None]:
    """Integer labels from integer or one-hot ``y``, and the one-hot width (the class count) if any."""
    if y.ndim != 2:
        return y, None
    is_binary = np.isin(y, (0, 1)).all()
    if not is_binary or not (y.sum(axis=1) == 1).all():
        raise DataError(f"{path}: {key} has shape {y.shape} but its rows are not one-hot (a single 1, the rest 0)")
    return y.argmax(axis=1), int(y.shape[1])


def _load_npz(path: Path, **image_options: Any) -> Dataset:
    try:
        raw = path.read_bytes()
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in _ROLES if k not in npz.files]
            if missing:
                raise DataError(
                    f"{path}: missing arrays {missing}; expected keras layout x_train, y_train, x_test, y_test"
                )
            arrays = {k: npz[k] for k in _ROLES}
            names = npz["class_names"] if "class_names" in npz.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends from a damaged archive
        raise DataError(f"{path}: corrupt .npz file ({type(exc).__name__}: {exc})") from None
    widths = set()
    for key in ("y_train", "y_test"):
        arrays[key], width = _labels(arrays[key], key, path)
        widths.add(width)
    for key in ("x_train", "x_test"):
        if arrays[key].ndim == 4 and arrays[key].shape[3] == 1:
            arrays[key] = arrays[key][..., 0]
    class_names: tuple[str, ...] = ()
    if names is not None:
        if names.ndim != 1 or names.dtype.kind not in "US" or len(names) == 0:
            raise DataError(f"{path}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
        class_names = tuple(str(n) for n in names.astype(str).tolist())
    one_hot_widths = widths - {None}
    if len(one_hot_widths) > 1 or (one_hot_widths and class_names and len(class_names) not in one_hot_widths):
        raise DataError(f"{path}: one-hot widths {sorted(one_hot_widths)} and {len(class_names)} class_names disagree")
    if one_hot_widths and not class_names:
        class_names = tuple(str(i) for i in range(one_hot_widths.pop()))
    return _from_arrays(arrays, str(path), {path.name: _sha256(raw)}, digits=False, class_names=class_names,
                        **image_options)


def _load_keras(**image_options: Any) -> Dataset:
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except ImportError:
        raise DataError("--data keras needs Keras: pip install 'keras2edge[train]'") from None
    except Exception as exc:  # network failures surface as many exception types
        raise DataError(
            f"could not download MNIST through keras.datasets ({exc}); use the bundled copy instead"
        ) from None
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _from_arrays(arrays, "keras.datasets.mnist", {}, digits=True, **image_options)


def load_dataset(
    source: str | os.PathLike[str] | None = None,
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    crop_to_aspect_ratio: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    label_column: str = "label",
    skip_bad_images: bool = False,
    progress: bool | None = None,
) -> Dataset:
    """Load a classification data set from any supported source.

    Parameters
    ----------
    source : str, path or None
        ``None`` or ``"bundled"``: the MNIST copy shipped with keras2edge, verified
        by sha256. ``"keras"``: ``keras.datasets.mnist`` (needs the internet).
        A directory: an image folder ``DIR/<class>/*.{png,jpg,jpeg,bmp,gif}``
        (or ``DIR/train/<class>`` + ``DIR/test/<class>``), a folder with
        ``train.csv`` and ``test.csv``, or the four IDX files
        (``train-images-idx3-ubyte`` or ``train-images.idx3-ubyte`` names, gzip or
        raw). A ``.csv`` file (split here). A ``.npz`` file with ``x_train,
        y_train, x_test, y_test`` (uint8 images ``(N, H, W[, C])`` or feature
        vectors ``(N, F)``; integer or one-hot labels; optional ``class_names``).
    image_size : (height, width) or None
        Image folders: resize to this size (None: the images' own, common size).
        Arrays are never resized: a different size is an error.
    color_mode : {"grayscale", "rgb"} or None
        Image folders: None picks rgb when any image has colour. Arrays: must match.
    crop_to_aspect_ratio : bool
        Crop to the target's aspect ratio before resizing (recorded for the device).
    test_fraction : float
        Share of each class held out when the source has no split of its own.
    seed : int
        Seed of that split and of the order of folder and CSV samples.
    label_column : str
        CSV: the column holding the class.
    skip_bad_images : bool
        Image folders: leave unreadable images out (listed in ``Dataset.skipped``).
    progress : bool or None
        Image folders: a progress bar on stderr while decoding (None: on a terminal).

    Returns
    -------
    Dataset
        Raw samples and int64 labels; see :class:`~train.dataset.Dataset`.

    Raises
    ------
    DataError
        The source is missing, damaged, not laid out as described, or an option
        does not fit it. The message is one line naming the file (and the row,
        column or option).

    Examples
    --------
    >>> ds = load_dataset()
    >>> ds.x_train.shape, ds.x_test.shape, ds.num_classes
    ((60000, 28, 28), (10000, 28, 28), 10)
    >>> ds.input.describe()
    'image 28×28 grayscale (MNIST-style digits)'
    """
    check_test_fraction(test_fraction)
    image_size = check_image_size(image_size)
    image_options = {"image_size": image_size, "color_mode": color_mode, "crop_to_aspect_ratio": crop_to_aspect_ratio}
    if source is None or str(source) == "bundled":
        return _load_idx_dir(BUNDLED_DIR, expected_sha256=BUNDLED_SHA256, **image_options)
    if str(source) == "keras":
        return _load_keras(**image_options)
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; {_SOURCES_HINT}")
    if path.is_dir():
        if _has_idx_files(path):
            return _load_idx_dir(path, **image_options)
        if (path / "train.csv").exists() or (path / "test.csv").exists():
            _refuse_image_options(str(path), image_size, color_mode, crop_to_aspect_ratio)
            return load_csv_folder(path, label_column=label_column, seed=seed)
        if has_class_folders(path):
            return load_image_folder(path, test_fraction=test_fraction, seed=seed, skip_bad_images=skip_bad_images,
                                     progress=progress, **image_options)
        raise DataError(
            f"{path}: no data found: expected class folders of images ({path.name}/<class>/*"
            f"{', *'.join(FOLDER_SUFFIXES)}), train.csv and test.csv, or the four IDX files "
            "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"
        )
    if path.suffix.lower() == ".npz":
        return _load_npz(path, **image_options)
    if path.suffix.lower() == ".csv":
        _refuse_image_options(str(path), image_size, color_mode, crop_to_aspect_ratio)
        return load_csv_file(path, label_column=label_column, test_fraction=test_fraction, seed=seed)
    raise DataError(f"{path}: unsupported data source; {_SOURCES_HINT}")
