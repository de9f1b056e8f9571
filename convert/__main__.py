"""``python -m convert``: convert a Keras model, or check a converted directory's parity.

    python -m convert MODEL.keras --out DIR [--data ...] [--formats ...] [--calibration-samples N]
    python -m convert parity DIR [--data ...] [--model MODEL.keras] [--gate-... overrides]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edge_runtime.cli_support import run_cli

PROG = "python -m convert"


def build_convert_parser() -> argparse.ArgumentParser:
    from convert.formats import ALL_KINDS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Convert a Keras classifier to TFLite and ONNX artifacts (float32, float16, int8) "
        "with a manifest.json. Use 'python -m convert parity DIR' to check them against the Keras model.",
    )
    parser.add_argument("model", help="the .keras model to convert")
    parser.add_argument("--out", required=True, help="output directory for the artifacts and manifest.json")
    parser.add_argument(
        "--data",
        default="bundled",
        help="data whose TRAINING split calibrates int8: 'bundled' (default), an IDX directory, a keras-layout .npz, or 'keras'",
    )
    parser.add_argument(
        "--formats",
        default="all",
        help=f"comma-separated artifacts to write (default all): {', '.join(k.artifact_name for k in ALL_KINDS)}",
    )
    parser.add_argument("--calibration-samples", type=int, default=500, help="training images used for int8 calibration")
    parser.add_argument("--seed", type=int, default=0, help="seed choosing the calibration images")
    parser.add_argument("--force", action="store_true", help="replace --out if it already exists")
    return parser


def convert_main(argv: Sequence[str]) -> int:
    from convert.converter import convert_model
    from convert.formats import parse_formats

    args = build_convert_parser().parse_args(argv)
    kinds = parse_formats(args.formats)
    manifest = convert_model(
        args.model,
        args.out,
        dataset=args.data,
        formats=kinds,
        calibration_samples=args.calibration_samples,
        seed=args.seed,
        force=args.force,
        progress=lambda line: print(line, flush=True),
    )
    print(f"wrote {len(manifest['artifacts'])} artifacts and manifest.json to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to ``parity`` when it is the first argument, else convert."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "parity":
        from convert.parity import parity_main

        return parity_main(args[1:])
    return convert_main(args)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from convert._quiet import quiet_libraries

    quiet_libraries()
    sys.exit(run_cli(PROG, main))
