"""Model architectures, defined once so every caller builds the same network.

``mlp`` is the reference model of the Keras MNIST tutorial. ``cnn`` is a small
convolutional network used to prove that conversion and the runtime are general.
New architectures are added to :data:`ARCHITECTURES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edge_runtime.errors import Keras2EdgeError


def build_mlp(image_shape: tuple[int, int] = (28, 28), num_classes: int = 10) -> Any:
    """The tutorial's MLP: flat 784 input → Dense 512/256/128 relu → softmax.

    The input is the flattened image (784 for 28×28, as in the tutorial, whose
    "786" is a slip), scaled to [0, 1].

    Examples
    --------
    >>> build_mlp().count_params()  # doctest: +SKIP
    567434
    """
    import keras

    pixels = image_shape[0] * image_shape[1]
    return keras.Sequential(
        [
            keras.Input(shape=(pixels,), name="pixels"),
            keras.layers.Dense(512, activation="relu", name="dense_512"),
            keras.layers.Dense(256, activation="relu", name="dense_256"),
            keras.layers.Dense(128, activation="relu", name="dense_128"),
            keras.layers.Dense(num_classes, activation="softmax", name="probabilities"),
        ],
        name="mnist_mlp",
    )


def build_cnn(image_shape: tuple[int, int] = (28, 28), num_classes: int = 10) -> Any:
    """A small CNN (Conv2D, MaxPooling, BatchNormalization, Dropout, Flatten, Dense).

    Its input is ``(H, W, 1)`` images in [0, 1], a different layout from the MLP, so
    it exercises the converter and runtime on a second kind of model.
    """
    import keras

    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(*image_shape, 1), name="image"),
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
        name="mnist_cnn",
    )


ARCHITECTURES: dict[str, Callable[..., Any]] = {"mlp": build_mlp, "cnn": build_cnn}


def build_model(arch: str, image_shape: tuple[int, int] = (28, 28), num_classes: int = 10) -> Any:
    """Build an architecture from :data:`ARCHITECTURES` by name.

    Raises
    ------
    Keras2EdgeError
        ``arch`` is not a known architecture.
    """
    try:
        builder = ARCHITECTURES[arch]
    except KeyError:
        raise Keras2EdgeError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}") from None
    return builder(image_shape, num_classes)


def model_input_shape(model: Any) -> tuple[int, ...]:
    """The per-sample input shape of a built model (without the batch dimension)."""
    return tuple(int(d) for d in model.inputs[0].shape[1:])
