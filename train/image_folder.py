"""Image folders in the Keras ``image_dataset_from_directory`` layout: ``DIR/<class>/*.png``.

Class names are the sub-folder names sorted alphanumerically (label ``i`` is the
``i``-th name), images are found in each class folder and below it, and
``DIR/train/<class>`` + ``DIR/test/<class>`` is the split when both exist.
Otherwise the loader splits each class by ``test_fraction`` (seeded).

Every image goes through :func:`edge_runtime.images.decode_image` and
:func:`~edge_runtime.images.resize_image`, the functions the device uses, so
training and the device see the same bytes for the same file.

Memory is bounded by the result: a header pass (Pillow reads sizes and modes
without decoding) counts the images, fixes the size and colour mode and the split,
then one uint8 array of ``N × H × W × C`` bytes is allocated and filled one decoded
image at a time. On top of it the loader holds one image being decoded and
resized, and a few dozen bytes per file (its path, label and digest).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import NamedTuple, TextIO

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.files import read_user_file
from edge_runtime.images import MAX_IMAGE_BYTES, check_color_mode, decode_image, pillow, resize_image
from edge_runtime.records.manifest import InputSpec
from train.dataset import Dataset, check_image_size, check_test_fraction, split_record, stratified_split

# What image_dataset_from_directory reads (Keras' ALLOWLIST_FORMATS); other files are ignored.
FOLDER_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
# Pillow modes whose pixels have no colour; "P" images are looked up in their palette.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
_EXIF_ORIENTATION = 0x0112
_SKIP_HINT = "pass --skip-bad-images (skip_bad_images=True) to leave unreadable images out"


class _Image(NamedTuple):
    """One image file as the header pass saw it."""

    path: Path
    name: str  # relative to the data directory, with '/' separators
    label: int
    size: tuple[int, int]  # (height, width) after the EXIF orientation
    colour: bool


def has_class_folders(directory: Path) -> bool:
    """True when ``directory`` has a (non-hidden) sub-folder, i.e. may be an image folder."""
    return any(_class_folders(directory))


def _class_folders(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _image_files(folder: Path) -> list[Path]:
    """Image files in ``folder`` and below, sorted; hidden files and folders are left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(root) / f for f in sorted(files)
                     if not f.startswith(".") and f.lower().endswith(FOLDER_SUFFIXES))
    return found


def _list_split(directory: Path, classes: list[str], root: Path) -> list[tuple[Path, str, int]]:
    """``(path, relative name, label)`` of every image under ``directory/<class>``."""
    listed = []
    for label, name in enumerate(classes):
        files = _image_files(directory / name)
        if not files:
            raise DataError(f"{directory / name}: class folder has no images ({', '.join(FOLDER_SUFFIXES)})")
        listed.extend((f, f.relative_to(root).as_posix(), label) for f in files)
    return listed


