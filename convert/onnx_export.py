"""Keras → ONNX float32 through a ``tf.function``, with a dynamic batch dimension.

``tf2onnx.convert.from_keras`` fails on Keras 3 models (``KeyError:
keras_tensor_…``), so the model is wrapped in a ``tf.function`` whose input
signature has batch dimension ``None`` and converted with ``from_function``. The
graph's input keeps the Keras input name and its output is renamed to the Keras
output layer's name, so both formats describe the same tensors.
"""

from __future__ import annotations

from typing import Any

from convert._quiet import captured_output
from convert.source import SourceModel, output_layer

OPSET = 17


def _rename_output(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in graph.output:
        if output.name == old:
            output.name = new


def export_onnx(source: SourceModel, opset: int = OPSET) -> bytes:
    """Export ``source.model`` to a serialized ONNX ``ModelProto``.

    Parameters
    ----------
    source : SourceModel
    opset : int
        ONNX opset; 17 is supported by every ONNX Runtime since 1.13.

    Returns
    -------
    bytes
        The ``.onnx`` file content (float32 weights, input shape ``[N, ...]``).
    """
    import tensorflow as tf
    import tf2onnx

    model = source.model
    spec = tf.TensorSpec((None, *source.input_shape), tf.float32, name=source.input_name)
    function = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    with captured_output():
        proto, _ = tf2onnx.convert.from_function(function, input_signature=[spec], opset=opset)
    _rename_output(proto.graph, proto.graph.output[0].name, str(output_layer(model).name))
    proto.producer_name = "keras2edge (tf2onnx)"
    return proto.SerializeToString()
