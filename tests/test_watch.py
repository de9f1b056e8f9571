"""python -m edge_runtime watch: live classification of cameras, video files and image folders.

The videos are real MJPG AVI files written with OpenCV's VideoWriter from the
models' own test images, each image held for several frames; the Pi camera is
a stand-in ``picamera2`` module with picamera2's API that lays pixels out as the
real one does for the requested format. Slow models and live cameras are
stand-ins whose timing the tests control.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import edge_runtime
from edge_runtime.__main__ import PROG, main
from edge_runtime.cli_support import run_cli
from edge_runtime.errors import DataError
from edge_runtime.frames import Frame, open_source
from edge_runtime.images import decode_image, fit_image, load_image, resize_image
from edge_runtime.records.manifest import InputSpec
from edge_runtime.watch import Watch, WatchOptions

FRAMES_PER_IMAGE = 5
VIDEO_FPS = 10.0
RECORD_KEYS = {"frame", "time", "label", "probability", "top_k", "latency_ms"}
SUMMARY = re.compile(
    r"watch: (?P<read>\d+) frames read, (?P<classified>\d+) classified, (?P<skipped>\d+) skipped, "
    r"(?P<dropped>\d+) dropped; latency mean [\d.]+ ms, p99 [\d.]+ ms; [\d.]+ frames/s classified in [\d.]+ s "
    r"\((?P<stopped>[^)]+)\)"
)


# ---------------------------------------------------------------- helpers


def _run(argv, capfd) -> tuple[int, str, str]:
    code = run_cli(PROG, main, ["watch", *map(str, argv)])
    out, err = capfd.readouterr()
    return code, out, err


def _records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _summary(err: str) -> dict[str, str]:
    found = [m.groupdict() for m in map(SUMMARY.fullmatch, err.strip().splitlines()) if m]
    assert len(found) == 1, err
    return found[0]


def _assert_one_line_error(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{PROG}: error: ") and fragment in lines[0], lines[0]


def write_video(path: Path, images: np.ndarray, frame_size: tuple[int, int] | None = None,
                fps: float = VIDEO_FPS) -> Path:
    """An MJPG AVI showing each RGB or grayscale image for FRAMES_PER_IMAGE frames.

    ``frame_size`` (height, width) puts each image, scaled up by a whole factor
    with nearest-neighbour, in the centre of a larger 4:3 frame with grey bars,
    as a camera would frame it; centre-cropping and a bilinear resize back give
    the image's own pixels again (up to JPEG's losses).
    """
    import cv2

    frames = []
    for image in images:
        rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        if frame_size is not None:
            factor = frame_size[0] // rgb.shape[0]
            big = np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)
            frame = np.full((*frame_size, 3), 128, np.uint8)
            left = (frame_size[1] - big.shape[1]) // 2
            frame[:, left : left + big.shape[1]] = big
            rgb = frame
        frames.append(rgb)
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        for _ in range(FRAMES_PER_IMAGE):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def confident_per_class(model, images: np.ndarray, labels: np.ndarray, minimum: float = 0.95) -> np.ndarray:
    """Positions of one correctly and confidently classified image per class, in class order.

    The video tests are about the capture loop, not JPEG's effect on images at a
    decision boundary: they use images the model is sure of.
    """
    probabilities = model.predict(images)
    chosen = []
    for cls in range(probabilities.shape[1]):
        ok = np.flatnonzero(
            (labels == cls) & (probabilities.argmax(axis=1) == cls) & (probabilities.max(axis=1) >= minimum)
        )
        assert len(ok), f"no confident test image of class {cls}"
        chosen.append(ok[0])
    return np.array(chosen)


class SlowModel:
    """A real model whose predict takes at least ``seconds``: stands in for a big model on a small CPU."""

    def __init__(self, model, seconds: float, on_call=lambda: None) -> None:
        self._model, self.seconds, self.on_call = model, seconds, on_call
        self.input, self.num_classes, self.class_labels = model.input, model.num_classes, model.class_labels

    def predict(self, x):
        self.on_call()
        time.sleep(self.seconds)
        return self._model.predict(x)


class RecordingModel:
    """An RGB image model that keeps the pixels it is given; its answer is the mean red-minus-blue."""

    def __init__(self, shape=(32, 32, 3)) -> None:
        self.input = InputSpec("image", shape, "rgb", digits=False)
        self.num_classes, self.class_labels = 2, ("bluish", "reddish")
        self.seen: list[np.ndarray] = []

    def predict(self, x):
        self.seen.append(np.array(x))
        redder = float(x[..., 0].mean()) > float(x[..., 2].mean())
        return np.array([[0.0, 1.0] if redder else [1.0, 0.0]], np.float32)


class LiveStandIn:
    """A camera producing a numbered frame every ``interval`` seconds whether read or not."""

    live = True
    fps = None
    name = "stand-in camera"

    def __init__(self, frames: np.ndarray, interval: float, stall_after: int | None = None) -> None:
        self.frames, self.interval, self.stall_after = frames, interval, stall_after
        self.produced = 0
        self.closed = False
        self._release = threading.Event()

    def read(self):
        if self.stall_after is not None and self.produced >= self.stall_after:
            self._release.wait()  # a driver that stops delivering and never returns
            return None
        time.sleep(self.interval)
        self.produced += 1
        return Frame(self.frames[(self.produced - 1) % len(self.frames)])

    def close(self):
        self.closed = True

    def release(self):
        self._release.set()


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mnist_model_path(small_mlp_artifacts) -> Path:
    return small_mlp_artifacts / "tflite_int8.tflite"


@pytest.fixture(scope="module")
def digits(mnist_model_path, mnist) -> tuple[np.ndarray, list[str]]:
    """One confidently classified real MNIST test digit per class and the model's labels for them."""
    model = edge_runtime.load(mnist_model_path)
    images = mnist.x_test[confident_per_class(model, mnist.x_test[:2000], mnist.y_test[:2000])]
    return images, model.classify(images)


