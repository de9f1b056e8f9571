"""``python -m convert``: convert a Keras model, check parity, bundle it for a device, export it for microcontrollers.

    python -m convert MODEL.keras --out DIR [--data ...] [--formats ...] [--calibration-samples N]
    python -m convert parity DIR [--data ...] [--model MODEL.keras] [--gate-... overrides]
    python -m convert bundle DIR --artifact NAME --out BUNDLE [--target arm64|armv7l|x86_64]
    python -m convert mcu DIR --out SRC [--artifact tflite_int8] [--flash-bytes N] [--data ...] [--test-samples N]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edge_runtime.cli_support import ArgumentParser, positive_int, run_cli
from edge_runtime.errors import Keras2EdgeError
from train.data_options import DATA_HELP, add_data_arguments, data_options

PROG = "python -m convert"


def _floats(text: str) -> tuple[float, ...]:
    """``argparse`` type for ``--mean`` / ``--std``: comma-separated finite numbers."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not all(abs(v) < float("inf") for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return values


def build_convert_parser() -> argparse.ArgumentParser:
    from convert.converter import DEFAULT_CALIBRATION_SAMPLES
    from convert.formats import ALL_KINDS
    from convert.inputs import PREPROCESS_CHOICES

    parser = ArgumentParser(
        prog=PROG,
        description="Convert a Keras classifier to TFLite and ONNX artifacts (float32, float16, int8) "
        "with a manifest.json. Use 'python -m convert parity DIR' to check them against the Keras model.",
    )
    parser.add_argument("model",
                        help="the model to convert: a .keras or .h5 file, or a SavedModel directory (model.export)")
    parser.add_argument("--out", required=True, help="output directory for the artifacts and manifest.json")
    add_data_arguments(parser, data_default=None,
                       data_help="data whose TRAINING split calibrates int8 and whose test split gives samples.npz: "
                       + DATA_HELP + " (default: the data in training.json beside the model, else bundled MNIST)")
    parser.add_argument(
        "--formats",
        default="all",
        help=f"comma-separated artifacts to write (default all): {', '.join(k.artifact_name for k in ALL_KINDS)}",
    )
    parser.add_argument(
        "--preprocess",
        choices=PREPROCESS_CHOICES,
        default=None,
        help="what the model expects from raw 0-255 pixels: unit (x/255), symmetric (x/127.5-1), imagenet "
        "(x/255 then ImageNet mean/std), raw (0-255; the default when the model starts with a Rescaling layer). "
        "Default: training.json beside the model, else detected, else unit",
    )
    parser.add_argument("--mean", type=_floats, default=None, metavar="M[,M...]",
                        help="per-channel (or per-feature) mean of raw input to subtract; with --std")
    parser.add_argument("--std", type=_floats, default=None, metavar="S[,S...]",
                        help="per-channel (or per-feature) std of raw input to divide by; with --mean")
    parser.add_argument("--calibration-samples", type=int, default=None,
                        help=f"training inputs used for int8 calibration (default {DEFAULT_CALIBRATION_SAMPLES}, "
                        "or the whole training split when it is smaller)")
    parser.add_argument("--seed", type=int, default=0, help="seed choosing the calibration images (default 0)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already exists")
    return parser


def convert_main(argv: Sequence[str]) -> int:
    from convert.converter import convert_model
    from convert.formats import parse_formats
    from convert.inputs import PreprocessOptions

    args = build_convert_parser().parse_args(argv)
    kinds = parse_formats(args.formats)
    manifest = convert_model(
        args.model,
        args.out,
        dataset=args.data,
        data_options=data_options(args),
        formats=kinds,
        calibration_samples=args.calibration_samples,
        seed=args.seed,
        preprocess=PreprocessOptions(args.preprocess, args.mean, args.std),
        force=args.force,
        progress=lambda line: print(line, flush=True),
    )
    count = len(manifest.artifacts)
    print(f"wrote {count} artifact{'s' if count != 1 else ''}, manifest.json and samples.npz to {args.out}")
    return 0


_GATE_OPTIONS = (
    ("agreement", "min_agreement", "minimum top-1 agreement with Keras, percent", 0.01),
    ("accuracy-drop", "max_accuracy_drop", "maximum accuracy drop vs Keras, percentage points", 0.01),
    ("max-diff", "max_abs_diff", "maximum absolute probability difference", 1.0),
)
PRECISIONS = ("float32", "float16", "int8")


def build_parity_parser() -> argparse.ArgumentParser:
    from convert.parity import DEFAULT_GATES

    parser = ArgumentParser(
        prog=f"{PROG} parity",
        description="Compare every artifact in DIR with its Keras model on the test images; write DIR/parity.json "
        "and DIR/parity.md; exit 1 if any artifact misses its gate.",
    )
    parser.add_argument("dir", help="a directory written by python -m convert")
    add_data_arguments(parser, data_default=None,
                       data_help="test data (default: the data set recorded in the manifest, "
                                 "which calibrated the artifacts)")
    parser.add_argument("--model", default=None,
                        help="the source .keras model (default: the path recorded in the manifest)")
    parser.add_argument("--backend", default="auto",
                        help="edge_runtime backend used to run the artifacts (default auto)")
    gates = parser.add_argument_group("gates", "override the default thresholds per precision")
    for precision in PRECISIONS:
        default = DEFAULT_GATES[precision]
        for option, attr, help_text, factor in _GATE_OPTIONS:
            current = getattr(default, attr)
            shown = "not gated" if current is None else f"{current / factor:g}"
            gates.add_argument(
                f"--gate-{precision}-{option}",
                type=float,
                default=None,
                metavar="X",
                help=f"{precision}: {help_text} (default {shown})",
            )
    return parser


