"""A damaged .tflite is refused in Python before any native interpreter reads it.

Native interpreters follow flatbuffer offsets unchecked; tflite-runtime 2.14 on
32-bit ARM dies with SIGSEGV on a truncated file. These tests damage real
artifacts one field at a time (positions found with the generated ``tflite``
accessors, independently of the verifier) and check each is caught.
"""

from __future__ import annotations

import struct
from pathlib import Path

import flatbuffers
import pytest
import tflite

import edge_runtime
from edge_runtime import ModelLoadError
from edge_runtime.backends import tflite as tflite_backend
from edge_runtime.backends.tflite_format import verify_tflite

ARTIFACTS = ["tflite_float32", "tflite_float16", "tflite_dynamic_int8", "tflite_int8"]


@pytest.fixture(scope="module")
def int8_bytes(small_mlp_artifacts) -> bytes:
    return (small_mlp_artifacts / "tflite_int8.tflite").read_bytes()


def _field_pos(obj, slot: int) -> int:
    """Absolute position of field ``slot`` (vtable byte offset, as in the generated code) of ``obj``."""
    offset = obj._tab.Offset(slot)
    assert offset, f"field {slot} is absent"
    return obj._tab.Pos + offset


def _patched(data: bytes, pos: int, fmt: str, value: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, pos, value)
    return bytes(buf)


def _model(data: bytes):
    return tflite.Model.GetRootAs(data, 0)


@pytest.mark.parametrize("artifact", ARTIFACTS)
def test_every_converted_tflite_artifact_passes_the_structure_check(small_mlp_artifacts, artifact):
    data = (small_mlp_artifacts / f"{artifact}.tflite").read_bytes()
    verify_tflite(data)  # raises on any violation
    edge_runtime.load(small_mlp_artifacts / f"{artifact}.tflite", backend="numpy")


@pytest.mark.parametrize("fraction", [0.01, 0.25, 0.5, 0.75, 0.99])
def test_truncated_tflite_never_reaches_the_native_interpreter(int8_bytes, tmp_path, monkeypatch, fraction):
    """The armhf SIGSEGV case: the interpreter must not even be constructed."""
    constructed = []

    class Recorder:
        def __init__(self, **kwargs):
            constructed.append(kwargs)
            raise RuntimeError("stand-in interpreter")

    monkeypatch.setattr(tflite_backend, "interpreter_class", lambda name: Recorder)
    path = tmp_path / "cut.tflite"
    path.write_bytes(int8_bytes[: int(len(int8_bytes) * fraction)])
    with pytest.raises(ModelLoadError, match="corrupt or truncated TFLite flatbuffer"):
        edge_runtime.load(path, backend="litert")
    assert constructed == []


def _damage(data: bytes, kind: str) -> bytes:
    model = _model(data)
    graph = model.Subgraphs(0)
    if kind == "root_offset_past_end":
        return _patched(data, 0, "<I", len(data) + 64)
    if kind == "vtable_outside_file":
        return _patched(data, graph._tab.Pos, "<i", -len(data))
    if kind == "tensor_name_runs_past_end":
        name = graph.Tensors(0)
        start = name._tab.Pos + name._tab.Offset(10)
        start += struct.unpack_from("<I", data, start)[0]
        return _patched(data, start, "<I", len(data))
    if kind == "tensor_name_not_utf8":
        name = graph.Tensors(0)
        start = name._tab.Pos + name._tab.Offset(10)
        start += struct.unpack_from("<I", data, start)[0]
        return _patched(data, start + 4, "<B", 0xFF)
    if kind == "no_subgraph":
        vector = _field_pos(model, 8)
        vector += struct.unpack_from("<I", data, vector)[0]
        return _patched(data, vector, "<I", 0)
    if kind == "tensor_buffer_index":
        return _patched(data, _field_pos(graph.Tensors(0), 8), "<I", model.BuffersLength())
    if kind == "operator_code_index":
        # Operator 0 may store the default code 0 by omitting the field; take one that stores it.
        op = next(op for op in map(graph.Operators, range(graph.OperatorsLength())) if op._tab.Offset(4))
        return _patched(data, _field_pos(op, 4), "<I", model.OperatorCodesLength())
    if kind == "operator_input_tensor":
        inputs = _field_pos(graph.Operators(0), 6)
        inputs += struct.unpack_from("<I", data, inputs)[0]
        return _patched(data, inputs + 4, "<i", graph.TensorsLength())
    if kind == "subgraph_output_tensor":
        outputs = _field_pos(graph, 8)
        outputs += struct.unpack_from("<I", data, outputs)[0]
        return _patched(data, outputs + 4, "<i", -5)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("root_offset_past_end", "Model table at byte [0-9]+ lies outside the file"),
        ("vtable_outside_file", "vtable"),
        ("tensor_name_runs_past_end", "runs past the end"),
        ("tensor_name_not_utf8", "not valid UTF-8"),
        ("no_subgraph", "no subgraph"),
        ("tensor_buffer_index", "refers to buffer"),
        ("operator_code_index", "refers to operator code"),
        ("operator_input_tensor", "refers to tensor"),
        ("subgraph_output_tensor", "refers to tensor"),
    ],
)
def test_damaged_tflite_field_raises_model_load_error_naming_the_fault(int8_bytes, kind, message):
    damaged = _damage(int8_bytes, kind)
    assert damaged != int8_bytes
    with pytest.raises(ModelLoadError, match=message):
        verify_tflite(damaged)


