"""Loading the Keras model to convert, whatever file it was saved as, and describing it.

Everything that can be wrong with the user's model is found here, before any slow
conversion starts, and reported as one line: a file that is not a Keras model, a
truncated archive, more than one input or output, an input of unknown size, or an
output that is not one score per class.

Three forms load: ``.keras`` (``model.save``), legacy ``.h5`` / ``.hdf5``, and a
TensorFlow SavedModel directory (``model.export(dir)``), which is wrapped in a
Keras model (``keras.layers.TFSMLayer``) so every converter sees the same object.
What the converter needs to know about the model's first and last layers is read
here too: a leading ``Rescaling`` (the model takes raw 0-255 pixels), a leading
``Normalization`` (it standardises features itself), and whether the output is
already a softmax.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import ModelLoadError

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")
# Keras' Normalization layer divides by max(sqrt(variance), epsilon).
_NORMALIZATION_EPSILON = 1e-7


@dataclass(frozen=True)
class SourceModel:
    """A loaded Keras model and the facts about it that conversion needs.

    Attributes
    ----------
    model : keras.Model
        The loaded model (a SavedModel is wrapped in a Keras model).
    path : Path
        Absolute path of the file or SavedModel directory.
    sha256 : str
        Digest of the file (of every file, for a directory), so every artifact can
        be traced back to its exact source.
    format : str
        ``"keras"``, ``"h5"`` or ``"saved_model"``.
    input_shape : tuple of int
        Per-sample input shape (no batch dimension), e.g. ``(784,)`` or ``(48, 64, 3)``.
    num_outputs : int
        Size of the (only) output, one score per class.
    output_kind : str
        ``"probabilities"`` when the model ends in a softmax, else ``"logits"``.
    leading : str or None
        ``"rescaling"`` or ``"normalization"`` when that layer is the first thing the
        input meets, else None.
    normalization : (mean, std) or None
        The leading ``Normalization`` layer's statistics, per feature.
    """

    model: Any
    path: Path
    sha256: str
    format: str
    input_shape: tuple[int, ...]
    num_outputs: int
    output_kind: str
    leading: str | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def layout(self) -> str:
        """``"flat"`` for a vector input, ``"nhwc"`` for an image tensor."""
        return "flat" if len(self.input_shape) == 1 else "nhwc"

    @property
    def input_name(self) -> str:
        """The Keras input's name, reused for the exported graphs' inputs."""
        return str(self.model.inputs[0].name)

    def without_normalization(self) -> SourceModel:
        """This model minus its leading ``Normalization`` layer: it takes standardised input.

        The full-integer artifacts quantise their whole input vector with one scale;
        fed raw features on different scales (hundreds next to thousandths) they
        would lose the small ones, so they are made from this model instead and the
        device standardises in float first (the manifest records mean and std).
        """
        import keras

        if self.normalization is None:
            raise ValueError("the model has no leading Normalization layer")
        model = self.model
        if isinstance(model, keras.Sequential):
            layers = model.layers[1:]
            trimmed = keras.Sequential([keras.Input(self.input_shape, name=self.input_name), *layers], name=model.name)
        else:
            norm = _first_layer(model)
            trimmed = keras.Model(norm.output, model.outputs[0], name=model.name)
        return SourceModel(trimmed, self.path, self.sha256, self.format, self.input_shape, self.num_outputs,
                           self.output_kind, None, None)


    def probabilities(self, raw: Any, preprocessing: Any, batch_size: int = 1000) -> Any:
        """Class probabilities (float64 ``(N, classes)``) of the model on raw inputs.

        ``preprocessing`` is applied with the reference arithmetic
        (:func:`edge_runtime.preprocessing.apply_preprocessing`); logits get a softmax,
        so every caller compares probabilities with probabilities.
        """
        import numpy as np

        from edge_runtime.preprocessing import apply_preprocessing

        out = np.asarray(self.model.predict(apply_preprocessing(raw, preprocessing), batch_size=batch_size, verbose=0),
                         dtype=np.float64)
        if self.output_kind == "probabilities":
            return out
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, read in chunks so large models need little memory.

    For a directory (a SavedModel): the digest of every file's relative path and
    content, in sorted order.
    """
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        if root.is_dir():
            digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def output_layer(model: Any) -> Any:
    """The layer that produces the model's (only) output, Sequential or Functional."""
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history is not None else model.layers[-1]


