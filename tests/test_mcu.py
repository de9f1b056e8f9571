"""``python -m convert mcu``: TensorFlow Lite Micro sources, memory needs and parity.

The exports run the real TensorFlow Lite Micro interpreter (tflite-micro, installed
by the ``mcu`` extra) on the small MNIST models of the session fixtures; the
generated C++ is compiled with the host compiler.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from convert.__main__ import PROG, main
from convert.mcu import csource, ops
from convert.mcu.export import SOURCE_FILES, export_mcu, pixel_table
from convert.mcu.micro import ARENA_ALIGNMENT, ARENA_MARGIN_FRACTION, ARENA_MARGIN_MIN_BYTES
from edge_runtime.cli_support import run_cli
from edge_runtime.errors import ManifestError

TEST_SAMPLES = 500
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mcu" / "main.cc"


def _export(artifacts, mnist, tmp_path_factory, name):
    out = tmp_path_factory.mktemp(f"mcu_{name}") / "mcu"
    record = export_mcu(artifacts, out, dataset=mnist, test_samples=TEST_SAMPLES)
    return artifacts, out, record


@pytest.fixture(scope="module")
def mlp_export(small_mlp_artifacts, mnist, tmp_path_factory):
    """(artifact dir, export dir, mcu.json) of the small MLP's tflite_int8, parity on 500 test images."""
    return _export(small_mlp_artifacts, mnist, tmp_path_factory, "mlp")


@pytest.fixture(scope="module")
def cnn_export(small_cnn_artifacts, mnist, tmp_path_factory):
    """The same for the small CNN (convolutions, pooling, a reshape)."""
    return _export(small_cnn_artifacts, mnist, tmp_path_factory, "cnn")


EXPORTS = ["mlp_export", "cnn_export"]


def _manifest_entry(artifacts, name="tflite_int8"):
    manifest = json.loads((artifacts / "manifest.json").read_text())
    return manifest, next(a for a in manifest["artifacts"] if a["name"] == name)


def _litert_ops(path):
    """The operators in LiteRT's own view of the model, each once, in order of first use."""
    from ai_edge_litert.interpreter import Interpreter

    names = [d["op_name"] for d in Interpreter(model_path=str(path))._get_ops_details()]
    return list(dict.fromkeys(names))


# --- what the export writes -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fixture", EXPORTS)
def test_export_writes_sources_and_report_naming_the_models_operators(request, fixture):
    artifacts, out, record = request.getfixturevalue(fixture)
    assert sorted(p.name for p in out.iterdir()) == sorted([*SOURCE_FILES, "mcu.json", "mcu.md"])
    assert json.loads((out / "mcu.json").read_text()) == record
    artifact = artifacts / "tflite_int8.tflite"
    assert record["flash"]["model_bytes"] == artifact.stat().st_size
    assert record["ops"] == _litert_ops(artifact)
    assert record["resolver"]["calls"] == [ops.MICRO_OPS[op] for op in record["ops"]]
    assert record["resolver"]["type"] == f"tflite::MicroMutableOpResolver<{len(record['ops'])}>"
    manifest, _ = _manifest_entry(artifacts)
    assert record["model"]["array"] == f"g_{csource.c_identifier(manifest['source_model']['name'])}_model_data"
    ops_header = (out / "model_ops.h").read_text()
    assert "MicroMutableOpResolver<kNumOps>" in ops_header and f"kNumOps = {len(record['ops'])};" in ops_header
    assert "AllOpsResolver" not in ops_header
    for op in record["ops"]:
        assert f"resolver.{ops.MICRO_OPS[op]}()" in ops_header
    data_header = (out / "model_data.h").read_text()
    assert record["artifact"]["sha256"] in data_header and str(artifact.stat().st_size) in data_header


