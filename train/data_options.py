"""The data options every command shares: ``--data`` and how to read it.

``python -m train``, ``python -m convert`` (calibration), ``convert parity`` and
the benchmarks take the same flags, added by :func:`add_data_arguments` and turned
into a :class:`~train.dataset.Dataset` by :func:`dataset_from_args`, so a data set
is read the same way at every stage. Option names follow Keras'
``image_dataset_from_directory`` (``image_size``, ``color_mode``,
``crop_to_aspect_ratio``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from typing import Any

from edge_runtime.errors import DataError
from edge_runtime.images import COLOR_MODES
from train.data import load_dataset
from train.dataset import Dataset, check_test_fraction

DATA_HELP = (
    "'bundled' (MNIST shipped with keras2edge), an image folder DIR/<class>/*.png|jpg|jpeg|bmp|gif "
    "(DIR/train/ + DIR/test/ = the split), a folder with train.csv + test.csv, a .csv or .npz file, "
    "an IDX directory, or 'keras'"
)


def parse_image_size(text: str) -> tuple[int, int]:
    """``argparse`` type for ``--image-size``: ``HxW`` (height by width), e.g. ``48x64``.

    Examples
    --------
    >>> parse_image_size("48x64")
    (48, 64)
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or int(match[1]) < 1 or int(match[2]) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW (height x width, positive integers), e.g. 32x32, got {text!r}")
    return int(match[1]), int(match[2])


def parse_test_fraction(text: str) -> float:
    """``argparse`` type for ``--test-fraction``: a number strictly between 0 and 1.

    Examples
    --------
    >>> parse_test_fraction("0.25")
    0.25
    """
    try:
        return check_test_fraction(float(text))
    except (ValueError, DataError):  # DataError is a ValueError: both mean "not a fraction"
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (exclusive), got {text!r}") from None


def add_data_arguments(parser: argparse.ArgumentParser, *, data_default: str | None = "bundled",
                       data_help: str = DATA_HELP) -> None:
    """Add ``--data`` and the options that say how to read it to ``parser``.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser (or an argument group of it).
    data_default : str or None
        Default of ``--data`` (None: the command decides, e.g. from a training record).
    data_help : str
        Help text of ``--data``.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_data_arguments(parser)
    >>> args = parser.parse_args(["--data", "photos", "--image-size", "96x128"])
    >>> args.data, args.image_size, args.color_mode
    ('photos', (96, 128), None)
    """
    group = parser.add_argument_group("data")
    group.add_argument("--data", default=data_default, help=data_help)
    group.add_argument("--image-size", type=parse_image_size, default=None, metavar="HxW",
                       help="image folders: resize every image to HxW, bilinear as Keras "
                            "(default: the images' own size when they all agree)")
    group.add_argument("--color-mode", choices=COLOR_MODES, default=None,
                       help="image folders: decode as grayscale or rgb (default: rgb if any image has colour)")
    group.add_argument("--crop-to-aspect-ratio", action="store_true", default=None,
                       help="crop each image to the target aspect ratio before resizing, instead of squashing it")
    group.add_argument("--test-fraction", type=parse_test_fraction, default=None, metavar="F",
                       help="share of each class held out for testing when the data has no split of its own "
                            "(default 0.2; the split is seeded and recorded)")
    group.add_argument("--label-column", default=None, metavar="NAME",
                       help="CSV data: the column holding each row's class (default 'label')")
    group.add_argument("--skip-bad-images", action="store_true",
                       help="image folders: leave out images that cannot be read (the count is reported) "
                            "instead of stopping at the first")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The reading options the user gave (``None`` where they gave none), as ``load_dataset`` keywords.

    Convert and parity merge these over what the model or the manifest says
    (image size, colour mode, crop, the recorded split), so only what the user
    typed overrides.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_data_arguments(parser)
    >>> data_options(parser.parse_args(["--image-size", "32x32"]))["image_size"]
    (32, 32)
    """
    return {
        "image_size": args.image_size,
        "color_mode": args.color_mode,
        "crop_to_aspect_ratio": args.crop_to_aspect_ratio,
        "test_fraction": args.test_fraction,
        "label_column": args.label_column,
        "skip_bad_images": args.skip_bad_images or None,
    }


def merge_load_options(*defaults: Mapping[str, Any] | None, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``load_dataset`` keywords: ``defaults`` in order (later ones win), then the options the user gave.

    Train, convert and parity each know defaults of their own (the recorded
    reading options, the model's image size and colour mode); what the user typed
    (``given``, e.g. :func:`data_options`; its ``None`` values mean "not given")
    overrides them all. An ``image_size`` read back from JSON is a list and is made
    a tuple again.

    Examples
    --------
    >>> merge_load_options({"image_size": [28, 28], "test_fraction": 0.2}, None,
    ...                    given={"test_fraction": 0.1, "color_mode": None})
    {'image_size': (28, 28), 'test_fraction': 0.1}
    """
    options: dict[str, Any] = {}
    for layer in defaults:
        options.update(layer or {})
    options.update({k: v for k, v in (given or {}).items() if v is not None})
    if isinstance(options.get("image_size"), list):
        options["image_size"] = tuple(options["image_size"])
    return options


def dataset_from_args(
    args: argparse.Namespace,
    *,
    image_size: tuple[int, int] | None = None,
    color_mode: str | None = None,
    progress: bool | None = None,
) -> Dataset:
    """Load the data set the parsed options describe.

    Parameters
    ----------
    args : argparse.Namespace
        From a parser set up by :func:`add_data_arguments`.
    image_size, color_mode : optional
        Defaults used when the user gave no ``--image-size`` / ``--color-mode``:
        convert and parity pass the model's input size and channels here.
    progress : bool or None
        Progress bar while decoding images (None: on a terminal).

    Raises
    ------
    DataError
        See :func:`train.data.load_dataset`.

    Examples
    --------
    >>> parser = argparse.ArgumentParser()
    >>> add_data_arguments(parser)
    >>> dataset_from_args(parser.parse_args([])).num_classes
    10
    """
    options = merge_load_options({"image_size": image_size, "color_mode": color_mode}, given=data_options(args))
    return load_dataset(args.data, **options, progress=progress)
