"""Writing reports: atomically (a report is either the old file or the complete new one, never half
of it) and all four views of a run together, into a directory checked for writability up front."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsconform.report import htmlreport, junit, summary


class ReportDirError(OSError):
    """Reports cannot be written where --nsc-report-dir says."""


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


# The files of REPORT_DIR (docs/reports.md), each rendered from the conformance.json document.
VIEWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "conformance.json": json_text,
    "junit.xml": junit.render,
    "summary.md": summary.render,
    "conformance.html": htmlreport.render,
}


def write_reports(directory: Path, document: dict[str, Any], extra: dict[str, str] | None = None) -> list[Path]:
    """Render every view first (a rendering bug writes nothing), then write each, and the `extra` files
    (name: text, such as kcidb.json), atomically."""
    texts = {name: render(document) for name, render in VIEWS.items()} | (extra or {})
    for name, text in texts.items():
        write_atomic(directory / name, text)
    return [directory / name for name in texts]


def check_writable(directory: Path, what: str = "--nsc-report-dir") -> None:
    """Raise ReportDirError unless files can be created in `directory` (or where it would be made).

    Creates nothing that stays: it makes an anonymous temporary file in the nearest existing
    directory on the way and closes it.
    """
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ReportDirError(f"{what} {directory}: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ReportDirError(f"{what} {directory}: cannot write in {existing}: {e.strerror or e}") from None