@pytest.mark.slow
@pytest.mark.parametrize("fixture", EXPORTS)
def test_io_constants_are_the_artifacts_quantisation_and_labels(request, fixture):
    artifacts, out, record = request.getfixturevalue(fixture)
    manifest, entry = _manifest_entry(artifacts)
    for side, key in (("input", "inputs"), ("output", "outputs")):
        expected = entry[key][0]
        assert record[side]["dtype"] == "int8"
        assert record[side]["scale"] == pytest.approx(expected["quantization"]["scale"], rel=1e-7)
        assert record[side]["zero_point"] == expected["quantization"]["zero_point"]
        # The micro interpreter sees a batch of one where the manifest records a dynamic batch.
        assert record[side]["shape"] == [1, *expected["shape"][1:]]
    assert record["class_labels"] == manifest["class_labels"]
    assert ({k: v for k, v in record["preprocessing"].items() if k in manifest["preprocessing"]}
            == manifest["preprocessing"])
    assert record["preprocessing"]["input_shape"] == manifest["input"]["shape"]


@pytest.mark.slow
@pytest.mark.parametrize("fixture", EXPORTS)
def test_recommended_arena_is_the_smallest_that_runs_plus_the_stated_margin(request, fixture):
    from tflite_micro import runtime

    artifacts, out, record = request.getfixturevalue(fixture)
    data = (artifacts / "tflite_int8.tflite").read_bytes()
    arena = record["arena"]
    measured, recommended = arena["measured_bytes"], arena["recommended_bytes"]
    sample = np.zeros(record["input"]["shape"], np.int8)

    def runs(size):
        try:
            interpreter = runtime.Interpreter.from_bytes(data, arena_size=size)
            interpreter.set_input(sample, 0)
            interpreter.invoke()
        except RuntimeError:
            return False
        return True

    assert runs(measured) and not runs(measured - 1)
    assert recommended % ARENA_ALIGNMENT == 0
    margin = max(ARENA_MARGIN_MIN_BYTES, measured * ARENA_MARGIN_FRACTION)
    assert measured + margin <= recommended < measured + margin + ARENA_ALIGNMENT
    assert arena["margin_bytes"] == recommended - measured
    assert f"kTensorArenaBytes = {recommended};" in (out / "model_io.h").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("fixture", EXPORTS)
def test_micro_interpreter_agrees_with_litert_on_test_images(request, fixture, mnist):
    import edge_runtime

    artifacts, out, record = request.getfixturevalue(fixture)
    parity = record["parity"]
    assert parity["images"] == TEST_SAMPLES
    assert parity["litert"]["agreement"] >= 0.99
    # TensorFlow Lite Micro's reference kernels follow LiteRT's built-in integer
    # arithmetic: at most one step of rounding apart; XNNPACK rounds differently.
    assert parity["litert_builtin"]["max_step_difference"] <= 1
    assert parity["litert_builtin"]["agreement"] >= 0.998
    # Accuracy against the labels, cross-checked with the runtime's own classification.
    model = edge_runtime.load(artifacts / "tflite_int8.tflite", backend="litert")
    images, labels = mnist.x_test[:TEST_SAMPLES], mnist.y_test[:TEST_SAMPLES]
    runtime_accuracy = float(np.mean(model.predict(images).argmax(axis=1) == labels))
    assert parity["accuracy_litert"] == pytest.approx(runtime_accuracy)
    assert parity["accuracy_micro"] > 0.8  # trained models, far above the 10% of chance
    assert abs(parity["accuracy_micro"] - parity["accuracy_litert"]) <= 0.005
    assert record["timing"]["inferences"] == TEST_SAMPLES and record["timing"]["median_ms"] > 0
    report = (out / "mcu.md").read_text()
    assert f"{parity['litert']['agreement']:.2%}" in report and f"{parity['accuracy_micro']:.2%}" in report
    assert f"{record['arena']['recommended_bytes']:,} bytes" in report


# --- the generated C++ on the host compiler --------------------------------------------

