"""The C++ source a firmware project compiles in: model bytes, op resolver, I/O constants.

Everything here is text generation with no TensorFlow Lite Micro dependency, so the
host compiler can check the output (``tests/test_mcu.py`` builds ``model_data.cc``
and ``model_io.h`` into a small program). Names come from the model, never from a
fixed data set: a firmware may hold several models, so each one's symbols carry its
own C identifier.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from convert.mcu.ops import MICRO_OPS

BYTES_PER_LINE = 12
# TFLite Micro reads tensors in place from the flatbuffer; 16 bytes satisfies every
# kernel's alignment (and is what tflite-micro's own generate_cc_arrays.py uses).
MODEL_ALIGNMENT = 16
_HEX = [f"0x{b:02x}" for b in range(256)]


class CNames(NamedTuple):
    """The symbols of one model in generated code.

    Attributes
    ----------
    identifier : str
        The C identifier derived from the model name (``mnist_mlp``).
    array, length : str
        The model bytes and their count (``g_mnist_mlp_model_data``, ``..._len``).
    namespace : str
        The C++ namespace of the op resolver and I/O constants (``mnist_mlp_model``).
    """

    identifier: str
    array: str
    length: str
    namespace: str

    @classmethod
    def for_model(cls, model_name: str) -> CNames:
        """Every symbol for ``model_name``.

        Examples
        --------
        >>> CNames.for_model("mnist_mlp").array
        'g_mnist_mlp_model_data'
        """
        ident = c_identifier(model_name)
        return cls(ident, f"g_{ident}_model_data", f"g_{ident}_model_data_len", f"{ident}_model")

    def guard(self, file_stem: str) -> str:
        """Include guard of ``file_stem`` (``model_io`` -> ``MNIST_MLP_MODEL_IO_H_``)."""
        return f"{self.identifier.upper()}_{file_stem.upper()}_H_"


def c_identifier(name: str) -> str:
    """A lower-case C identifier from a model name.

    Runs of anything but letters and digits become one ``_`` (so the result never
    holds the double underscore C++ reserves), and a leading digit gets ``m_``.

    Examples
    --------
    >>> c_identifier("mnist_mlp"), c_identifier("3-Layer CNN (v2)"), c_identifier("Ωμέγα")
    ('mnist_mlp', 'm_3_layer_cnn_v2', 'model')
    """
    ident = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower() or "model"
    return f"m_{ident}" if ident[0].isdigit() else ident


def c_string(text: str) -> str:
    """A C string literal for ``text`` (UTF-8, non-printable bytes as octal escapes).

    Octal rather than hex: a hex escape swallows every hex digit that follows it.

    Examples
    --------
    >>> print(c_string('say "hi"? café'))
    "say \\"hi\\"\\? caf\\303\\251"
    """
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "?":  # "??" could start a trigraph in C
            out.append("\\?")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_float(value: float) -> str:
    """A ``float`` literal that reads back as the same float32.

    Examples
    --------
    >>> c_float(1 / 255), c_float(0), c_float(-2.5e-12)
    ('0.00392156886f', '0.0f', '-2.49999999e-12f')
    """
    value = float(np.float32(value))
    if not math.isfinite(value):
        raise ValueError(f"{value} has no C float literal")
    text = f"{value:.9g}"
    if not any(c in text for c in ".e"):
        text += ".0"
    return text + "f"


def comment(text: str) -> str:
    """``text`` made safe for a ``//`` comment: one line, printable ASCII.

    Examples
    --------
    >>> comment("a\\nb é")
    'a b ?'
    """
    return "".join(c if 0x20 <= ord(c) < 0x7F else (" " if c in "\r\n\t" else "?") for c in text)


def _camel(key: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^0-9A-Za-z]+", key) if part)


def _scalar(value: Any) -> tuple[str, str] | None:
    """(C type, literal) of a JSON scalar; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool", "true" if value else "false"
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        return "float", c_float(value)
    return "const char*", c_string(str(value))


