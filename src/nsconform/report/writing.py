"""Writing reports: all views of a run as one set, into a directory checked for writability up front.

A set is either the old files or the complete new ones, never a mix, and never half a file: every file
is written and fsync'd under a temporary name beside its place first; only then are the old files kept
aside (hard links) and the new ones renamed over them, the directory fsync'd. Any error before the last
rename (ENOSPC, EDQUOT, EROFS, EIO) puts the old files back and raises ReportWriteError, which names the
directory and the error. The temporary names and the links aside are journaled
(nsconform.hygiene.journal), so that a run killed while writing leaves nothing a later run does not reap.
Other files in the directory (a README) are never touched."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nsconform.hygiene import journal, naming
from nsconform.report import htmlreport, junit, summary


class ReportDirError(OSError):
    """Reports cannot be written where --nsc-report-dir says."""


class ReportWriteError(OSError):
    """A set of reports could not be written; the files of the directory are as they were."""


def write_set(directory: Path, texts: dict[str, str | None]) -> list[Path]:
    """Write `texts` (file name: text) into `directory` as one set (see the module's doc); their paths. A name
    whose text is None is a file of an earlier set that this one does not have (kcidb.json of a run with
    --kcidb before one without): removed with the rest, put back with the rest."""
    record = journal.current()
    aside: list[tuple[Path, journal.Entry]] = []  # temporaries and links to the old files: gone at the end
    try:
        directory.mkdir(parents=True, exist_ok=True)
        staged = {
            name: None if text is None else staged_file(directory, name, text, record, aside)
            for name, text in texts.items()
        }
        kept = {name: keep_aside(directory, name, record, aside) for name in texts if (directory / name).exists()}
        replaced: list[str] = []
        try:
            for name, temporary in staged.items():
                if temporary is not None:
                    os.replace(temporary, directory / name)
                elif name in kept:
                    os.unlink(directory / name)
                else:
                    continue
                replaced.append(name)
            fsync_directory(directory)
        except OSError:
            for name in reversed(replaced):
                if name in kept:
                    os.replace(kept[name], directory / name)
                else:
                    os.unlink(directory / name)
            raise
    except OSError as e:
        code = errno.errorcode.get(e.errno or 0, "")
        why = f"{e.strerror} ({code})" if e.strerror else str(e)
        failed = ReportWriteError(f"reports not written in {directory}: {why}; its files are as they were")
        failed.errno = e.errno
        raise failed from None
    finally:
        for path, entry in aside:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            record.removed(entry)
    return [directory / name for name, text in texts.items() if text is not None]


def staged_file(
    directory: Path, name: str, text: str, record: journal.Journal, aside: list[tuple[Path, journal.Entry]]
) -> Path:
    """`text` written and fsync'd in a new file beside `name`, journaled."""
    path = directory / f".{name}.{naming.unique('new')}"
    with record.holding("path", str(path)) as entry:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    record.made_path(entry)
    aside.append((path, entry))
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        os.fchmod(fd, 0o644)  # whatever the umask
        f.write(text)
        f.flush()
        os.fsync(fd)
    return path


def keep_aside(directory: Path, name: str, record: journal.Journal, aside: list[tuple[Path, journal.Entry]]) -> Path:
    """A second name (a hard link) for the old file `name`, journaled: what a failed set puts back."""
    path = directory / f".{name}.{naming.unique('old')}"
    with record.holding("path", str(path)) as entry:
        os.link(directory / name, path)
    record.made_path(entry)
    aside.append((path, entry))
    return path


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """One file, as a set of one."""
    write_set(path.parent, {path.name: text})


def json_text(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


# The files of REPORT_DIR (docs/reports.md), each rendered from the conformance.json document.
VIEWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "conformance.json": json_text,
    "junit.xml": junit.render,
    "summary.md": summary.render,
    "conformance.html": htmlreport.render,
}


# Written only where asked (--nsc-kcidb: nsconform.report.kcidb); an earlier set's is removed with the rest.
KCIDB_FILE = "kcidb.json"


def write_reports(directory: Path, document: dict[str, Any], extra: dict[str, str] | None = None) -> list[Path]:
    """Render every view first (a rendering bug writes nothing), then write them, and the `extra` files
    (name: text, such as kcidb.json), as one set; a kcidb.json not among them is an earlier set's: removed."""
    views = {name: render(document) for name, render in VIEWS.items()}
    return write_set(directory, views | {KCIDB_FILE: None} | (extra or {}))


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
