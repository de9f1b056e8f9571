"""``bundle.json``: what a device bundle holds and what the build machine computed for it.

Written by the bundle builder (build side); read by the on-device self-test, which
compares its own outputs on the bundle's samples with ``reference``. Only the
standard library is needed.
"""


from pathlib import Path
from typing import Any, NamedTuple

from edge_runtime.errors import RecordError
from edge_runtime.records._fields import Fields, check_schema, document_path, read_document, write_document

BUNDLE_NAME = "bundle.json"
SCHEMA_VERSION = 2
_HINT = "rebuild the bundle with 'python -m convert bundle'"


class Reference(NamedTuple):
    """The build machine's probabilities for the bundle's samples (``samples.npz``, or the
    embedded MNIST digits for an MNIST model without one), and the tolerance a device must meet."""

    probabilities: tuple[tuple[float, ...], ...]
    tolerance: float
    machine: str
    backend: str

    def to_json(self) -> dict[str, Any]:
        return {
            "machine": self.machine,
            "backend": self.backend,
            "tolerance": self.tolerance,
            "probabilities": [list(row) for row in self.probabilities],
        }

    @classmethod
    def from_fields(cls, f: Fields) -> "Reference":
        rows = f.items("probabilities")
        if not rows or not all(isinstance(r, list) and r and all(isinstance(v, (int, float)) for v in r) for r in rows):
            raise f.fail(f"'{f.prefix}probabilities' must be a non-empty list of rows of numbers")
        if len({len(r) for r in rows}) != 1:
            raise f.fail(f"'{f.prefix}probabilities' rows differ in length")
        return cls(tuple(tuple(float(v) for v in r) for r in rows), f.number("tolerance", positive=True),
                   f.text("machine"), f.text("backend"))


class BundleRecord(NamedTuple):
    """A bundle: target platform, the shipped artifact, wheel, requirements and reference outputs."""

    target: str
    debian_arch: str
    keras2edge_version: str
    artifact: dict[str, Any]
    wheel: dict[str, str]
    requirements: str
    reference: Reference
    created: str = ""

    @property
    def artifact_file(self) -> str:
        """File name of the shipped artifact, inside the bundle directory."""
        return self.artifact["file"]

    def to_json(self) -> dict[str, Any]:
        doc = self._asdict()
        doc["reference"] = self.reference.to_json()
        return {"schema_version": SCHEMA_VERSION, **doc}

    @classmethod
    def from_json(cls, doc: object, source: str = BUNDLE_NAME) -> "BundleRecord":
        f = Fields(doc, source, RecordError, hint=_HINT)
        check_schema(f, (SCHEMA_VERSION,), _HINT)
        artifact = f.obj("artifact")
        file = artifact.text("file")
        if not file or Path(file).name != file:
            raise f.fail(f"'artifact.file' must be a plain file name, got {file!r}")
        return cls(
            f.text("target"),
            f.text("debian_arch"),
            f.text("keras2edge_version"),
            artifact.doc,
            f.mapping("wheel"),
            f.text("requirements"),
            Reference.from_fields(f.obj("reference")),
            f.text("created", ""),
        )

    @classmethod
    def read(cls, location: str | Path) -> "BundleRecord":
        """Read ``location`` (``bundle.json`` or the bundle directory)."""
        path = document_path(location, BUNDLE_NAME)
        return cls.from_json(read_document(path, RecordError, _HINT), str(path))

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/bundle.json`` atomically."""
        return write_document(directory, BUNDLE_NAME, self.to_json())
