"""The recorded report of tests/data (a real run of a leaky native runtime, with hostile strings put in)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).parent / "data" / "conformance.json"
# What tests/data/conformance.json carries to prove escaping: none of it may become markup.
HOSTILE = ("<script>alert(", "<img src=x", "<svg onload", "<b>bold</b>", "h```i</details>")


def recorded() -> dict[str, Any]:
    """A fresh copy of the recorded report."""
    return copy.deepcopy(json.loads(RECORDED.read_text()))
