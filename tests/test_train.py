"""Training: the reference model, reproducibility, and the `python -m train` command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_data import write_idx_dir

REPO = Path(__file__).resolve().parents[1]


def run_train(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "train", *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=600
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, fragment: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m train: error:"), proc.stderr
    assert fragment in lines[0]


def test_reference_mlp_is_784_512_256_128_10_softmax():
    from train.models import build_model

    model = build_model("mlp")
    assert tuple(model.inputs[0].shape) == (None, 784)
    assert [layer.units for layer in model.layers] == [512, 256, 128, 10]
    assert [layer.activation.__name__ for layer in model.layers] == ["relu", "relu", "relu", "softmax"]


def test_same_seed_gives_identical_weights_and_accuracy(mnist):
    from train.training import TrainConfig, train_model

    config = TrainConfig(epochs=1, train_limit=2000, seed=123)
    model_a, record_a = train_model(mnist, config, verbose=0)
    model_b, record_b = train_model(mnist, config, verbose=0)
    assert record_a.test_accuracy == record_b.test_accuracy
    for wa, wb in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    model_c, _ = train_model(mnist, TrainConfig(epochs=1, train_limit=2000, seed=124), verbose=0)
    assert not np.array_equal(model_a.get_weights()[0], model_c.get_weights()[0])


def test_cli_writes_model_and_training_record(tmp_path):
    out = tmp_path / "run"
    proc = run_train("--out", str(out), "--epochs", "1", "--train-limit", "3000", "--verbose", "0")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["model.keras", "training.json"]
    record = json.loads((out / "training.json").read_text())
    assert 0.5 < record["test_accuracy"] <= 1.0 and record["test_loss"] > 0
    assert record["dataset"]["sha256"]["t10k-images-idx3-ubyte.gz"].startswith("1a1a05eab793")
    assert record["seed"] == 42 and record["versions"]["keras"].startswith("3.")
    assert len(record["history"]["loss"]) == 1 and record["wall_time_seconds"] > 0
    assert "test accuracy" in proc.stdout
    # Schema 2: MNIST digits, pixels / 255 flattened to 784 -- bit for bit what the reference model always got.
    from edge_runtime.preprocessing import apply_preprocessing
    from edge_runtime.records.manifest import MNIST_INPUT, Preprocessing
    from edge_runtime.records.training import TrainingRecord
    from train.data import load_dataset

    typed = TrainingRecord.read(out)
    assert typed.input == MNIST_INPUT and typed.class_names == tuple("0123456789")
    assert typed.preprocessing == Preprocessing.for_mode("unit", "flat", (784,))
    assert typed.dataset["split"] == {"kind": "given"}
    pixels = load_dataset().x_test[:256]
    expected = (pixels.astype(np.float32) * np.float32(1 / 255)).reshape(256, 784)
    assert apply_preprocessing(pixels, typed.preprocessing).tobytes() == expected.tobytes()


def test_existing_output_is_not_overwritten_without_force(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("precious")
    proc = run_train("--out", str(out), "--epochs", "1")
    assert_one_line_error(proc, "--force")
    assert (out / "model.keras").read_text() == "precious"


def test_missing_data_path_fails_cleanly_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    proc = run_train("--data", str(tmp_path / "missing"), "--out", str(out))
    assert_one_line_error(proc, "no such file or directory")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "damage, fragment",
    [
        ("truncate_gzip", "corrupt or truncated gzip"),
        ("wrong_magic", "bad magic number"),
        ("count_mismatch", "images but"),
    ],
)
def test_damaged_data_directory_fails_cleanly_and_writes_nothing(tmp_path, damage, fragment):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 10, dtype=np.uint8)
    data = write_idx_dir(tmp_path / "data", x, y, x, y if damage != "count_mismatch" else y[:7])
    if damage == "truncate_gzip":
        f = data / "train-images-idx3-ubyte.gz"
        f.write_bytes(f.read_bytes()[:50])
    elif damage == "wrong_magic":
        f = data / "t10k-labels-idx1-ubyte.gz"
        import gzip

        f.write_bytes(gzip.compress(b"\x01\x02\x08\x01" + gzip.decompress(f.read_bytes())[4:]))
    proc = run_train("--data", str(data), "--out", str(tmp_path / "run"))
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "run").exists()


def test_invalid_hyper_parameter_is_a_one_line_error(tmp_path):
    proc = run_train("--out", str(tmp_path / "run"), "--epochs", "0")
    assert_one_line_error(proc, "--epochs must be >= 1")


def test_usage_error_is_one_line_without_the_usage_block(tmp_path):
    proc = run_train("--out", str(tmp_path / "run"), "--epochs", "many")
    assert_one_line_error(proc, "invalid int value: 'many'")
