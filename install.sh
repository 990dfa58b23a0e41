#!/usr/bin/env bash
# Installs what nsconform needs on a Debian machine, as root: Debian packages (Python, the runtimes
# the bundled profiles drive, Chromium for the HTML report's test, QEMU for --kernels) and a virtualenv
# in .venv.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"
export DEBIAN_FRONTEND=noninteractive

DEBIAN_PACKAGES=(
  python3 python3-venv python3-pip ca-certificates   # the harness; the probe runs on /usr/bin/python3
  util-linux iproute2 procps                         # unshare(1), nsenter, setpriv; ip (the tests' veth pairs and lookalike links)
  git                                                # the tests list the checkout's tracked files
  bubblewrap runc crun podman uidmap busybox-static  # the runtimes of the bundled profiles
  docker.io                                          # the docker profile and --nsc-attach to a container (tests start their own dockerd)
  lxc systemd-container firejail runsc               # the lxc, nspawn, firejail and runsc (gVisor) profiles
  chromium                                           # renders conformance.html in the project's tests
  qemu-system-x86 kmod file                          # nsconform --kernels: virtme-ng's QEMU, depmod/modprobe, kernel versions
  udev                                               # --kernels: virtme-ng's guest init finds its script ports through udev on the host's root
  mmdebstrap                                         # --distros: a Debian release's root filesystem, built without mounting anything on the host
)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  # No service starts on the host for what is installed (udev's, docker's, lxc's): a policy-rc.d that
  # forbids every start while apt runs, where the machine has none (removed after, even on failure).
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# nsconform install.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  if [ "$(trap -p EXIT)" ]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

# The unshare profile maps root of a new user namespace to 100000-165535 with newuidmap/newgidmap,
# which allow only ranges listed for the caller in /etc/subuid and /etc/subgid (added if root has none).
for ids in /etc/subuid /etc/subgid; do
  grep -q '^root:' "$ids" 2>/dev/null || echo 'root:100000:65536' >> "$ids"
done

# The unprivileged user the project's tests run the suite as, to show rootless mode (tests/test_rootless.py).
if ! getent passwd nsconform >/dev/null; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nsconform
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,kernels]'

# Bytecode caches of the harness, pytest's assertion-rewritten ones included (pip compiled the rest).
# Where PYTHONDONTWRITEBYTECODE is set, as on these machines, no run writes them, and every pytest
# process (the controller and each xdist worker) would compile the plugin and the checks from source,
# ~0.2 s each. A changed source file is compiled afresh: a stale cache is never used.
for suite in isolation_checks tests; do
  env -u PYTHONDONTWRITEBYTECODE .venv/bin/pytest --collect-only -q -p no:cacheprovider "$suite" >/dev/null
done
