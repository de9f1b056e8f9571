"""Exception types shared by every keras2edge package.

They live in ``edge_runtime`` because it is the lightest package: the training and
conversion packages depend on it, never the reverse, so one hierarchy can serve all
of them without pulling TensorFlow onto a device.

Every error a user can cause derives from :class:`Keras2EdgeError`. Its message is a
single line that says what was wrong and what to do; the command-line entry points
print it as ``<prog>: error: <message>`` and exit with status 2, without a traceback.
"""

from __future__ import annotations


class Keras2EdgeError(Exception):
    """Base class of every error caused by user input or the environment."""


class DataError(Keras2EdgeError, ValueError):
    """A data set, image or array could not be read or has the wrong layout."""


class OutputExistsError(Keras2EdgeError, FileExistsError):
    """The output path exists and ``--force`` was not given."""


class ModelLoadError(Keras2EdgeError):
    """A model artifact is missing, truncated, corrupt or of an unknown format."""


class RecordError(Keras2EdgeError):
    """A record file (``manifest.json``, ``parity.json``, ``training.json``, ``bundle.json``) is missing or
    malformed."""


class ManifestError(RecordError):
    """``manifest.json`` is malformed or does not describe the artifact beside it."""


class BackendError(Keras2EdgeError):
    """The requested backend is unknown, not installed, or cannot run this artifact."""


class InputError(Keras2EdgeError, ValueError):
    """Input to ``predict`` has the wrong shape, dtype or contains NaN/inf."""
