"""Model architectures, defined once so every caller builds the same network for an input.

``mlp`` on MNIST is the reference model of the Keras tutorial; on other images it
is the same network on the flattened pixels, and on feature vectors a smaller MLP
that standardises its input with a ``Normalization`` layer adapted on the training
split, so the device passes raw features. ``cnn`` is sized for the image: the
small convolutional network below 32 pixels a side (MNIST), and from 32 pixels a
MobileNet-style depthwise-separable network, whose cost on a Raspberry Pi's CPU
grows with the image far more slowly than a plain convolution stack's.
Image models take pixels already divided by 255: that scaling is recorded in the
training record (preprocessing mode ``unit``), not built into the model.
New architectures are added to :data:`ARCHITECTURES`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edge_runtime.errors import Keras2EdgeError
from edge_runtime.records.manifest import MNIST_INPUT, InputSpec, Preprocessing

# From this many pixels on the shorter side, `cnn` is the depthwise-separable design.
SEPARABLE_MIN_SIDE = 32
# The separable design halves the image until it is about this small (at most 4 times after the stem).
SEPARABLE_TARGET_SIDE = 4
SEPARABLE_WIDTHS = (32, 64, 128, 256)
FEATURE_HIDDEN = (64, 32)
# Keras' default 0.99 needs hundreds of steps before the moving statistics (what inference
# uses) fit the data; 0.9 fits within a few dozen, which small user data sets may be all there is.
BN_MOMENTUM = 0.9


def _name(spec: InputSpec, arch: str) -> str:
    return f"mnist_{arch}" if spec.digits else f"{'image' if spec.is_image else 'features'}_{arch}"


def build_mlp(spec: InputSpec = MNIST_INPUT, num_classes: int = 10, adapt_data: np.ndarray | None = None) -> Any:
    """The tutorial's MLP on flattened pixels, or a feature MLP with a ``Normalization`` layer.

    Images: flat ``H·W·C`` input (784 for MNIST, as in the tutorial, whose "786"
    is a slip), Dense 512/256/128 relu, softmax. Features: ``Normalization``
    adapted on ``adapt_data`` (the training split), Dense 64/32 relu, softmax.

    Raises
    ------
    Keras2EdgeError
        Feature input without ``adapt_data``.

    Examples
    --------
    >>> build_mlp().count_params()  # doctest: +SKIP
    567434
    """
    import keras

    if not spec.is_image:
        return _feature_mlp(spec, num_classes, adapt_data)
    return keras.Sequential(
        [
            keras.Input(shape=(spec.size,), name="pixels"),
            keras.layers.Dense(512, activation="relu", name="dense_512"),
            keras.layers.Dense(256, activation="relu", name="dense_256"),
            keras.layers.Dense(128, activation="relu", name="dense_128"),
            keras.layers.Dense(num_classes, activation="softmax", name="probabilities"),
        ],
        name=_name(spec, "mlp"),
    )


def _feature_mlp(spec: InputSpec, num_classes: int, adapt_data: np.ndarray | None) -> Any:
    """Features on any scale: the model standardises them itself, with statistics of the training split."""
    import keras

    if adapt_data is None:
        raise Keras2EdgeError("a feature model needs the training split to adapt its Normalization layer")
    normalize = keras.layers.Normalization(axis=-1, name="normalization")
    normalize.adapt(np.asarray(adapt_data, dtype=np.float32))
    layers = [keras.Input(shape=spec.shape, name="features"), normalize]
    layers += [keras.layers.Dense(units, activation="relu", name=f"dense_{units}") for units in FEATURE_HIDDEN]
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="probabilities"))
    return keras.Sequential(layers, name=_name(spec, "mlp"))


def build_cnn(spec: InputSpec = MNIST_INPUT, num_classes: int = 10, adapt_data: np.ndarray | None = None) -> Any:
    """A convolutional network sized for the image (``adapt_data`` is unused; images only).

    Below :data:`SEPARABLE_MIN_SIDE` pixels (MNIST): Conv2D, MaxPooling,
    BatchNormalization, Dropout, Flatten, Dense. From it on: see
    :func:`build_separable_cnn`.
    """
    import keras

    if min(spec.image_size) >= SEPARABLE_MIN_SIDE:
        return build_separable_cnn(spec, num_classes)
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=spec.shape, name="image"),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.BatchNormalization(name="bn1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dropout(0.25, name="dropout"),
            layers.Dense(64, activation="relu", name="dense_64"),
            layers.Dense(num_classes, activation="softmax", name="probabilities"),
        ],
        name=_name(spec, "cnn"),
    )


def separable_stages(image_size: tuple[int, int]) -> int:
    """How many stride-2 separable stages follow the stem: enough to reach about 4 pixels a side, 1 to 4.

    Examples
    --------
    >>> separable_stages((32, 32)), separable_stages((40, 48)), separable_stages((224, 224))
    (2, 3, 4)
    """
    side_after_stem = math.ceil(min(image_size) / 2)
    needed = math.ceil(math.log2(max(side_after_stem / SEPARABLE_TARGET_SIDE, 1)))
    return min(max(needed, 1), len(SEPARABLE_WIDTHS))


def build_separable_cnn(spec: InputSpec, num_classes: int) -> Any:
    """A MobileNet-v1-style network: cheap on a Pi's CPU and friendly to int8.

    A stride-2 3×3 convolution (16 filters), then per stage a stride-2 block and
    a stride-1 block, each a 3×3 depthwise convolution and a 1×1 convolution
    (32, 64, 128, 256 filters), every convolution followed by BatchNormalization
    (folded into the weights by the converters) and ReLU6 (its bounded range
    quantises well); then global average pooling, dropout and a softmax layer.
    """
    import keras

    layers = keras.layers

    def conv_bn(x: Any, conv: Any, name: str) -> Any:
        x = conv(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu6")(x)

    def separable(x: Any, filters: int, stride: int, name: str) -> Any:
        x = conv_bn(x, layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw"),
                    f"{name}_dw")
        return conv_bn(x, layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw"), f"{name}_pw")

    inputs = keras.Input(shape=spec.shape, name="image")
    x = conv_bn(inputs, layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem"), "stem")
    for stage, filters in enumerate(SEPARABLE_WIDTHS[: separable_stages(spec.image_size)], start=1):
        x = separable(x, filters, 2, f"block{stage}a")
        x = separable(x, filters, 1, f"block{stage}b")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=_name(spec, "separable_cnn"))


ARCHITECTURES: dict[str, Callable[..., Any]] = {"mlp": build_mlp, "cnn": build_cnn}
# The input kinds each architecture can take.
ARCHITECTURE_INPUTS = {"mlp": ("image", "features"), "cnn": ("image",)}


def check_architecture(arch: str, spec: InputSpec) -> None:
    """Refuse an unknown architecture, or one that cannot read ``spec``, before any work is done.

    Raises
    ------
    Keras2EdgeError
        One line naming ``--arch`` and the value.

    Examples
    --------
    >>> check_architecture("cnn", InputSpec("features", (13,), None, digits=False))
    Traceback (most recent call last):
    ...
    edge_runtime.errors.Keras2EdgeError: --arch cnn needs image data, but the data are 13 features; use --arch mlp
    """
    if arch not in ARCHITECTURES:
        raise Keras2EdgeError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")
    if spec.kind not in ARCHITECTURE_INPUTS[arch]:
        raise Keras2EdgeError(f"--arch {arch} needs image data, but the data are {spec.describe()}; use --arch mlp")


def build_model(arch: str, spec: InputSpec = MNIST_INPUT, num_classes: int = 10,
                adapt_data: np.ndarray | None = None) -> Any:
    """Build an architecture from :data:`ARCHITECTURES` for ``spec`` and ``num_classes``.

    Parameters
    ----------
    arch : str
        ``"mlp"`` or ``"cnn"``.
    spec : InputSpec
        The data's input description (:attr:`train.dataset.Dataset.input`).
    num_classes : int
        Size of the softmax output.
    adapt_data : numpy.ndarray or None
        Feature data: the training split the ``Normalization`` layer is adapted on.

    Raises
    ------
    Keras2EdgeError
        ``arch`` is unknown or does not fit the data (:func:`check_architecture`).
    """
    check_architecture(arch, spec)
    return ARCHITECTURES[arch](spec, num_classes, adapt_data)


def model_input_shape(model: Any) -> tuple[int, ...]:
    """The per-sample input shape of a built model (without the batch dimension)."""
    return tuple(int(d) for d in model.inputs[0].shape[1:])


def preprocessing_for(model: Any, spec: InputSpec) -> Preprocessing:
    """What turns the raw samples of ``spec`` into ``model``'s input, as the training record states it.

    Images: pixels / 255 (mode ``unit``), flat for an MLP, NHWC for a CNN.
    Features: raw values (mode ``raw``): the model's ``Normalization`` layer
    standardises them.
    """
    shape = model_input_shape(model)
    layout = "flat" if len(shape) == 1 else "nhwc"
    return Preprocessing.for_mode("unit" if spec.is_image else "raw", layout, shape)