def _gates_from_args(args: argparse.Namespace) -> dict:
    from dataclasses import replace

    from convert.parity import DEFAULT_GATES

    gates = {}
    for precision in PRECISIONS:
        gate = DEFAULT_GATES[precision]
        for option, attr, _, factor in _GATE_OPTIONS:
            value = getattr(args, f"gate_{precision}_{option.replace('-', '_')}")
            if value is not None:
                if value < 0:
                    raise Keras2EdgeError(f"--gate-{precision}-{option} must be >= 0, got {value:g}")
                gate = replace(gate, **{attr: value * factor})
        gates[precision] = gate
    return gates


def parity_main(argv: Sequence[str]) -> int:
    """Run parity, print the table, and return 1 if any gate failed."""
    from convert.parity import run_parity

    args = build_parity_parser().parse_args(argv)
    report = run_parity(args.dir, dataset=args.data, data_options=data_options(args), gates=_gates_from_args(args),
                        model_path=args.model, backend=args.backend, show=print)
    if not report.passed:
        for line in report.failures():
            print(f"{PROG} parity: FAILED {line}", file=sys.stderr)
        return 1
    print(f"all {len(report.artifacts)} artifacts passed; wrote {os.path.join(args.dir, 'parity.json')} and parity.md")
    return 0


def bundle_main(argv: Sequence[str]) -> int:
    """Build a device bundle (see :mod:`convert.bundle`)."""
    from convert import bundle

    parser = ArgumentParser(
        prog=f"{PROG} bundle",
        description="Package one artifact, its manifest and test samples, a keras2edge wheel and pinned "
        "requirements into a directory and tarball a Raspberry Pi installs without TensorFlow.",
    )
    bundle.add_arguments(parser)
    return bundle.run(parser.parse_args(argv))


def build_mcu_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog=f"{PROG} mcu",
        description="Export a full-integer int8 .tflite artifact for TensorFlow Lite Micro: model_data.h/.cc, "
        "model_ops.h, model_io.h, and mcu.json/mcu.md with the flash and tensor-arena bytes and the parity of the "
        "TFLite Micro interpreter with LiteRT on the test split. Needs keras2edge[mcu].",
    )
    parser.add_argument("dir", help="a directory written by python -m convert")
    parser.add_argument("--out", required=True, help="output directory for the sources and the report")
    parser.add_argument("--artifact", default="tflite_int8",
                        help="artifact name in DIR/manifest.json (default tflite_int8)")
    parser.add_argument("--flash-bytes", type=positive_int, default=None, metavar="N",
                        help="refuse a model larger than N bytes")
    add_data_arguments(parser, data_default=None,
                       data_help="test data (default: the data set recorded in the manifest)")
    parser.add_argument("--test-samples", type=positive_int, default=None, metavar="N",
                        help="measure parity on the first N test images (default all)")
    parser.add_argument("--force", action="store_true", help="replace --out if it already exists")
    return parser


def mcu_main(argv: Sequence[str]) -> int:
    """Export for TensorFlow Lite Micro and print where the numbers are."""
    from convert.mcu import export_mcu

    args = build_mcu_parser().parse_args(argv)
    record = export_mcu(
        args.dir,
        args.out,
        artifact=args.artifact,
        dataset=args.data,
        data_options=data_options(args),
        flash_bytes=args.flash_bytes,
        test_samples=args.test_samples,
        force=args.force,
        progress=lambda line: print(line, flush=True),
    )
    parity, timing = record["parity"], record["timing"]
    print(
        f"model {record['flash']['model_bytes']} bytes, tensor arena {record['arena']['recommended_bytes']} bytes, "
        f"ops {', '.join(record['ops'])}"
    )
    print(
        f"TFLite Micro vs LiteRT on {parity['images']} test images: agreement {parity['litert']['agreement']:.2%}, "
        f"max step difference {parity['litert']['max_step_difference']} "
        f"({parity['litert_builtin']['max_step_difference']} vs LiteRT's built-in kernels); "
        f"accuracy {parity['accuracy_micro']:.2%} (LiteRT {parity['accuracy_litert']:.2%}); "
        f"{timing['median_ms']:.3f} ms per inference on this machine"
    )
    print(f"wrote {', '.join(record['files'])} to {args.out}")
    return 0


# First word -> sub-command; anything else is a model to convert.
SUBCOMMANDS = {"parity": parity_main, "bundle": bundle_main, "mcu": mcu_main}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a sub-command when the first argument names one, else convert."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return SUBCOMMANDS[args[0]](args[1:])
    return convert_main(args)


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from convert._quiet import quiet_libraries

    quiet_libraries()
    sys.exit(run_cli(PROG, main))
