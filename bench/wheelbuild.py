"""The wheel of this checkout, built from a clean copy of its files (what git tracks or would), so that no
stale build/ directory or egg-info of the checkout's slips into it and the checkout is not written."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out_dir: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    with tempfile.TemporaryDirectory(prefix="nsc-wheel-") as tmp:
        for name in filter(None, listed.split("\0")):
            if (ROOT / name).is_file():  # a file git lists may be deleted in the working tree
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, Path(tmp) / name)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out_dir), tmp],
            check=True,
            capture_output=True,
        )
    (wheel,) = out_dir.glob("nsconform-*.whl")
    return wheel