def _is_colour(img: object) -> bool:
    """Whether an opened (not decoded) Pillow image has colour, from its mode or palette."""
    mode = img.mode  # type: ignore[attr-defined]
    if mode in _GRAY_MODES:
        return False
    palette = getattr(img, "palette", None)
    if mode in ("P", "PA") and palette is not None:
        stride = len(palette.rawmode or palette.mode)
        entries = np.frombuffer(bytes(palette.palette), np.uint8)
        entries = entries[: len(entries) // stride * stride].reshape(-1, stride)[:, :3]
        return not (entries == entries[:, :1]).all()
    return True


def _orientation(img: object) -> int:
    """The EXIF orientation tag, read from the header only (never decodes the pixels)."""
    raw = img.info.get("exif")  # type: ignore[attr-defined]
    if not raw:
        return 1
    exif = pillow().Exif()
    try:
        exif.load(raw)
        return int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: decode_image will then use the pixels as stored
        return 1


def _header(path: Path, name: str, label: int) -> _Image:
    image_mod = pillow()
    try:
        with image_mod.open(path) as img:
            width, height = img.size
            if _orientation(img) in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
                width, height = height, width
            return _Image(path, name, label, (height, width), _is_colour(img))
    except image_mod.UnidentifiedImageError:
        raise DataError(f"{path}: cannot read image (not a PNG, JPEG, BMP or GIF file); {_SKIP_HINT}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); {_SKIP_HINT}") from None


class Progress:
    """A one-line progress bar on a terminal stream: ``\\r`` updates, no dependency.

    Parameters
    ----------
    total : int
        Number of steps.
    label : str
        What is counted (``"decoding images"``).
    enabled : bool or None
        None: only when ``stream`` is a terminal.
    stream : file or None
        Where to draw (standard error by default).
    """

    def __init__(self, total: int, label: str, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.label, self.done = total, label, 0
        self._shown = -1.0

    def advance(self) -> None:
        """Count one step; redraw at most ten times a second."""
        self.done += 1
        now = time.monotonic()
        if self.enabled and (now - self._shown >= 0.1 or self.done == self.total):
            self._shown = now
            percent = 100 * self.done // max(self.total, 1)
            self.stream.write(f"\r{self.label}: {self.done}/{self.total} ({percent}%)")
            self.stream.flush()

    def close(self) -> None:
        """End the line the bar was drawn on."""
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def _scan(listed: list[tuple[Path, str, int]], skip_bad: bool, skipped: list[str]) -> list[_Image]:
    images = []
    for path, name, label in listed:
        try:
            images.append(_header(path, name, label))
        except DataError:
            if not skip_bad:
                raise
            skipped.append(name)
    return images


def _common_size(directory: Path, images: list[_Image]) -> tuple[int, int]:
    first = images[0]
    for image in images:
        if image.size != first.size:
            raise DataError(
                f"{directory}: images have different sizes ({first.name} is {first.size[0]}x{first.size[1]}, "
                f"{image.name} is {image.size[0]}x{image.size[1]}, as height x width); "
                "pass --image-size HxW to resize them all"
            )
    return first.size


def _labels(images: list[_Image]) -> np.ndarray:
    return np.array([image.label for image in images], dtype=np.int64)


def _check_every_class_trains(folder: Path, labels: np.ndarray, classes: list[str]) -> None:
    """After skipping unreadable images, each class must still have a training image."""
    counts = np.bincount(labels, minlength=len(classes))
    for label, name in enumerate(classes):
        if counts[label] == 0:
            raise DataError(f"{folder / name}: class folder has no readable images")


class _Plan(NamedTuple):
    """What the header pass decided: classes, the two splits in their final order, how they were made."""

    classes: list[str]
    train: list[_Image]
    test: list[_Image]
    split: dict[str, object]
    train_folder: Path


def _plan_given(root: Path, seed: int, skip_bad: bool, skipped: list[str]) -> _Plan:
    """``root/train/<class>`` and ``root/test/<class>``: the folders are the split; only the order is drawn."""
    classes, test_classes = _class_folders(root / "train"), _class_folders(root / "test")
    if not classes:
        raise DataError(f"{root / 'train'}: no class folders (expected train/<class_name>/*.png, *.jpg, ...)")
    if classes != test_classes:
        only_train = sorted(set(classes) - set(test_classes)) or ["-"]
        only_test = sorted(set(test_classes) - set(classes)) or ["-"]
        raise DataError(
            f"{root}: train/ and test/ hold different classes (only in train/: {', '.join(only_train)}; "
            f"only in test/: {', '.join(only_test)})"
        )
    train = _scan(_list_split(root / "train", classes, root), skip_bad, skipped)
    test = _scan(_list_split(root / "test", classes, root), skip_bad, skipped)
    _check_every_class_trains(root / "train", _labels(train), classes)
    rng = np.random.default_rng(seed)
    return _Plan(classes, [train[i] for i in rng.permutation(len(train))],
                 [test[i] for i in rng.permutation(len(test))], split_record(seed), root / "train")


def _plan_stratified(root: Path, test_fraction: float, seed: int, skip_bad: bool, skipped: list[str]) -> _Plan:
    """``root/<class>``: ``test_fraction`` of every class is held out (seeded)."""
    classes = _class_folders(root)
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root.name}/<class_name>/*.png, *.jpg, ...)")
    images = _scan(_list_split(root, classes, root), skip_bad, skipped)
    _check_every_class_trains(root, _labels(images), classes)
    train, test = stratified_split(_labels(images), test_fraction, seed)
    return _Plan(classes, [images[i] for i in train], [images[i] for i in test],
                 split_record(seed, test_fraction), root)


class _Decoder:
    """Decodes images one at a time straight into preallocated uint8 arrays, as the device would."""

    def __init__(self, size: tuple[int, int], color_mode: str, crop: bool, sizes_must_match: bool,
                 skip_bad: bool, skipped: list[str], progress: Progress) -> None:
        self.size, self.color_mode, self.crop = size, color_mode, crop
        self.sizes_must_match, self.skip_bad, self.skipped = sizes_must_match, skip_bad, skipped
        self.progress = progress
        self.digests: dict[str, bytes] = {}  # relative name -> sha256 of the file, for the folder digest

    def fill(self, images: list[_Image]) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` for ``images``; unreadable ones are left out when skipping (the arrays are then shorter)."""
        x = np.empty((len(images), *self.size) + ((3,) if self.color_mode == "rgb" else ()), dtype=np.uint8)
        y = np.empty(len(images), dtype=np.int64)
        filled = 0
        for image in images:
            self.progress.advance()
            try:
                # Capped: decode_image refuses more than MAX_IMAGE_BYTES, and read_user_file
                # reads no more than the file holds, so small images cost no more.
                data = read_user_file(image.path, DataError, "an image file", limit=MAX_IMAGE_BYTES + 1)
                pixels = decode_image(data, self.color_mode, name=str(image.path))
            except DataError as exc:
                if not self.skip_bad:
                    raise DataError(f"{exc}; {_SKIP_HINT}") from None
                self.skipped.append(image.name)
                continue
            if self.sizes_must_match and pixels.shape[:2] != self.size:
                raise DataError(
                    f"{image.path}: image is {pixels.shape[0]}x{pixels.shape[1]} (height x width) after its EXIF "
                    f"orientation, the others are {self.size[0]}x{self.size[1]}; "
                    "pass --image-size HxW to resize them all"
                )
            x[filled] = resize_image(pixels, self.size, crop_to_aspect_ratio=self.crop)
            y[filled] = image.label
            self.digests[image.name] = hashlib.sha256(data).digest()
            filled += 1
        return x[:filled], y[:filled]

    def folder_digest(self) -> str:
        """One sha256 over the sorted relative names and contents of every image used."""
        digest = hashlib.sha256()
        for name in sorted(self.digests):
            digest.update(name.encode("utf-8") + b"\0" + self.digests[name])
        return digest.hexdigest()


def load_image_folder(
    directory: str | os.PathLike[str],
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    crop_to_aspect_ratio: bool = False,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_images: bool = False,
    progress: bool | None = None,
) -> Dataset:
    """Load ``DIR/<class>/*`` (or ``DIR/train/<class>`` + ``DIR/test/<class>``) as uint8 images.

    Parameters
    ----------
    directory : path
        The data folder.
    image_size : (height, width) or None
        Resize every image to this size (bilinear, as Keras). None: the images'
        own size, which must then be the same for all of them.
    color_mode : {"grayscale", "rgb"} or None
        None: ``"rgb"`` if any image has colour (judged from its mode, or its
        palette, in the header pass), else ``"grayscale"``.
    crop_to_aspect_ratio : bool
        Crop to the target's aspect ratio before resizing instead of squashing.
    test_fraction, seed : float, int
        The stratified split when the folder has no ``train/`` + ``test/``, and the
        seed of the (Keras-like, shuffled) order of both splits.
    skip_bad_images : bool
        Leave out images that cannot be read instead of failing; their names are
        in ``Dataset.skipped``.
    progress : bool or None
        Draw a progress bar on stderr while decoding; None: only on a terminal.

    Returns
    -------
    Dataset
        ``x`` uint8 ``(N, H, W)`` (grayscale) or ``(N, H, W, 3)``, both splits in a
        seeded random order.

    Raises
    ------
    DataError
        No class folders, a class folder without images, different classes in
        ``train/`` and ``test/``, an unreadable image (unless skipped), mixed
        sizes without ``image_size``, an unknown ``color_mode``, one class only.

    Examples
    --------
    >>> ds = load_image_folder("flowers", image_size=(96, 128))  # doctest: +SKIP
    >>> ds.x_train.shape, ds.class_names  # doctest: +SKIP
    ((2936, 96, 128, 3), ('daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'))
    """
    root = Path(directory)
    check_test_fraction(test_fraction)
    if color_mode is not None:
        check_color_mode(color_mode)
    image_size = check_image_size(image_size)
    skipped: list[str] = []
    if (root / "train").is_dir() and (root / "test").is_dir():
        plan = _plan_given(root, seed, skip_bad_images, skipped)
    else:
        plan = _plan_stratified(root, test_fraction, seed, skip_bad_images, skipped)
    everything = plan.train + plan.test
    if color_mode is None:
        color_mode = "rgb" if any(image.colour for image in everything) else "grayscale"
    size = image_size if image_size is not None else _common_size(root, everything)
    progress_bar = Progress(len(everything), "decoding images", progress)
    decoder = _Decoder(size, color_mode, crop_to_aspect_ratio, image_size is None, skip_bad_images, skipped,
                       progress_bar)
    try:
        x_train, y_train = decoder.fill(plan.train)
        x_test, y_test = decoder.fill(plan.test)
    finally:
        progress_bar.close()
    _check_every_class_trains(plan.train_folder, y_train, plan.classes)
    crop = bool(crop_to_aspect_ratio)
    return Dataset(
        x_train, y_train, x_test, y_test,
        source=str(root),
        sha256={f"{root.resolve().name}/": decoder.folder_digest()},
        input=InputSpec("image", (*size, 3 if color_mode == "rgb" else 1), color_mode, "bilinear", crop, digits=False),
        class_names=tuple(plan.classes),
        split=plan.split,
        load_options={"image_size": list(size), "color_mode": color_mode, "crop_to_aspect_ratio": crop,
                      "test_fraction": test_fraction, "seed": seed, "skip_bad_images": skip_bad_images},
        skipped=tuple(sorted(skipped)),
    )
