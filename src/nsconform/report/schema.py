"""The conformance.json schema (schema.json beside this module, a JSON Schema) and a validator for the part
of JSON Schema it uses.

The validator knows the keywords `type` (a name or a list of names), `properties`, `required`,
`additionalProperties` (a boolean or a schema), `items`, `enum`, `const`, `minimum` and `$ref` (to
`#/$defs/NAME`), and ignores only the annotations (`$schema`, `$id`, `$defs`, `title`, `description`);
a schema with any other keyword is refused, so that nothing in schema.json goes unchecked.

`closed=True` reads every object schema that lists `properties` without `additionalProperties` as
closed: a key it does not describe is an error. The project's tests validate the reports they write
so, which keeps the schema a description of every field; the report loader (`load_report`) validates
open, so that a report with fields a newer nsconform added still loads.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("schema.json")
ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
KEYWORDS = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "enum", "const", "minimum", "$ref"}
)
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


class SchemaError(ValueError):
    """A value that does not match the schema; the message says where (`results[3].outcome`) and why."""


@cache
def report_schema() -> dict[str, Any]:
    """schema.json, the conformance.json schema shipped in the package."""
    return json.loads(SCHEMA_FILE.read_text())


def validate(value: Any, schema: dict[str, Any] | None = None, *, closed: bool = False) -> None:
    """Raise SchemaError at the first place where `value` does not match `schema` (default: schema.json)."""
    root = report_schema() if schema is None else schema
    _Validator(root, closed).check(value, root, "")


class _Validator:
    def __init__(self, root: dict[str, Any], closed: bool) -> None:
        self.root = root
        self.closed = closed

    def resolve(self, ref: str) -> dict[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self.root.get("$defs", {}):
            raise ValueError(f"schema: unsupported or unknown $ref {ref!r}")
        return self.root["$defs"][ref[len(prefix) :]]

    def fail(self, where: str, problem: str) -> SchemaError:
        return SchemaError(f"{where or 'the document'}: {problem}")

    def check(self, value: Any, schema: dict[str, Any], where: str) -> None:
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise ValueError(f"schema: keyword {', '.join(sorted(unknown))} is not supported by this validator")
        if "$ref" in schema:
            self.check(value, self.resolve(schema["$ref"]), where)
        if "type" in schema:
            names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
            if not any(TYPES[name](value) for name in names):
                raise self.fail(where, f"{short(value)} is not {' or '.join(names)}")
        if "const" in schema and value != schema["const"]:
            raise self.fail(where, f"{short(value)} is not {short(schema['const'])}")
        if "enum" in schema and value not in schema["enum"]:
            raise self.fail(where, f"{short(value)} is not one of {', '.join(map(str, schema['enum']))}")
        if "minimum" in schema and TYPES["number"](value) and value < schema["minimum"]:
            raise self.fail(where, f"{value} is less than {schema['minimum']}")
        if isinstance(value, dict):
            self.check_object(value, schema, where)
        if isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                self.check(item, schema["items"], f"{where}[{i}]")

    def check_object(self, value: dict[str, Any], schema: dict[str, Any], where: str) -> None:
        for key in schema.get("required", ()):
            if key not in value:
                raise self.fail(where, f"`{key}` is missing")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", not (self.closed and "properties" in schema))
        for key, item in value.items():
            inner = f"{where}.{key}" if where else key
            if key in properties:
                self.check(item, properties[key], inner)
            elif extra is False:
                raise self.fail(inner, "a field the schema does not describe")
            elif isinstance(extra, dict):
                self.check(item, extra, inner)


def short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:60] + "..."
