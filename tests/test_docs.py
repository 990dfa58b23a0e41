"""The documentation stays true: docs/checks.md is what the @guarantee declarations generate, and lists
every check of a full run; every file the Markdown links to exists; the README stays short."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from nsconform import catalogue
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
    """The checks pytest collects with every namespace named are those the catalogue lists."""
    done = subprocess.run(
        [*PYTEST, "--collect-only", "-q", f"--nsc-namespaces={','.join(ALL)}", "--nsc-combinations=singles"],
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
    return sum(1 for line in done.stdout.splitlines() if "::" in line)


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
