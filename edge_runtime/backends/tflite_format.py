"""Structural check of a ``.tflite`` flatbuffer before any interpreter reads it.

Native TFLite interpreters (LiteRT, tflite-runtime, TensorFlow Lite) follow the
flatbuffer's offsets without checking them against the buffer's length: a
truncated or damaged file makes them read outside it. On x86 that usually ends in
an error message; tflite-runtime 2.14 on 32-bit ARM dies with SIGSEGV, which no
``try`` can catch. So :func:`verify_tflite` walks the whole structure in Python
first, once, for every TFLite backend (the NumPy backend reads the same verified
bytes):

- every table (its position, vtable and inline fields), vector and string the
  TFLite schema defines for the model, subgraphs, tensors, quantisation and
  sparsity parameters, operators, operator codes, buffers, metadata and signature
  definitions lies inside the file and is aligned as flatbuffers requires;
  strings are NUL-terminated and UTF-8 (the interpreters decode tensor names);
- operator option tables lie inside the file; the two builtin option types that
  hold a vector (``ReshapeOptions.new_shape``, ``SqueezeOptions.squeeze_dims``) have
  it checked too (all others hold scalars only);
- there is at least one subgraph, and every index (tensor, buffer, operator code,
  subgraph) points at something that exists;
- a buffer stored after the flatbuffer (the > 2 GB layout: ``offset``/``size``)
  lies inside the file.

It reads field positions with :mod:`struct` rather than through the generated
accessors, because those accept negative positions (``struct.unpack_from`` counts
them from the end) and silently shorten strings that run off the end.
"""


import struct

from edge_runtime.errors import ModelLoadError

_U8, _U16, _U32, _U64 = 1, 2, 4, 8


# The schema's field kinds are plain classes, not NamedTuples: building a NamedTuple
# class costs a fraction of a millisecond, and this module is imported by every load.
class _Vec:
    """A vector of ``size``-byte scalars (``text`` for a NUL-terminated string)."""

    __slots__ = ("size", "text")

    def __init__(self, size: int, text: bool = False) -> None:
        self.size, self.text = size, text


class _Tables:
    """A vector of tables of type ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Table:
    """One table of type ``name``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _Union:
    """A union value; ``type_field`` holds its type code, ``types`` maps codes to table types.

    Codes not in ``types`` are checked as tables of scalars (bounds only).
    """

    __slots__ = ("type_field", "types")

    def __init__(self, type_field: int, types: tuple[tuple[int, str], ...] = ()) -> None:
        self.type_field, self.types = type_field, types


_STR = _Vec(1, text=True)
_INDEX_VECTORS = (("Int32Vector", 1), ("Uint16Vector", 2), ("Uint8Vector", 3))

# The TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs), as
# table -> {field id: kind}; an int kind is a scalar of that many bytes.
SCHEMA: dict[str, dict[int, object]] = {
    "Model": {0: _U32, 1: _Tables("OperatorCode"), 2: _Tables("SubGraph"), 3: _STR, 4: _Tables("Buffer"),
              5: _Vec(4), 6: _Tables("Metadata"), 7: _Tables("SignatureDef")},
    "OperatorCode": {0: _U8, 1: _STR, 2: _U32, 3: _U32},
    "SubGraph": {0: _Tables("Tensor"), 1: _Vec(4), 2: _Vec(4), 3: _Tables("Operator"), 4: _STR, 5: _U32},
    "Tensor": {0: _Vec(4), 1: _U8, 2: _U32, 3: _STR, 4: _Table("QuantizationParameters"), 5: _U8,
               6: _Table("SparsityParameters"), 7: _Vec(4), 8: _U8, 9: _Tables("VariantSubType")},
    "QuantizationParameters": {0: _Vec(4), 1: _Vec(4), 2: _Vec(4), 3: _Vec(8), 4: _U8,
                               5: _Union(4, ((1, "CustomQuantization"),)), 6: _U32},
    "CustomQuantization": {0: _Vec(1)},
    "SparsityParameters": {0: _Vec(4), 1: _Vec(4), 2: _Tables("DimensionMetadata")},
    "DimensionMetadata": {0: _U8, 1: _U32, 2: _U8, 3: _Union(2, _INDEX_VECTORS), 4: _U8, 5: _Union(4, _INDEX_VECTORS)},
    "Int32Vector": {0: _Vec(4)},
    "Uint16Vector": {0: _Vec(2)},
    "Uint8Vector": {0: _Vec(1)},
    "VariantSubType": {0: _Vec(4), 1: _U8, 2: _U8},
    "Operator": {0: _U32, 1: _Vec(4), 2: _Vec(4), 3: _U8,
                 4: _Union(3, ((17, "ReshapeOptions"), (30, "SqueezeOptions"))),
                 5: _Vec(1), 6: _U8, 7: _Vec(1), 8: _Vec(4), 9: _U64, 10: _U64, 11: _U8, 12: _Union(11), 13: _U32},
    "ReshapeOptions": {0: _Vec(4)},
    "SqueezeOptions": {0: _Vec(4)},
    "Buffer": {0: _Vec(1), 1: _U64, 2: _U64},
    "Metadata": {0: _STR, 1: _U32},
    "SignatureDef": {0: _Tables("TensorMap"), 1: _Tables("TensorMap"), 2: _STR, 4: _U32},
    "TensorMap": {0: _STR, 1: _U32},
}


