"""conformance.json, exactly as CONTRACT.md specifies it (schema nsconform/1)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reports.hostfacts import host_facts
from reports.results import Result, summarize

SCHEMA = "nsconform/1"


def document(
    *,
    runtime: dict[str, Any],
    results: list[Result],
    namespaces: Iterable[str],
    started: str,
    duration_s: float,
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "runtime": runtime,
        "host": host_facts(),
        "started": started,
        "duration_s": round(duration_s, 3),
        "results": [r.to_json() for r in results],
        "summary": summarize(results, namespaces),
    }