_STUB_RESOLVER = """\
// Stand-in for TensorFlow Lite Micro's resolver (its sources are not available here):
// it records which Add* methods model_ops.h calls and fails past tOpCount, like the real one.
#pragma once
typedef enum {{ kTfLiteOk = 0, kTfLiteError = 1 }} TfLiteStatus;
#define TF_LITE_ENSURE_STATUS(a) do {{ const TfLiteStatus s_ = (a); if (s_ != kTfLiteOk) return s_; }} while (0)
namespace tflite {{
template <unsigned int tOpCount>
class MicroMutableOpResolver {{
 public:
  const char* names[tOpCount];
  unsigned int count = 0;
{methods}
 private:
  TfLiteStatus Add(const char* name) {{
    if (count >= tOpCount) return kTfLiteError;
    names[count++] = name;
    return kTfLiteOk;
  }}
}};
}}  // namespace tflite
"""

_PROGRAM = """\
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "model_io.h"
#include "model_ops.h"
namespace m = {namespace};
int main(int argc, char** argv) {{
  if (argc != 2) return 2;
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr || std::fwrite({array}, 1, {length}, f) != {length}) return 3;
  std::fclose(f);
  std::printf("length %u\\n", {length});
  std::printf("aligned16 %d\\n", static_cast<int>(reinterpret_cast<std::uintptr_t>({array}) % 16 == 0));
  std::printf("arena %u\\n", m::kTensorArenaBytes);
  std::printf("input_scale %.9g\\ninput_zero_point %d\\n", static_cast<double>(m::kInputScale), m::kInputZeroPoint);
  std::printf("output_scale %.9g\\noutput_zero_point %d\\n", static_cast<double>(m::kOutputScale), m::kOutputZeroPoint);
  std::printf("input_shape");
  for (int d : m::kInputShape) std::printf(" %d", d);
  std::printf("\\ninput_elements %d\\noutput_shape", m::kInputElements);
  for (int d : m::kOutputShape) std::printf(" %d", d);
  std::printf("\\n");
  for (const char* label : m::kClassLabels) std::printf("label %s\\n", label);
  std::printf("pixel_table");
  for (const auto& row : m::kInputFromPixel) for (int v : row) std::printf(" %d", v);
  std::printf("\\npre_scale %.9g\\n", static_cast<double>(m::preprocessing::kScale));
  m::OpResolver resolver;
  std::printf("register %d\\n", static_cast<int>(m::RegisterOps(resolver)));
  for (unsigned int i = 0; i < resolver.count; ++i) std::printf("op %s\\n", resolver.names[i]);
  return 0;
}}
"""


def _compile(tmp_path, sources, include_dirs):
    exe = tmp_path / "program"
    command = ["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o", str(exe), *map(str, sources)]
    command += [f"-I{d}" for d in include_dirs]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return exe


def _stub_dir(tmp_path):
    stub = tmp_path / "stub"
    header = stub / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    header.parent.mkdir(parents=True)
    methods = "\n".join(f'  TfLiteStatus {m}() {{ return Add("{m}"); }}' for m in ops.MICRO_OPS.values())
    header.write_text(_STUB_RESOLVER.format(methods=methods))
    return stub


