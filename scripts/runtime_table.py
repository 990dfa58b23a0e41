#!/usr/bin/env python3
"""Run the conformance suite once per runtime and print a markdown table: namespace x runtime -> verdict.

    .venv/bin/python scripts/runtime_table.py                   # native and the bundled profiles
    .venv/bin/python scripts/runtime_table.py runc my.toml -- --nsc-namespaces uts,pid

Each runtime runs with its default --nsc-combinations (every combination it can build, else the one it
declares); each run's reports land in REPORT_DIR/<runtime>/ (default reports/runtimes/). Arguments
after `--` go to every pytest run. Below the table: the host, each runtime's version, and for every
`violated` or `error` cell the checks behind it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
if Path(sys.prefix).resolve() != VENV.resolve() and (VENV / "bin" / "python").exists():
    # run as `scripts/runtime_table.py`: by the checkout's virtualenv, where nsconform is installed
    os.execv(VENV / "bin" / "python", [str(VENV / "bin" / "python"), __file__, *sys.argv[1:]])

from nsconform.runtimes.runtime import bundled, resolve  # noqa: E402


def run(runtime: str, report_dir: Path, extra: list[str]) -> dict:
    """The suite on `runtime` (pytest's own exit status is not ours: failed checks are results)."""
    command = [sys.executable, "-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider"]
    command += [f"--nsc-runtime={runtime}", f"--nsc-report-dir={report_dir}", *extra]
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, check=False)
    path = report_dir / "conformance.json"
    if not path.is_file():
        raise SystemExit(f"{runtime}: no report in {report_dir} (run `{' '.join(command)}` to see why)")
    return json.loads(path.read_text())


def version(runtime: str, report: dict) -> str:
    """What ran: the profile's description and the first line of the version its report records."""
    spec = getattr(resolve(runtime, ROOT), "spec", None)
    if spec is None:
        return "the harness's own sandboxes"
    about = f"{spec.description} ({spec.path.name})" if spec.description else spec.path.name
    recorded = (report["runtime"].get("version") or "").strip().splitlines()
    return f"{about}: {recorded[0] if recorded else 'version unknown'}"


def cell(entry: dict) -> str:
    """verdict (passed/failed/skipped/error), and what a verdict that rests on no behaviour rests on."""
    counts = "/".join(str(entry[k]) for k in ("passed", "failed", "skipped", "error"))
    rests_on = entry.get("basis", {}).get("rests_on", "behaviour")
    return f"{entry['verdict']} ({counts})" + ("" if rests_on == "behaviour" else f", {rests_on}")


def table(reports: dict[str, dict]) -> str:
    names = list(reports)
    namespaces = list(next(iter(reports.values()))["summary"])
    lines = [
        "| namespace | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    for ns in namespaces:
        cells = [cell(reports[r]["summary"][ns]) if ns in reports[r]["summary"] else "-" for r in names]
        lines.append(f"| {ns} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(reports: dict[str, dict]) -> list[str]:
    """For each violated or errored cell: which checks failed, in how many combinations."""
    notes = []
    for runtime, report in reports.items():
        bad = Counter(
            (r["namespace"], r["check"], r["outcome"]) for r in report["results"] if r["outcome"] in ("failed", "error")
        )
        for (ns, check, outcome), count in sorted(bad.items()):
            example = next(
                r for r in report["results"] if (r["namespace"], r["check"], r["outcome"]) == (ns, check, outcome)
            )
            reason = example["reason"].split("\n")[0][:160]
            notes.append(f"- {runtime} / {ns}: `{check}` {outcome} in {count} combination(s), e.g. {reason}")
    return notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runtimes", nargs="*", help="native, bundled profile names or profile files (default: all)")
    parser.add_argument("--nsc-report-dir", dest="report_dir", type=Path, default=ROOT / "reports" / "runtimes")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    runtimes = args.runtimes or ["native", *bundled()]
    reports = {}
    for runtime in runtimes:
        reports[Path(runtime).stem] = run(runtime, args.report_dir / Path(runtime).stem, extra)
    host = next(iter(reports.values()))["host"]
    print(table(reports))
    print()
    print("Cells: verdict (passed/failed/skipped/error results); `identity only` where no behavioural check passed.")
    print(f"Measured on {host['distro']}, kernel {host['kernel']} ({host['machine']}), with:")
    for runtime in runtimes:
        report = reports[Path(runtime).stem]
        print(f"- {Path(runtime).stem}: {version(runtime, report)} ({report['duration_s']:.1f} s)")
    notes = findings(reports)
    if notes:
        print()
        print("Failed and errored checks:")
        print("\n".join(notes))


if __name__ == "__main__":
    main()
