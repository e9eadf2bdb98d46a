"""The JSON documents cellbench writes (run records, ``bench speed --out`` tables,
``roofline.json``), read without trusting them.

Every such file is read through :func:`read_json` and checked against its JSON Schema
(``bench/schemas``) before any code indexes it: a file that cannot be read, is not JSON, or
does not match its schema raises :class:`Unreadable` with a one-line reason. The report,
``bench roofline``'s peak lookup and a resume all read through here, so hostile input is
turned away once, not at each use.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from bench.errors import BenchError
from bench.storage import open_regular

SCHEMA_VERSION = 5
# 2 adds the status "aborted", failure.phase/reason, preset, checkpoint; 3 keeps in config
# only the options of the run's own cell and task (1 and 2 kept every cell's and task's);
# 4 adds tasks of independent sequences and regression heads: task.head, scored_steps and
# memoryless_baseline, metrics without accuracy (regression), samples of vectors per step;
# 5 adds ``declared`` (bench.declarations): what the report needs of the task, cell and preset
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4, 5)
# A 55-epoch ptb-large record is under 1 MiB and an echo record with 1,000-step windows
# about 5 MiB; 64 MiB leaves ten times that, and a stray multi-GiB file is refused unread.
MAX_JSON_BYTES = 64 * 2**20
ROOFLINE_FILE = "roofline.json"
SCHEMAS = {"record": "run-record.schema.json", "speed": "speed-table.schema.json", "roofline": "roofline.schema.json"}


class Unreadable(BenchError):
    """A file that is not a readable document of its kind; the message is the reason, one line."""


def read_json(path: str | os.PathLike) -> Any:
    """The parsed contents of a regular file of at most :data:`MAX_JSON_BYTES`.

    The file is opened before it is examined (non-blocking, so a FIFO cannot hang the
    reader) and the open descriptor is checked, so a link to a device or a FIFO swapped in
    between cannot be read. NaN and infinities are accepted: Python's json writes them."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise Unreadable(f"{size:,} bytes, over the {MAX_JSON_BYTES:,}-byte limit for a results file")
            data = f.read(size + 1)  # a file that grows while read is cut here and refused below
    except OSError as exc:
        raise Unreadable(os_reason(exc)) from None
    if len(data) > size:
        raise Unreadable("grew while it was read; not a finished results file")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise Unreadable("JSON nested too deeply to read") from None
    except ValueError as exc:  # json.JSONDecodeError, and integers of more than 4,300 digits
        raise Unreadable(f"not JSON ({_one_line(str(exc))})") from None


def os_reason(exc: OSError) -> str:
    return _one_line(exc.strerror or str(exc))


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind_of(path: Path, document: Any) -> str:
    """Which schema a parsed results file answers to: by name for ``roofline.json``, else
    by its keys (a record has a schema version and a run id; a speed table its rows)."""
    if path.name == ROOFLINE_FILE:
        return "roofline"
    if isinstance(document, dict) and ("schema_version" in document or "run_id" in document):
        return "record"
    if isinstance(document, dict) and {"preset", "rows"} <= document.keys():
        return "speed"
    raise Unreadable("not a cellbench run record, `bench speed --out` table or roofline.json")


def check(document: Any, kind: str) -> None:
    """Raise :class:`Unreadable` naming the field that breaks the ``kind`` schema (the
    library's best match when several do).

    A document is first put to :func:`is_valid`, the schema compiled to plain Python
    checks (a report reads thousands of records, and the library's validator spent a
    millisecond on each); what that does not pass goes to the library, which finds and
    words the error. The two agree on every document (tests/faults/test_report.py)."""
    if kind == "record" and isinstance(document, dict):
        version = document.get("schema_version")
        if version not in READABLE_SCHEMA_VERSIONS or isinstance(version, bool):
            readable = ", ".join(map(str, READABLE_SCHEMA_VERSIONS))
            raise Unreadable(f"schema version {_short(version)}, this cellbench reads {readable}")
    if is_valid(document, kind):
        return
    validator = _validator(kind)
    try:
        error = next(validator.iter_errors(document), None)
        if error is not None:
            from jsonschema.exceptions import best_match

            error = best_match(validator.iter_errors(document))
    except RecursionError:
        raise Unreadable("JSON nested too deeply to check") from None
    if error is not None:
        raise Unreadable(_reason(error))


def load_record(path: str | os.PathLike) -> dict[str, Any]:
    """One run record; a file that is not a record of a readable schema is a BenchError
    naming the file and the reason."""
    try:
        return read_document(path, "record")[1]
    except Unreadable as exc:
        raise BenchError(f"{path}: {exc}") from exc