@pytest.fixture(scope="module")
def digit_video(tmp_path_factory, digits) -> Path:
    return write_video(tmp_path_factory.mktemp("watch_video") / "digits.avi", digits[0])


@pytest.fixture(scope="module")
def rgb_model_path(rgb_cnn_artifacts) -> Path:
    """The RGB separable CNN trained by ``python -m train --arch cnn`` on a folder of coloured shapes,
    full-integer int8."""
    return rgb_cnn_artifacts / "tflite_int8.tflite"


@pytest.fixture(scope="module")
def shapes(rgb_model_path) -> tuple[np.ndarray, list[str]]:
    """Confident test images of each shape from the model's own test split, twice over (a, b, c, c, b, a),
    and their labels."""
    from convert.parity import load_test_data

    model = edge_runtime.load(rgb_model_path)
    data = load_test_data(model.manifest, None)  # the recorded data set, read with the recorded split
    chosen = confident_per_class(model, data.x_test, data.y_test, minimum=0.8)
    images = data.x_test[np.concatenate([chosen, chosen[::-1]])]
    return images, model.classify(images)


PICAMERA2_STAND_IN = textwrap.dedent(
    '''
    """Stand-in for picamera2: the API watch uses, pixels laid out as the real one lays them out."""
    import json, os, threading, time
    import numpy as np

    _FRAMES = np.load(os.environ["FAKE_PICAMERA2_FRAMES"])  # RGB frames
    _AFTER = os.environ.get("FAKE_PICAMERA2_AFTER", "loop")  # loop | stall | fail
    _INTERVAL = float(os.environ.get("FAKE_PICAMERA2_INTERVAL", "0"))

    def _log(**event):
        with open(os.environ["FAKE_PICAMERA2_LOG"], "a") as f:
            f.write(json.dumps(event) + "\\n")

    class Picamera2:
        camera_controls = {"FrameDurationLimits": (33333, 1000000, 33333)}

        def __init__(self, camera_num=0):
            if os.environ.get("FAKE_PICAMERA2_CAMERAS") == "0":
                raise IndexError("list index out of range")
            self.config = None
            self.started = False
            self.index = 0
            _log(call="init")

        def create_preview_configuration(self, main=None, **kwargs):
            main = dict(main or {})
            main.setdefault("format", "XBGR8888")
            main.setdefault("size", (640, 480))
            return {"use_case": "preview", "main": main}

        def configure(self, config):
            self.config = config
            _log(call="configure", main={k: list(v) if isinstance(v, tuple) else v for k, v in config["main"].items()})

        def start(self):
            assert self.config is not None, "configure() before start()"
            self.started = True
            _log(call="start")

        def capture_array(self, name="main"):
            assert self.started and name == "main"
            if self.index >= len(_FRAMES) and _AFTER != "loop":
                if _AFTER == "stall":
                    threading.Event().wait()
                raise RuntimeError("Camera frontend has timed out!")
            rgb = _FRAMES[self.index % len(_FRAMES)]
            self.index += 1
            time.sleep(_INTERVAL)
            alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
            fmt = self.config["main"]["format"]
            # libcamera names formats by the little-endian word: "RGB888" is [B, G, R] in memory.
            layouts = {"BGR888": rgb, "RGB888": rgb[..., ::-1], "XBGR8888": np.dstack([rgb, alpha]),
                       "XRGB8888": np.dstack([rgb[..., ::-1], alpha])}
            return np.ascontiguousarray(layouts[fmt])

        def stop(self):
            self.started = False
            _log(call="stop")

        def close(self):
            _log(call="close")
    '''
)


