"""The data options shared by train, convert, parity and the benchmarks, and the progress bar."""

from __future__ import annotations

import io

import pytest

from edge_runtime.cli_support import ArgumentParser
from train.data_options import add_data_arguments, dataset_from_args
from train.image_folder import Progress


def _parse(*argv: str):
    parser = ArgumentParser(prog="test")
    add_data_arguments(parser)
    return parser.parse_args(list(argv))


def test_unset_options_are_none_so_the_loader_or_the_recorded_options_decide():
    from train.data_options import data_options

    args = _parse()
    assert args.data == "bundled"
    # None means "not given": convert and parity then use what training.json / the manifest recorded,
    # and load_dataset its own defaults (a fifth held out, the 'label' column).
    assert set(data_options(args).values()) == {None}


def test_callers_defaults_apply_only_when_the_user_gave_no_option(rgb_folder):
    # convert and parity pass the model's input size and colour mode as defaults.
    ds = dataset_from_args(_parse("--data", str(rgb_folder)), image_size=(32, 32), color_mode="grayscale")
    assert ds.x_train.shape[1:] == (32, 32)
    ds = dataset_from_args(_parse("--data", str(rgb_folder), "--image-size", "24x30", "--color-mode", "rgb"),
                           image_size=(32, 32), color_mode="grayscale")
    assert ds.x_train.shape[1:] == (24, 30, 3)


def test_every_option_reaches_the_loader(rgb_folder, tmp_path):
    from tests.datasets import write_feature_csv

    args = _parse("--data", str(rgb_folder), "--image-size", "20x20", "--crop-to-aspect-ratio",
                  "--test-fraction", "0.5", "--skip-bad-images")
    ds = dataset_from_args(args)
    assert ds.input.crop_to_aspect_ratio and ds.split["test_fraction"] == 0.5 and ds.load_options["skip_bad_images"]
    csv_path = write_feature_csv(tmp_path / "w.csv", label_column="kind")
    assert dataset_from_args(_parse("--data", str(csv_path), "--label-column", "kind")).num_classes == 3


@pytest.mark.parametrize("text", ["32", "32x", "x32", "0x32", "32x-1", "ax b"])
def test_image_size_must_be_height_x_width(text, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse("--image-size", text)
    assert exc.value.code == 2
    assert (f"argument --image-size: expected HxW (height x width, positive integers), e.g. 32x32, got {text!r}"
            in capsys.readouterr().err)


@pytest.mark.parametrize("text", ["0", "1", "-0.1", "nan", "half"])
def test_test_fraction_must_be_strictly_between_0_and_1(text, capsys):
    with pytest.raises(SystemExit):
        _parse("--test-fraction", text)
    assert (f"argument --test-fraction: expected a number between 0 and 1 (exclusive), got {text!r}"
            in capsys.readouterr().err)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_not_into_a_file():
    terminal, log = _Terminal(), io.StringIO()
    for stream in (terminal, log):
        bar = Progress(3, "decoding images", stream=stream)
        for _ in range(3):
            bar.advance()
        bar.close()
    assert terminal.getvalue().startswith("\rdecoding images: 1/3 (33%)")
    assert terminal.getvalue().endswith("\rdecoding images: 3/3 (100%)\n")
    assert log.getvalue() == ""
