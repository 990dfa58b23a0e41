"""kcidb.json: a run's results in KernelCI's KCIDB format (schema v5.3, as PyPI's kcidb-io publishes it), so
that a kernel's namespace audit lands next to LTP's and kselftest's results for the same kernel.

Built from conformance.json documents alone (one run's, an audit's entries', or many hosts' in
nsconform-merge), so every writer gives the same objects for the same report:

- one checkout and one build per kernel: a Debian kernel (its `uname -v` names the package's version) is
  `linux-image-<release>` at that version; any other kernel is its release and version string, with
  `git_commit_hash` when the user gives one (`--kcidb-commit`). A kernel run on many hosts is one build.
- one test per result: `path` `nsconform.<namespace or area>.<check>.<combination>`, `status` from the
  outcome, `duration`, the reason as `log_excerpt`, the evidence in `misc`, host facts and the runtime
  in `environment.misc`;
- one MISS test (path `nsconform`) for an audit's entry that gave no report, with the reason.

Ids are `<origin>:` + host + kernel + runtime + check + combination + the run's start: unique in a run,
and across merged hosts (a host, kernel, runtime and start met twice is numbered, `host#2`).
docs/reports.md describes every field.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nsconform.namespaces import combo_id
from nsconform.report.writing import KCIDB_FILE

VERSION = {"major": 5, "minor": 3}
ORIGIN = "nsconform"
ORIGIN_PATTERN = re.compile(r"[a-z0-9_]+")  # the schema's origin
COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")  # the schema's git_commit_hash
SUITE = "nsconform"  # the root of every test path
STATUS = {"passed": "PASS", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
EXCERPT_LIMIT = 16384  # the schema's maxLength of log_excerpt
DEBIAN_BUILD = re.compile(r"\bDebian (\S+)")  # Debian's `uname -v`: "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-3 (...)"
FILE = KCIDB_FILE


class KcidbError(ValueError):
    """A --kcidb-origin or --kcidb-commit the schema does not accept."""


@dataclass(frozen=True)
class Options:
    origin: str = ORIGIN
    commit: str | None = None  # git_commit_hash of the kernels that are not a distribution's package


def options(origin: str | None, commit: str | None, prefix: str = "--") -> Options:
    """Checked options (named with `prefix` in errors): the origin in the schema's alphabet, the commit a full
    sha1 hash."""
    origin = ORIGIN if origin is None else origin
    if not ORIGIN_PATTERN.fullmatch(origin):
        raise KcidbError(f"{prefix}kcidb-origin {origin!r}: KCIDB origins are lowercase letters, digits and _")
    if commit is not None and not COMMIT_PATTERN.fullmatch(commit):
        raise KcidbError(f"{prefix}kcidb-commit {commit!r}: not a full git commit hash (40 lowercase hex digits)")
    return Options(origin, commit)


@dataclass(frozen=True)
class Kernel:
    """What names a kernel for KCIDB: its release, and either Debian's package version or its version string."""

    release: str
    version: str = ""  # `uname -v`
    machine: str = ""
    package_version: str | None = None  # Debian's, when the kernel is a Debian package

    @classmethod
    def of_host(cls, host: dict[str, Any]) -> Kernel:
        """The kernel of a report's host facts."""
        facts = [str(host.get(key, "")) for key in ("kernel", "kernel_version", "machine")]
        return cls(*facts).identified()

    def identified(self) -> Kernel:
        """This kernel, as a Debian package where its version string names one."""
        debian = DEBIAN_BUILD.search(self.version)
        return self if debian is None else replace(self, package_version=debian[1])

    @property
    def package(self) -> str | None:
        return None if self.package_version is None else f"linux-image-{self.release}"

    def describe(self) -> str:
        if self.package is not None:
            return f"Debian {self.package} {self.package_version}"
        return f"Linux {self.release} {self.version}".strip()

    def key(self, opts: Options) -> str:
        """The checkout's and build's id: the release, and a digest of what else tells this build from another."""
        commit = opts.commit if self.package is None else None
        identity = json.dumps([self.release, self.package_version or self.version, self.machine, commit])
        return f"{opts.origin}:{self.release}:{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Missing:
    """An entry of an audit that gave no report: its label, the reason, and its kernel as far as known."""

    label: str
    reason: str
    kernel: Kernel
    started: str  # the audit's start
    host: str = field(default_factory=platform.node)  # where the audit ran


def segment(text: str) -> str:
    """One component of a test path in the schema's alphabet ([a-zA-Z0-9_-]): pid+uts -> pid_uts, n/a -> n_a."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text) or "_"


def group_of(result: dict[str, Any]) -> str:
    """The namespace or hardening area a result belongs to."""
    return str(result.get("area") or result["namespace"])


def combination_of(result: dict[str, Any]) -> str:
    """The combination as the run named it: the test id's parameter (`n/a` where no combination applied)."""
    node = str(result.get("id", ""))
    if node.endswith("]") and "[" in node:
        return node[node.rindex("[") + 1 : -1]
    return combo_id(result["combination"])


