"""Shared fixtures: the real MNIST data and small models trained on it once per session.

Tests train small models (a few seconds each) so the suite stays fast on 2 cores;
the full-size reference model is trained by the main job (`make demo`) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

SMALL_TRAIN = 12000


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST data set (real images, checksum-verified)."""
    from train.data import load_dataset

    return load_dataset()


def _train_small(tmp_path_factory, mnist, arch: str, epochs: int) -> Path:
    from train.training import TrainConfig, train_model

    model, record = train_model(
        mnist, TrainConfig(arch=arch, epochs=epochs, train_limit=SMALL_TRAIN, seed=7), verbose=0
    )
    path = tmp_path_factory.mktemp(f"small_{arch}") / "model.keras"
    model.save(path)
    # As `python -m train` leaves it: the record says how the model's input was preprocessed.
    record.write(path.parent)
    return path


@pytest.fixture(scope="session")
def small_mlp_path(tmp_path_factory, mnist) -> Path:
    """A reference-architecture MLP trained on 12,000 MNIST images (~96% test accuracy)."""
    return _train_small(tmp_path_factory, mnist, "mlp", epochs=3)


@pytest.fixture(scope="session")
def small_cnn_path(tmp_path_factory, mnist) -> Path:
    """The small CNN trained on 12,000 MNIST images (~93% test accuracy).

    Three epochs, not two: a CNN that has barely learned has many images near a
    decision boundary, where int8 rounding flips the top-1 class and the agreement
    gate measures the fixture's weakness instead of the converter.
    """
    return _train_small(tmp_path_factory, mnist, "cnn", epochs=3)


CALIBRATION_SAMPLES = 200


def _convert_small(tmp_path_factory, mnist, model_path: Path, arch: str) -> Path:
    from convert import convert_model

    out = tmp_path_factory.mktemp(f"artifacts_{arch}") / "artifacts"
    convert_model(model_path, out, dataset=mnist, calibration_samples=CALIBRATION_SAMPLES, seed=0)
    return out


@pytest.fixture(scope="session")
def small_mlp_artifacts(tmp_path_factory, mnist, small_mlp_path) -> Path:
    """Directory with all seven artifacts + manifest.json converted from `small_mlp_path`.

    Calibrated on 200 training images (seed 0) to keep the session fast.
    """
    return _convert_small(tmp_path_factory, mnist, small_mlp_path, "mlp")


@pytest.fixture(scope="session")
def small_cnn_artifacts(tmp_path_factory, mnist, small_cnn_path) -> Path:
    """Directory with all seven artifacts + manifest.json converted from `small_cnn_path`."""
    return _convert_small(tmp_path_factory, mnist, small_cnn_path, "cnn")


@pytest.fixture(scope="session")
def rgb_folder(tmp_path_factory) -> Path:
    """Three classes of coloured shapes, 60 images each, 40x48 (height x width), in DIR/<class>/ (see
    tests/datasets.py)."""
    from tests.datasets import write_shape_folder

    return write_shape_folder(tmp_path_factory.mktemp("data") / "shapes", per_class=60)


@pytest.fixture(scope="session")
def gray_folder(tmp_path_factory) -> Path:
    """The shapes in gray, 28x28, with the given split DIR/train/<class>/ + DIR/test/<class>/."""
    from tests.datasets import write_shape_folder

    return write_shape_folder(tmp_path_factory.mktemp("data") / "gray_shapes", size=(28, 28), color=False,
                              split=True, seed=1)


@pytest.fixture(scope="session")
def feature_csv(tmp_path_factory) -> Path:
    """One CSV of 1,500 rows (300 test: one flipped answer is 0.33 pt): 13 features on very different scales,
    three string labels."""
    from tests.datasets import write_feature_csv

    return write_feature_csv(tmp_path_factory.mktemp("data") / "sensors.csv", rows=1500)


# Few images, few steps: a higher learning rate and a small batch let the separable CNN learn them.
SMALL_DATA_OPTIONS = ("--epochs", "8", "--batch-size", "16", "--learning-rate", "0.01", "--seed", "3")


@pytest.fixture(scope="session")
def rgb_cnn_run(rgb_folder, tmp_path_factory):
    """`python -m train --data <rgb folder> --arch cnn` with one unreadable image skipped: (out dir, process, data)."""
    import shutil

    from tests.test_train import run_train

    data = Path(shutil.copytree(rgb_folder, tmp_path_factory.mktemp("rgb_bad") / "shapes"))
    (data / "triangle" / "007.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    out = tmp_path_factory.mktemp("rgb_cnn") / "run"
    proc = run_train("--data", str(data), "--arch", "cnn", "--skip-bad-images", "--out", str(out), "--verbose", "0",
                     *SMALL_DATA_OPTIONS)
    assert proc.returncode == 0, proc.stderr
    return out, proc, data


@pytest.fixture(scope="session")
def rgb_cnn_artifacts(tmp_path_factory, rgb_cnn_run) -> Path:
    """Every artifact of the RGB separable CNN, converted with default options (its training.json's data)."""
    from convert import convert_model

    out = tmp_path_factory.mktemp("artifacts_rgb") / "artifacts"
    convert_model(rgb_cnn_run[0] / "model.keras", out, calibration_samples=100, seed=0)
    return out


@pytest.fixture(scope="session")
def feature_mlp_run(feature_csv, tmp_path_factory):
    """`python -m train --data sensors.csv`: an MLP with a Normalization layer inside (out dir, process)."""
    from tests.test_train import run_train

    out = tmp_path_factory.mktemp("feature_mlp") / "run"
    proc = run_train("--data", str(feature_csv), "--out", str(out), "--verbose", "0", "--epochs", "10",
                     "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="session")
def feature_mlp_artifacts(tmp_path_factory, feature_mlp_run) -> Path:
    """Every artifact of the feature MLP, converted with default options."""
    from convert import convert_model

    out = tmp_path_factory.mktemp("artifacts_features") / "artifacts"
    convert_model(feature_mlp_run[0] / "model.keras", out, calibration_samples=100, seed=0)
    return out
