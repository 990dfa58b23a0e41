"""tests/hostwatch.py, which fails the project's test session for what it changed on the host and did not put
back, blames only what its own processes' journals name: a link left by one of its processes is blamed, the
same link is another program's to a watch of another session."""

from __future__ import annotations

import json
import subprocess
import sys

from nsconform.hygiene import journal
from tests.hostwatch import Watch

# A harness process that makes a link, journals it, and exits leaving it (as a killed run would).
MAKER = """
import json, subprocess
from nsconform.hygiene import journal, naming
record = journal.begin(journal.new_run(), "hostwatch-test")
name, peer = naming.link_name(), naming.link_name()
with record.holding("link", name) as entry:
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", peer], check=True)
print(json.dumps({"link": name, "run": record.run, "token": record.token}))
"""


def test_a_link_left_by_a_process_of_the_session_is_blamed_on_it_alone() -> None:
    with subprocess.Popen(["sleep", "infinity"]) as other_session:
        ours, theirs = Watch(), Watch(session=other_session.pid)
        try:
            done = subprocess.run([sys.executable, "-c", MAKER], capture_output=True, text=True, timeout=60)
        finally:
            blamed, _ = ours.finish()
            blamed_there, others_there = theirs.finish()
            other_session.kill()
        made = json.loads(done.stdout or "{}")
        if made:
            subprocess.run(["ip", "link", "del", made["link"]], check=False)
            for path in journal.directory().glob(f"*-{made['token']}-{made['run']}.journal"):
                path.unlink()
    assert made, done.stderr
    assert any(line.startswith("links: + ") and made["link"] in line for line in blamed)
    assert made["token"] in ours.ours
    assert not any(made["link"] in line for line in blamed_there)
    assert any(made["link"] in line for line in others_there)
    assert made["token"] in theirs.others