_I32, _H, _I, _HH = struct.Struct("<i"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HH")
_SCALARS = {_U8: struct.Struct("<B"), _U16: _H, _U32: _I, _U64: struct.Struct("<Q")}


def _text(what: object) -> str:
    """A message part: a string, or a tuple of parts joined only when a message is made.

    The walk names every field it reads (``"Tensor field 3[2] length"``); formatting
    thousands of such names that no message ever uses would cost a large part of
    the check, so they travel as tuples until something fails.
    """
    if isinstance(what, tuple):
        return "".join(_text(part) for part in what)
    return str(what)


class _Reader:
    """Bounds- and alignment-checked reads of one flatbuffer; ModelLoadError on the first violation.

    A table is checked once; a second request for the same position (the index
    checks after the walk) returns the field map found the first time.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.end = len(data)
        self._tables: dict[int, dict[int, int]] = {}

    def fail(self, what: str) -> ModelLoadError:
        return ModelLoadError(f"corrupt or truncated TFLite flatbuffer: {what} (file is {self.end} bytes)")

    def scalar(self, fmt: struct.Struct, pos: int, what: object) -> int:
        size = fmt.size
        if pos < 0 or pos + size > self.end:
            raise self.fail(f"{_text(what)} at byte {pos} lies outside the file")
        if pos % size:
            raise self.fail(f"{_text(what)} at byte {pos} is not {size}-byte aligned")
        return fmt.unpack_from(self.data, pos)[0]

    def table(self, pos: int, name: object) -> dict[int, int]:
        """Check the table at ``pos`` and its fields; return {field id: absolute position}."""
        fields = self._tables.get(pos)
        if fields is not None:
            return fields
        data, end = self.data, self.end
        if pos < 0 or pos + 4 > end or pos % 4:
            self.scalar(_I32, pos, (name, " table"))  # raises
        vtable = pos - _I32.unpack_from(data, pos)[0]
        if vtable < 0 or vtable + 4 > end or vtable % 2:  # vt_size, then inline_size
            self.scalar(_H, vtable, (name, " vtable"))
            self.scalar(_H, vtable + 2, (name, " vtable"))
        vt_size, inline_size = _HH.unpack_from(data, vtable)
        if vt_size < 4 or vt_size % 2 or vtable + vt_size > self.end:
            raise self.fail(f"{_text(name)} vtable at byte {vtable} is malformed")
        if inline_size < 4 or pos + inline_size > self.end:
            raise self.fail(f"{_text(name)} table at byte {pos} runs past the end")
        fields = {}
        count = (vt_size - 4) // 2
        for field, offset in enumerate(struct.unpack_from(f"<{count}H", self.data, vtable + 4)):
            if offset:
                if offset >= inline_size:
                    raise self.fail(f"{_text(name)} field {field} lies outside its table")
                fields[field] = pos + offset
        self._tables[pos] = fields
        return fields

    def target(self, pos: int, what: object) -> int:
        """Follow the unsigned offset stored at ``pos``."""
        return pos + self.scalar(_I, pos, what)

    def vector(self, pos: int, elem_size: int, what: object) -> tuple[int, int]:
        """(start, length) of the vector referenced at ``pos``, checked to lie inside the file."""
        start = self.target(pos, what)
        length = self.scalar(_I, start, (what, " length"))
        begin = start + 4
        if begin + length * elem_size > self.end:
            raise self.fail(f"{_text(what)} ({length} x {elem_size} bytes at byte {begin}) runs past the end")
        if elem_size > 4 and begin % elem_size:
            raise self.fail(f"{_text(what)} at byte {begin} is not {elem_size}-byte aligned")
        return begin, length


# SCHEMA as dispatch steps, made once: (kind, size or table name[, union types]).
_SCALAR, _VECTOR, _TEXT, _TABLES, _TABLE, _UNION = range(6)


def _step(kind: object) -> tuple:
    if isinstance(kind, int):
        return (_SCALAR, kind)
    if isinstance(kind, _Vec):
        return (_TEXT, 1) if kind.text else (_VECTOR, kind.size)
    if isinstance(kind, _Tables):
        return (_TABLES, kind.name)
    if isinstance(kind, _Table):
        return (_TABLE, kind.name)
    return (_UNION, kind.type_field, dict(kind.types))


_PLAN = {name: {field: _step(kind) for field, kind in fields.items()} for name, fields in SCHEMA.items()}
_UNPACK_U32 = _I.unpack_from


def _walk(reader: _Reader, pos: int, name: str) -> dict[int, int]:
    """Verify the table ``name`` at ``pos`` and everything it references, recursively.

    The common checks (bounds and alignment of a field, an offset, a vector) are
    written out here; when one fails, the :class:`_Reader` method that makes the
    same check is called to raise its message. A conv net has a few thousand such
    fields and this walk runs before every TFLite load.
    """
    fields = reader.table(pos, name)
    data, end = reader.data, reader.end
    plan = _PLAN[name]
    for field, where in fields.items():  # field order, as the schema lists them
        step = plan.get(field)
        if step is None:
            continue
        kind = step[0]
        if kind == _SCALAR:
            size = step[1]
            if where + size > end or where % size:
                reader.scalar(_SCALARS[size], where, (name, " field ", field))
            continue
        if kind == _UNION:
            type_pos = fields.get(step[1])
            table_name = step[2].get(data[type_pos] if type_pos is not None else 0)
            target = reader.target(where, (name, " field ", field))
            if table_name is None:
                reader.table(target, (name, " option table"))
            else:
                _walk(reader, target, table_name)
            continue
        if where + 4 > end or where % 4:  # the offset to follow
            reader.target(where, (name, " field ", field))
        target = where + _UNPACK_U32(data, where)[0]
        if kind == _TABLE:
            _walk(reader, target, step[1])
            continue
        elem = 4 if kind == _TABLES else step[1]
        length = _UNPACK_U32(data, target)[0] if target + 4 <= end and not target % 4 else -1
        begin = target + 4
        if length < 0 or begin + length * elem > end or (elem > 4 and begin % elem):
            reader.vector(where, elem, (name, " field ", field))
        if kind == _TEXT:
            if begin + length >= end or data[begin + length] != 0:
                raise reader.fail(f"{name} field {field}: string is not NUL-terminated inside the file")
            try:  # interpreters hand names to Python, which decodes them
                data[begin : begin + length].decode("utf-8")
            except UnicodeDecodeError:
                raise reader.fail(f"{name} field {field}: string at byte {begin} is not valid UTF-8") from None
        elif kind == _TABLES:
            table_name = step[1]
            for at in range(begin, begin + 4 * length, 4):  # inside the file and aligned: checked above
                _walk(reader, at + _UNPACK_U32(data, at)[0], table_name)
    return fields


def _u32_vector(reader: _Reader, fields: dict[int, int], field: int) -> list[int]:
    """The values of an already verified vector of 32-bit ints (empty when absent)."""
    if field not in fields:
        return []
    begin, length = reader.vector(fields[field], 4, "vector")
    return list(struct.unpack_from(f"<{length}i", reader.data, begin))


def _u32_field(reader: _Reader, fields: dict[int, int], field: int) -> int:
    """An already verified unsigned 32-bit field (0, its default, when absent)."""
    return struct.unpack_from("<I", reader.data, fields[field])[0] if field in fields else 0


def _tables(reader: _Reader, fields: dict[int, int], field: int, name: str) -> list[dict[int, int]]:
    """The field maps of an already verified vector of tables."""
    if field not in fields:
        return []
    begin, length = reader.vector(fields[field], 4, name)
    return [reader.table(reader.target(begin + 4 * i, name), name) for i in range(length)]


def verify_tflite(data: bytes) -> None:
    """Refuse a ``.tflite`` file whose structure a native interpreter could not read safely.

    Call it before handing the bytes to any TFLite interpreter: it is what turns a
    damaged file into an exception instead of a crashed process. It costs a walk
    over the model's tables (tensors, operators, buffers), not over weight data, so
    it takes about a millisecond for the keras2edge models.

    Parameters
    ----------
    data : bytes
        The whole ``.tflite`` file.

    Raises
    ------
    ModelLoadError
        An offset, vector or string lies outside the file or is misaligned, the
        model has no subgraph, or an index (tensor, buffer, operator code,
        subgraph) points at nothing.

    Examples
    --------
    >>> verify_tflite(Path("tflite_int8.tflite").read_bytes()[:1000])  # doctest: +SKIP
    Traceback (most recent call last):
    ModelLoadError: corrupt or truncated TFLite flatbuffer: ...
    """
    reader = _Reader(data)
    model = _walk(reader, reader.target(0, "root offset"), "Model")
    codes = len(_tables(reader, model, 1, "OperatorCode"))
    buffers = _tables(reader, model, 4, "Buffer")
    subgraphs = _tables(reader, model, 2, "SubGraph")
    if not subgraphs:
        raise reader.fail("the model has no subgraph")
    for b, buffer in enumerate(buffers):
        offset, size = (struct.unpack_from("<Q", data, buffer[f])[0] if f in buffer else 0 for f in (1, 2))
        if offset > 1 and offset + size > len(data):
            raise reader.fail(f"buffer {b} ({size} bytes at byte {offset}) lies outside the file")
    tensor_counts = []
    for s, subgraph in enumerate(subgraphs):
        tensors = _tables(reader, subgraph, 0, "Tensor")
        n = len(tensors)
        tensor_counts.append(n)
        for t, tensor in enumerate(tensors):
            if _u32_field(reader, tensor, 2) >= len(buffers):
                raise reader.fail(
                    f"subgraph {s} tensor {t} refers to buffer {_u32_field(reader, tensor, 2)} of {len(buffers)}"
                )
        for i in _u32_vector(reader, subgraph, 1) + _u32_vector(reader, subgraph, 2):
            if not 0 <= i < n:
                raise reader.fail(f"subgraph {s} input/output refers to tensor {i} of {n}")
        for o, op in enumerate(_tables(reader, subgraph, 3, "Operator")):
            if _u32_field(reader, op, 0) >= codes:
                raise reader.fail(
                    f"subgraph {s} operator {o} refers to operator code {_u32_field(reader, op, 0)} of {codes}"
                )
            # -1 marks an omitted optional input.
            for i in _u32_vector(reader, op, 1) + _u32_vector(reader, op, 2) + _u32_vector(reader, op, 8):
                if not -1 <= i < n:
                    raise reader.fail(f"subgraph {s} operator {o} refers to tensor {i} of {n}")
    for m in _tables(reader, model, 6, "Metadata"):
        if _u32_field(reader, m, 1) >= len(buffers):
            raise reader.fail(f"metadata refers to buffer {_u32_field(reader, m, 1)} of {len(buffers)}")
    for signature in _tables(reader, model, 7, "SignatureDef"):
        s = _u32_field(reader, signature, 4)
        if s >= len(subgraphs):
            raise reader.fail(f"signature refers to subgraph {s} of {len(subgraphs)}")
        for entry in _tables(reader, signature, 0, "TensorMap") + _tables(reader, signature, 1, "TensorMap"):
            if _u32_field(reader, entry, 1) >= tensor_counts[s]:
                raise reader.fail(f"signature refers to tensor {_u32_field(reader, entry, 1)} of {tensor_counts[s]}")
