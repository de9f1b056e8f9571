"""Loading the Keras model to convert and checking it fits the data it will see.

Everything that can be wrong with the user's model is found here, before any slow
conversion starts, and reported as one line: a file that is not a Keras model, a
truncated archive, an input that is not an image of the data set's shape, or an
output that is not one score per class.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError, ModelLoadError


@dataclass(frozen=True)
class SourceModel:
    """A loaded Keras model and the facts about it that conversion needs.

    Attributes
    ----------
    model : keras.Model
        The loaded model.
    path : Path
        Absolute path of the ``.keras`` file.
    sha256 : str
        Digest of the file, so every artifact can be traced back to its exact source.
    input_shape : tuple of int
        Per-sample input shape (no batch dimension), e.g. ``(784,)`` or ``(28, 28, 1)``.
    num_outputs : int
        Size of the (only) output, one score per class.
    output_kind : str
        ``"probabilities"`` when the model ends in a softmax, else ``"logits"``.
    """

    model: Any
    path: Path
    sha256: str
    input_shape: tuple[int, ...]
    num_outputs: int
    output_kind: str

    @property
    def layout(self) -> str:
        """``"flat"`` for a vector input, ``"nhwc"`` for an image tensor."""
        return "flat" if len(self.input_shape) == 1 else "nhwc"

    @property
    def input_name(self) -> str:
        """The Keras input's name, reused for the exported graphs' inputs."""
        return str(self.model.inputs[0].name)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in chunks so large models need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def output_layer(model: Any) -> Any:
    """The layer that produces the model's (only) output, Sequential or Functional."""
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history is not None else model.layers[-1]


def _last_activation_is_softmax(model: Any) -> bool:
    """True when the layer producing the model's output applies softmax.

    Covers ``Dense(..., activation="softmax")``, ``Activation("softmax")`` and a
    ``Softmax`` layer.
    """
    import keras

    layer = output_layer(model)
    if isinstance(layer, keras.layers.Softmax):
        return True
    activation = getattr(layer, "activation", None)
    return activation is not None and getattr(activation, "__name__", "") == "softmax"


def load_source_model(path: str | os.PathLike[str]) -> SourceModel:
    """Load a ``.keras`` file and describe its input and output.

    Parameters
    ----------
    path : str or path
        A model saved with ``model.save("model.keras")``.

    Returns
    -------
    SourceModel

    Raises
    ------
    ModelLoadError
        The file is missing, not a Keras archive, truncated, or the model does not have
        exactly one input and one ``(batch, classes)`` output.
    """
    source = Path(path).absolute()
    if not source.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    if source.suffix != ".keras":
        raise ModelLoadError(f"{path}: not a Keras model; expected a '.keras' file written by model.save()")
    if not zipfile.is_zipfile(source):
        raise ModelLoadError(f"{path}: not a Keras model (not a .keras zip archive; truncated or a different file type)")
    from convert._quiet import captured_output

    with captured_output():  # TensorFlow's import announces itself on stderr
        import keras
    try:
        model = keras.models.load_model(source, compile=False)
    except Exception as exc:  # keras raises many types for damaged archives
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelLoadError(f"{path}: cannot load Keras model ({type(exc).__name__}: {reason})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelLoadError(
            f"{path}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "keras2edge converts classifiers with one image input and one output"
        )
    input_shape = tuple(model.inputs[0].shape[1:])
    output_shape = tuple(model.outputs[0].shape[1:])
    if any(d is None for d in input_shape):
        raise ModelLoadError(f"{path}: input shape {input_shape} has unknown dimensions; give the Input a fixed image size")
    if len(output_shape) != 1 or output_shape[0] is None:
        raise ModelLoadError(f"{path}: output shape {output_shape} is not one score per class (batch, classes)")
    return SourceModel(
        model=model,
        path=source,
        sha256=file_sha256(source),
        input_shape=tuple(int(d) for d in input_shape),
        num_outputs=int(output_shape[0]),
        output_kind="probabilities" if _last_activation_is_softmax(model) else "logits",
    )


def check_fits_data(source: SourceModel, image_shape: tuple[int, int], num_classes: int) -> None:
    """Refuse a model whose input is not one ``image_shape`` image or whose classes differ.

    The model must take either the flattened image (``H*W``) or an ``(H, W, 1)``
    tensor, the two layouts the manifest can describe.

    Raises
    ------
    DataError
        The model's input or output does not match the data set.
    """
    height, width = image_shape
    accepted = ((height * width,), (height, width, 1))
    if source.input_shape not in accepted:
        hint = ""
        if math.prod(source.input_shape) != height * width:
            hint = f" (it has {math.prod(source.input_shape)} values, a {height}×{width} image has {height * width})"
        raise DataError(
            f"model input {source.input_shape} is not a {height}×{width} single-channel image of the data set{hint}; "
            f"expected {accepted[0]} (flat) or {accepted[1]} (NHWC)"
        )
    if source.num_outputs != num_classes:
        raise DataError(f"model predicts {source.num_outputs} classes but the data set has {num_classes}")
