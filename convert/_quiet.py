"""Silencing TensorFlow, tf2onnx and ONNX Runtime chatter during conversion.

The converters print progress from C++ (straight to file descriptors 1 and 2) and
from Python (``print`` and ``logging``); a user wants one line per artifact instead.
Output is captured at the file-descriptor level and replayed only if the wrapped
step fails, so nothing needed for a bug report is lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

from edge_runtime.errors import Keras2EdgeError


def quiet_libraries() -> None:
    """Lower the log level of TensorFlow, absl and tf2onnx for this process."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    for name in ("tensorflow", "absl", "tf2onnx", "onnxruntime", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)


@contextlib.contextmanager
def captured_output() -> Iterator[None]:
    """Send everything written to stdout/stderr inside the block to a temporary file.

    Python warnings raised inside the block (deprecation notices of the converters)
    are dropped too. On an unexpected exception (a bug report in the making) the
    captured text is written back to stderr before the exception propagates.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
        except Keras2EdgeError:
            raise  # says in one line what the user must fix; library chatter would bury it
        except BaseException:
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            for fd in saved:
                os.close(fd)
