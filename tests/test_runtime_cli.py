"""python -m edge_runtime predict / info: output formats and one-line errors."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime.__main__ import PROG, main
from edge_runtime.cli_support import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _run(argv, capfd) -> tuple[int, str, str]:
    code = run_cli(PROG, main, [str(a) for a in argv])
    out, err = capfd.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ") and fragment in lines[0]
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def model_path(small_mlp_artifacts) -> Path:
    return small_mlp_artifacts / "tflite_int8.tflite"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mnist) -> dict[str, Path]:
    from PIL import Image

    out = tmp_path_factory.mktemp("cli_inputs")
    images = mnist.x_test[:6]
    paths = {}
    for i in range(3):
        paths[f"png{i}"] = out / f"digit{i}.png"
        Image.fromarray(images[i]).save(paths[f"png{i}"])
    paths["npy_batch"] = out / "batch.npy"
    np.save(paths["npy_batch"], images[:4])
    paths["npy_one"] = out / "one.npy"
    np.save(paths["npy_one"], images[5])
    header = struct.pack(">BBBBIII", 0, 0, 8, 3, 6, 28, 28)
    paths["idx"] = out / "t10k-images-idx3-ubyte.gz"
    paths["idx"].write_bytes(gzip.compress(header + images.tobytes()))
    paths["text"] = out / "notes.txt"
    paths["text"].write_text("not pixels\n")
    paths["bad_png"] = out / "broken.png"
    paths["bad_png"].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    paths["bad_npy_shape"] = out / "wrong.npy"
    np.save(paths["bad_npy_shape"], np.zeros((3, 27, 27), np.uint8))
    paths["nan_npy"] = out / "nan.npy"
    np.save(paths["nan_npy"], np.full((2, 784), np.nan, np.float32))
    paths["empty_npy"] = out / "empty.npy"
    np.save(paths["empty_npy"], np.zeros((0, 28, 28), np.uint8))
    paths["int_npy"] = out / "ints.npy"
    np.save(paths["int_npy"], np.zeros((2, 28, 28), np.int64))
    return paths


def test_predict_prints_one_line_per_image_with_label_and_confidence(model_path, inputs, mnist, capfd):
    files = [inputs["png0"], inputs["png1"], inputs["png2"]]
    code, out, err = _run(["predict", model_path, *files], capfd)
    assert code == 0 and err == ""
    model = edge_runtime.load(model_path)
    probs = model.predict(mnist.x_test[:3])
    lines = out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in files]
    assert [line.split("\t")[1] for line in lines] == model.classify(mnist.x_test[:3])
    assert [float(line.split("\t")[2]) for line in lines] == pytest.approx(probs.max(axis=1), abs=1e-4)


def test_predict_expands_npy_batches_and_idx_files(model_path, inputs, mnist, capfd):
    code, out, _ = _run(["predict", model_path, inputs["npy_batch"], inputs["npy_one"], inputs["idx"]], capfd)
    assert code == 0
    names = [line.split("\t")[0] for line in out.strip().splitlines()]
    assert names == ([f"{inputs['npy_batch']}[{i}]" for i in range(4)] + [str(inputs["npy_one"])]
                     + [f"{inputs['idx']}[{i}]" for i in range(6)])
    labels = [line.split("\t")[1] for line in out.strip().splitlines()]
    model = edge_runtime.load(model_path)
    assert labels[-6:] == model.classify(mnist.x_test[:6])


def test_predict_json_with_top_k_lists_k_labels_by_decreasing_probability(model_path, inputs, capfd):
    code, out, _ = _run(["predict", model_path, inputs["npy_batch"], "--json", "--top-k", "3", "--backend", "numpy"],
                        capfd)
    assert code == 0
    doc = json.loads(out)
    assert doc["backend"] == "numpy" and len(doc["predictions"]) == 4
    for rec in doc["predictions"]:
        probs = [t["probability"] for t in rec["top_k"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert rec["label"] == rec["top_k"][0]["label"] and rec["confidence"] == probs[0]


def test_predict_top_k_text_format(model_path, inputs, capfd):
    code, out, _ = _run(["predict", model_path, inputs["png0"], "--top-k", "2", "--threads", "1"], capfd)
    assert code == 0
    name, ranked = out.strip().split("\t")
    assert name == str(inputs["png0"]) and len(ranked.split(" ")) == 2 and all(":" in r for r in ranked.split(" "))


def test_info_reports_backend_dtypes_quantisation_size_sha256_and_manifest(model_path, capfd):
    code, out, _ = _run(["info", model_path], capfd)
    assert code == 0
    info = edge_runtime.load(model_path).info()
    for fragment in ("backend:      litert", info["sha256"], f"{info['bytes']} bytes", "int8", "zero_point=",
                     "sha256 verified", "full_integer"):
        assert fragment in out
    code, out, _ = _run(["info", model_path, "--json", "--backend", "numpy"], capfd)
    doc = json.loads(out)
    assert code == 0 and doc["backend"] == "numpy" and doc["sha256"] == info["sha256"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["predict", "{model}", "{missing}"], "no such file"),
        (["predict", "{missing_model}", "{png0}"], "no such file"),
        (["predict", "{model}", "{text}"], "not an image"),
        (["predict", "{model}", "{bad_png}"], "cannot read image"),
        (["predict", "{model}", "{bad_npy_shape}"], "does not fit the model"),
        (["predict", "{model}", "{nan_npy}"], "NaN or inf"),
        (["predict", "{model}", "{empty_npy}"], "empty batch"),
        (["predict", "{model}", "{int_npy}"], "dtype int64"),
        (["predict", "{model}", "{png0}", "--backend", "tpu"], "unknown backend 'tpu'"),
        (["predict", "{model}", "{png0}", "--top-k", "11"], "more than the model's 10 classes"),
        (["info", "{png0}"], "not a TFLite or ONNX model"),
        (["info", "{truncated}"], "corrupt or truncated TFLite flatbuffer"),
        (["info", "{truncated_onnx}"], "cannot load this ONNX model"),
        (["info", "{tampered}"], "does not match manifest.json"),
    ],
)
def test_cli_errors_are_one_line_with_exit_status_2(model_path, inputs, tmp_path, capfd, argv, fragment):
    truncated = tmp_path / "cut.tflite"
    truncated.write_bytes(model_path.read_bytes()[:5000])
    truncated_onnx = tmp_path / "cut.onnx"
    truncated_onnx.write_bytes((model_path.parent / "onnx_float32.onnx").read_bytes()[:5000])
    tampered_dir = tmp_path / "tampered"
    tampered_dir.mkdir()
    shutil.copy(model_path.parent / "manifest.json", tampered_dir)
    data = bytearray(model_path.read_bytes())
    data[-64] ^= 0xFF
    (tampered_dir / model_path.name).write_bytes(bytes(data))
    names = {
        **{k: str(v) for k, v in inputs.items()},
        "model": str(model_path),
        "missing": str(tmp_path / "nope.png"),
        "missing_model": str(tmp_path / "nope.tflite"),
        "truncated": str(truncated),
        "truncated_onnx": str(truncated_onnx),
        "tampered": str(tampered_dir / model_path.name),
    }
    code, out, err = _run([a.format(**names) for a in argv], capfd)
    assert out == ""
    _assert_one_line_error(code, err, fragment)


def test_argument_errors_exit_non_zero_without_traceback(model_path, capfd):
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(model_path)])  # no INPUT
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(model_path), "x.png", "--threads", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["selftest", str(model_path), "--threads", "-1"])
    assert exc.value.code == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == (
        "python -m edge_runtime selftest: error: argument --threads: must be at least 1, got -1 (see --help)"
    )


def _subprocess_cli(args: list[str], blocked: set[str] = frozenset()) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import importlib.abc, runpy, sys
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {set(blocked)!r}:
                    raise ImportError(f"No module named {{name!r}} (blocked by test)", name=name)
        sys.meta_path.insert(0, Blocker())
        sys.argv = ["edge_runtime", *{args!r}]
        runpy.run_module("edge_runtime", run_name="__main__", alter_sys=True)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_as_a_process_predicts_and_reports_missing_backend_in_one_line(model_path, inputs):
    ok = _subprocess_cli(["predict", str(model_path), str(inputs["png0"])])
    assert ok.returncode == 0 and ok.stdout.count("\t") == 2 and ok.stderr == ""
    onnx = str(model_path.parent / "onnx_float32.onnx")
    missing = _subprocess_cli(["predict", onnx, str(inputs["png0"]), "--backend", "onnxruntime"],
                              blocked={"onnxruntime"})
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"{PROG}: error: backend 'onnxruntime' is not installed (no module onnxruntime); pip install onnxruntime"
    )


def test_cli_without_pillow_says_how_to_install_it(model_path, inputs):
    result = _subprocess_cli(["predict", str(model_path), str(inputs["png0"])], blocked={"PIL"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{PROG}: error: reading image files needs Pillow: pip install 'keras2edge[image]' (or pip install pillow)"
    ]
    npy = _subprocess_cli(["predict", str(model_path), str(inputs["npy_one"])], blocked={"PIL"})
    assert npy.returncode == 0  # arrays need no Pillow
