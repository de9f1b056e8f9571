"""``python -m edge_runtime``: run a model on files, or describe it.

    python -m edge_runtime predict MODEL INPUT... [--json] [--top-k K] [--backend B] [--threads N]
    python -m edge_runtime info MODEL [--json] [--backend B]

INPUT may be an image file (PNG, JPEG, ...: decoded to the model's size and colour
mode as in training), a ``.npy`` array (one input or a batch), an IDX file such as
``t10k-images-idx3-ubyte.gz``, or for a feature model a CSV file with a header row
(one input per row; the model's feature columns are taken by name, a ``label``
column is ignored). ``predict`` prints one line per input:
``input<TAB>label<TAB>confidence``; ``--top-k`` lists the K most likely labels
instead; ``--json`` prints one JSON document.

Subcommands are pluggable: every module in :data:`SUBCOMMAND_MODULES` exposes
``add_subparser(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed arguments and returning the exit status) with ``set_defaults``.
Adding a command is one line in that tuple.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.backends import BACKEND_NAMES
from edge_runtime.cli_support import ArgumentParser, positive_int, run_cli
from edge_runtime.errors import DataError, InputError
from edge_runtime.idx import parse_idx, read_idx_bytes
from edge_runtime.images import IMAGE_SUFFIXES, load_image
from edge_runtime.records.manifest import InputSpec

PROG = "python -m edge_runtime"

# Modules adding one subcommand each through add_subparser(subparsers); see the module docstring.
SUBCOMMAND_MODULES: tuple[str, ...] = ("edge_runtime.selftest", "edge_runtime.serve", "edge_runtime.watch")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help=".tflite or .onnx artifact (manifest.json beside it is used)")
    parser.add_argument("--backend", default="auto", help=f"one of {', '.join(BACKEND_NAMES)} (default %(default)s)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="inference threads (default: the backend's choice)")


def read_csv_features(path: Path, spec: InputSpec) -> np.ndarray:
    """Feature rows of a CSV file with a header: the model's named columns in its order, else every numeric column.

    Read by :func:`edge_runtime.files.csv_rows`, the rules training reads its CSV by,
    so a table that trained a model can be fed back to it as it is.

    Raises
    ------
    DataError
        Unreadable file, missing feature columns, a wrong column count, or a
        non-numeric cell (row and column named).
    """
    from edge_runtime.files import csv_rows, read_user_file

    header, rows = csv_rows(read_user_file(path, DataError, "a CSV file"), path, DataError)
    names = spec.feature_names or tuple(h for h in header if h != "label")
    missing = [n for n in names if n not in header]
    if missing:
        raise DataError(
            f"{path}: no column {', '.join(repr(m) for m in missing[:3])}; the model reads {', '.join(names)}"
        )
    columns = [header.index(n) for n in names]
    if len(columns) != spec.shape[0]:
        raise DataError(f"{path}: {len(columns)} feature columns but the model reads {spec.shape[0]} features")
    values = []
    for line, row in rows:
        for col in columns:
            try:
                values.append(float(row[col]))
            except (ValueError, IndexError):
                cell = row[col] if col < len(row) else ""
                raise DataError(f"{path}: row {line}, column '{header[col]}': {cell!r} is not a number") from None
    if not values:
        raise DataError(f"{path}: a CSV file needs a header row and at least one row of features")
    return np.array(values, dtype=np.float64).reshape(-1, len(columns))


def read_inputs(path: Path, spec: InputSpec) -> np.ndarray:
    """The inputs in one INPUT file: an image, a ``.npy`` array, an IDX file, or CSV features.

    Raises
    ------
    DataError
        Missing, unreadable, or none of those formats.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        if not spec.is_image:
            raise DataError(f"{path}: this model reads {spec.describe()}, not images; pass a CSV or .npy file")
        return load_image(path, spec.image_size, color_mode=spec.color_mode, digits=spec.digits,
                          crop_to_aspect_ratio=spec.crop_to_aspect_ratio)
    if suffix == ".csv":
        if spec.is_image:
            raise DataError(f"{path}: this model reads {spec.describe()}; CSV files hold feature vectors")
        return read_csv_features(path, spec)
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: not a readable .npy array ({' '.join(str(exc).split())})") from None
    if not path.exists():
        raise DataError(f"{path}: no such file")
    data = read_idx_bytes(path)
    if data[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an image ({', '.join(IMAGE_SUFFIXES)}), .npy, .csv or IDX file")
    return parse_idx(data, name=str(path))


def _predictions(model: Any, inputs: Sequence[Path]) -> Iterator[tuple[str, np.ndarray]]:
    """(name, probability row) for every input in every INPUT, in order."""
    spec = model.input
    # Image files hold one image each: stack them into one batch, one backend call.
    if all(p.suffix.lower() in IMAGE_SUFFIXES for p in inputs):
        pixels = np.stack([read_inputs(p, spec) for p in inputs])
        yield from zip((str(p) for p in inputs), model.predict(pixels))
        return
    for path in inputs:
        array = read_inputs(path, spec)
        try:
            probs = model.predict(array)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        if len(probs) == 1 and path.suffix.lower() != ".csv":
            yield str(path), probs[0]
        else:
            yield from ((f"{path}[{i}]", row) for i, row in enumerate(probs))


def run_predict(args: argparse.Namespace) -> int:
    """Classify every INPUT and print one line (or JSON record) per image."""
    import edge_runtime

    model = edge_runtime.load(args.model, backend=args.backend, threads=args.threads)
    k = args.top_k
    if k is not None and k > model.num_classes:
        raise InputError(f"--top-k {k} is more than the model's {model.num_classes} classes")
    labels = model.class_labels
    records = []
    for name, row in _predictions(model, args.inputs):
        order = np.argsort(-row, kind="stable")[: k or 1]
        records.append(
            {
                "input": name,
                "label": labels[order[0]],
                "confidence": round(float(row[order[0]]), 6),
                "top_k": [{"label": labels[i], "probability": round(float(row[i]), 6)} for i in order],
            }
        )
    if args.json:
        print(json.dumps({"model": str(args.model), "backend": model.backend, "predictions": records}, indent=2))
        return 0
    for rec in records:
        if k is None:
            print(f"{rec['input']}\t{rec['label']}\t{rec['confidence']:.4f}")
        else:
            print(rec["input"] + "\t" + " ".join(f"{t['label']}:{t['probability']:.4f}" for t in rec["top_k"]))
    return 0


def _tensor_line(t: dict[str, Any]) -> str:
    quant = t["quantization"]
    q = "" if quant is None else f", scale={quant['scale']:.6g}, zero_point={quant['zero_point']}"
    return f"  {t['name']}: {t['dtype']} {t['shape']}{q}"


def run_info(args: argparse.Namespace) -> int:
    """Print what the model is, how it will be run, and what its manifest says."""
    import edge_runtime

    info = edge_runtime.load(args.model, backend=args.backend, threads=args.threads).info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    pre = info["preprocessing"]
    details = info["backend_details"]
    lines = [
        f"model:        {info['path']}",
        f"format:       {info['format']}",
        (f"backend:      {info['backend']} "
         f"({details.get('library', '?')} {details.get('library_version', '')})").rstrip(),
        f"threads:      {info['threads'] if info['threads'] is not None else 'backend default'}",
        f"size:         {info['bytes']} bytes",
        f"sha256:       {info['sha256']}",
        "inputs:",
        *(_tensor_line(t) for t in info["inputs"]),
        "outputs:",
        *(_tensor_line(t) for t in info["outputs"]),
        f"classes:      {info['num_classes']} ({', '.join(info['class_labels'])})",
        f"output kind:  {info['output_kind']}",
        f"input:        {info['input']['description']}",
        f"preprocessing ({pre['source']}): {pre['description']}",
    ]
    manifest = info["manifest"]
    if manifest is None:
        lines.append("manifest:     none (defaults: an image of the model's input size, pixels / 255)")
    else:
        artifact = manifest["artifact"]
        source = manifest.get("source_model") or {}
        lines += [
            f"manifest:     {manifest['path']} (sha256 verified)",
            f"  artifact:   {artifact.get('name')} precision={artifact.get('precision')} "
            f"quantization={artifact.get('quantization')}",
            f"  source:     {source.get('file')} ({source.get('name')}, {source.get('parameters')} parameters)",
            f"  created:    {manifest.get('created')}",
        ]
    print("\n".join(lines))
    return 0


def add_predict(subparsers: Any) -> None:
    """Register ``predict``."""
    parser = subparsers.add_parser("predict", help="classify image, .npy, IDX or CSV files",
                                   description=run_predict.__doc__)
    _add_model_arguments(parser)
    parser.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                        help="image file, .npy array, IDX file or CSV of features")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    parser.add_argument("--top-k", type=positive_int, default=None, metavar="K", help="show the K most likely labels")
    parser.set_defaults(func=run_predict)


def add_info(subparsers: Any) -> None:
    """Register ``info``."""
    parser = subparsers.add_parser("info", help="describe a model: backend, I/O, quantisation, sha256, manifest",
                                   description=run_info.__doc__)
    _add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    parser.set_defaults(func=run_info)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m edge_runtime`` parser with every registered subcommand."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_predict(subparsers)
    add_info(subparsers)
    for module in SUBCOMMAND_MODULES:
        import_module(module).add_subparser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `... | head` closed the pipe: not an error worth a traceback
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