def path_of(result: dict[str, Any]) -> str:
    group = group_of(result)
    check = str(result["check"]).removeprefix(group + ".")
    return ".".join([SUITE, segment(group), segment(check), segment(combination_of(result))])


def stamp(started: str) -> str:
    """The run's start in an id: 2026-11-28T18:00:00Z -> 20261128T180000Z."""
    return started.replace("-", "").replace(":", "")


def no_nul(text: str) -> str:
    """The schema's strings carry no NUL: a report's (from a probe or a runtime) is written as \\0."""
    return text.replace("\0", "\\0")


def excerpt(text: str) -> str:
    return no_nul(text)[:EXCERPT_LIMIT]


def runtime_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The runtime as the environment gives it: name, version, profile, claims (its hardening stays in the report)."""
    return {key: value for key, value in doc["runtime"].items() if key != "hardening"}


def tests_of(doc: dict[str, Any], host: str, build_id: str, opts: Options) -> list[dict[str, Any]]:
    """One test per result of one report; `host` is the host's name as the ids give it."""
    runtime = runtime_of(doc)
    version = f" ({runtime['version']})" if runtime.get("version") else ""
    comment = f"{host}: {doc['host'].get('distro', '?')}, runtime {runtime['name']}{version}"
    environment = {"comment": no_nul(comment), "misc": {"host": doc["host"], "runtime": runtime}}
    prefix = f"{opts.origin}:{host}:{doc['host'].get('kernel', '?')}:{runtime['name']}"
    tests = []
    for result in doc["results"]:
        test = {
            "id": f"{prefix}:{result['check']}:{combination_of(result)}:{stamp(doc['started'])}",
            "build_id": build_id,
            "origin": opts.origin,
            "path": path_of(result),
            "status": STATUS[result["outcome"]],
            "start_time": doc["started"],
            "environment": environment,
            "misc": {
                "check": result["check"],
                "combination": result["combination"],
                "expected": result["expected"],
                "evidence": result["evidence"],
                "report_id": result["id"],
            },
        }
        if "duration_s" in result:
            test["duration"] = result["duration_s"]
        if result["reason"]:
            test["log_excerpt"] = excerpt(result["reason"])
        tests.append(test)
    return tests


def document(reports: Sequence[dict[str, Any]], opts: Options, missing: Iterable[Missing] = ()) -> dict[str, Any]:
    """The KCIDB data of `reports` (conformance.json documents) and of the entries that gave none."""
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []

    def build_of(kernel: Kernel, ran: bool, config: dict[str, Any] | None = None) -> str:
        key = kernel.key(opts)
        misc = {"kernel": kernel.release, "kernel_version": kernel.version}
        if kernel.package is not None:
            misc |= {"package": kernel.package, "package_version": kernel.package_version}
        checkout = {"id": key, "origin": opts.origin, "comment": kernel.describe(), "valid": True, "misc": misc}
        if kernel.package is None and opts.commit is not None:
            checkout["git_commit_hash"] = opts.commit
        checkouts.setdefault(key, checkout)
        build = builds.setdefault(
            key, {"id": key, "checkout_id": key, "origin": opts.origin, "comment": kernel.describe()}
        )
        if kernel.machine:
            build["architecture"] = segment(kernel.machine.lower())
        if config:
            build.setdefault("misc", {"kernel_config": config})
        if ran:  # the kernel booted and ran the suite: it was built
            build["status"] = "PASS"
        return key

    seen: dict[tuple[str, ...], int] = {}
    for doc in reports:
        facts = doc["host"]
        kernel = Kernel.of_host(facts)
        build_id = build_of(kernel, True, facts.get("kernel_config"))
        host = str(facts.get("hostname", "?"))
        run = (host, kernel.release, str(doc["runtime"]["name"]), doc["started"])
        seen[run] = seen.get(run, 0) + 1
        tests += tests_of(doc, host if seen[run] == 1 else f"{host}#{seen[run]}", build_id, opts)
    for entry in missing:
        build_id = build_of(entry.kernel, False)
        tests.append(
            {
                "id": f"{opts.origin}:{entry.host}:{entry.kernel.release}:{entry.label}:{SUITE}:{stamp(entry.started)}",
                "build_id": build_id,
                "origin": opts.origin,
                "path": SUITE,
                "status": "MISS",
                "start_time": entry.started,
                "log_excerpt": excerpt(entry.reason),
                "environment": {"comment": f"{entry.host}: audit entry {entry.label}", "misc": {"entry": entry.label}},
            }
        )
    return {"version": VERSION, "checkouts": list(checkouts.values()), "builds": list(builds.values()), "tests": tests}


def render(reports: Sequence[dict[str, Any]], opts: Options, missing: Iterable[Missing] = ()) -> str:
    """Compact JSON: every test carries its environment (a run of the whole suite has some 1,800 tests)."""
    return json.dumps(document(reports, opts, missing), separators=(",", ":")) + "\n"
