"""``training.json``: what ``python -m train`` did, and what the model expects as input.

Written beside ``model.keras`` by the trainer; read by the converter, which takes
the model's input description, preprocessing and class names from it (so a model
from ``python -m train`` converts with no preprocessing options), and by people who
need to know which data, seed and library versions produced the weights. Schema 1
(MNIST-only, before the input description) still loads. Only the standard library
is needed.
"""


from pathlib import Path
from typing import Any, NamedTuple

from edge_runtime.errors import RecordError
from edge_runtime.records._fields import Fields, check_schema, document_path, read_document, write_document
from edge_runtime.records.manifest import InputSpec, Preprocessing

TRAINING_NAME = "training.json"
SCHEMA_VERSION = 2
_HINT = "retrain with 'python -m train' or convert with explicit --preprocess options"


class TrainingRecord(NamedTuple):
    """A training run: input description, preprocessing, classes, result and provenance.

    ``config`` (the hyper-parameters), ``history`` (per-epoch metrics), ``dataset``
    (source, digests, split), and ``versions`` are free-form sections.
    """

    input: InputSpec
    preprocessing: Preprocessing
    class_names: tuple[str, ...]
    architecture: str
    test_accuracy: float
    test_loss: float
    config: dict[str, Any]
    history: dict[str, list[float]]
    dataset: dict[str, Any]
    seed: int
    versions: dict[str, str]
    wall_time_seconds: float
    parameters: int
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        doc = self._asdict()
        doc["input"], doc["preprocessing"] = self.input.to_json(), self.preprocessing.to_json()
        doc["class_names"] = list(self.class_names)
        return {"schema_version": SCHEMA_VERSION, **doc}

    @classmethod
    def from_json(cls, doc: object, source: str = TRAINING_NAME) -> "TrainingRecord":
        f = Fields(doc, source, RecordError, hint=_HINT)
        version = check_schema(f, (1, SCHEMA_VERSION), _HINT)
        dataset = f.mapping("dataset")
        architecture = f.text("architecture")
        if version == 1:
            spec, pre, names = _schema1_input(f.obj("dataset"), architecture)
        else:
            spec = InputSpec.from_fields(f.obj("input"))
            pre = Preprocessing.from_fields(f.obj("preprocessing"), spec)
            names = f.strings("class_names")
        return cls(
            spec,
            pre,
            names,
            architecture,
            f.number("test_accuracy"),
            f.number("test_loss"),
            f.mapping("config", {}),
            f.mapping("history", {}),
            dataset,
            f.integer("seed", 0),
            f.mapping("versions", {}),
            f.number("wall_time_seconds", 0.0),
            f.integer("parameters", 0, minimum=0),
            f.text("created", ""),
        )

    @classmethod
    def read(cls, location: str | Path) -> "TrainingRecord":
        """Read ``location`` (``training.json`` or the directory holding it)."""
        path = document_path(location, TRAINING_NAME)
        return cls.from_json(read_document(path, RecordError, _HINT), str(path))

    @classmethod
    def beside(cls, model_path: str | Path) -> "TrainingRecord | None":
        """The record next to a model file, if the model came from ``python -m train``."""
        path = Path(model_path).parent / TRAINING_NAME
        return cls.read(path) if path.is_file() else None

    def write(self, directory: str | Path) -> Path:
        """Write ``directory/training.json`` atomically."""
        return write_document(directory, TRAINING_NAME, self.to_json())


def _schema1_input(dataset: Fields, architecture: str) -> tuple[InputSpec, Preprocessing, tuple[str, ...]]:
    """Schema 1 trained only MNIST-style digits: single-channel, pixels / 255."""
    height, width = dataset.shape("image_shape")
    classes = dataset.integer("num_classes", minimum=2)
    spec = InputSpec("image", (height, width, 1), "grayscale", digits=True)
    flat = architecture == "mlp"
    pre = Preprocessing.for_mode("unit", "flat" if flat else "nhwc", (height * width,) if flat else spec.shape)
    return spec, pre, tuple(str(i) for i in range(classes))
