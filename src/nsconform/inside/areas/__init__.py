"""The probe's side of the hardening areas (nsconform.areas): one module per area.

Each module is sent into the sandbox right after probe.py (nsconform.inside.code), so that its `@op`
functions answer the harness's requests; in the harness it is imported as a module of this package. So a
module here uses the standard library only, has no side effect on import, and takes what it needs of
probe.py by name in a guarded import (in a sandbox those names are already there):

    try:  # imported by the harness; in a sandbox probe.py's names are already defined
        from nsconform.inside.probe import checked, errno_name, libc, op
    except ImportError:
        pass

Everything here probes without harm: stat, read-only opens of at most a byte, syscalls with arguments
the kernel rejects or that do nothing, sockets opened and closed; never a write.
"""