@pytest.mark.slow
@pytest.mark.parametrize("fixture", EXPORTS)
def test_generated_sources_compile_and_carry_the_artifact_bytes_and_io_constants(request, fixture, tmp_path):
    import edge_runtime

    artifacts, out, record = request.getfixturevalue(fixture)
    names = record["model"]
    main_cc = tmp_path / "main.cc"
    main_cc.write_text(_PROGRAM.format(namespace=names["namespace"], array=names["array"], length=names["length"]))
    exe = _compile(tmp_path, [main_cc, out / "model_data.cc"], [out, _stub_dir(tmp_path)])
    dumped = tmp_path / "dumped.tflite"
    result = subprocess.run([str(exe), str(dumped)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    values = dict(line.split(" ", 1) for line in lines if not line.startswith(("label ", "op ")))

    artifact = (artifacts / "tflite_int8.tflite").read_bytes()
    assert dumped.read_bytes() == artifact
    assert int(values["length"]) == len(artifact)
    assert values["aligned16"] == "1"
    assert int(values["arena"]) == record["arena"]["recommended_bytes"]
    _, entry = _manifest_entry(artifacts)
    for side, key in (("input", "inputs"), ("output", "outputs")):
        quant = entry[key][0]["quantization"]
        assert np.float32(values[f"{side}_scale"]) == np.float32(quant["scale"])
        assert int(values[f"{side}_zero_point"]) == quant["zero_point"]
        assert [int(d) for d in values[f"{side}_shape"].split()] == record[side]["shape"]
    assert [line[len("label ") :] for line in lines if line.startswith("label ")] == record["class_labels"]
    assert np.float32(values["pre_scale"]) == np.float32(record["preprocessing"]["scale"])
    # The pixel table is what the runtime feeds the interpreter for each pixel value.
    model = edge_runtime.load(artifacts / "tflite_int8.tflite", backend="numpy")
    image_shape = tuple(record["preprocessing"]["input_shape"][:2])
    expected = [int(model.prepare(np.full(image_shape, v, np.uint8)).flat[0]) for v in range(256)]
    assert [int(v) for v in values["pixel_table"].split()] == expected
    assert values["register"] == "0"
    assert [line[len("op ") :] for line in lines if line.startswith("op ")] == record["resolver"]["calls"]


def test_io_header_for_an_rgb_input_with_per_channel_mean_and_std_compiles_with_every_field(tmp_path):
    names = csource.CNames.for_model("Flowers-CNN v2")
    preprocessing = {
        "input": {"kind": "image", "shape": [32, 32, 3], "colour_mode": "rgb"},
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "scale": 1 / 255,
        "note": None,
    }
    table = np.stack([np.arange(256) - 128, np.arange(256) // 2 - 128, np.full(256, 7)]).astype(np.int8)
    header = csource.model_io_header(
        names,
        ["test"],
        input_tensor={"shape": [1, 32, 32, 3], "dtype": "int8", "scale": 0.02, "zero_point": -5},
        output_tensor={"shape": [1, 3], "dtype": "int8", "scale": 1 / 256, "zero_point": -128},
        class_labels=["daisy", 'say "rose"', "tulipán"],
        output_kind="logits",
        arena={"measured_bytes": 1000, "recommended_bytes": 2032, "margin": "test"},
        pixel_table=table,
        preprocessing=preprocessing,
    )
    (tmp_path / "model_io.h").write_text(header)
    program = tmp_path / "main.cc"
    program.write_text(
        '#include <cstdio>\n#include "model_io.h"\nnamespace m = ' + names.namespace + ";\n"
        "int main() {\n"
        "  for (float v : m::preprocessing::kMean) std::printf(\"mean %.9g\\n\", static_cast<double>(v));\n"
        "  for (float v : m::preprocessing::kStd) std::printf(\"std %.9g\\n\", static_cast<double>(v));\n"
        "  std::printf(\"colour %s\\n\", m::preprocessing::kInputColourMode);\n"
        "  std::printf(\"shape %d %d %d\\n\", m::preprocessing::kInputShape[0], m::preprocessing::kInputShape[1], "
        "m::preprocessing::kInputShape[2]);\n"
        "  for (const char* l : m::kClassLabels) std::printf(\"label %s\\n\", l);\n"
        "  std::printf(\"pixel %d %d %d\\n\", m::kInputFromPixel[0][200], m::kInputFromPixel[1][200], "
        "m::kInputFromPixel[2][200]);\n"
        "  std::printf(\"logits %d channels %d\\n\", static_cast<int>(m::kOutputIsLogits), m::kPixelChannels);\n"
        "}\n"
    )
    exe = _compile(tmp_path, [program], [tmp_path])
    output = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert output == [
        *(f"mean {np.float32(v):.9g}" for v in preprocessing["mean"]),
        *(f"std {np.float32(v):.9g}" for v in preprocessing["std"]),
        "colour rgb",
        "shape 32 32 3",
        "label daisy",
        'label say "rose"',
        "label tulipán",
        "pixel 72 -28 7",
        "logits 1 channels 3",
    ]
    assert names.namespace == "flowers_cnn_v2_model"
    assert "// note: null" in header


def test_example_uses_only_symbols_the_export_generates(mlp_export):
    _, out, record = mlp_export
    example = EXAMPLE.read_text()
    generated = "".join((out / name).read_text() for name in ("model_io.h", "model_ops.h"))
    used = set(re.findall(r"model::(\w+)", example))
    assert used >= {"kTensorArenaBytes", "RegisterOps", "OpResolver", "kInputFromPixel", "kClassLabels"}
    for symbol in used:
        assert re.search(rf"\b{symbol}\b", generated), symbol
    # The example is written for the reference model's names, which the small MLP shares.
    assert f"namespace model = {record['model']['namespace']};" in example
    assert f"#define MODEL_DATA {record['model']['array']}" in example


# --- the pixel table ---------------------------------------------------------------


class _PerChannelModel:
    """Stand-in for Model.prepare: per-channel affine preprocessing, then int8 quantisation."""

    def __init__(self, offsets, uniform=True):
        self.offsets = np.asarray(offsets)
        self.uniform = uniform

    def prepare(self, x):
        values = x.astype(np.int64) // 2 + self.offsets - 128
        if not self.uniform:
            values[:, 0, 0] += 1  # one pixel of channel 0 treated differently from the others
        return np.clip(values, -128, 127).astype(np.int8).reshape(len(x), -1)


def test_pixel_table_holds_one_mapping_per_channel_from_the_runtime():
    table = pixel_table(_PerChannelModel([0, 10, 300]), (4, 5, 3), 3)
    assert table.shape == (3, 256) and table.dtype == np.int8
    levels = np.arange(256)
    assert table[0].tolist() == (levels // 2 - 128).tolist()
    assert table[1].tolist() == (levels // 2 - 118).tolist()
    assert table[2].tolist() == [127] * 256


def test_pixel_table_refuses_preprocessing_that_differs_within_a_channel():
    with pytest.raises(ManifestError, match="cannot be written as a table"):
        pixel_table(_PerChannelModel([0, 10, 20], uniform=False), (4, 5, 3), 3)


# --- the command line: success and refusals ------------------------------------------


def _run(argv, capsys):
    code = run_cli(PROG, main, ["mcu", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_refused(code, err, expected, parent):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ") and expected in lines[0], lines[0]
    assert not any(p.name == "out" or p.name.startswith(".out") for p in parent.iterdir())


@pytest.mark.slow
def test_cli_writes_the_export_and_prints_its_numbers(small_mlp_artifacts, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = _run([small_mlp_artifacts, "--out", out, "--test-samples", 100, "--flash-bytes", 10**7], capsys)
    assert code == 0, err
    record = json.loads((out / "mcu.json").read_text())
    assert record["flash"]["limit_bytes"] == 10**7 and record["parity"]["images"] == 100
    assert f"tensor arena {record['arena']['recommended_bytes']} bytes" in stdout
    assert f"agreement {record['parity']['litert']['agreement']:.2%}" in stdout
    assert "wrote model_data.h, model_data.cc, model_ops.h, model_io.h, mcu.json, mcu.md" in stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("artifact", "expected"),
    [
        ("tflite_float32", "'tflite_float32' is a tflite model with none quantisation"),
        ("tflite_float16", "'tflite_float16' is a tflite model with float16_weights quantisation"),
        ("tflite_dynamic_int8", "'tflite_dynamic_int8' is a tflite model with dynamic_range quantisation"),
        ("onnx_int8_static", "'onnx_int8_static' is a onnx model with static_qdq quantisation"),
    ],
)
def test_float_dynamic_range_and_onnx_artifacts_are_refused_pointing_at_full_int8(
    small_mlp_artifacts, tmp_path, capsys, artifact, expected
):
    code, _, err = _run([small_mlp_artifacts, "--artifact", artifact, "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, expected, tmp_path)
    assert "microcontrollers need a full-integer int8 model: use --artifact tflite_int8" in err


@pytest.mark.slow
def test_float_model_whose_manifest_claims_full_integer_is_refused_from_its_tensors(
    small_mlp_artifacts, tmp_path, capsys
):
    artifacts = shutil.copytree(small_mlp_artifacts, tmp_path / "artifacts")
    manifest = json.loads((artifacts / "manifest.json").read_text())
    entry = next(a for a in manifest["artifacts"] if a["name"] == "tflite_dynamic_int8")
    entry["quantization"] = "full_integer"
    (artifacts / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run([artifacts, "--artifact", "tflite_dynamic_int8", "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "'tflite_dynamic_int8' computes in floating point", tmp_path)
    assert "although its manifest says full_integer" in err


@pytest.mark.slow
def test_operator_without_a_micro_kernel_is_refused_by_name(small_cnn_artifacts, tmp_path, capsys, monkeypatch):
    # A stand-in for a TensorFlow Lite Micro that lacks two of the CNN's kernels.
    for op in ("MAX_POOL_2D", "PACK"):
        monkeypatch.delitem(ops.MICRO_OPS, op)
    code, _, err = _run([small_cnn_artifacts, "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "uses MAX_POOL_2D, PACK, which TensorFlow Lite Micro has no kernel for", tmp_path)


@pytest.mark.slow
def test_model_larger_than_flash_bytes_is_refused_with_the_excess(small_mlp_artifacts, tmp_path, capsys):
    size = (small_mlp_artifacts / "tflite_int8.tflite").stat().st_size
    code, _, err = _run([small_mlp_artifacts, "--flash-bytes", size - 1, "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, f"is {size} bytes, more than --flash-bytes {size - 1} (over by 1 bytes)", tmp_path)


@pytest.mark.slow
def test_unknown_artifact_is_refused_listing_the_names(small_mlp_artifacts, tmp_path, capsys):
    code, _, err = _run([small_mlp_artifacts, "--artifact", "tflite_int4", "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "--artifact 'tflite_int4' is not in", tmp_path)
    assert "choose one of tflite_float32, tflite_float16, tflite_dynamic_int8, tflite_int8" in err


@pytest.mark.slow
def test_more_test_samples_than_test_images_is_refused(small_mlp_artifacts, tmp_path, capsys):
    code, _, err = _run([small_mlp_artifacts, "--test-samples", 10001, "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "--test-samples 10001 exceeds the 10000 test images", tmp_path)


def test_zero_flash_bytes_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mcu", str(tmp_path), "--flash-bytes", "0", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"{PROG} mcu: error: argument --flash-bytes: must be at least 1, got 0 (see --help)\n"


def test_existing_output_is_refused_without_force_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    code, _, err = _run([tmp_path / "no-such-dir", "--out", out], capsys)
    assert code == 2 and "already exists; choose another --out or pass --force" in err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


def test_missing_tflite_micro_is_a_one_line_error_naming_the_extra(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tflite_micro", None)  # stand-in for a machine without the wheel
    code, _, err = _run([tmp_path, "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "pip install 'keras2edge[mcu]'", tmp_path)


def test_directory_without_manifest_is_refused(tmp_path, capsys):
    code, _, err = _run([tmp_path / "nothing", "--out", tmp_path / "out"], capsys)
    _assert_refused(code, err, "no manifest.json", tmp_path)
