"""``parity.json``: how every artifact of a directory compares with its Keras model.

Written by ``python -m convert parity``; read by the bundle builder (which keeps the
shipped artifact's entry) and by the benchmarks (accuracy next to size and speed).
Only the standard library is needed.
"""


from pathlib import Path
from typing import Any, NamedTuple

from edge_runtime.errors import RecordError
from edge_runtime.records._fields import Fields, check_schema, document_path, read_document, write_document

PARITY_NAME = "parity.json"
SCHEMA_VERSION = 1
_HINT = "run 'python -m convert parity DIR' again"


class ArtifactParity(NamedTuple):
    """One artifact's metrics against Keras and its gate verdict.

    ``gate`` maps each gated metric (``min_agreement``, ``max_abs_diff``,
    ``max_accuracy_drop``) to its threshold; ``accuracy_delta`` is artifact minus
    Keras, as a fraction.
    """

    precision: str
    accuracy: float
    accuracy_delta: float
    agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    gate: dict[str, float]
    passed: bool
    problems: tuple[str, ...] = ()
    diagnostics: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        doc = self._asdict()
        doc["problems"], doc["diagnostics"] = list(self.problems), list(self.diagnostics)
        return doc

    @classmethod
    def from_fields(cls, f: Fields) -> "ArtifactParity":
        gate = f.mapping("gate", {})
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in gate.values()):
            raise f.fail(f"'{f.prefix}gate' must map metric names to numbers")
        return cls(
            f.text("precision"),
            f.number("accuracy"),
            f.number("accuracy_delta"),
            f.number("agreement"),
            f.number("max_abs_diff"),
            f.number("mean_abs_diff"),
            {k: float(v) for k, v in gate.items()},
            f.flag("passed"),
            f.strings("problems", (), nonempty=False),
            f.strings("diagnostics", (), nonempty=False),
        )


class ParityRecord(NamedTuple):
    """The ``parity.json`` document: Keras accuracy, image count, and every artifact's result."""

    keras_accuracy: float
    num_images: int
    artifacts: dict[str, ArtifactParity]
    data: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """True when every artifact met its gate."""
        return all(a.passed for a in self.artifacts.values())

    def failures(self) -> list[str]:
        """``"<artifact>: <problem>"`` for every missed threshold."""
        return [f"{name}: {p}" for name, a in self.artifacts.items() for p in a.problems]

    def only(self, name: str) -> "ParityRecord":
        """This record restricted to artifact ``name`` (what a bundle ships)."""
        if name not in self.artifacts:
            raise RecordError(
                f"{PARITY_NAME}: no entry for '{name}' (it has: {', '.join(self.artifacts) or 'none'}); {_HINT}"
            )
        return self._replace(artifacts={name: self.artifacts[name]})

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "keras": {"accuracy": self.keras_accuracy},
            "num_images": self.num_images,
            "data": self.data,
            "passed": self.passed,
            "artifacts": {name: a.to_json() for name, a in self.artifacts.items()},
        }

    @classmethod
    def from_json(cls, doc: object, source: str = PARITY_NAME) -> "ParityRecord":
        f = Fields(doc, source, RecordError, hint=_HINT)
        check_schema(f, (SCHEMA_VERSION,), _HINT)
        entries = f.mapping("artifacts")
        return cls(
            f.obj("keras").number("accuracy"),
            f.integer("num_images", minimum=1),
            {name: ArtifactParity.from_fields(Fields(e, source, RecordError, f"artifacts.{name}.", _HINT))
             for name, e in entries.items()},
            f.mapping("data", None),
        )

    @classmethod
    def read(cls, location: str | Path) -> "ParityRecord":
        """Read ``location`` (``parity.json`` or the artifact directory holding it)."""
        path = document_path(location, PARITY_NAME)
        return cls.from_json(read_document(path, RecordError, _HINT), str(path))

    @classmethod
    def find(cls, directory: str | Path) -> "ParityRecord | None":
        """``directory/parity.json`` when parity has been run there, else None."""
        path = Path(directory) / PARITY_NAME
        return cls.read(path) if path.is_file() else None

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/parity.json`` atomically."""
        return write_document(directory, PARITY_NAME, self.to_json())
