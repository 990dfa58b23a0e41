"""conformance.json (schema nsconform/1): the document a run writes, and reading one back.

The document is described field by field in schema.json beside this module (a JSON Schema, shipped in
the package) and in docs/reports.md: the runtime (with its version when it reports one, and the target
with --nsc-attach), the host facts of nsconform.report.hostfacts, one result per check and
combination, a verdict per namespace, `checks` (each check's guarantee, as its docstring states it),
with --nsc-baseline `baseline`, and the plugin adds `host_audit`. load_report validates against it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nsconform.inputs import REPORT_BYTES, InputError, read_limited
from nsconform.report.hostfacts import host_facts, runtime_version
from nsconform.report.results import Result, summarize
from nsconform.report.schema import SchemaError, validate
from nsconform.runtimes.runtime import declared_hardening

if TYPE_CHECKING:
    from nsconform.report.baseline import Comparison

SCHEMA = "nsconform/1"


class ReportError(ValueError):
    """A file that should be an nsconform report is not one."""


def describe_runtime(runtime: Any) -> dict[str, Any]:
    """The report's `runtime`: name, profile file, claimed isolates, version when it has one, and with
    --nsc-attach the target (`attach`: its pid, and whether its claims come from the profile or its inodes)."""
    described = {
        "name": runtime.name,
        "profile": runtime.profile,
        "isolates": sorted(runtime.isolates) if runtime.isolates is not None else None,
        "version": runtime_version(runtime),
    }
    attach = getattr(runtime, "attach", None)
    if attach is not None:
        described["attach"] = attach
    declared = declared_hardening(runtime).to_json()
    if declared:
        described["hardening_declared"] = declared
    return described


def document(
    *,
    runtime: dict[str, Any],
    results: list[Result],
    namespaces: Iterable[str],
    started: str,
    areas: Iterable[str] = (),
    duration_s: float,
    checks: dict[str, str] | None = None,
    comparison: Comparison | None = None,
) -> dict[str, Any]:
    doc = {
        "schema": SCHEMA,
        "runtime": runtime,
        "host": host_facts(),
        "started": started,
        "duration_s": round(duration_s, 3),
        "results": [r.to_json() for r in results],
        "summary": summarize(results, namespaces, areas),
        "checks": dict(sorted((checks or {}).items())),
    }
    if comparison is not None:
        doc["baseline"] = comparison.to_json()
    return doc


def load_report(path: Path, *, what: str = "report") -> dict[str, Any]:
    """A conformance.json read back and checked, or ReportError saying what is wrong with it."""
    try:
        doc = json.loads(read_limited(Path(path), REPORT_BYTES, what))
    except InputError as e:
        raise ReportError(str(e)) from None
    except UnicodeDecodeError as e:
        raise ReportError(f"{what} {path}: cannot read it: {e}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{what} {path}: not JSON ({e})") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema != SCHEMA:
        raise ReportError(f"{what} {path}: schema {schema!r}, not {SCHEMA!r}: not a conformance.json of nsconform")
    try:
        validate(doc)
    except SchemaError as e:
        raise ReportError(f"{what} {path}: not a valid {SCHEMA} report (schema.json): {e}") from None
    return doc
