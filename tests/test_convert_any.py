"""Converting any Keras classifier: RGB image folders, hand-built models in every file form, feature vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert.formats import ALL_KINDS
from edge_runtime.records.manifest import InputSpec, Manifest, Preprocessing
from edge_runtime.sample_set import load_samples

pytestmark = pytest.mark.slow
ALL_NAMES = [k.artifact_name for k in ALL_KINDS]


def test_rgb_folder_cnn_converts_to_every_artifact_and_passes_parity(rgb_cnn_artifacts, rgb_cnn_run):
    from convert.parity import run_parity

    manifest = Manifest.read(rgb_cnn_artifacts)
    assert [a.name for a in manifest.artifacts] == ALL_NAMES
    assert manifest.input == InputSpec("image", (40, 48, 3), "rgb", digits=False)
    assert manifest.preprocessing == Preprocessing.for_mode("unit", "nhwc", (40, 48, 3))
    assert manifest.class_labels == ("circle", "square", "triangle")
    assert manifest.data["preprocessing_from"] == "training.json"
    assert manifest.data["load_options"]["skip_bad_images"] is True  # read as in training: the same split
    samples = load_samples(rgb_cnn_artifacts, manifest.input.shape)
    assert samples.inputs.dtype == np.uint8 and samples.inputs.shape[1:] == (40, 48, 3)
    report = run_parity(rgb_cnn_artifacts)
    assert report.failures() == [], report.failures()
    assert report.num_images == 36


def _hand_built_rgb_model(tmp_path, rgb_folder):
    """Functional, Rescaling inside, 3 channels, non-square 48×64 input, logits: trained a little on the shapes."""
    import keras

    from train.data import load_dataset

    data = load_dataset(rgb_folder, image_size=(48, 64), color_mode="rgb")
    keras.utils.set_random_seed(1)
    inputs = keras.Input((48, 64, 3), name="photo")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="to_unit")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(3, name="scores")(x)
    model = keras.Model(inputs, logits, name="hand_built")
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.x_train.astype(np.float32), data.y_train, epochs=6, batch_size=16, verbose=0)
    model.save(tmp_path / "hand.keras")
    model.save(tmp_path / "hand.h5")
    model.export(str(tmp_path / "hand_saved_model"), verbose=False)
    return tmp_path


@pytest.fixture(scope="module")
def hand_built(tmp_path_factory, rgb_folder):
    return _hand_built_rgb_model(tmp_path_factory.mktemp("hand"), rgb_folder)


@pytest.mark.parametrize("form", ["hand.keras", "hand.h5", "hand_saved_model"])
def test_hand_built_model_converts_with_default_options_and_passes_parity(hand_built, rgb_folder, form, tmp_path):
    from convert.__main__ import PROG, main
    from convert.parity import run_parity
    from edge_runtime.cli_support import run_cli

    out = tmp_path / "artifacts"
    assert run_cli(PROG, main, [str(hand_built / form), "--out", str(out), "--data", str(rgb_folder),
                                "--calibration-samples", "100"]) == 0
    manifest = Manifest.read(out)
    assert manifest.input.shape == (48, 64, 3) and manifest.input.color_mode == "rgb"
    assert manifest.preprocessing.mode == "raw"  # the Rescaling layer inside takes raw 0-255 pixels
    assert manifest.data["preprocessing_from"] == "the model's leading Rescaling layer"
    assert manifest.output_kind == "logits"
    assert manifest.source_model["format"] == {
        "hand.keras": "keras", "hand.h5": "h5", "hand_saved_model": "saved_model"
    }[form]
    report = run_parity(out)
    assert report.failures() == [], report.failures()


def test_feature_mlp_converts_and_its_full_integer_artifacts_take_standardised_features(
    feature_mlp_artifacts, feature_mlp_run
):
    import keras

    from convert.parity import run_parity

    manifest = Manifest.read(feature_mlp_artifacts)
    assert manifest.input.kind == "features" and manifest.input.shape == (13,)
    assert manifest.preprocessing.mode == "raw"
    norm = keras.models.load_model(feature_mlp_run[0] / "model.keras").layers[0]
    for artifact in manifest.artifacts:
        own = artifact.preprocessing
        if artifact.quantization in ("full_integer", "static_qdq"):
            # The model's Normalization is taken out of these; the device standardises in float first.
            assert own is not None and own.mode == "standardize"
            np.testing.assert_allclose(own.mean, np.ravel(norm.mean), rtol=1e-6)
            np.testing.assert_allclose(own.std, np.sqrt(np.ravel(norm.variance)), rtol=1e-6)
        else:
            assert own is None
    report = run_parity(feature_mlp_artifacts)
    assert report.failures() == [], report.failures()


def test_full_integer_artifact_reads_raw_features_on_very_different_scales(feature_mlp_artifacts, feature_csv):
    """The tiny vibration column (thousandths) matters to the labels; quantised raw, beside kelvins, it would vanish."""
    import edge_runtime
    from train.data import load_dataset

    data = load_dataset(feature_csv)
    ranges = np.ptp(data.x_train, axis=0)
    assert ranges.max() / ranges.min() > 1e4  # the data really mixes scales
    float_model = edge_runtime.load(feature_mlp_artifacts / "tflite_float32.tflite")
    int8_model = edge_runtime.load(feature_mlp_artifacts / "tflite_int8.tflite")
    agreement = np.mean(float_model.predict(data.x_test).argmax(1) == int8_model.predict(data.x_test).argmax(1))
    assert agreement >= 0.98, agreement
    entry = json.loads((feature_mlp_artifacts / "manifest.json").read_text())["artifacts"]
    assert any(a["name"] == "tflite_int8" and a["preprocessing"]["mode"] == "standardize" for a in entry)
