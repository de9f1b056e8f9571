"""Which operators a ``.tflite`` model uses, and which TensorFlow Lite Micro can register.

Firmware registers kernels one by one in a ``tflite::MicroMutableOpResolver<N>``;
every kernel registered costs flash, and ``AllOpsResolver`` (all of them) no longer
exists. So the exporter reads the exact set of builtin operators from the flatbuffer
and names, for each, the resolver method that registers it. An operator without such
a method cannot run on a microcontroller at all, which is worth knowing on the build
machine rather than on the board.
"""

from __future__ import annotations

from typing import Any

from edge_runtime.backends.numpy_tflite import operator_name
from edge_runtime.backends.tflite_format import verify_tflite

# Builtin operator -> the MicroMutableOpResolver method that registers its kernel,
# transcribed from tensorflow/lite/micro/micro_mutable_op_resolver.h of tflite-micro
# (commit 90b983c, August 2026; the tflite-micro wheel the tests use is built from a
# later commit and runs every operator listed here). An operator missing from this
# table has no TensorFlow Lite Micro kernel.
MICRO_OPS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D", "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce", "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice", "ELU": "AddElu", "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather", "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot", "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll", "REDUCE_MAX": "AddReduceMax", "REDUCE_MIN": "AddReduceMin", "RELU": "AddRelu",
    "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "REVERSE_V2": "AddReverseV2", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}  # fmt: skip

# Tensor types that mean the graph computes in floating point somewhere.
_FLOAT_TYPES = ("FLOAT16", "FLOAT32", "FLOAT64", "BFLOAT16")


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _model(data: bytes) -> Any:
    import tflite

    verify_tflite(data)  # the generated accessors trust every offset they follow
    return tflite.Model.GetRootAs(data, 0)


def model_operators(data: bytes) -> list[str]:
    """The builtin operators of a ``.tflite`` model, each once, in order of first use.

    Custom operators appear as ``CUSTOM:<name>``. Every subgraph counts (control-flow
    operators call others).

    Parameters
    ----------
    data : bytes
        The whole ``.tflite`` file.

    Returns
    -------
    list of str
        Schema names such as ``"FULLY_CONNECTED"``.

    Raises
    ------
    ModelLoadError
        The flatbuffer is damaged or truncated.

    Examples
    --------
    >>> model_operators(Path("tflite_int8.tflite").read_bytes())  # doctest: +SKIP
    ['FULLY_CONNECTED', 'SOFTMAX']
    """
    model = _model(data)
    used: list[str] = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            name = operator_name(model.OperatorCodes(graph.Operators(i).OpcodeIndex()))
            if name not in used:
                used.append(name)
    return used


def unsupported_operators(operators: list[str]) -> list[str]:
    """The operators of ``operators`` that TensorFlow Lite Micro has no kernel for.

    Examples
    --------
    >>> unsupported_operators(["CONV_2D", "CUSTOM:FlexErf", "FULLY_CONNECTED"])
    ['CUSTOM:FlexErf']
    """
    return [name for name in operators if name not in MICRO_OPS]


def float_tensors(data: bytes) -> list[str]:
    """Names of the floating-point tensors of a ``.tflite`` model (empty for full int8).

    A dynamic-range model keeps int8 weights but computes in float: its activations
    are float32 tensors, which this finds even when a manifest calls the model int8.

    Raises
    ------
    ModelLoadError
        The flatbuffer is damaged or truncated.
    """
    from tflite.TensorType import TensorType

    model = _model(data)
    types = _names(TensorType)
    found = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            if types.get(tensor.Type()) in _FLOAT_TYPES:
                found.append(tensor.Name().decode(errors="replace"))
    return found

