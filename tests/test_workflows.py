"""The CI examples (docs/scaling.md) run nsconform as it is: every nsconform, nsconform-merge and pytest
command their scripts run exists, with the options they give it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS = (ROOT / ".github" / "workflows" / "conformance.yml", ROOT / "docs" / "gitlab-ci.yml")
COMMANDS = ("nsconform", "nsconform-merge", "pytest")
SEPARATORS = re.compile(r";|&&|\|\||\||\n")
# What may come before the command: shell keywords, sudo, an interpreter (`python -m ...`), VAR=value.
PRECEDING = {"if", "then", "else", "elif", "fi", "do", "done", "!", "{", "}", "sudo", "$SUDO", "--preserve-env", "-m"}
ASSIGNMENT = re.compile(r"(\w+)=\(?(.*?)\)?")
VARIABLE = re.compile(r"\$\{?(\w+)(?:\[@\])?\}?")
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][\w-]*)")


def scripts(workflow: dict[str, Any]) -> list[str]:
    """Every shell script of a workflow: GitHub's steps' `run`, GitLab's jobs' `script` (its lines as one script)."""
    found = []
    for job in (workflow.get("jobs") or workflow).values():
        if not isinstance(job, dict):
            continue
        found += [step["run"] for step in job.get("steps", []) if "run" in step]
        for key in ("before_script", "script", "after_script"):
            lines = job.get(key, [])
            found.append(lines if isinstance(lines, str) else "\n".join(lines))
    return found


def preceding(word: str) -> bool:
    return word in PRECEDING or "=" in word or Path(word).name.startswith("python")


def commands(script: str) -> list[list[str]]:
    """The commands of a script that run nsconform, nsconform-merge or pytest: each as its words, the
    command's name (its base name) first, a variable the script set to an option (`gate=(--baseline=...)`)
    replaced by it."""
    found = []
    assigned: dict[str, str] = {}
    for part in SEPARATORS.split(script.replace("\\\n", " ")):
        try:
            words = shlex.split(part, comments=True)
        except ValueError:
            continue
        for word in words:
            if (assignment := ASSIGNMENT.fullmatch(word)) and assignment[2].startswith("-"):
                assigned[assignment[1]] = assignment[2]
        words = [assigned.get(v[1], word) if (v := VARIABLE.fullmatch(word)) else word for word in words]
        names = [Path(word).name for word in words]
        if "-m" in words and words.index("-m") + 1 < len(words) and Path(words[0]).name.startswith("python"):
            module = words[words.index("-m") + 1]
            names[words.index("-m") + 1] = {"nsconform.report.merge": "nsconform-merge"}.get(module, module)
        start = next((i for i, name in enumerate(names) if name in COMMANDS), None)
        if start is not None and all(map(preceding, words[:start])):
            found.append([names[start], *words[start + 1 :]])
    return found


def help_options(*argv: str) -> set[str]:
    done = subprocess.run([*argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(OPTION.findall(done.stdout))


@pytest.fixture(scope="module")
def accepted() -> dict[str, set[str]]:
    """The options each command accepts, as its own --help says: pytest's with nsconform's plugin; the
    `nsconform` command's own (nsconform's short names, --kernels ...) and pytest's, which it passes on."""
    pytest_options = help_options(sys.executable, "-m", "pytest", "-p", "no:cacheprovider")
    return {
        "pytest": pytest_options,
        "nsconform": pytest_options | help_options(sys.executable, "-m", "nsconform"),
        "nsconform-merge": help_options(sys.executable, "-m", "nsconform.report.merge"),
    }


def unknown(command: list[str], accepted: dict[str, set[str]]) -> list[str]:
    name, *args = command
    return [arg for arg in args if arg.startswith("-") and arg.split("=", 1)[0] not in accepted[name]]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_nsconform_command_exists_with_its_options(path: Path, accepted: dict[str, set[str]]) -> None:
    found = [command for script in scripts(yaml.safe_load(path.read_text())) for command in commands(script)]
    names = {command[0] for command in found}
    assert {"nsconform", "nsconform-merge"} <= names, f"{path.name}: the audit or the merge is not found"
    scripts_installed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert names - {"pytest"} <= set(scripts_installed)
    assert [(command, unknown(command, accepted)) for command in found if unknown(command, accepted)] == []
    merges = [command for command in found if command[0] == "nsconform-merge"]
    assert all("--kcidb" in command for command in merges)
    audits = [command for command in found if command[0] == "nsconform"]
    assert all(any(arg.startswith("--kernels=") for arg in command) and "--kcidb" in command for command in audits)


def test_the_check_finds_a_misspelt_option(accepted: dict[str, set[str]]) -> None:
    script = 'if [ -f x ]; then $SUDO .venv/bin/nsconform -n auto --kernel="$K" \\\n  --kcidb; fi\n'
    script += 'python -m nsconform.report.merge --kcidb-orign=x out a.json | tee log\ngate=("--baselin=b")\n'
    script += 'pytest "${gate[@]}" -n 2\n'

    script += "echo nsconform --not-a-command-here\n"
    found = commands(script)
    assert [unknown(command, accepted) for command in found] == [["--kernel=$K"], ["--kcidb-orign=x"], ["--baselin=b"]]
