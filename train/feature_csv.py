"""Feature vectors from CSV: ``train.csv`` + ``test.csv`` in a folder, or one file split by class.

A header row names the columns; one of them (``label`` unless renamed) holds the
class of each row, every other column a number. String labels become class names
sorted alphabetically; when every label is an integer they are sorted numerically
and named by their value (``0 .. K-1`` stays ``"0" .. "K-1"``). The values are kept
raw (float32): standardising them is the model's job (a ``Normalization`` layer) or
recorded preprocessing, never a silent step of the loader.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edge_runtime.errors import DataError
from edge_runtime.files import csv_rows, read_user_file
from edge_runtime.records.manifest import InputSpec
from train.dataset import Dataset, check_test_fraction, split_record, stratified_split


class _Table(NamedTuple):
    """One parsed CSV file."""

    columns: tuple[str, ...]  # feature columns, in file order
    values: np.ndarray  # float32 (rows, features)
    labels: list[str]  # the label cell of every row, stripped
    sha256: str


def _read_table(path: Path, label_column: str) -> _Table:
    raw = read_user_file(path, DataError, "a CSV file")
    header, rows = csv_rows(raw, path, DataError)
    if label_column not in header:
        raise DataError(
            f"{path}: no {label_column!r} column (columns: {', '.join(header)}); "
            "name the label column with --label-column"
        )
    label_at = header.index(label_column)
    columns = tuple(name for i, name in enumerate(header) if i != label_at)
    if not columns:
        raise DataError(f"{path}: no feature columns besides {label_column!r}")
    values = array.array("f")
    labels: list[str] = []
    for line, row in rows:
        if len(row) != len(header):
            raise DataError(f"{path}: line {line} has {len(row)} fields, the header has {len(header)}")
        label = row[label_at].strip()
        if not label:
            raise DataError(f"{path}: row {len(labels) + 1} (line {line}) has an empty {label_column!r}")
        for i, cell in enumerate(row):
            if i == label_at:
                continue
            try:
                value = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}: row {len(labels) + 1} (line {line}), column {header[i]!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(value):
                raise DataError(
                    f"{path}: row {len(labels) + 1} (line {line}), column {header[i]!r}: "
                    f"{cell!r} is not a finite number"
                )
            values.append(value)
        labels.append(label)
    if not labels:
        raise DataError(f"{path}: no data rows after the header")
    matrix = np.frombuffer(values, dtype=np.float32).reshape(len(labels), len(columns))
    if not np.isfinite(matrix).all():
        raise DataError(f"{path}: a value is too large for float32 (beyond ±3.4e38)")
    return _Table(columns, matrix, labels, hashlib.sha256(raw).hexdigest())


def _class_names(labels: list[str]) -> list[str]:
    """Sorted distinct labels: numerically when all are integers, else as text."""
    distinct = {_canonical(label) for label in labels}
    try:
        return [str(n) for n in sorted(int(label) for label in distinct)]
    except ValueError:
        return sorted(distinct)


def _encode(labels: list[str], names: list[str], path: Path) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    try:
        return np.array([index[_canonical(label)] for label in labels], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{path}: label {exc.args[0]!r} does not occur in the training data") from None


def _canonical(label: str) -> str:
    """Integer labels by value (``"07"`` is class ``"7"``), anything else as written."""
    try:
        return str(int(label))
    except ValueError:
        return label


def _spec(columns: tuple[str, ...]) -> InputSpec:
    return InputSpec("features", (len(columns),), None, digits=False, feature_names=columns)


def load_csv_folder(
    directory: str | os.PathLike[str], *, label_column: str = "label", seed: int = 0
) -> Dataset:
    """Load ``directory/train.csv`` and ``directory/test.csv`` (the given split).

    Both files must have the same columns. Rows are kept raw and put in a seeded
    random order (a file sorted by label would otherwise validate on one class).

    Raises
    ------
    DataError
        A file is missing or malformed (see :func:`load_csv_file`), the columns
        differ, or ``test.csv`` has a label ``train.csv`` lacks.

    Examples
    --------
    >>> load_csv_folder("sensors").input.describe()  # doctest: +SKIP
    '13 features'
    """
    root = Path(directory)
    for name in ("train.csv", "test.csv"):
        if not (root / name).is_file():
            raise DataError(f"{root}: has no {name}; a CSV data folder needs train.csv and test.csv")
    train = _read_table(root / "train.csv", label_column)
    test = _read_table(root / "test.csv", label_column)
    if test.columns != train.columns:
        raise DataError(
            f"{root}: test.csv columns {list(test.columns)} differ from train.csv columns {list(train.columns)}"
        )
    names = _class_names(train.labels)
    y_train, y_test = _encode(train.labels, names, root / "train.csv"), _encode(test.labels, names, root / "test.csv")
    rng = np.random.default_rng(seed)
    order_train, order_test = rng.permutation(len(y_train)), rng.permutation(len(y_test))
    return Dataset(
        train.values[order_train], y_train[order_train], test.values[order_test], y_test[order_test],
        source=str(root),
        sha256={"train.csv": train.sha256, "test.csv": test.sha256},
        input=_spec(train.columns),
        class_names=tuple(names),
        split=split_record(seed),
        load_options={"label_column": label_column, "seed": seed},
    )


def load_csv_file(
    path: str | os.PathLike[str], *, label_column: str = "label", test_fraction: float = 0.2, seed: int = 0
) -> Dataset:
    """Load one CSV file and split it: ``test_fraction`` of every class is the test split.

    Parameters
    ----------
    path : path
        A CSV file with a header row.
    label_column : str
        The column holding each row's class.
    test_fraction, seed : float, int
        The seeded stratified split (see :func:`train.dataset.stratified_split`).

    Raises
    ------
    DataError
        No header or rows, no label column, a non-numeric or non-finite cell (the
        row, line and column are named), a row with the wrong number of fields.

    Examples
    --------
    >>> ds = load_csv_file("wine.csv", label_column="cultivar")  # doctest: +SKIP
    >>> ds.x_train.dtype, ds.class_names  # doctest: +SKIP
    (dtype('float32'), ('barbera', 'barolo', 'grignolino'))
    """
    source = Path(path)
    check_test_fraction(test_fraction)
    table = _read_table(source, label_column)
    names = _class_names(table.labels)
    labels = _encode(table.labels, names, source)
    train, test = stratified_split(labels, test_fraction, seed)
    return Dataset(
        table.values[train], labels[train], table.values[test], labels[test],
        source=str(source),
        sha256={source.name: table.sha256},
        input=_spec(table.columns),
        class_names=tuple(names),
        split=split_record(seed, test_fraction),
        load_options={"label_column": label_column, "test_fraction": test_fraction, "seed": seed},
    )
