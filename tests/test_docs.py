"""The documentation stays true: docs/checks.md is what the @guarantee declarations generate, and lists
every check of a full run; every file the Markdown links to exists; the README stays short; every table
renders; figures derived from the catalogue and profiles are current; command blocks tagged `runs` run
as written (docs/contributing.md, "Before you commit")."""

from __future__ import annotations

import html
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from nsconform import catalogue
from nsconform.areas import ALL as AREAS
from nsconform.namespaces import ALL, DEFAULT
from nsconform.runtimes.runtime import bundled
from tests.conftest import ROOT

# Pages that work under way on other branches adds (runtimes, escape routes, kernel audits, the
# journal and reaper): linked already, and to be dropped from here once they have landed.
PENDING = {"docs/runtimes.md", "docs/hygiene.md"}
PYTEST = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_catalogue_is_current() -> None:
    """docs/checks.md is exactly what `python -m nsconform.catalogue docs/checks.md` writes."""
    done = subprocess.run(
        [sys.executable, "-m", "nsconform.catalogue", "--check", "docs/checks.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_catalogue_lists_every_check_of_a_full_run() -> None:
    """The checks pytest collects with every namespace and area named are those the catalogue lists."""
    done = subprocess.run(
        [
            *PYTEST,
            "--collect-only",
            "-q",
            f"--nsc-namespaces={','.join(ALL)}",
            "--nsc-combinations=singles",
            f"--nsc-areas={','.join(AREAS)}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = {
        f"{m['module']}.{m['name']}"
        for m in re.finditer(r"isolation_checks/(?P<module>\w+)\.py::test_(?P<name>\w+)\[", done.stdout)
    }
    listed = {spec.name for spec in catalogue.checks()}
    assert collected == listed
    text = (ROOT / "docs" / "checks.md").read_text()
    assert all(f"`{name}`" in text for name in listed)


def markdown_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True)
    names = tracked.stdout.split() if tracked.returncode == 0 else []
    return [ROOT / name for name in names if (ROOT / name).is_file()] or sorted(ROOT.glob("**/*.md"))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_markdown_links_name_files_and_anchors_the_repository_has() -> None:
    missing = []
    for page in markdown_files():
        for target in LINK.findall(page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            name, _, anchor = target.partition("#")
            path = (page.parent / name).resolve() if name else page
            relative = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            if str(relative) in PENDING and not path.exists():
                continue
            if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
                missing.append(f"{page.relative_to(ROOT)}: {target}")
    assert not missing


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_bytes()) <= 10 * 1024


def rendered(page: Path) -> str:
    """A page as GitHub renders it (GitHub Flavored Markdown, raw HTML kept)."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    return cmarkgfm.github_flavored_markdown_to_html(page.read_text(), options=Options.CMARK_OPT_UNSAFE)


def table_blocks(text: str) -> list[str]:
    """Every run of lines that starts with '|' (a table as written, in a list item too), outside code blocks."""
    blocks, current, fenced = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.lstrip().startswith("|") and not line.startswith("    "):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    return blocks + (["\n".join(current)] if current else [])


def test_every_markdown_table_renders_as_a_table() -> None:
    """Each table as written is one table as GitHub draws it, with as many columns as its header row: a
    delimiter row of another width (or a missing one) leaves the lines as text."""
    broken = []
    for page in markdown_files():
        html = rendered(page)
        written = table_blocks(page.read_text())
        tables = re.findall(r"<table>.*?</table>", html, re.S)
        if len(tables) != len(written):
            broken.append(f"{page.relative_to(ROOT)}: {len(written)} tables written, {len(tables)} rendered")
            continue
        for source, table in zip(written, tables, strict=True):
            header = re.search(r"<thead>\s*<tr>(.*?)</tr>", table, re.S)
            columns = len(re.findall(r"<th[ >]", header.group(1))) if header else 0
            delimiter = source.splitlines()[1].strip().strip("|").split("|")
            if columns != len(delimiter):
                broken.append(f"{page.relative_to(ROOT)}: {source.splitlines()[0][:60]}")
    assert not broken


@cache
def results_of(namespaces: str) -> int:
    """How many results a default native run on `namespaces` (all combinations) has: what pytest collects."""
    done = subprocess.run(
        [*PYTEST, "--collect-only", "-q", f"--nsc-namespaces={namespaces}"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    return sum(1 for line in done.stdout.splitlines() if re.match(r"\S+\.py::", line))  # not the audit's IPv6


def checks_of(namespaces: tuple[str, ...]) -> int:
    return sum(1 for spec in catalogue.checks() if spec.namespace in namespaces)


def number(text: str) -> int:
    return int(text.replace(",", ""))


def names(text: str) -> list[str]:
    return sorted(re.findall(r"`([\w-]+)`", text))


DEFAULT_SET = ",".join(DEFAULT)
# Figures and lists the docs derive from the catalogue or the bundled profiles: (page, pattern whose group
# is the claim, what it must equal). Measured figures (times, a past run's counts) carry their date in the
# docs and are not here.
DERIVED: list[tuple[str, str, Callable[[], object], Callable[[str], object]]] = [
    ("README.md", r"That is the (\d+) checks of the six default namespaces", lambda: checks_of(DEFAULT), number),
    ("README.md", r"every one of their (\d+) combinations", lambda: 2 ** len(DEFAULT), number),
    ("README.md", r"applies to \((\d[\d,]*) results\)", lambda: results_of(DEFAULT_SET), number),
    (
        "README.md",
        r"(\d+ passed, \d+ skipped) in [\d.]+s",
        lambda: results_of(DEFAULT_SET),
        lambda t: sum(map(int, re.findall(r"\d+", t))),
    ),
    ("README.md", r"a bundled profile \(([^)]*)\)", bundled, names),
    ("docs/running.md", r"The bundled profiles are ((?:`[\w-]+`,?\s+(?:and\s+)?)+)\(in the package", bundled, names),
    (
        "docs/running.md",
        r"the empty set included \((\d+) for the six default namespaces\)",
        lambda: 2 ** len(DEFAULT),
        number,
    ),
    ("docs/kernels.md", r"running: \d+/(\d[\d,]*) results", lambda: results_of(DEFAULT_SET), number),
    (
        "docs/kernels.md",
        r"with uts, pid and ipc \((\d+) results per kernel\)",
        lambda: results_of("uts,pid,ipc"),
        number,
    ),
    (
        "docs/profiles.md",
        r"## The bundled profiles\n\n(.*?)\n\n",
        bundled,
        lambda t: sorted(re.findall(r"^\| `([\w-]+)` \|", t, re.M)),
    ),
]


@pytest.mark.parametrize(
    ("page", "pattern", "truth", "read"), DERIVED, ids=[f"{p}:{i}" for i, (p, *_) in enumerate(DERIVED)]
)
def test_figures_and_lists_derived_from_the_catalogue_and_profiles_are_current(
    page: str, pattern: str, truth: Callable[[], object], read: Callable[[str], object]
) -> None:
    found = re.findall(pattern, (ROOT / page).read_text(), re.S)
    assert found, f"{page} no longer says {pattern!r}: update DERIVED with the page"
    expected = truth()
    assert [read(claim) for claim in found] == [expected] * len(found), f"{page}: {found} where it is {expected}"


def test_readme_summary_sample_has_the_columns_summary_md_has() -> None:
    from nsconform.report import summary
    from tests.reportdata import recorded

    written = summary.render(recorded())
    header = next(line for line in written.splitlines() if line.startswith("| namespace |"))
    assert f"  {header}\n" in (ROOT / "README.md").read_text()


@dataclass(frozen=True)
class Block:
    """A code block of a page: where it starts, its language (None: a command, an output, a listing), its
    text and its tag, `<!-- doc-test: runs -->` or `<!-- doc-test: not run: why -->` on the lines above it."""

    page: str
    line: int
    language: str | None
    code: str
    tag: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


CODE_BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<tag>[^>]*?) -->\s*)?"
    r'<pre data-sourcepos="(?P<line>\d+):\d+-[^"]*"(?: lang="(?P<lang>[\w-]+)")?>'
    r"<code[^>]*>(?P<code>.*?)</code></pre>",
    re.S,
)
RUNS = "runs"
# A block runs here where it takes under a minute on an idle machine (others are tagged `not run`); this
# limit only stops a block that hangs, the machine being shared and its times noisy.
HANG_LIMIT_S = 600.0


def code_blocks() -> list[Block]:
    """Every code block of the README and docs/ (checks.md is generated and has none)."""
    import cmarkgfm
    from cmarkgfm.cmark import Options

    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        out = cmarkgfm.github_flavored_markdown_to_html(
            page.read_text(), options=Options.CMARK_OPT_UNSAFE | Options.CMARK_OPT_SOURCEPOS
        )
        for m in CODE_BLOCK.finditer(out):
            code = html.unescape(m.group("code"))
            found.append(
                Block(str(page.relative_to(ROOT)), int(m.group("line")), m.group("lang"), code, m.group("tag"))
            )
    return found


BLOCKS = code_blocks()


def test_every_command_block_is_tagged_run_or_not_run() -> None:
    """A block without a language (commands, outputs, listings) says whether tests/test_docs.py runs it, and
    why not where it does not; the tagged ones are the blocks that run."""
    untagged = [b.id for b in BLOCKS if b.language is None and b.tag is None]
    assert not untagged, "tag each: <!-- doc-test: runs --> or <!-- doc-test: not run: why -->"
    malformed = [b.id for b in BLOCKS if b.tag is not None and b.tag != RUNS and not b.tag.startswith("not run: ")]
    assert not malformed
    assert [b.id for b in BLOCKS if b.tag == RUNS]


@contextmanager
def checkout_copy() -> Iterator[Path]:
    """The checkout as a block sees it, with a report directory of its own: a directory (readable by every
    user, as the rootless block needs) of links to every top-level entry but reports/."""
    with tempfile.TemporaryDirectory(prefix="nsconform-docs-") as scratch:
        os.chmod(scratch, 0o755)
        for entry in ROOT.iterdir():
            if entry.name not in ("reports", ".git", ".pytest_cache"):
                os.symlink(entry, Path(scratch, entry.name))
        Path(scratch, "reports").mkdir()
        yield Path(scratch)


def others_may_reach(path: Path) -> bool:
    """Whether a user other than the owner may pass through every folder from / to `path`."""
    return all(os.stat(folder).st_mode & 0o001 for folder in (path, *path.parents))


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.tag == RUNS], ids=lambda b: b.id)
def test_command_block_runs_as_written(block: Block, quiet_host: None) -> None:
    """The block, as written, in bash (-e: every command must succeed), from a copy of the checkout; what it
    writes under /tmp that was not there is removed afterwards."""
    if "setpriv" in block.code and not others_may_reach(ROOT / ".venv"):
        pytest.skip(
            f"{ROOT} is not reachable by other users (a folder on its path lacks o+x): the block runs as another "
            "user, from a checkout and venv that user may read, as the docs say"
        )
    named = set(re.findall(r"(/tmp/[\w.-]+)", block.code))
    named |= {
        f"{tempfile.gettempdir()}/nsconform-{user.pw_uid}" for user in pwd.getpwall() if user.pw_name == "nsconform"
    }
    existed = {path for path in named if os.path.lexists(path)}
    try:
        with checkout_copy() as checkout:
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", block.code],
                cwd=checkout,
                capture_output=True,
                text=True,
                timeout=HANG_LIMIT_S,
            )
    finally:
        for path in named - existed:
            shutil.rmtree(path, ignore_errors=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_scripts_run_as_the_docs_show_them() -> None:
    """docs/runtimes.md runs `scripts/runtime_table.py` directly: it is executable, by the checkout's venv."""
    done = subprocess.run([ROOT / "scripts" / "runtime_table.py", "--help"], capture_output=True, text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: runtime_table.py")
    assert "scripts/runtime_table.py" in (ROOT / "docs" / "runtimes.md").read_text()