def _tiny_model(buffer_offset: int, buffer_size: int, padding: int) -> bytes:
    """A one-tensor model whose buffer 1 is stored after the flatbuffer (the > 2 GB layout)."""
    b = flatbuffers.Builder(256)
    tflite.TensorStartShapeVector(b, 1)
    b.PrependInt32(4)
    shape = b.EndVector()
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddBuffer(b, 1)
    tensor = b.EndObject()
    tflite.SubGraphStartTensorsVector(b, 1)
    b.PrependUOffsetTRelative(tensor)
    tensors = b.EndVector()
    io = []
    for _ in range(2):
        tflite.SubGraphStartInputsVector(b, 1)
        b.PrependInt32(0)
        io.append(b.EndVector())
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors)
    tflite.SubGraphAddInputs(b, io[0])
    tflite.SubGraphAddOutputs(b, io[1])
    subgraph = b.EndObject()
    tflite.BufferStart(b)
    empty = b.EndObject()
    tflite.BufferStart(b)
    tflite.BufferAddOffset(b, buffer_offset)
    tflite.BufferAddSize(b, buffer_size)
    outside = b.EndObject()
    vectors = []
    for start, items in ((tflite.ModelStartSubgraphsVector, [subgraph]),
                         (tflite.ModelStartBuffersVector, [empty, outside])):
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        vectors.append(b.EndVector())
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddSubgraphs(b, vectors[0])
    tflite.ModelAddBuffers(b, vectors[1])
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    return bytes(b.Output()) + bytes(padding)


def test_tensor_name_that_is_not_utf8_raises_model_load_error_on_litert(int8_bytes, tmp_path):
    """LiteRT would load it, then fail decoding the name in get_input_details with UnicodeDecodeError."""
    path = tmp_path / "bad_name.tflite"
    path.write_bytes(_damage(int8_bytes, "tensor_name_not_utf8"))
    with pytest.raises(ModelLoadError, match="not valid UTF-8"):
        edge_runtime.load(path, backend="litert")


def test_buffer_stored_outside_the_flatbuffer_must_lie_inside_the_file():
    flatbuffer_size = len(_tiny_model(2, 16, 0))  # nonzero values: the fields are stored
    verify_tflite(_tiny_model(flatbuffer_size, 16, 16))  # the 16 bytes are there
    with pytest.raises(ModelLoadError, match="buffer 1 .* lies outside the file"):
        verify_tflite(_tiny_model(flatbuffer_size, 16, 8))


def test_damaged_tflite_load_error_reaches_the_cli_as_one_line(int8_bytes, tmp_path: Path, capsys):
    from edge_runtime.__main__ import PROG, main
    from edge_runtime.cli_support import run_cli

    path = tmp_path / "cut.tflite"
    path.write_bytes(int8_bytes[: len(int8_bytes) // 2])
    assert run_cli(PROG, main, ["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt or truncated TFLite flatbuffer" in err[0]
