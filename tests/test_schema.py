"""The conformance.json schema (nsconform/report/schema.json) and its validator: the loader validates every
report it reads against it; tests/conftest.py validates every report the project's tests write, closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsconform.report.conformance import ReportError, load_report
from nsconform.report.schema import SCHEMA_FILE, SchemaError, report_schema, validate
from tests.conftest import validate_written
from tests.reportdata import recorded


def test_schema_file_is_json_schema_of_the_report() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$schema"].endswith("/draft/2020-12/schema")
    assert schema["properties"]["schema"]["const"] == "nsconform/1"
    assert schema == report_schema()


def test_recorded_report_matches_closed() -> None:
    validate(recorded(), closed=True)


def test_a_field_the_schema_does_not_describe_fails_closed_only() -> None:
    doc = recorded()
    doc["results"][2]["novel"] = 1
    validate(doc)  # the loader's reading: a newer nsconform's report still loads
    with pytest.raises(SchemaError, match=r"results\[2\]\.novel: a field the schema does not describe"):
        validate(doc, closed=True)
    with pytest.raises(pytest.fail.Exception, match=r"does not match schema\.json"):
        validate_written(doc, Path("conformance.json"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["results"][0].update(outcome="fine"), r"results\[0\]\.outcome: \"fine\" is not one of passed"),
        (lambda d: d["results"][1].pop("expected"), r"results\[1\]: `expected` is missing"),
        (lambda d: d["summary"]["uts"].update(verdict="ok"), r"summary\.uts\.verdict: \"ok\" is not one of"),
        (lambda d: d["runtime"].update(isolates="uts"), r"runtime\.isolates: \"uts\" is not array or null"),
        (lambda d: d.update(duration_s=-1), r"duration_s: -1 is less than 0"),
        (lambda d: d["host"].pop("kernel"), r"host: `kernel` is missing"),
    ],
)
def test_loader_names_where_a_report_is_wrong(tmp_path: Path, change, message: str) -> None:
    doc = recorded()
    change(doc)
    path = tmp_path / "bad.json"  # not conformance.json: the autouse check of written reports skips it
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError, match=message):
        load_report(path)


def test_validator_refuses_keywords_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="keyword pattern is not supported"):
        validate("x", {"type": "string", "pattern": "^x$"})


def test_validator_follows_refs_and_type_lists() -> None:
    number = {"type": ["integer", "null"], "minimum": 1}
    schema = {"$defs": {"n": number}, "type": "array", "items": {"$ref": "#/$defs/n"}}
    validate([1, None, 3], schema)
    with pytest.raises(SchemaError, match=r"\[1\]: true is not integer or null"):
        validate([1, True], schema)