@pytest.fixture()
def picamera2(tmp_path):
    """Run ``python -m edge_runtime watch MODEL picamera2 ...`` with the stand-in module importable."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "picamera2.py").write_text(PICAMERA2_STAND_IN)
    log = tmp_path / "camera.log"

    def start(model: Path, frames: np.ndarray, *args, **fake) -> subprocess.Popen:
        rgb = np.repeat(frames[..., None], 3, axis=-1) if frames.ndim == 3 else frames  # grayscale digits as RGB frames
        np.save(tmp_path / "frames.npy", rgb)
        env = dict(os.environ, PYTHONPATH=str(stub), FAKE_PICAMERA2_FRAMES=str(tmp_path / "frames.npy"),
                   FAKE_PICAMERA2_LOG=str(log), **{f"FAKE_PICAMERA2_{k.upper()}": str(v) for k, v in fake.items()})
        return subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "watch", str(model), "picamera2", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )

    start.calls = lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return start


# ---------------------------------------------------------------- video files, MNIST


def test_video_file_reports_each_digits_label_on_every_frame(digit_video, digits, mnist_model_path, capfd):
    images, expected = digits
    code, out, err = _run([mnist_model_path, digit_video], capfd)
    assert code == 0, err
    records = _records(out)
    assert [r["frame"] for r in records] == list(range(len(images) * FRAMES_PER_IMAGE))
    assert [r["label"] for r in records] == [label for label in expected for _ in range(FRAMES_PER_IMAGE)]
    summary = _summary(err)
    assert (summary["read"], summary["classified"], summary["skipped"], summary["dropped"]) == ("50", "50", "0", "0")
    assert summary["stopped"] == "end of source"


def test_records_follow_the_json_schema_on_the_videos_timeline(digit_video, mnist_model_path, capfd):
    code, out, _ = _run([mnist_model_path, digit_video, "--top-k", "4", "--max-frames", "12"], capfd)
    assert code == 0
    model = edge_runtime.load(mnist_model_path)
    for record in _records(out):
        assert set(record) == RECORD_KEYS
        assert record["time"] == pytest.approx(record["frame"] / VIDEO_FPS)
        top = record["top_k"]
        assert len(top) == 4 and {e["label"] for e in top} <= set(model.class_labels)
        assert [e["probability"] for e in top] == sorted((e["probability"] for e in top), reverse=True)
        assert (top[0]["label"], top[0]["probability"]) == (record["label"], record["probability"])
        assert 0 < record["probability"] <= 1 and record["latency_ms"] > 0


@pytest.mark.parametrize("subset", [["--every", "5"], ["--fps", "2"]])
def test_every_and_fps_classify_the_first_frame_of_each_image(subset, digit_video, digits, mnist_model_path, capfd):
    # 10 fps video, each image 5 frames: every 5th frame and 2 per second of video pick the same frames.
    code, out, err = _run([mnist_model_path, digit_video, *subset], capfd)
    assert code == 0
    records = _records(out)
    assert [r["frame"] for r in records] == list(range(0, 50, FRAMES_PER_IMAGE))
    assert [r["label"] for r in records] == digits[1]
    summary = _summary(err)
    assert (summary["read"], summary["classified"], summary["skipped"], summary["dropped"]) == ("50", "10", "40", "0")


def test_on_change_reports_each_new_label_once(digit_video, digits, mnist_model_path, capfd):
    code, out, err = _run([mnist_model_path, digit_video, "--on-change"], capfd)
    assert code == 0
    records = _records(out)
    assert [r["label"] for r in records] == digits[1]  # ten different digits in a row
    assert [r["frame"] for r in records] == list(range(0, 50, FRAMES_PER_IMAGE))
    assert _summary(err)["classified"] == "50"


def test_threshold_reports_only_confident_frames(digit_video, mnist_model_path, capfd):
    _, out, _ = _run([mnist_model_path, digit_video], capfd)
    every = _records(out)
    levels = np.unique([r["probability"] for r in every])
    # between two levels: no rounding doubt
    threshold = float(levels[len(levels) // 2 - 1] + levels[len(levels) // 2]) / 2
    code, out, _ = _run([mnist_model_path, digit_video, "--threshold", threshold], capfd)
    assert code == 0
    confident = [(r["frame"], r["label"], r["probability"]) for r in every if r["probability"] >= threshold]
    assert [(r["frame"], r["label"], r["probability"]) for r in _records(out)] == confident
    assert 0 < len(confident) < len(every)


def test_max_frames_stops_reading_after_n_classified(digit_video, mnist_model_path, capfd):
    code, out, err = _run([mnist_model_path, digit_video, "--every", "2", "--max-frames", "7"], capfd)
    assert code == 0
    assert [r["frame"] for r in _records(out)] == list(range(0, 14, 2))
    summary = _summary(err)
    assert (summary["read"], summary["classified"], summary["skipped"], summary["stopped"]) == (
        "13", "7", "6", "max frames"
    )


# ---------------------------------------------------------------- RGB model: colour, crop, the Pi camera


@pytest.mark.slow
def test_rgb_video_frames_reach_the_model_as_rgb_cropped_to_its_aspect_ratio(tmp_path, shapes, rgb_model_path, capfd):
    images, expected = shapes
    # 120×160 (4:3) frames: each 40×48 test image ×3 in the centre, grey bars at the sides.
    video = write_video(tmp_path / "shapes.avi", images, frame_size=(120, 160))
    code, out, err = _run([rgb_model_path, video], capfd)
    assert code == 0, err
    labels = [r["label"] for r in _records(out)]
    assert labels == [label for label in expected for _ in range(FRAMES_PER_IMAGE)]
    assert set(expected) == set(edge_runtime.load(rgb_model_path).class_labels)


@pytest.mark.slow
def test_picamera2_frames_are_classified_in_rgb_and_the_camera_is_released(picamera2, shapes, rgb_model_path):
    images, expected = shapes
    process = picamera2(rgb_model_path, images, "--max-frames", len(images), interval=0.05)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    records = _records(out)
    assert [r["label"] for r in records] == expected
    # Lossless frames of the model's own size: exactly the probabilities of predict on the images.
    model = edge_runtime.load(rgb_model_path)
    probabilities = model.predict(images)
    assert [r["probability"] for r in records] == [round(float(p), 6) for p in probabilities.max(axis=1)]
    calls = picamera2.calls()
    assert [c["call"] for c in calls] == ["init", "configure", "start", "stop", "close"]
    assert calls[1]["main"] == {"size": [640, 480], "format": "BGR888"}
    assert _summary(err)["classified"] == str(len(images))


def test_picamera2_capture_size_comes_from_size(picamera2, mnist_model_path, digits):
    process = picamera2(mnist_model_path, digits[0], "--max-frames", 3, "--size", "320x240")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert picamera2.calls()[1]["main"]["size"] == [320, 240]


def test_picamera2_missing_module_names_the_apt_package(mnist_model_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    code, _, err = _run([mnist_model_path, "picamera2"], capfd)
    _assert_one_line_error(code, err, "sudo apt install python3-picamera2")
    assert "--system-site-packages" in err


def test_picamera2_built_for_another_numpy_says_how_to_fix_it(tmp_path, mnist_model_path, capfd, monkeypatch):
    # Debian's simplejpeg (imported by picamera2) fails like this in a venv with numpy 2.
    (tmp_path / "picamera2.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility. "
        "Expected 96 from C header, got 88')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    code, _, err = _run([mnist_model_path, "picamera2"], capfd)
    _assert_one_line_error(code, err, "numpy.dtype size changed")
    assert "pip install --force-reinstall simplejpeg" in err


def test_picamera2_without_a_camera_is_a_one_line_error(picamera2, mnist_model_path, digits):
    process = picamera2(mnist_model_path, digits[0], cameras=0)
    _, err = process.communicate(timeout=60)
    _assert_one_line_error(process.returncode, err, "SOURCE picamera2: no camera could be opened")


def test_stalled_camera_times_out_with_summary_and_exit_2(picamera2, mnist_model_path, digits):
    started = time.monotonic()
    process = picamera2(mnist_model_path, digits[0][:3], "--timeout", "1", after="stall", interval=0.05)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert len(_records(out)) == 3
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    summary = _summary(lines[0])
    assert (summary["read"], summary["classified"], summary["stopped"]) == ("3", "3", "error")
    assert lines[1] == f"{PROG}: error: SOURCE picamera2: no frame for 1 s; the camera stopped delivering"
    assert time.monotonic() - started < 30


def test_camera_failing_mid_stream_is_a_one_line_error_after_the_summary(picamera2, mnist_model_path, digits):
    process = picamera2(mnist_model_path, digits[0][:4], after="fail", interval=0.05)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert len(_records(out)) == 4
    lines = err.strip().splitlines()
    assert _summary(lines[0])["read"] == "4"
    assert lines[1] == f"{PROG}: error: SOURCE picamera2: reading a frame failed (Camera frontend has timed out!)"
    assert [c["call"] for c in picamera2.calls()][-2:] == ["stop", "close"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_summary_and_exits_0(sig, picamera2, mnist_model_path, digits):
    process = picamera2(mnist_model_path, digits[0], interval=0.01)
    first = json.loads(process.stdout.readline())
    assert first["frame"] == 0
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    summary = _summary(err)
    assert summary["stopped"] == sig.name
    assert int(summary["classified"]) == 1 + len(_records(out))  # the first line was read above
    assert int(summary["read"]) == int(summary["classified"]) + int(summary["dropped"])
    assert [c["call"] for c in picamera2.calls()][-2:] == ["stop", "close"]


# ---------------------------------------------------------------- live sources: dropping, stalls


def test_slow_model_on_a_live_camera_drops_frames_instead_of_lagging(mnist_model_path, digits):
    camera = LiveStandIn(digits[0], interval=0.002)
    produced_at_call = []  # frames the camera had produced when the model started on a frame
    model = SlowModel(edge_runtime.load(mnist_model_path), seconds=0.05,
                      on_call=lambda: produced_at_call.append(camera.produced))
    frames = []
    summary = Watch(model, camera, WatchOptions(max_frames=8)).run(lambda record, _: frames.append(record["frame"]))
    assert summary.classified == 8 and summary.skipped == 0
    assert summary.dropped > 0
    assert summary.frames_read == summary.classified + summary.dropped
    assert frames == sorted(frames) and max(np.diff(frames)) > 1
    # Each frame the model took was the newest one (a backlog would lag ~25 frames more per frame).
    lags = [produced - frame - 1 for frame, produced in zip(frames, produced_at_call[1:])]  # [0] is the warm-up
    assert max(lags) <= 5, lags
    assert camera.closed


def test_without_realtime_a_video_loses_no_frame_to_a_slow_model(digit_video, mnist_model_path):
    model = SlowModel(edge_runtime.load(mnist_model_path), seconds=0.01)
    frames = []
    summary = Watch(model, open_source(str(digit_video), color_mode="grayscale")).run(
        lambda r, _: frames.append(r["frame"])
    )
    assert frames == list(range(50))
    assert (summary.frames_read, summary.dropped) == (50, 0)


def test_realtime_plays_a_video_at_its_frame_rate_and_drops_what_the_model_misses(tmp_path, digits, mnist_model_path):
    video = write_video(tmp_path / "fast.avi", digits[0], fps=100.0)  # 50 frames in 0.5 s
    model = SlowModel(edge_runtime.load(mnist_model_path), seconds=0.03)
    summary = Watch(model, open_source(str(video), color_mode="grayscale"), WatchOptions(realtime=True)).run(
        lambda r, _: None
    )
    assert summary.frames_read == 50
    assert summary.dropped > 0 and summary.classified + summary.dropped == 50
    assert summary.seconds >= 0.49  # not faster than the video's own 0.5 s


def test_stalled_live_source_raises_after_the_timeout_with_the_account_kept(mnist_model_path, digits):
    camera = LiveStandIn(digits[0], interval=0.001, stall_after=2)
    run = Watch(edge_runtime.load(mnist_model_path), camera, WatchOptions(timeout=0.3))
    try:
        with pytest.raises(DataError, match=r"SOURCE stand-in camera: no frame for 0.3 s"):
            run.run(lambda r, _: None)
    finally:
        camera.release()
    summary = run.summary()
    assert (summary.frames_read, summary.classified, summary.stopped_by) == (2, 2, "error")


# ---------------------------------------------------------------- image directories


@pytest.fixture(scope="module")
def digit_dir(tmp_path_factory, digits) -> Path:
    from PIL import Image

    folder = tmp_path_factory.mktemp("digit_dir")
    for i, image in enumerate(digits[0]):
        # Dark ink on white paper at 3x: the digit pipeline must invert and scale it back.
        Image.fromarray(255 - np.kron(image, np.ones((3, 3), np.uint8))).save(folder / f"shot_{i:02d}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_image_directory_is_read_in_name_order_like_predict_reads_files(digit_dir, mnist_model_path, capfd):
    model = edge_runtime.load(mnist_model_path)
    paths = sorted(digit_dir.glob("*.png"))
    expected = model.classify(np.stack([load_image(p, (28, 28)) for p in paths]))
    code, out, err = _run([mnist_model_path, digit_dir], capfd)
    assert code == 0, err
    records = _records(out)
    assert [r["file"] for r in records] == [str(p) for p in paths]
    assert [r["label"] for r in records] == expected
    assert set(records[0]) == RECORD_KEYS | {"file"}
    assert _summary(err)["read"] == str(len(paths))


def test_glob_source_takes_only_matching_files(digit_dir, mnist_model_path, capfd):
    code, out, _ = _run([mnist_model_path, f"{digit_dir}/shot_0[2-4].png"], capfd)
    assert code == 0
    assert [Path(r["file"]).name for r in _records(out)] == ["shot_02.png", "shot_03.png", "shot_04.png"]


def test_image_directory_needs_no_opencv(digit_dir, mnist_model_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    code, out, _ = _run([mnist_model_path, digit_dir, "--max-frames", "2"], capfd)
    assert code == 0 and len(_records(out)) == 2


@pytest.mark.parametrize("resize, crop", [("crop", True), ("squash", False)])
def test_resize_crops_or_squashes_the_frame_before_the_model(resize, crop, tmp_path, monkeypatch, capfd):
    from PIL import Image

    wide = np.random.default_rng(0).integers(0, 256, (40, 100, 3), dtype=np.uint8)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    model = RecordingModel()
    monkeypatch.setattr(edge_runtime, "load", lambda *a, **k: model)
    code, _, err = _run(["any.tflite", tmp_path, "--resize", resize], capfd)
    assert code == 0, err
    np.testing.assert_array_equal(model.seen[-1], resize_image(wide, (32, 32), crop_to_aspect_ratio=crop))
    assert len(model.seen) == 2  # the blank warm-up frame, then the image


def test_video_frames_are_rgb_not_opencvs_bgr(tmp_path):
    red = np.zeros((1, 64, 64, 3), np.uint8)
    red[..., 0] = 220
    model = RecordingModel()
    records = []
    Watch(model, open_source(str(write_video(tmp_path / "red.avi", red)))).run(lambda r, _: records.append(r["label"]))
    assert records == ["reddish"] * FRAMES_PER_IMAGE
    channels = model.seen[-1].reshape(-1, 3).mean(axis=0)
    assert channels[0] > 200 and channels[2] < 20


# ---------------------------------------------------------------- the terminal status line


def test_terminal_gets_a_status_line_not_json(digit_video, mnist_model_path):
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "watch", str(mnist_model_path), str(digit_video), "--on-change"],
        stdout=secondary, stderr=subprocess.PIPE, text=True,
    )
    os.close(secondary)
    _, err = process.communicate(timeout=60)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert process.returncode == 0, err
    text = shown.decode()
    assert "{" not in text  # no JSON on a terminal
    assert "\r\x1b[K" in text
    kept = [line for line in text.replace("\r\n", "\n").split("\n") if "frame" in line and ": " in line]
    changes = [line.split("\x1b[K")[-1] for line in kept]
    assert len([c for c in changes if re.match(r"\s*[\d.]+ s  frame \d+: \S+ \(", c)]) == 10
    assert _summary(err)["classified"] == "50"


# ---------------------------------------------------------------- bad input


def test_without_opencv_a_video_source_says_what_to_install(digit_video, mnist_model_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    code, _, err = _run([mnist_model_path, digit_video], capfd)
    _assert_one_line_error(code, err, "pip install 'keras2edge[watch]'")


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("/dev/video99", "SOURCE /dev/video99: no such device"),
        ("nowhere.avi", "SOURCE nowhere.avi: no such file, directory or device"),
        ("99", "SOURCE 99: cannot open the camera"),
    ],
)
def test_missing_source_is_a_one_line_error(source, fragment, mnist_model_path, capfd):
    code, _, err = _run([mnist_model_path, source], capfd)
    _assert_one_line_error(code, err, fragment)


def test_unreadable_video_is_a_one_line_error(tmp_path, mnist_model_path, capfd):
    (tmp_path / "broken.avi").write_bytes(b"RIFF" + os.urandom(2000))
    code, _, err = _run([mnist_model_path, tmp_path / "broken.avi"], capfd)
    _assert_one_line_error(code, err, f"SOURCE {tmp_path / 'broken.avi'}: cannot read the video")


def test_directory_without_images_is_a_one_line_error(tmp_path, mnist_model_path, capfd):
    (tmp_path / "notes.txt").write_text("x")
    code, _, err = _run([mnist_model_path, tmp_path], capfd)
    _assert_one_line_error(code, err, "no image files")


def test_unreadable_image_in_a_directory_stops_with_the_summary_and_names_the_file(
    tmp_path, digit_dir, mnist_model_path, capfd
):
    for i in range(2):
        (tmp_path / f"a{i}.png").write_bytes((digit_dir / f"shot_0{i}.png").read_bytes())
    (tmp_path / "b.png").write_bytes(b"not a png")
    code, out, err = _run([mnist_model_path, tmp_path], capfd)
    assert code == 2 and len(_records(out)) == 2
    lines = err.strip().splitlines()
    assert _summary(lines[0])["classified"] == "2"
    assert lines[1].startswith(f"{PROG}: error: {tmp_path / 'b.png'}: cannot read image")


def test_realtime_needs_a_source_with_a_frame_rate(digit_dir, mnist_model_path, capfd):
    code, _, err = _run([mnist_model_path, digit_dir, "--realtime"], capfd)
    _assert_one_line_error(code, err, "--realtime plays a video at its own frame rate")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--threshold", "1.5"], "--threshold: must be between 0 and 1, got 1.5"),
        (["--every", "2", "--fps", "3"], "argument --fps: not allowed with argument --every"),
        (["--size", "640"], "--size: expected WIDTHxHEIGHT such as 640x480, got '640'"),
        (["--resize", "stretch"], "--resize: invalid choice: 'stretch'"),
        (["--timeout", "0"], "--timeout: must be greater than 0, got 0"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args, fragment, digit_video, mnist_model_path, capfd):
    with pytest.raises(SystemExit) as exit_info:
        _run([mnist_model_path, digit_video, *args], capfd)
    err = capfd.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and fragment in err, err


def test_top_k_beyond_the_classes_is_a_one_line_error(digit_video, mnist_model_path, capfd):
    code, _, err = _run([mnist_model_path, digit_video, "--top-k", "11"], capfd)
    _assert_one_line_error(code, err, "--top-k 11 is more than the model's 10 classes")


def test_feature_model_is_refused(mnist_model_path, digit_video):
    features = RecordingModel()
    features.input = InputSpec("features", (4,), None, digits=False)
    with pytest.raises(DataError, match="watch needs an image model"):
        Watch(features, open_source(str(digit_video)))


# ---------------------------------------------------------------- fit_image: frames and files share one path


def test_fit_image_of_a_decoded_file_equals_load_image(tmp_path):
    from PIL import Image

    photo = np.random.default_rng(1).integers(0, 256, (45, 70, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    for color_mode, digits in (("rgb", False), ("grayscale", False), ("grayscale", True)):
        for crop in (True, False):
            options = dict(color_mode=color_mode, digits=digits, crop_to_aspect_ratio=crop)
            np.testing.assert_array_equal(fit_image(photo, (24, 24), **options),
                                          load_image(tmp_path / "photo.png", (24, 24), **options))
    # A grayscale model gets Pillow's luma of an RGB frame, exactly as decode_image gives for the file.
    np.testing.assert_array_equal(fit_image(photo, (45, 70), digits=False),
                                  decode_image(tmp_path / "photo.png", "grayscale"))


@pytest.mark.parametrize(
    "pixels, fragment",
    [
        (np.zeros((8, 8, 3), np.float32), "expected uint8 pixels"),
        (np.zeros((8, 8, 4), np.uint8), "expected uint8 pixels"),
        (np.zeros((0, 8), np.uint8), "expected uint8 pixels"),
    ],
)
def test_fit_image_refuses_what_is_not_a_frame(pixels, fragment):
    with pytest.raises(DataError, match=fragment):
        fit_image(pixels, (4, 4), color_mode="rgb", digits=False)


def test_image_directory_reaches_a_digit_model_as_the_same_pixels_as_predict(tmp_path, mnist):
    """A large JPEG is decoded at a reduced scale for a digit model by predict; watch must decode it alike."""
    from benchmarks.digit_photos import photo_of_size

    (tmp_path / "photos").mkdir()
    path = tmp_path / "photos" / "digit.jpg"
    path.write_bytes(photo_of_size(mnist.x_test[0], 4))
    frame = open_source(str(tmp_path / "photos"), color_mode="grayscale", digits=True).read()
    through_watch = fit_image(frame.pixels, (28, 28), color_mode="grayscale", digits=True)
    np.testing.assert_array_equal(through_watch, load_image(path, (28, 28), color_mode="grayscale", digits=True))
    # an RGB model's files are decoded at full size, as predict decodes them
    rgb = open_source(str(path), color_mode="rgb").read()
    assert rgb.pixels.shape == decode_image(path, "rgb").shape