def read_document(path: str | os.PathLike, kind: str | None = None) -> tuple[str, Any]:
    """``(kind, document)`` of one results file, checked against its schema; ``kind`` None
    lets the file say what it is (:func:`kind_of`)."""
    path = Path(path)
    document = read_json(path)
    kind = kind or kind_of(path, document)
    if kind == "record" and not isinstance(document, dict):
        raise Unreadable("not a cellbench run record (not a JSON object)")
    check(document, kind)
    return kind, document


# --- schemas -------------------------------------------------------------------------

_INT64 = 2**63


def _is_integer(checker: Any, value: Any) -> bool:
    if type(value) is int:
        return -_INT64 <= value < _INT64
    return type(value) is float and value.is_integer() and -_INT64 <= value < _INT64


def _is_number(checker: Any, value: Any) -> bool:
    return type(value) is float or (type(value) is int and -_INT64 <= value < _INT64)


# JSON Schema's types, except that an integer must fit in 64 bits: a longer one cannot be
# held by pandas or drawn by matplotlib (NaN and infinities are numbers, as in the records).
_TYPES: dict[str, Callable[[Any, Any], bool]] = {
    "integer": _is_integer, "number": _is_number, "string": lambda c, v: type(v) is str,
    "boolean": lambda c, v: type(v) is bool, "null": lambda c, v: v is None,
    "array": lambda c, v: type(v) is list, "object": lambda c, v: type(v) is dict,
}


@lru_cache(maxsize=None)
def load_schema(kind: str) -> dict[str, Any]:
    """The ``kind`` schema as shipped (package data), ``$ref``s and all."""
    text = resources.files("bench").joinpath("schemas", SCHEMAS[kind]).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def _validator(kind: str) -> Any:
    """The library's Draft 2020-12 validator for ``kind``, with :data:`_TYPES`, built once
    (references resolved once, here, by inlining them)."""
    from jsonschema import Draft202012Validator, validators

    schema = load_schema(kind)
    checker = Draft202012Validator.TYPE_CHECKER.redefine_many(_TYPES)
    return validators.extend(Draft202012Validator, type_checker=checker)(_inline_refs(schema, schema.get("$defs", {})))


def is_valid(document: Any, kind: str) -> bool:
    """Whether ``document`` matches the ``kind`` schema, as the library's validator would
    say (the same keywords, :data:`_TYPES` for the types), without its error machinery."""
    return _compiled(kind)(document)


@lru_cache(maxsize=None)
def _compiled(kind: str) -> Callable[[Any], bool]:
    schema = load_schema(kind)
    test = _compile(_inline_refs(schema, schema.get("$defs", {})))
    if test is None:  # a keyword the compiler does not know: the library decides every time
        return _validator(kind).is_valid
    return test


