"""Typed, validated access to a JSON object: the one checking mechanism of every record.

A record's ``from_json`` reads its document through :class:`Fields`, so every
problem (a missing key, a wrong type, a value out of range) becomes one line of the
record's error type that names the file and the dotted key, e.g.
``out/manifest.json: 'input.shape' must be a list of positive integers, got [28, 0]``.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pathlib costs milliseconds of a device's cold start; the readers need only os.path
    from pathlib import Path

_MISSING: Any = object()
_JSON_SPACE = " \t\n\r"


class Fields:
    """One JSON object of a document, with typed getters that raise ``error``.

    Parameters
    ----------
    doc : object
        The (sub-)document; anything but a dict is reported as the wrong type.
    source : str
        What messages call the document (usually its path).
    error : type
        The exception raised (a :class:`~edge_runtime.errors.Keras2EdgeError` subclass).
    prefix : str
        Dotted path of this object inside the document (``"input."``).
    hint : str
        Appended to every message: what the user can do (e.g. regenerate the file).
    """

    def __init__(self, doc: object, source: str, error: type[Exception], prefix: str = "", hint: str = "") -> None:
        self.source, self.error, self.prefix, self.hint = source, error, prefix, hint
        if not isinstance(doc, dict):
            raise self.fail(f"'{prefix.rstrip('.') or 'document'}' must be a JSON object, got {type(doc).__name__}")
        self.doc: dict[str, Any] = doc

    def fail(self, message: str) -> Exception:
        """The error to raise for ``message`` about this document."""
        return self.error(f"{self.source}: {message}{'; ' + self.hint if self.hint else ''}")

    def _get(self, key: str, default: Any) -> Any:
        if key not in self.doc or self.doc[key] is None:
            if default is _MISSING:
                raise self.fail(f"'{self.prefix}{key}' is missing")
            return default
        return self.doc[key]

    def _wrong(self, key: str, expected: str, value: Any) -> Exception:
        import json  # only to show the value in the message

        shown = (json.dumps(value) if not isinstance(value, (dict, list)) or len(str(value)) < 60
                 else type(value).__name__)
        return self.fail(f"'{self.prefix}{key}' must be {expected}, got {shown}")

    def obj(self, key: str, default: Any = _MISSING) -> Fields | None:
        """A nested object as :class:`Fields` (``default`` when absent)."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return default
        return Fields(value, self.source, self.error, f"{self.prefix}{key}.", self.hint)

    def text(self, key: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None) -> Any:
        """A string, optionally one of ``choices``."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self._wrong(key, f"one of {', '.join(choices)}" if choices else "a string", value)
        return value

    def integer(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> Any:
        """An integer (not a boolean), at least ``minimum``."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, int) or isinstance(value, bool) or (minimum is not None and value < minimum):
            raise self._wrong(key, "an integer" + (f" >= {minimum}" if minimum is not None else ""), value)
        return value

    def number(self, key: str, default: Any = _MISSING, positive: bool = False) -> Any:
        """A finite number as float, optionally > 0."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not _is_number(value) or (positive and not value > 0):
            raise self._wrong(key, "a positive number" if positive else "a finite number", value)
        return float(value)

    def flag(self, key: str, default: Any = _MISSING) -> Any:
        """A JSON boolean."""
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self._wrong(key, "true or false", value)
        return value

    def items(self, key: str, default: Any = _MISSING) -> Any:
        """A JSON list, as it is."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list):
            raise self._wrong(key, "a list", value)
        return value

    def shape(self, key: str, default: Any = _MISSING) -> Any:
        """A non-empty list of positive integers, as a tuple."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or not value or not all(_is_int(v) and v > 0 for v in value):
            raise self._wrong(key, "a non-empty list of positive integers", value)
        return tuple(value)

    def numbers(self, key: str, default: Any = _MISSING, positive: bool = False) -> Any:
        """A non-empty list of finite numbers (all > 0 if ``positive``), as a tuple of floats."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if (not isinstance(value, list) or not value
                or not all(_is_number(v) and (not positive or v > 0) for v in value)):
            raise self._wrong(
                key, "a non-empty list of " + ("positive numbers" if positive else "finite numbers"), value
            )
        return tuple(float(v) for v in value)

    def strings(self, key: str, default: Any = _MISSING, nonempty: bool = True) -> Any:
        """A list of strings, as a tuple."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, list) or (nonempty and not value) or not all(isinstance(v, str) for v in value):
            raise self._wrong(key, "a " + ("non-empty " if nonempty else "") + "list of strings", value)
        return tuple(value)

    def mapping(self, key: str, default: Any = _MISSING) -> Any:
        """A nested object as a plain dict (for free-form sections such as tool versions)."""
        value = self._get(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, dict):
            raise self._wrong(key, "a JSON object", value)
        return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_document(path: str | os.PathLike[str], error: type[Exception], what: str) -> Any:
    """Parse the JSON file ``path``; one-line ``error`` when it is missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise error(f"{os.path.dirname(path) or '.'}: no {os.path.basename(path)}; {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None
    value = _scan_json(text)
    if value is not _MISSING:
        return value
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None


class _JsonDefaults:
    """What ``json.loads`` configures its scanner with (``json.JSONDecoder()``'s defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": -math.inf, "Infinity": math.inf, "NaN": math.nan}.__getitem__


def _scan_json(text: str) -> Any:
    """``json.loads(text)`` through the C scanner json itself uses, or ``_MISSING`` to leave it to ``json``.

    Importing the :mod:`json` package compiles the regular expressions of its
    encoder and decoder, ~1.5 ms of every device cold start before the first
    manifest is read. The scanner gives the same objects; whatever it does not
    accept (bad JSON, a byte-order mark, trailing data) goes to ``json.loads``,
    so errors read exactly as they always did.
    """
    try:
        from _json import make_scanner
    except ImportError:  # a Python without the C accelerator: json's own pure-Python scanner
        return _MISSING
    start = len(text) - len(text.lstrip(_JSON_SPACE))
    try:
        value, end = make_scanner(_JsonDefaults)(text, start)
    except (StopIteration, ValueError):
        return _MISSING
    return _MISSING if text[end:].strip(_JSON_SPACE) else value


def check_schema(fields: Fields, supported: tuple[int, ...], upgrade_hint: str) -> int:
    """The document's ``schema_version``, which must be one of ``supported``."""
    version = fields.doc.get("schema_version")
    if not _is_int(version) or version not in supported:
        raise fields.error(
            f"{fields.source}: unsupported schema_version {version!r} (this keras2edge reads "
            f"{', '.join(map(str, supported))}); {upgrade_hint}"
        )
    return version


def document_path(location: str | os.PathLike[str], name: str) -> str:
    """``location`` when it names the file ``name`` itself, else ``location/name`` (a directory, existing or not).

    A string made with :mod:`os.path`: the runtime reads the manifest at every load,
    and importing :mod:`pathlib` would cost a device's cold start milliseconds.

    Examples
    --------
    >>> document_path("out/artifacts", "manifest.json"), document_path("a/manifest.json/", "manifest.json")
    ('out/artifacts/manifest.json', 'a/manifest.json')
    """
    path = os.fspath(location)
    if os.path.basename(path.rstrip("/")) == name:
        return path.rstrip("/")
    return os.path.join(path, name)


def write_document(directory: str | Path, name: str, document: dict[str, Any]) -> Path:
    """Write ``document`` atomically as indented JSON into ``directory/name`` and return the path."""
    from pathlib import Path

    from edge_runtime.atomic import write_json

    target = Path(directory) / name
    write_json(target, document)
    return target
