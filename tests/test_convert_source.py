"""Reading the source model: softmax vs logits, and which input layouts fit the data."""

from __future__ import annotations

import pytest

from convert.inputs import plan_input
from convert.source import load_source_model
from edge_runtime.errors import DataError, ModelLoadError


def _save(tmp_path, name, layers, input_shape=(784,)):
    import keras

    model = keras.Sequential([keras.Input(input_shape), *layers], name=name)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dense_softmax", "probabilities"),
        ("activation_layer", "probabilities"),
        ("softmax_layer", "probabilities"),
        ("dense_linear", "logits"),
        ("relu_head", "logits"),
    ],
)
def test_output_kind_is_detected_from_the_last_layer(tmp_path, name, expected):
    import keras

    heads = {
        "dense_softmax": [keras.layers.Dense(10, activation="softmax")],
        "activation_layer": [keras.layers.Dense(10), keras.layers.Activation("softmax")],
        "softmax_layer": [keras.layers.Dense(10), keras.layers.Softmax()],
        "dense_linear": [keras.layers.Dense(10)],
        "relu_head": [keras.layers.Dense(10, activation="relu")],
    }
    assert load_source_model(_save(tmp_path, name, heads[name])).output_kind == expected


def test_flat_and_nhwc_inputs_fit_28x28_data_and_record_their_layout(tmp_path, mnist):
    import keras

    flat = load_source_model(_save(tmp_path, "flat", [keras.layers.Dense(10)]))
    nhwc = load_source_model(_save(tmp_path, "nhwc", [keras.layers.Flatten(), keras.layers.Dense(10)], (28, 28, 1)))
    for source, layout in ((flat, "flat"), (nhwc, "nhwc")):
        plan = plan_input(source, mnist)
        assert source.layout == layout and plan.preprocessing.layout == layout
        assert plan.preprocessing.model_input_shape == source.input_shape


def test_model_with_wrong_number_of_classes_is_a_data_error(tmp_path, mnist):
    import keras

    source = load_source_model(_save(tmp_path, "five", [keras.layers.Dense(5)]))
    with pytest.raises(DataError, match="predicts 5 classes but the data set has 10"):
        plan_input(source, mnist)


def test_model_with_two_outputs_is_rejected(tmp_path):
    import keras

    inputs = keras.Input((784,))
    model = keras.Model(inputs, [keras.layers.Dense(10)(inputs), keras.layers.Dense(2)(inputs)])
    path = tmp_path / "two.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="1 inputs and 2 outputs"):
        load_source_model(path)