def _inline_refs(node: Any, definitions: dict[str, Any]) -> Any:
    """``node`` with each local ``{"$ref": "#/$defs/name"}`` replaced by its definition
    (the schemas are not recursive); keywords beside a ``$ref`` apply as well."""
    if isinstance(node, list):
        return [_inline_refs(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _inline_refs(definitions[node["$ref"].removeprefix("#/$defs/")], definitions)
        rest = {k: _inline_refs(v, definitions) for k, v in node.items() if k != "$ref"}
        return {**target, **rest} if not target.keys() & rest.keys() else {"allOf": [target, rest]}
    return {k: _inline_refs(v, definitions) for k, v in node.items() if k != "$defs"}


_ANNOTATIONS = {"$schema", "$id", "title", "description", "$comment", "default", "examples"}


def _compile(schema: Any) -> Callable[[Any], bool] | None:
    """A predicate true exactly when ``schema`` (without ``$ref``) holds, for the keywords
    our schemas use; None if it has any other, or a form of one this does not handle."""
    if schema is True or schema == {}:
        return lambda value: True
    if not isinstance(schema, dict):
        return None
    tests: list[Callable[[Any], bool]] = []
    for keyword, argument in schema.items():
        if keyword in _ANNOTATIONS or keyword in ("then", "else", "additionalProperties"):
            continue  # annotations; the rest are read with their partner below
        make = _KEYWORDS.get(keyword)
        test = make(argument, schema) if make else None
        if test is None:
            return None
        tests.append(test)
    if "additionalProperties" in schema:
        known = set(schema.get("properties", {}))
        extra = _compile(schema["additionalProperties"])
        if extra is None or "patternProperties" in schema:
            return None
        tests.append(lambda v: type(v) is not dict or all(extra(x) for k, x in v.items() if k not in known))
    if len(tests) == 1:
        return tests[0]
    return lambda value: all(test(value) for test in tests)


def _type(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    names = [argument] if isinstance(argument, str) else argument
    if not isinstance(names, list) or not all(name in _TYPES for name in names):
        return None
    tests = [_TYPES[name] for name in names]
    if len(tests) == 1:
        only = tests[0]
        return lambda value: only(None, value)
    return lambda value: any(test(None, value) for test in tests)


def _enum(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    """Members that are strings or integers only (JSON equality: 1.0 is 1, True is not)."""
    if not isinstance(argument, list) or not all(type(m) in (str, int) for m in argument):
        return None
    strings = {m for m in argument if type(m) is str}
    numbers = {m for m in argument if type(m) is int}
    return lambda v: (type(v) is str and v in strings) or (type(v) in (int, float) and v in numbers)


def _const(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    return _enum([argument], schema)


def _bound(within: Callable[[Any, Any], bool]) -> Callable[[Any, Any], Callable[[Any], bool] | None]:
    """A numeric bound: only numbers are held to it (NaN passes, as in the library)."""
    def make(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
        if not _is_number(None, argument):
            return None
        return lambda v: not _is_number(None, v) or within(v, argument)
    return make


def _size(kind: type, within: Callable[[int, int], bool]) -> Callable[[Any, Any], Callable[[Any], bool] | None]:
    """A bound on the length of a list or the fields of an object."""
    def make(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
        if type(argument) is not int:
            return None
        return lambda v: type(v) is not kind or within(len(v), argument)
    return make


def _required(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    if not isinstance(argument, list):
        return None
    return lambda v: type(v) is not dict or all(name in v for name in argument)


def _dependent_required(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    if not isinstance(argument, dict):
        return None
    pairs = list(argument.items())
    return lambda v: type(v) is not dict or all(all(d in v for d in needs) for name, needs in pairs if name in v)


def _properties(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    if not isinstance(argument, dict):
        return None
    pairs = [(name, _compile(sub)) for name, sub in argument.items()]
    if any(test is None for _, test in pairs):
        return None
    return lambda v: type(v) is not dict or all(test(v[name]) for name, test in pairs if name in v)


def _items(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    test = _compile(argument)
    if test is None or "prefixItems" in schema:
        return None
    return lambda v: type(v) is not list or all(map(test, v))


def _any_of(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    tests = [_compile(sub) for sub in argument] if isinstance(argument, list) and argument else [None]
    return None if None in tests else (lambda v: any(test(v) for test in tests))


def _all_of(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    tests = [_compile(sub) for sub in argument] if isinstance(argument, list) and argument else [None]
    return None if None in tests else (lambda v: all(test(v) for test in tests))


def _if(argument: Any, schema: Any) -> Callable[[Any], bool] | None:
    condition = _compile(argument)
    then, otherwise = (_compile(schema.get(k, True)) for k in ("then", "else"))
    if condition is None or then is None or otherwise is None:
        return None
    return lambda v: then(v) if condition(v) else otherwise(v)


_KEYWORDS: dict[str, Callable[[Any, Any], Callable[[Any], bool] | None]] = {
    "type": _type, "enum": _enum, "const": _const,
    "minimum": _bound(lambda v, b: not v < b), "maximum": _bound(lambda v, b: not v > b),
    "exclusiveMinimum": _bound(lambda v, b: not v <= b), "exclusiveMaximum": _bound(lambda v, b: not v >= b),
    "minItems": _size(list, lambda n, b: n >= b), "maxItems": _size(list, lambda n, b: n <= b),
    "minProperties": _size(dict, lambda n, b: n >= b), "maxProperties": _size(dict, lambda n, b: n <= b),
    "required": _required, "dependentRequired": _dependent_required,
    "properties": _properties, "items": _items, "anyOf": _any_of, "allOf": _all_of, "if": _if,
}


def _reason(error: Any) -> str:
    """``field.path: what is wrong``, one short line, without echoing a large value."""
    where = _field_path(error.absolute_path) or "(the whole file)"
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        what = f"{_short(error.instance)} is not of type {expected}"
    elif error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "?")
        return _one_line(f"{_field_path([*error.absolute_path, missing])}: required field missing")
    elif error.validator == "dependentRequired":
        return _one_line(f"{where}: {error.message}")
    elif error.validator in ("enum", "const"):
        what = f"{_short(error.instance)} is not one of {_short(error.validator_value, 120)}"
    elif error.validator in ("minimum", "maximum", "minItems", "minProperties"):
        what = f"{_short(error.instance)} breaks {error.validator} {error.validator_value}"
    else:
        what = error.message
    return _one_line(f"{where}: {what}")


def _field_path(parts: Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, dict):
        return f"an object of {len(value)} field(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return text[: limit - 3] + "..."
