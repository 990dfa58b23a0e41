"""junit.xml: one test case per result, for CI's test view (built from the results, not --junitxml).

Its structure is the one pytest's own `--junitxml` writes (family xunit2): `testsuites` without
attributes, `testsuite` with name, counts, time, timestamp and hostname and its `properties`, `testcase`
with classname, name and time, and `failure`, `error` or `skipped` (type `pytest.skip`) with a message.
A case is named after its check and combination (`uts.hostname_private[pid+uts]`) in class
`nsconform.<namespace>`; a failure's or error's text is its reason and evidence. With a baseline,
a second suite has one failing case per regression, so that a gate failing on a result that is
missing still shows why. Characters XML 1.0 cannot carry are written as escapes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from nsconform.report.hostfacts import fact_rows
from nsconform.report.results import evidence_lines, label, subject

# Everything outside XML 1.0's Char production (control characters, lone surrogates, U+FFFE/FFFF).
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
TAGS = {"failed": "failure", "error": "error", "skipped": "skipped"}


def xml_text(value: Any) -> str:
    return NOT_XML.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode(), str(value))


def element(parent: ET.Element, tag: str, text: str | None = None, **attributes: Any) -> ET.Element:
    node = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attributes.items()})
    if text is not None:
        node.text = xml_text(text)
    return node


def counts(outcomes: list[str]) -> dict[str, str]:
    return {
        "tests": str(len(outcomes)),
        "failures": str(outcomes.count("failed")),
        "errors": str(outcomes.count("error")),
        "skipped": str(outcomes.count("skipped")),
    }


def seconds(value: Any) -> str:
    return f"{float(value or 0):.3f}"


def render(doc: dict[str, Any]) -> str:
    results = doc["results"]
    regressions = doc.get("baseline", {}).get("regressions", [])
    root = ET.Element("testsuites")
    suite = element(
        root,
        "testsuite",
        name=f"nsconform {doc['runtime'].get('name')}",
        **counts([r["outcome"] for r in results]),
        time=seconds(doc.get("duration_s")),
        timestamp=doc.get("started", ""),
        hostname=doc["host"].get("hostname", ""),
    )
    properties = element(suite, "properties")
    for key, value in [*fact_rows({"runtime": doc["runtime"]}), *fact_rows({"host": doc["host"]})]:
        element(properties, "property", name=key, value=value)
    for r in results:
        case = element(
            suite, "testcase", classname=f"nsconform.{subject(r)}", name=label(r), time=seconds(r.get("duration_s"))
        )
        if r["outcome"] in TAGS:
            reason = r.get("reason", "")
            message = reason.split("\n", 1)[0][:500]
            if r["outcome"] == "skipped":
                element(case, "skipped", reason, type="pytest.skip", message=message)
            else:
                body = "\n".join([reason, "", "evidence:", *evidence_lines(r.get("evidence", {}))])
                element(case, TAGS[r["outcome"]], body, message=message)
    if "baseline" in doc:
        gate = element(
            root,
            "testsuite",
            name="nsconform baseline",
            **counts(["failed"] * len(regressions)),
            time=seconds(0),
            timestamp=doc.get("started", ""),
            hostname=doc["host"].get("hostname", ""),
        )
        for c in regressions:
            case = element(gate, "testcase", classname="nsconform.baseline", name=label(c), time=seconds(0))
            message = f"passed in the baseline {doc['baseline']['file']}, now {c['now']}"
            element(case, "failure", f"{message}: {c['reason']}", message=message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
