"""What a sandbox's root can still reach beyond its namespaces, judged from what the probe saw: device nodes
(devices.py), the host's global knobs (knobs.py) and the host's listening Unix sockets (sockets.py).

The probe only looks (lstat, statvfs, faccessat, sock_diag on the host's side); its one kind of open is a
read-only, non-blocking open of a device node of an allowed class, and its one write a device node made and
removed in a harness scratch dir. docs/hardening.md.
"""
