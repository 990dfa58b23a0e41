"""junit.xml: one test case per result, for CI's test view (built from the results, not --junitxml).

A case is named after its check and combination (`uts.hostname_private[pid+uts]`) in class
`nsconform.<namespace>`; a failure's or error's text is its reason and evidence. With a baseline,
a second suite has one failing case per regression, so that a gate failing on a result that is
missing still shows why. Characters XML 1.0 cannot carry are written as escapes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from reports.hostfacts import fact_rows
from reports.results import evidence_lines, label

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


def render(doc: dict[str, Any]) -> str:
    results = doc["results"]
    regressions = doc.get("baseline", {}).get("regressions", [])
    outcomes = [r["outcome"] for r in results] + ["failed"] * len(regressions)
    root = ET.Element("testsuites", {"name": "nsconform", "time": str(doc.get("duration_s", 0)), **counts(outcomes)})
    suite = element(
        root,
        "testsuite",
        name=f"nsconform {doc['runtime'].get('name')}",
        timestamp=doc.get("started", ""),
        hostname=doc["host"].get("hostname", ""),
        time=doc.get("duration_s", 0),
        **counts([r["outcome"] for r in results]),
    )
    properties = element(suite, "properties")
    for key, value in [*fact_rows({"runtime": doc["runtime"]}), *fact_rows({"host": doc["host"]})]:
        element(properties, "property", name=key, value=value)
    for r in results:
        case = element(suite, "testcase", classname=f"nsconform.{r['namespace']}", name=label(r), file=file_of(r))
        if r["outcome"] in TAGS:
            reason = r.get("reason", "")
            body = "\n".join([reason, "", "evidence:", *evidence_lines(r.get("evidence", {}))])
            tag = TAGS[r["outcome"]]
            element(case, tag, None if tag == "skipped" else body, message=reason.split("\n", 1)[0][:500])
    if "baseline" in doc:
        gate = element(root, "testsuite", name="nsconform baseline", **counts(["failed"] * len(regressions)))
        for c in regressions:
            case = element(gate, "testcase", classname="nsconform.baseline", name=label(c))
            message = f"passed in the baseline {doc['baseline']['file']}, now {c['now']}"
            element(case, "failure", f"{message}: {c['reason']}", message=message)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def file_of(result: dict[str, Any]) -> str:
    return result.get("id", "").split("::", 1)[0]
