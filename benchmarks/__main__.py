"""``python -m benchmarks ARTIFACT_DIR --out DIR``: measure and write the report.

Every input is checked before anything is measured (a bad ``--batch-sizes`` should
not cost a minute of benchmarking first), and the output directory is built aside
and moved into place only when complete.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_runtime.atomic import check_output_dir, staged_dir
from edge_runtime.cli_support import ArgumentParser, run_cli
from edge_runtime.errors import Keras2EdgeError

PROG = "python -m benchmarks"


def positive_int_list(text: str, option: str) -> list[int]:
    """Parse ``"1,8,64"`` into ``[1, 8, 64]``: positive, unique, in the given order.

    Raises
    ------
    Keras2EdgeError
        Empty, not integers, or not positive.

    Examples
    --------
    >>> positive_int_list("1, 8,64", "--batch-sizes")
    [1, 8, 64]
    """
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise Keras2EdgeError(f"{option} must be a comma-separated list of positive integers, got '{text}'")
    return list(dict.fromkeys(values))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (also used to render ``--help``)."""
    parser = ArgumentParser(
        prog=PROG,
        description="Benchmark every artifact in a keras2edge artifact directory on this machine: latency per "
                    "backend, batch size and thread count, edge_runtime vs a hand-written interpreter loop, cold "
                    "start and memory, and the Keras baseline when TensorFlow is installed.")
    parser.add_argument("artifact_dir", type=Path, help="directory written by `python -m convert` (manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="report directory to create")
    parser.add_argument("--batch-sizes", help="comma-separated, default 1,8,64,256 (--quick: 1,32)")
    parser.add_argument("--threads", help="comma-separated thread counts, default 1 and all usable cores "
                                          "(--quick: 1)")
    parser.add_argument("--quick", action="store_true", help="short run for CI (under a minute on 2 cores)")
    parser.add_argument("--compare", type=Path, help="another run's results.json to show side by side")
    parser.add_argument("--keras-model", type=Path, help="source .keras model, if not beside the artifacts")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, validate every input, measure, and write the report atomically.

    ``python -m benchmarks serve MODEL ...`` is the HTTP server comparison (:mod:`benchmarks.serve`).
    """
    from benchmarks import report, runner

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from benchmarks import serve

        return serve.main(argv[1:])
    args = build_parser().parse_args(argv)
    batch_sizes = positive_int_list(args.batch_sizes, "--batch-sizes") if args.batch_sizes else None
    threads = positive_int_list(args.threads, "--threads") if args.threads else None
    check_output_dir(args.out, args.force)
    manifest = runner.load_manifest(args.artifact_dir)
    parity = runner.load_parity(args.artifact_dir)
    other = report.load_results(args.compare) if args.compare else None
    if args.keras_model is not None and not args.keras_model.is_file():
        raise Keras2EdgeError(f"--keras-model '{args.keras_model}' does not exist")
    config = runner.BenchConfig.for_mode(args.artifact_dir.absolute(), batch_sizes, threads, args.quick,
                                         args.keras_model)
    doc = runner.run_benchmarks(config, manifest, parity)
    with staged_dir(args.out, args.force) as stage:
        report.write_outputs(stage, doc, other, str(args.compare or ""))
    runner.progress(f"wrote {args.out}/report.md, results.json, results.csv and charts "
                    f"in {doc['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(PROG, main))
