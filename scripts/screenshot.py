"""The README's picture of a report: a real run's conformance.html, as headless Chromium shows it.

    .venv/bin/python scripts/screenshot.py [--report-dir DIR] [OUT]     (default OUT: docs/images/conformance.png)

Without --report-dir it first runs the suite as the picture shows it (`nsconform -n auto --runtime unshare
--namespaces uts,mnt,ipc,net`: 16 combinations; unshare leaves the host's /dev/shm and sysfs in place, so ipc
and net are violated) into a
temporary directory; with it, it takes DIR/conformance.html as it is. The screenshot is taken by the
project's own Chromium helper (tests/chromium.py, as the HTML report's tests do), WIDTH x HEIGHT pixels;
tests/test_report_views.py checks that the committed picture is such a screenshot.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: tests.* from the checkout

from tests.chromium import screenshot  # noqa: E402

WIDTH, HEIGHT = 1280, 900
DEFAULT_OUT = ROOT / "docs" / "images" / "conformance.png"
RUN = ["-n", "auto", "--runtime", "unshare", "--namespaces", "uts,mnt,ipc,net", "--no-host-audit"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--report-dir", type=Path, help="a run's report directory (default: run the suite first)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nsconform-screenshot-") as scratch:
        reports = args.report_dir
        if reports is None:
            reports = Path(scratch, "reports")
            command = [sys.executable, "-m", "nsconform", *RUN, f"--report-dir={reports}"]
            subprocess.run(command, cwd=scratch, stdout=subprocess.DEVNULL, check=False)
        page = reports / "conformance.html"
        if not page.is_file():
            print(f"no report at {page}", file=sys.stderr)
            return 1
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, args.out.resolve(), WIDTH, HEIGHT)
    print(f"{args.out}: {WIDTH}x{HEIGHT} screenshot of {page.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
