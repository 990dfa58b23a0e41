"""Reaps what dead harness processes left: exactly the objects their journals list, nothing else.

Runs once per session, in the controller, before any check runs. A journal whose lock is free
belongs to a process that is gone (nsconform.hygiene.journal); each object it lists and did not
record removed is looked up as recorded (nsconform.hygiene.objects) and removed only if it is proven
still that object. A journal that cannot be read, or lists an object that cannot be told for its own,
is reported and left alone (the journal kept, so that every later run says so again); an object found
in the place of the journal's but not it is reported and left alone (the journal's is gone). Mounts
are unmounted before the paths they are in: a directory is removed only once no mount is left in it.
A journal whose process lives (another run's, or a live worker of a killed controller) is never touched.
"""

from __future__ import annotations

from nsconform.hygiene import journal, objects
from nsconform.hygiene.journal import Entry, Written

ORDER = {kind: i for i, kind in enumerate(journal.KINDS)}  # processes first, the paths they used last


def reap() -> list[str]:
    """Remove what every abandoned journal lists; a line per object removed or left alone."""
    done: list[str] = []
    for path in journal.files():
        try:
            with journal.abandoned(path) as written:
                if written is not None:
                    done += reap_journal(written)
        except (OSError, journal.JournalError) as e:
            done.append(f"left alone: journal {path}: {e}")
    return done


def removal_order(entry: Entry) -> tuple[int, int]:
    return ORDER[entry.kind], -len(entry.name)  # deepest mount points and paths first


def reap_journal(written: Written) -> list[str]:
    """Reap one abandoned journal (its lock held); it is unlinked once nothing it lists is left."""
    owner = objects.Owner.of(written.header)
    done, kept = [], []
    for entry in sorted(written.left, key=removal_order):
        what = objects.describe(entry)
        try:
            if objects.present(entry, owner):
                objects.remove(entry, owner)
                done.append(f"removed {what} (process {owner.pid}, run {written.header['run']})")
        except objects.Replaced as e:
            done.append(f"left alone: {what}: {e}")
        except objects.Unverifiable as e:
            done.append(f"left alone: {what}: {e}")
            kept.append(entry)
        except (KeyError, TypeError, ValueError) as e:  # an identity no nsconform writes
            done.append(f"left alone: {what}: its recorded identity is unreadable ({type(e).__name__}: {e})")
            kept.append(entry)
        except OSError as e:
            done.append(f"could not remove {what}: {e}")
            kept.append(entry)
    if not kept:
        written.path.unlink()
    return done
