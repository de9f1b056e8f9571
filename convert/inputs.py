"""What the model reads, and exactly how raw input becomes its input: decided once per conversion.

The device reproduces preprocessing from the manifest alone, so the converter must
get it right and record it. The decision, in order of precedence:

1. explicit options: ``--preprocess unit|symmetric|imagenet|raw`` or ``--mean/--std``;
2. ``training.json`` beside the model (it came from ``python -m train``);
3. the model's first layer: ``Rescaling`` means raw 0-255 pixels, ``Normalization``
   means raw features (both are inside the model);
4. defaults: images ``unit`` (x / 255, the Keras tutorials' convention); features
   standardised with the mean and std of the training split, recorded.

The input description (image size, colour mode, crop, MNIST-style digits, or a
feature vector) comes from ``training.json`` or the data set, and must fit the
model's input: ``(H, W, C)`` with C = 1 or 3, the flattened image ``(H·W·C,)``, or
``(F,)`` features. A model whose first layer is ``Normalization`` on features gets
a second preprocessing for its full-integer artifacts (standardise in float on the
device, then quantise), see :meth:`convert.source.SourceModel.without_normalization`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from convert.source import SourceModel
from edge_runtime.errors import DataError
from edge_runtime.records.manifest import IMAGE_MODES, InputSpec, Preprocessing
from edge_runtime.records.training import TrainingRecord
from train.data import Dataset

PREPROCESS_CHOICES = tuple(IMAGE_MODES)
_STD_FLOOR = 1e-7  # a constant feature must not divide by zero


class PreprocessOptions(NamedTuple):
    """What the user said on the command line (None: not given)."""

    mode: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


class InputPlan(NamedTuple):
    """The decided input description and preprocessing, and where they came from.

    ``int8_preprocessing`` is set when the full-integer artifacts take standardised
    features (the model's own ``Normalization`` removed from them).
    """

    spec: InputSpec
    preprocessing: Preprocessing
    int8_preprocessing: Preprocessing | None
    class_names: tuple[str, ...]
    decided_by: str


def _check_shape(source: SourceModel, spec: InputSpec) -> str:
    """The model's layout (``flat``/``nhwc``) if its input holds one ``spec`` sample, else DataError."""
    shape = source.input_shape
    if len(shape) == 3 and shape[2] not in (1, 3):
        raise DataError(
            f"model input {shape} has {shape[2]} channels; keras2edge converts images with 1 (grayscale) or 3 (RGB)"
        )
    if spec.is_image:
        if shape == spec.shape:
            return "nhwc"
        if shape == (spec.size,):
            return "flat"
        h, w, c = spec.shape
        hint = ""
        if len(shape) == 3:
            hint = (f"; load the data with --image-size {shape[0]}x{shape[1]} "
                    f"--color-mode {'rgb' if shape[2] == 3 else 'grayscale'}")
        raise DataError(
            f"model input {shape} does not fit the data's {h}×{w}×{c} images; expected {spec.shape} (NHWC) "
            f"or ({spec.size},) (flat){hint}"
        )
    if shape == spec.shape:
        return "flat"
    raise DataError(f"model input {shape} does not fit the data's {spec.shape[0]} features; expected {spec.shape}")


def _per_axis(values: tuple[float, ...] | None, spec: InputSpec, option: str) -> tuple[float, ...] | None:
    if values is None:
        return None
    if len(values) not in (1, spec.axis_length):
        what = "channels" if spec.is_image else "features"
        raise DataError(f"{option} has {len(values)} values; give 1 or one per {what[:-1]} ({spec.axis_length} {what})")
    return tuple(float(v) for v in values)


def _from_options(options: PreprocessOptions, spec: InputSpec, layout: str,
                  shape: tuple[int, ...]) -> Preprocessing | None:
    mean, std = _per_axis(options.mean, spec, "--mean"), _per_axis(options.std, spec, "--std")
    if (mean is None) != (std is None):
        raise DataError("--mean and --std go together; give both")
    if std is not None and not all(s > 0 for s in std):
        raise DataError(f"--std values must be > 0, got {list(std)}")
    if options.mode is not None and mean is not None:
        raise DataError(f"--preprocess {options.mode} and --mean/--std both given; choose one")
    if options.mode is not None:
        if options.mode not in IMAGE_MODES:
            raise DataError(f"--preprocess must be one of {', '.join(IMAGE_MODES)}, got {options.mode!r}")
        if not spec.is_image and options.mode != "raw":
            raise DataError(f"--preprocess {options.mode} is for images; a feature model takes 'raw' or --mean/--std")
        if options.mode == "imagenet" and spec.channels != 3:
            raise DataError("--preprocess imagenet needs RGB input (3 channels); this model reads grayscale")
        return Preprocessing.for_mode(options.mode, layout, shape)
    if mean is not None:
        return Preprocessing.for_mode("mean_std", layout, shape, mean, std)
    return None


def feature_statistics(x_train: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-feature mean and std of the training split (std floored so constant features stay finite)."""
    x = x_train.astype(np.float64)
    return tuple(float(v) for v in x.mean(axis=0)), tuple(float(max(v, _STD_FLOOR)) for v in x.std(axis=0))


def plan_input(
    source: SourceModel,
    data: Dataset,
    options: PreprocessOptions = PreprocessOptions(),
    training: TrainingRecord | None = None,
) -> InputPlan:
    """Decide the input description and preprocessing (see the module docstring).

    Raises
    ------
    DataError
        The model does not fit the data (shape, channels, class count), or the
        options contradict each other or the data.

    Examples
    --------
    >>> plan = plan_input(load_source_model("model.keras"), load_dataset())  # doctest: +SKIP
    >>> plan.preprocessing.mode, plan.decided_by  # doctest: +SKIP
    ('unit', 'training.json')
    """
    spec = training.input if training is not None else data.input
    layout = _check_shape(source, spec)
    shape = source.input_shape
    classes = training.class_names if training is not None else data.class_names
    if source.num_outputs != len(classes):
        raise DataError(f"model predicts {source.num_outputs} classes but the data set has {len(classes)}")
    pre = _from_options(options, spec, layout, shape)
    decided = "command-line options"
    if pre is None and training is not None:
        pre, decided = training.preprocessing._replace(layout=layout, model_input_shape=shape), "training.json"
    if pre is None and source.leading in ("rescaling", "normalization"):
        pre, decided = (Preprocessing.for_mode("raw", layout, shape),
                        f"the model's leading {source.leading.title()} layer")
    if pre is None and spec.is_image:
        pre, decided = Preprocessing.for_mode("unit", layout, shape), "default for images (x / 255)"
    if pre is None:
        mean, std = feature_statistics(data.x_train)
        pre, decided = Preprocessing.for_mode("standardize", layout, shape, mean, std), "training-split statistics"
    int8_pre = None
    if not spec.is_image and source.normalization is not None and pre.mode == "raw":
        mean, std = source.normalization
        int8_pre = Preprocessing.for_mode("standardize", layout, shape, mean, std)
    if math.prod(pre.model_input_shape) != spec.size:
        raise DataError(f"preprocessing for {pre.model_input_shape} does not fit the input {spec.shape}")
    return InputPlan(spec, pre, int8_pre, tuple(classes), decided)
