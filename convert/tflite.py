"""Keras → TFLite in four precisions with ``tf.lite.TFLiteConverter``.

``from_keras_model`` is used because it works with Keras 3, while converting a
``tf.function`` fails on variable reads. The full-integer artifact takes int8 input
and output so a microcontroller-style runtime never touches float; its
input/output scale and zero point are read back by :mod:`convert.validate`.
"""

from __future__ import annotations

from typing import Any

from convert._quiet import captured_output
from convert.calibration import CalibrationData
from convert.formats import ArtifactKind


def make_converter(model: Any, kind: ArtifactKind, calibration: CalibrationData | None) -> Any:
    """A ``TFLiteConverter`` configured for ``kind`` (also used by the int8 diagnostics).

    Raises
    ------
    ValueError
        ``kind`` is not a TFLite kind, or needs calibration and none was given.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind is ArtifactKind.TFLITE_FLOAT32:
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind is ArtifactKind.TFLITE_FLOAT16:
        converter.target_spec.supported_types = [tf.float16]
    elif kind is ArtifactKind.TFLITE_INT8:
        if calibration is None:
            raise ValueError("full-integer quantisation needs calibration data")
        converter.representative_dataset = calibration.representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif kind is not ArtifactKind.TFLITE_DYNAMIC_INT8:
        raise ValueError(f"{kind.artifact_name} is not a TFLite artifact")
    return converter


def convert_tflite(model: Any, kind: ArtifactKind, calibration: CalibrationData | None = None) -> bytes:
    """Convert ``model`` to a TFLite flatbuffer of the given kind.

    Parameters
    ----------
    model : keras.Model
    kind : ArtifactKind
        One of the four ``TFLITE_*`` kinds.
    calibration : CalibrationData, optional
        Training-split samples; required for ``TFLITE_INT8``.

    Returns
    -------
    bytes
        The ``.tflite`` file content.
    """
    converter = make_converter(model, kind, calibration)
    with captured_output():
        return bytes(converter.convert())
