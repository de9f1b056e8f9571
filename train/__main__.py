"""``python -m train``: train a classifier for any supported data and write ``model.keras`` + ``training.json``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from edge_runtime.atomic import check_output_dir, staged_dir
from edge_runtime.cli_support import ArgumentParser, run_cli
from train.data_options import add_data_arguments, dataset_from_args
from train.models import ARCHITECTURES, check_architecture
from train.training import TrainConfig, train_model

PROG = "python -m train"


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = ArgumentParser(
        prog=PROG,
        description="Train a Keras classifier on images or feature vectors (bundled MNIST by default).",
    )
    add_data_arguments(parser)
    parser.add_argument("--out", required=True, help="output directory for model.keras and training.json")
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default=defaults.arch,
                        help="mlp (images flattened, or feature vectors) or cnn (images)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--validation-split", type=float, default=defaults.validation_split)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate,
                        help="peak Adam learning rate (cosine-decayed to 0)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the weights and the batch order (the data split is seeded separately, with 0, "
                             "so convert and parity draw the same split)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="use only the first N training samples (quick experiments)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="0 silent, 1 progress bars, 2 a line per epoch")
    parser.add_argument("--force", action="store_true", help="replace --out if it already exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        learning_rate=args.learning_rate,
        seed=args.seed,
        train_limit=args.train_limit,
    )
    config.validate()
    check_output_dir(args.out, args.force)
    dataset = dataset_from_args(args, progress=False if args.verbose == 0 else None)
    check_architecture(config.arch, dataset.input)
    print(f"data: {dataset.describe()}", file=sys.stderr)
    if dataset.skipped:
        print(f"data: skipped {len(dataset.skipped)} unreadable image(s), e.g. {dataset.skipped[0]}", file=sys.stderr)
    model, record = train_model(dataset, config, verbose=args.verbose)
    with staged_dir(args.out, force=args.force) as stage:
        model.save(stage / "model.keras")
        record.write(stage)
    print(f"test accuracy {record.test_accuracy:.4f}, loss {record.test_loss:.4f}, "
          f"trained in {record.wall_time_seconds:.1f} s -> {os.path.join(args.out, 'model.keras')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(run_cli(PROG, main))