def constants(mapping: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``constexpr`` definitions for every field of a JSON-like mapping.

    Numbers, booleans and strings become scalars, lists of them arrays, nested
    mappings flatten into the name (``input.shape`` -> ``kInputShape``), and what
    has no C form (null, an empty or mixed list) stays visible as a comment. This
    keeps the preprocessing record's whole content in the header without knowing
    its fields, so a new field reaches firmware without a change here.

    Examples
    --------
    >>> print("\\n".join(constants({"scale": 0.5, "image_shape": [28, 28], "layout": "flat", "mean": None})))
    constexpr float kScale = 0.5f;
    constexpr int kImageShape[2] = {28, 28};
    constexpr const char* kLayout = "flat";
    // mean: null
    """
    lines = []
    for key, value in mapping.items():
        name = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            lines += constants(value, name)
            continue
        symbol = "k" + _camel(name)
        if isinstance(value, (list, tuple)):
            items = [_scalar(v) for v in value]
            types = {item[0] for item in items if item is not None}
            if not items or None in items or len(types) != 1:
                lines.append(f"// {comment(name)}: {comment(repr(list(value)))}")
            else:
                # int and float mixed in JSON ("[0, 0.5]") is a float array.
                lines.append(f"constexpr {types.pop()} {symbol}[{len(items)}] = {{{', '.join(i[1] for i in items)}}};")
            continue
        scalar = _scalar(value)
        lines.append(f"// {comment(name)}: null" if scalar is None
                     else f"constexpr {scalar[0]} {symbol} = {scalar[1]};")
    return lines


def _banner(provenance: Sequence[str]) -> list[str]:
    return [f"// {comment(line)}" for line in provenance] + [
        "// Generated by keras2edge: python -m convert mcu. Do not edit; regenerate."
    ]


def model_data_sources(data: bytes, names: CNames, provenance: Sequence[str]) -> tuple[str, str]:
    """``model_data.h`` and ``model_data.cc``: the flatbuffer as an aligned byte array.

    Returns
    -------
    (str, str)
        The header and the source file.
    """
    import hashlib

    facts = [f"{len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}"]
    guard = names.guard("model_data")
    header = [
        *_banner([*provenance, *facts]),
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        f"// The .tflite flatbuffer, {MODEL_ALIGNMENT}-byte aligned: pass it to tflite::GetModel().",
        f"extern const unsigned char {names.array}[];",
        f"extern const unsigned int {names.length};",
        "",
        f"#endif  // {guard}",
        "",
    ]
    rows = (", ".join(_HEX[b] for b in data[i : i + BYTES_PER_LINE]) for i in range(0, len(data), BYTES_PER_LINE))
    source = [
        *_banner([*provenance, *facts]),
        '#include "model_data.h"',
        "",
        f"alignas({MODEL_ALIGNMENT}) const unsigned char {names.array}[] = {{",
        *(f"    {row}," for row in rows),
        "};",
        f"const unsigned int {names.length} = {len(data)};",
        "",
    ]
    return "\n".join(header), "\n".join(source)


def model_ops_header(operators: Iterable[str], names: CNames, provenance: Sequence[str]) -> str:
    """``model_ops.h``: a resolver type sized for, and a function registering, exactly these ops.

    Raises
    ------
    KeyError
        An operator TensorFlow Lite Micro cannot register (refuse those first).
    """
    calls = [(op, MICRO_OPS[op]) for op in operators]
    guard = names.guard("model_ops")
    lines = [
        *_banner(provenance),
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"',
        "",
        f"namespace {names.namespace} {{",
        "",
        f"// The {len(calls)} builtin operators the model uses, each registered once.",
        f"constexpr unsigned int kNumOps = {len(calls)};",
        "using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;",
        "",
        "// Returns kTfLiteOk, or the status of the first registration that failed.",
        "inline TfLiteStatus RegisterOps(OpResolver& resolver) {",
        *(f"  TF_LITE_ENSURE_STATUS(resolver.{method}());  // {op}" for op, method in calls),
        "  return kTfLiteOk;",
        "}",
        "",
        f"}}  // namespace {names.namespace}",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)


def _tensor_constants(prefix: str, tensor: Mapping[str, Any]) -> list[str]:
    shape = [int(d) for d in tensor["shape"]]
    return [
        f"// {prefix} tensor: {tensor['dtype']} {shape}; real value = k{prefix}Scale * (q - k{prefix}ZeroPoint)",
        f"constexpr int k{prefix}Rank = {len(shape)};",
        f"constexpr int k{prefix}Shape[k{prefix}Rank] = {{{', '.join(map(str, shape))}}};",
        f"constexpr int k{prefix}Elements = {math.prod(shape)};",
        f"constexpr const char* k{prefix}Type = {c_string(tensor['dtype'])};",
        f"constexpr float k{prefix}Scale = {c_float(tensor['scale'])};",
        f"constexpr int k{prefix}ZeroPoint = {int(tensor['zero_point'])};",
    ]


def model_io_header(
    names: CNames,
    provenance: Sequence[str],
    *,
    input_tensor: Mapping[str, Any],
    output_tensor: Mapping[str, Any],
    class_labels: Sequence[str],
    output_kind: str,
    arena: Mapping[str, Any],
    pixel_table: np.ndarray | None,
    preprocessing: Mapping[str, Any],
) -> str:
    """``model_io.h``: what firmware needs around ``Invoke()``, as ``constexpr`` values.

    Parameters
    ----------
    names : CNames
        The model's symbols.
    provenance : sequence of str
        Comment lines naming the artifact and model.
    input_tensor, output_tensor : mapping
        ``shape``, ``dtype``, ``scale``, ``zero_point`` as TensorFlow Lite Micro sees them.
    class_labels : sequence of str
        One per output element.
    output_kind : str
        ``"probabilities"`` or ``"logits"`` (argmax picks the same class either way).
    arena : mapping
        ``recommended_bytes`` and ``measured_bytes`` of the tensor arena, and ``margin``.
    pixel_table : numpy.ndarray or None
        ``(channels, 256)`` int8: the model input value for each raw pixel value of
        each channel, as the keras2edge runtime computes it; None for inputs that
        are not uint8 pixels.
    preprocessing : mapping
        The manifest's preprocessing record, emitted field by field.
    """
    guard = names.guard("model_io")
    lines = [
        *_banner(provenance),
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstdint>",
        "",
        f"namespace {names.namespace} {{",
        "",
        f"// Tensor arena: {arena['measured_bytes']} bytes measured in the TensorFlow Lite Micro interpreter",
        f"// plus a margin of {comment(arena['margin'])}.",
        f"constexpr unsigned int kTensorArenaBytes = {int(arena['recommended_bytes'])};",
        "",
        *_tensor_constants("Input", input_tensor),
        "",
        *_tensor_constants("Output", output_tensor),
        f"constexpr bool kOutputIsLogits = {'true' if output_kind == 'logits' else 'false'};",
        "",
        f"constexpr int kNumClasses = {len(class_labels)};",
        "constexpr const char* kClassLabels[kNumClasses] = "
        f"{{{', '.join(c_string(label) for label in class_labels)}}};",
        "",
    ]
    if pixel_table is not None:
        channels = pixel_table.shape[0]
        rows = [
            "    {" + ", ".join(str(int(v)) for v in pixel_table[c]) + "},"
            for c in range(channels)
        ]
        lines += [
            "// Raw uint8 pixel -> model input value, exactly as the keras2edge runtime (and so the",
            "// parity measurement) computes it: the preprocessing below, then the input quantisation.",
            "// Pixels in row-major order, channels last: input[i] = kInputFromPixel[i % kPixelChannels][pixel[i]].",
            f"constexpr int kPixelChannels = {channels};",
            f"constexpr {input_tensor['dtype']}_t kInputFromPixel[kPixelChannels][256] = {{",
            *rows,
            "};",
            "",
        ]
    lines += [
        "// The preprocessing recorded in manifest.json, field by field.",
        "namespace preprocessing {",
        *constants(preprocessing),
        "}  // namespace preprocessing",
        "",
        f"}}  // namespace {names.namespace}",
        "",
        f"#endif  // {guard}",
        "",
    ]
    return "\n".join(lines)