def _first_layer(model: Any) -> Any:
    """The first layer the model's input flows into (skipping the InputLayer)."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        return layer
    return None


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


def _leading_layer(model: Any) -> tuple[str | None, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    import keras
    import numpy as np

    layer = _first_layer(model)
    if isinstance(layer, keras.layers.Rescaling):
        return "rescaling", None
    if isinstance(layer, keras.layers.Normalization) and getattr(layer, "mean", None) is not None:
        mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
        std = np.maximum(np.sqrt(np.asarray(layer.variance, dtype=np.float64).reshape(-1)), _NORMALIZATION_EPSILON)
        return "normalization", (tuple(float(v) for v in mean), tuple(float(v) for v in std))
    return None, None


def _saved_model_leading(signature: Any) -> str | None:
    """``"rescaling"`` when a SavedModel's input first meets a multiply by a constant.

    A SavedModel has no layers to inspect; Keras' Rescaling is ``x * scale + offset``
    and is the only common first layer that multiplies the raw input (Normalization
    subtracts first), so the first op on the input tells them apart. ``signature``
    is the ``serving_default`` function :func:`_load_saved_model` already loaded
    (loading a SavedModel is the slow part).
    """
    graph = signature.graph.as_graph_def()
    for function in graph.library.function:
        args = {a.name for a in function.signature.input_arg}
        for node in function.node_def:
            if (any(i.split(":")[0] in args for i in node.input if not i.startswith("^"))
                    and node.op not in ("ReadVariableOp",)):
                if node.op in ("Mul", "Cast"):
                    return "rescaling"
                if node.op == "Sub":
                    return "normalization"
    return None


def _load_saved_model(path: Path) -> tuple[Any, Any]:
    """A Keras model around a SavedModel's ``serving_default`` signature (one input, one output), and that signature.

    The signature is returned so the leading-layer check reads the graph loaded
    here rather than loading the SavedModel again (``TFSMLayer`` loads it once more
    itself: it takes only a path).
    """
    import keras
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures.get("serving_default")
    if signature is None:
        raise ModelLoadError(f"{path}: SavedModel has no 'serving_default' signature; export it with model.export(dir)")
    (_, inputs), outputs = signature.structured_input_signature, signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelLoadError(
            f"{path}: SavedModel has {len(inputs)} inputs and {len(outputs)} outputs; "
            "keras2edge converts classifiers with one input and one output"
        )
    (name, spec), = inputs.items()
    if any(d is None for d in spec.shape[1:]):
        raise ModelLoadError(
            f"{path}: input shape {tuple(spec.shape)} has unknown dimensions; export it with a fixed input size"
        )
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    inp = keras.Input(tuple(int(d) for d in spec.shape[1:]), name=name)
    out = layer(inp)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    return keras.Model(inp, out, name=path.name), signature


def _probabilities_numerically(model: Any, input_shape: tuple[int, ...]) -> bool:
    """For a SavedModel (no layers to read): do outputs on random inputs look like softmax rows?"""
    import numpy as np

    x = np.random.default_rng(0).uniform(0, 255, (8, *input_shape)).astype(np.float32)
    y = np.asarray(model(x))
    return bool(np.all(y >= 0) and np.allclose(y.sum(axis=1), 1.0, atol=1e-3))


def load_source_model(path: str | os.PathLike[str]) -> SourceModel:
    """Load a ``.keras`` / ``.h5`` file or a SavedModel directory and describe it.

    Parameters
    ----------
    path : str or path
        A model saved with ``model.save("model.keras")``, ``model.save("model.h5")``
        or ``model.export("dir")``.

    Returns
    -------
    SourceModel

    Raises
    ------
    ModelLoadError
        Missing, not a Keras model or SavedModel, damaged, or not exactly one input
        of known size and one ``(batch, classes)`` output.

    Examples
    --------
    >>> load_source_model("out/model/model.keras").input_shape  # doctest: +SKIP
    (784,)
    """
    source = Path(path).absolute()
    if source.is_dir():
        if not (source / "saved_model.pb").is_file():
            raise ModelLoadError(
                f"{path}: a directory without saved_model.pb; pass a .keras or .h5 file or a SavedModel directory"
            )
        fmt = "saved_model"
    elif not source.is_file():
        raise ModelLoadError(f"{path}: no such model file")
    elif source.suffix.lower() in KERAS_SUFFIXES:
        if not zipfile.is_zipfile(source):
            raise ModelLoadError(
                f"{path}: not a Keras model (not a .keras zip archive; truncated or a different file type)"
            )
        fmt = "keras"
    elif source.suffix.lower() in H5_SUFFIXES:
        with open(source, "rb") as handle:
            if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                raise ModelLoadError(f"{path}: not an HDF5 file (truncated or a different file type)")
        fmt = "h5"
    else:
        raise ModelLoadError(f"{path}: not a Keras model; expected a '.keras' or '.h5' file or a SavedModel directory")
    from convert._quiet import captured_output

    with captured_output():  # TensorFlow's import announces itself on stderr
        import keras
    signature = None
    try:
        with captured_output():
            if fmt == "saved_model":
                model, signature = _load_saved_model(source)
            else:
                model = keras.models.load_model(source, compile=False)
    except ModelLoadError:
        raise
    except Exception as exc:  # keras / h5py / TensorFlow raise many types for damaged files
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ModelLoadError(f"{path}: cannot load the model ({type(exc).__name__}: {reason})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelLoadError(
            f"{path}: model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            "keras2edge converts classifiers with one input and one output"
        )
    input_shape = tuple(model.inputs[0].shape[1:])
    output_shape = tuple(model.outputs[0].shape[1:])
    if any(d is None for d in input_shape):
        raise ModelLoadError(f"{path}: input shape {input_shape} has unknown dimensions; give the Input a fixed size")
    if len(output_shape) != 1 or output_shape[0] is None:
        raise ModelLoadError(f"{path}: output shape {output_shape} is not one score per class (batch, classes)")
    input_shape = tuple(int(d) for d in input_shape)
    if fmt == "saved_model":
        leading, normalization = _saved_model_leading(signature), None
        probabilities = _probabilities_numerically(model, input_shape)
    else:
        leading, normalization = _leading_layer(model)
        probabilities = _last_activation_is_softmax(model)
    return SourceModel(
        model=model,
        path=source,
        sha256=file_sha256(source),
        format=fmt,
        input_shape=input_shape,
        num_outputs=int(output_shape[0]),
        output_kind="probabilities" if probabilities else "logits",
        leading=leading,
        normalization=normalization if normalization and len(normalization[0]) == math.prod(input_shape) else None,
    )
