"""Keras → ONNX float32 through a frozen ``tf.function`` graph, with a dynamic batch dimension.

``tf2onnx.convert.from_keras`` fails on Keras 3 models (``KeyError:
keras_tensor_…``), so the model is wrapped in a ``tf.function`` whose input
signature has batch dimension ``None``. Its concrete function is frozen (variables
and captured tensors become constants) before ``from_graph_def``: ``from_function``
turns captured constant tensors, such as a ``Normalization`` layer's mean and
variance, into extra graph inputs, and the model would not run. The graph's input
keeps the Keras input name and its output is renamed to the Keras output layer's
name, so both formats describe the same tensors.
"""

from __future__ import annotations

from typing import Any

from convert._quiet import captured_output
from convert.source import SourceModel, output_layer

OPSET = 17


def _rename(graph: Any, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` wherever the graph names it (nodes, inputs, outputs)."""
    for node in graph.node:
        for names in (node.output, node.input):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
    for value in (*graph.input, *graph.output):
        if value.name == old:
            value.name = new


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
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = source.model
    spec = tf.TensorSpec((None, *source.input_shape), tf.float32, name=source.input_name)
    function = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    with captured_output():
        frozen = convert_variables_to_constants_v2(function.get_concrete_function())
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(),
            input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs],
            opset=opset,
        )
    _rename(proto.graph, proto.graph.input[0].name, source.input_name)
    _rename(proto.graph, proto.graph.output[0].name, str(output_layer(model).name))
    proto.producer_name = "keras2edge (tf2onnx)"
    return proto.SerializeToString()
