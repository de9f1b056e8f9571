"""Where ``watch`` gets its frames: the Pi camera, a V4L2 camera, a video file, or images.

Every source hands out **RGB** (or grayscale) uint8 frames, never OpenCV's BGR: the
conversion happens here, once, so nothing downstream can feed a colour model red
and blue swapped. The sources differ in one way that matters to the caller:

``live``
    A camera produces frames whether or not anyone reads them. A reader slower
    than the camera must skip frames to stay current, and a camera that stops
    delivering must be noticed by a timeout (its ``read`` may block forever).
not live
    A video file or a set of images waits for its reader: nothing is lost when
    inference is slow. A video file knows each frame's position in time.

``SOURCE`` strings (:func:`open_source`):

- ``picamera2``: the Raspberry Pi camera, through the system's ``python3-picamera2``;
- ``0`` or ``/dev/video0``: a V4L2 (USB) camera, through OpenCV;
- ``clip.avi``: a video file, through OpenCV (anything its FFmpeg decodes);
- ``photos/`` or ``'shots/*.jpg'``: the image files in a directory or matching a
  glob, in name order; ``photo.jpg``: one image.

Images are decoded with :func:`edge_runtime.images.decode_image` (Pillow), not
OpenCV, so EXIF orientation and transparency are handled exactly as for
``predict`` and training. OpenCV (``pip install 'keras2edge[watch]'``) is imported
only for cameras and video files; picamera2 is never a pip dependency.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.images import IMAGE_SUFFIXES, decode_image, decode_min_side

OPENCV_HINT = "pip install 'keras2edge[watch]' (or pip install opencv-python-headless)"
PICAMERA2_HINT = (
    "on Raspberry Pi OS install it with 'sudo apt install python3-picamera2' and create the venv with "
    "'python3 -m venv --system-site-packages'"
)
# Debian's picamera2 imports Debian's simplejpeg, compiled for Debian's numpy 1.x; a venv with numpy 2 breaks it.
PICAMERA2_NUMPY_HINT = (
    "Debian's picamera2 modules are built for Debian's numpy 1.x: in this venv run "
    "'pip install --force-reinstall simplejpeg' (or install numpy<2)"
)
# picamera2's name for frames laid out [R, G, B] in memory (libcamera names formats by
# the little-endian word, so "RGB888" is [B, G, R]): capture_array then gives RGB directly.
PICAMERA2_RGB_FORMAT = "BGR888"
DEFAULT_CAMERA_SIZE = (640, 480)
_GLOB_CHARS = frozenset("*?[")


class Frame(NamedTuple):
    """One frame as a source delivers it.

    Attributes
    ----------
    pixels : numpy.ndarray
        uint8 RGB ``(H, W, 3)`` or grayscale ``(H, W)``.
    position : float or None
        Seconds from the start of a video file (its own timeline); None for
        cameras and images, whose frames are stamped when read.
    name : str or None
        The image file a frame came from (image sources only).
    """

    pixels: np.ndarray
    position: float | None = None
    name: str | None = None


class FrameSource(Protocol):
    """What ``watch`` reads frames from; see the module docstring.

    Attributes
    ----------
    name : str
        How messages refer to the source (the SOURCE argument).
    live : bool
        Frames arrive in real time whether read or not (a camera).
    fps : float or None
        The source's own frame rate, when it has one (video files, cameras).
    """

    name: str
    live: bool
    fps: float | None

    def read(self) -> Frame | None:
        """The next frame. None: the end (files), or no frame this time (live sources; try again)."""

    def close(self) -> None:
        """Release the camera or file."""


def opencv() -> Any:
    """The ``cv2`` module, quiet about its own warnings, or a :class:`DataError` saying what to install."""
    try:
        import cv2
    except ImportError:
        raise DataError(f"cameras and video files need OpenCV: {OPENCV_HINT}") from None
    # A camera index that does not exist makes OpenCV print warnings on stderr; our error says it in one line.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def _bgr_to_rgb(cv2: Any, frame: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or BGRA, or gray) frame as RGB (or gray)."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class OpenCVSource:
    """A V4L2 camera or a video file, read through OpenCV and converted to RGB.

    Raises
    ------
    DataError
        OpenCV is not installed, or the device or file cannot be opened or holds no frame.
    """

    def __init__(self, name: str, target: int | str, *, live: bool, size: tuple[int, int] | None = None) -> None:
        cv2 = opencv()
        self._cv2 = cv2
        self.name = name
        self.live = live
        backend = cv2.CAP_V4L2 if isinstance(target, str) and live else cv2.CAP_ANY
        self._capture = cv2.VideoCapture(target, backend)
        if not self._capture.isOpened():
            what = "cannot open the camera" if live else "cannot read the video (not a format OpenCV can open)"
            raise DataError(f"SOURCE {name}: {what}")
        if live:
            if size is not None:
                self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
                self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
            # The driver's queue of old frames would otherwise make every frame read a stale one.
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if 0 < fps < 1000 else None
        self._index = 0
        self._first: np.ndarray | None = None
        if not live:
            ok, first = self._capture.read()
            if not ok or first is None:
                self._capture.release()
                raise DataError(f"SOURCE {name}: cannot read the video (no frame could be decoded)")
            self._first = first

    def read(self) -> Frame | None:
        if self._first is not None:
            ok, frame, self._first = True, self._first, None
        else:
            ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        position = None
        if not self.live:
            # Constant frame rate (what VideoWriter and cameras record): frame i is at i / fps.
            position = self._index / self.fps if self.fps else None
            self._index += 1
        return Frame(_bgr_to_rgb(self._cv2, frame), position)

    def close(self) -> None:
        self._capture.release()


class ImageFiles:
    """Image files in name order, decoded by Pillow as ``predict`` and training decode them."""

    live = False
    fps = None

    def __init__(self, name: str, paths: list[Path], color_mode: str = "rgb", digits: bool = False) -> None:
        self.name = name
        self._paths = iter(paths)
        self._color_mode = color_mode
        self._min_side = decode_min_side(digits)

    def read(self) -> Frame | None:
        path = next(self._paths, None)
        if path is None:
            return None
        return Frame(decode_image(path, self._color_mode, min_side=self._min_side), None, str(path))

    def close(self) -> None:
        self._paths = iter(())


class Picamera2Source:
    """The Raspberry Pi camera through picamera2 (Debian's ``python3-picamera2``), as RGB frames.

    picamera2 and libcamera are tied to the system's camera stack, so they are
    never installed from PyPI: the venv sees them when it was created with
    ``--system-site-packages``.

    Raises
    ------
    DataError
        picamera2 is not importable, or no camera could be opened.
    """

    live = True

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.name = "picamera2"
        try:
            from picamera2 import Picamera2
        except ModuleNotFoundError as exc:
            if exc.name not in ("picamera2", "libcamera"):
                raise DataError(
                    f"SOURCE picamera2: importing picamera2 failed ({exc}); {PICAMERA2_NUMPY_HINT}"
                ) from None
            raise DataError(f"SOURCE picamera2: the {exc.name} module is not importable; {PICAMERA2_HINT}") from None
        except (ImportError, ValueError) as exc:  # ValueError: "numpy.dtype size changed" from Debian's simplejpeg
            raise DataError(
                f"SOURCE picamera2: importing picamera2 failed ({' '.join(str(exc).split())}); {PICAMERA2_NUMPY_HINT}"
            ) from None
        size = size or DEFAULT_CAMERA_SIZE
        try:
            camera = Picamera2()
        except (RuntimeError, IndexError, OSError, ValueError) as exc:  # what picamera2 raises with no camera
            raise DataError(f"SOURCE picamera2: no camera could be opened ({' '.join(str(exc).split())})") from None
        try:
            camera.configure(
                camera.create_preview_configuration(main={"size": tuple(size), "format": PICAMERA2_RGB_FORMAT})
            )
            camera.start()
        except (RuntimeError, OSError, ValueError) as exc:
            camera.close()
            raise DataError(
                f"SOURCE picamera2: cannot start the camera at {size[0]}x{size[1]} ({' '.join(str(exc).split())})"
            ) from None
        self._camera = camera
        controls = getattr(camera, "camera_controls", None) or {}
        limits = controls.get("FrameDurationLimits")
        # FrameDurationLimits: (shortest, longest, default) frame duration in microseconds.
        self.fps: float | None = 1e6 / limits[0] if limits and limits[0] else None

    def read(self) -> Frame | None:
        pixels = self._camera.capture_array("main")
        # An XBGR8888 configuration (the preview default) gives [R, G, B, 255]: drop the alpha byte.
        return Frame(np.ascontiguousarray(pixels[..., :3]) if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels)

    def close(self) -> None:
        try:
            self._camera.stop()
        finally:
            self._camera.close()


def _image_paths(spec: str) -> list[Path]:
    """The image files of a directory or glob, sorted by name."""
    if any(c in spec for c in _GLOB_CHARS):
        candidates = [Path(p) for p in glob.glob(spec)]
    else:
        candidates = list(Path(spec).iterdir())
    return sorted((p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=lambda p: str(p))


def open_source(
    spec: str, *, color_mode: str = "rgb", digits: bool = False, size: tuple[int, int] | None = None
) -> FrameSource:
    """Open the SOURCE argument of ``watch``.

    Parameters
    ----------
    spec : str
        ``picamera2``, a camera number (``0``), a device path (``/dev/video0``), a
        video file, a directory or glob of images, or one image file.
    color_mode : {"rgb", "grayscale"}
        What image files are decoded to (the model's colour mode). Cameras and
        videos always give RGB; :func:`edge_runtime.images.fit_image` converts.
    digits : bool
        The model reads MNIST-style digits: image files are decoded as ``predict``
        decodes them for such a model (:func:`edge_runtime.images.decode_min_side`).
    size : (width, height) or None
        Capture size for cameras (picamera2 default 640x480; V4L2 default the
        camera's own).

    Returns
    -------
    FrameSource

    Raises
    ------
    DataError
        No such file, directory or device; no image matches; OpenCV or picamera2
        missing; the camera or video cannot be opened.

    Examples
    --------
    >>> source = open_source("photos/")  # doctest: +SKIP
    >>> source.live, source.read().pixels.shape  # doctest: +SKIP
    (False, (480, 640, 3))
    """
    if spec == "picamera2":
        return Picamera2Source(size)
    if spec.isdigit():
        return OpenCVSource(spec, int(spec), live=True, size=size)
    path = Path(spec)
    if any(c in spec for c in _GLOB_CHARS) or path.is_dir():
        paths = _image_paths(spec)
        if not paths:
            raise DataError(f"SOURCE {spec}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        return ImageFiles(spec, paths, color_mode, digits)
    if not path.exists():
        what = "device" if spec.startswith("/dev/") else "file, directory or device"
        raise DataError(f"SOURCE {spec}: no such {what}")
    if path.is_char_device():
        return OpenCVSource(spec, spec, live=True, size=size)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFiles(spec, [path], color_mode, digits)
    if not os.access(path, os.R_OK):
        raise DataError(f"SOURCE {spec}: permission denied")
    return OpenCVSource(spec, spec, live=False)
