"""Runtime profiles: the format of docs/profiles.md, its extensions, and the errors a bad profile gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nsconform.inside import probe_command
from nsconform.runtimes.bundles import oci_config
from nsconform.runtimes.declared import Expect
from nsconform.runtimes.profiles import ProfileError, parse
from nsconform.runtimes.runtime import PROFILES_DIR, ProfileRuntime, RuntimeSpecError, bundled, resolve
from nsconform.sandbox.sandbox import SandboxError
from tests.conftest import ROOT

HERE = Path("/profiles/test.toml")
FIXED = """
name = "fixed"
command = ["unshare", "--uts", "--"]
isolates = ["uts"]
"""
MATRIX = """
name = "matrix"
[matrix]
prefix = ["unshare", "--fork"]
suffix = ["--"]
[matrix.flags]
uts = ["--uts"]
pid = ["--pid"]
mnt = ["--mount"]
"mnt+pid" = ["--mount-proc"]
"""
OCI = """
name = "oci"
bundle = "oci"
command = ["runc", "run", "--bundle", "{bundle}", "{id}"]
cleanup = ["runc", "delete", "--force", "{id}"]
"""


def runtime(text: str) -> ProfileRuntime:
    return ProfileRuntime(parse(text, HERE))


def test_fixed_form_runs_its_command_with_the_probe_appended() -> None:
    """The fixed form builds only what it claims, and appends the probe's command to `command`."""
    rt = runtime(FIXED + '\nrequires = ["unshare"]\ndescription = "d"\n')
    assert (rt.name, rt.isolates, rt.any_combination, rt.spec.requires) == ("fixed", {"uts"}, False, ("unshare",))
    assert rt.buildable(frozenset({"pid"})) == {"uts"}
    launch = rt.launch(frozenset({"uts"}))
    assert launch.argv[:3] == ["unshare", "--uts", "--"]
    assert launch.argv[3:-1] == probe_command("x")[:-1]
    assert launch.claimed == {"uts"} and launch.cleanup == []


def test_matrix_form_adds_each_isolated_namespaces_flags_in_file_order() -> None:
    """prefix + flags of every key whose namespaces are all isolated (combined keys too) + suffix."""
    rt = runtime(MATRIX)
    assert rt.any_combination and rt.isolates is None
    argv = rt.launch(frozenset({"pid", "mnt"})).argv
    assert argv[: argv.index("--") + 1] == ["unshare", "--fork", "--pid", "--mount", "--mount-proc", "--"]
    argv = rt.launch(frozenset({"pid"})).argv
    assert argv[: argv.index("--") + 1] == ["unshare", "--fork", "--pid", "--"]
    assert rt.buildable(frozenset({"uts", "net"})) == {"uts"}  # no flags for net: always shared


def test_oci_bundle_always_isolates_mnt_and_gets_the_probe_in_its_config() -> None:
    """bundle = "oci": {bundle} and {id} are filled in, the probe is process.args, mnt is in every bundle."""
    rt = runtime(OCI)
    assert rt.any_combination and rt.buildable(frozenset({"uts"})) == {"uts", "mnt"}
    assert rt.buildable(frozenset({"time", "pid"})) == {"pid", "mnt"}
    launch = rt.launch(frozenset({"uts", "mnt"}))
    try:
        bundle = Path(launch.argv[3])
        config = json.loads((bundle / "config.json").read_text())
        assert launch.argv[:3] == ["runc", "run", "--bundle"] and launch.argv[4].startswith("nsconform-")
        assert config["process"]["args"][:-1] == probe_command("x")[:-1]
        assert {ns["type"] for ns in config["linux"]["namespaces"]} == {"uts", "mount"}
        assert (bundle / "rootfs" / "usr").is_dir() and bundle.stat().st_mode & 0o777 == 0o711
    finally:
        for step in reversed(launch.cleanup):
            step()
    assert not bundle.exists()
    with pytest.raises(SandboxError, match="cannot build uts"):
        rt.launch(frozenset({"uts"}))


VOLUME_MOUNT = """[oci]
mounts = [{ destination = "{volume}", source = "{volume}", type = "bind", options = ["rbind"] }]
"""


def test_oci_table_adds_the_volume_grants_only_known_capabilities_and_sets_propagation() -> None:
    """[oci]: its mounts ({volume} filled, a volume of the sandbox's own outside a session) come last; the
    bundle grants no capability the runtime does not know; rootfs_propagation is the bundle's."""
    text = OCI + VOLUME_MOUNT + 'capabilities = ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]\nrootfs_propagation = "rprivate"\n'
    launch = runtime(text).launch(frozenset({"uts", "mnt"}))
    try:
        config = json.loads((Path(launch.argv[3]) / "config.json").read_text())
        volume = config["mounts"][-1]["source"]
        assert config["mounts"][-1] == {"destination": volume, "source": volume, "type": "bind", "options": ["rbind"]}
        assert Path(volume).is_dir() and Path(volume).stat().st_mode & 0o777 == 0o711 and "-volume" in volume
        assert set(config["process"]["capabilities"]["effective"]) <= {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
        assert config["linux"]["rootfsPropagation"] == "rprivate"
    finally:
        for step in reversed(launch.cleanup):
            step()
    assert not Path(volume).exists()


def test_oci_features_command_says_which_capabilities_the_runtime_knows() -> None:
    """[oci] features: the command's JSON (as `runc features` prints it) lists the capabilities granted at most."""
    listed = json.dumps({"linux": {"capabilities": ["CAP_CHOWN", "CAP_KILL"]}})
    launch = runtime(OCI + f'[oci]\nfeatures = ["echo", {json.dumps(listed)}]\n').launch(frozenset({"mnt", "user"}))
    try:
        config = json.loads((Path(launch.argv[3]) / "config.json").read_text())
        assert config["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]
    finally:
        for step in reversed(launch.cleanup):
            step()
    with pytest.raises(SandboxError, match="cannot learn the runtime's capabilities"):
        runtime(OCI + '[oci]\nfeatures = ["false"]\n').launch(frozenset({"mnt"}))


def test_version_command_is_the_reports_runtime_version() -> None:
    rt = runtime(FIXED + 'version = ["echo", "myjail 1.2"]\n')
    assert rt.version is not None and rt.version() == "myjail 1.2"
    assert runtime(FIXED).version is None


def test_declared_combinations_of_an_oci_runtime() -> None:
    """combinations = "declared": an OCI runtime that builds only what it claims (a kernel of its own)."""
    rt = runtime(OCI + 'combinations = "declared"\nisolates = ["uts", "pid", "mnt"]\n')
    assert not rt.any_combination and rt.buildable(frozenset({"net"})) == {"uts", "pid", "mnt"}


@pytest.mark.parametrize("asked", [frozenset(), frozenset({"user"}), frozenset({"user", "pid", "net", "ipc"})])
def test_oci_config_mounts_only_what_the_namespaces_allow(asked: frozenset[str]) -> None:
    """Without mnt asked for, the bundle still has its own mount namespace: nothing is mounted on the host."""
    config = oci_config(asked | {"mnt"}, ["/usr/bin/python3"], ["/usr"])
    types = {ns["type"] for ns in config["linux"]["namespaces"]}
    mounts = {m["destination"]: m["type"] for m in config["mounts"]}
    assert "mount" in types
    assert mounts["/usr"] == "bind" and config["root"]["readonly"] is True
    assert mounts["/proc"] == ("bind" if asked == {"user"} else "proc")
    assert ("/dev/mqueue" in mounts) == ("ipc" in asked)
    assert ("uidMappings" in config["linux"]) == ("user" in asked)


def test_expect_is_parsed() -> None:
    rt = runtime(FIXED + '[expect]\nhostname = "box"\nuid_map = [[0, 100000, 65536]]\n')
    assert rt.expect == Expect(hostname="box", uid_map=((0, 100000, 65536),), gid_map=None)
    assert runtime(FIXED).expect == Expect()
    assert runtime(FIXED + '[expect]\npropagation = "slave"\n').expect == Expect(propagation="slave")


BAD = [
    ("colour", FIXED + 'colour = "red"\n'),
    ("name", FIXED.replace('name = "fixed"', "")),
    ("name", FIXED.replace('"fixed"', "3")),
    ("command", FIXED.replace('["unshare", "--uts", "--"]', '"unshare --uts"')),
    ("command", FIXED.replace('"--uts"', "7")),
    ("command", FIXED.replace('["unshare", "--uts", "--"]', "[]")),
    ("command", 'name = "neither"\nisolates = ["uts"]\n'),
    ("matrix", FIXED + MATRIX.replace('name = "matrix"', "")),
    ("isolates", FIXED.replace('isolates = ["uts"]', "")),
    ("isolates", FIXED.replace('["uts"]', '["uts", "utz"]')),
    ("isolates", FIXED.replace('["uts"]', '"uts"')),
    ("isolates", MATRIX.replace('name = "matrix"', 'name = "m"\nisolates = ["net"]')),
    ("requires", FIXED + 'requires = "unshare"\n'),
    ("description", FIXED + "description = 1\n"),
    ("matrix", 'name = "m"\nmatrix = 3\n'),
    ("matrix.flag", MATRIX + "[matrix.flag]\nuts = []\n"),
    ("matrix.flags", 'name = "m"\n[matrix]\nprefix = ["x"]\n'),
    ("matrix.flags.utz", MATRIX + 'utz = ["--uts"]\n'),
    ("matrix.flags.net", MATRIX + "net = []\n"),
    ("matrix.flags.net", MATRIX + 'net = "--net"\n'),
    ("matrix.flags.ipc+mnt", MATRIX + '"ipc+mnt" = ["--x"]\n'),
    ("matrix.prefix", MATRIX.replace('prefix = ["unshare", "--fork"]', "prefix = [1]")),
    ("expect.shell", FIXED + '[expect]\nshell = "sh"\n'),
    ("expect.hostname", FIXED + "[expect]\nhostname = 1\n"),
    ("expect.uid_map", FIXED + "[expect]\nuid_map = [0, 100000, 65536]\n"),
    ("expect.gid_map", FIXED + "[expect]\ngid_map = [[0, 100000, 0]]\n"),
    ("expect.propagation", FIXED + '[expect]\npropagation = "shared"\n'),
    ("expect.gid_map", FIXED + "[expect]\ngid_map = [[0, -1, 1]]\n"),
    ("expect", FIXED + 'expect = "box"\n'),
    ("bundle", FIXED + 'bundle = "docker"\n'),
    ("bundle", 'bundle = "oci"\n' + MATRIX),
    ("command", FIXED.replace('"--uts"', '"{bundle}"')),
    ("cleanup", FIXED + 'cleanup = ["rm", "-r", "{rootfs}"]\n'),
    ("command", OCI.replace('"{bundle}", ', "")),
    ("isolates", OCI + 'isolates = ["uts"]\n'),
    ("version", FIXED + "version = []\n"),
    ("oci", FIXED + '[oci]\ncapabilities = ["CAP_CHOWN"]\n'),
    ("oci.seccomp", OCI + "[oci]\nseccomp = 1\n"),
    ("oci.capabilities", OCI + '[oci]\ncapabilities = ["CHOWN"]\n'),
    ("oci.features", OCI + '[oci]\ncapabilities = ["CAP_CHOWN"]\nfeatures = ["runc", "features"]\n'),
    ("oci.rootfs_propagation", OCI + '[oci]\nrootfs_propagation = "peer"\n'),
    ("oci.mounts", OCI + '[oci]\nmounts = ["/x"]\n'),
    ("oci.mounts.destination", OCI + '[oci]\nmounts = [{ source = "/x", type = "bind" }]\n'),
    ("oci.mounts.flags", OCI + '[oci]\nmounts = [{ destination = "/x", source = "/x", type = "bind", flags = 1 }]\n'),
    ("combinations", OCI + 'combinations = "all"\n'),
    ("combinations", FIXED + 'combinations = "declared"\n'),
    ("isolates", OCI + 'combinations = "declared"\n'),
    ("hardening", FIXED + 'hardening = "strict"\n'),
    ("hardening.colour", FIXED + '[hardening]\ncolour = "red"\n'),
    ("hardening.source", FIXED + '[hardening]\ncommand = ["docker", "run"]\ncapabilities = ["CAP_KILL"]\n'),
    ("hardening.command", FIXED + '[hardening]\nsource = "x"\ncapabilities = ["CAP_KILL"]\n'),
    ("hardening.spec", FIXED + '[hardening]\nspec = ["runc", "spec"]\n'),
    ("hardening.command", OCI + '[hardening]\ncommand = ["runc", "run"]\n'),
    ("hardening.unfiltered", FIXED + '[hardening]\nunfiltered = ["docker", "run"]\n'),
    ("hardening.capabilities", FIXED + '[hardening]\ncapabilities = ["KILL"]\n'),
    ("hardening.no_new_privs", FIXED + '[hardening]\nno_new_privs = "yes"\n'),
    ("hardening.seccomp", FIXED + '[hardening]\nseccomp = "strict"\n'),
    ("hardening.must_refuse", FIXED + '[hardening]\nseccomp = "filter"\nmust_refuse = ["execve"]\n'),
    ("hardening.must_refuse", FIXED + '[hardening]\nseccomp = "disabled"\nmust_refuse = ["keyctl"]\n'),
    ("hardening.masked_paths", FIXED + '[hardening]\nmasked_paths = ["proc/kcore"]\n'),
    ("hardening.knobs", FIXED + '[hardening]\nknobs = ["core_pattern", "panic"]\n'),
    ("hardening.devices", FIXED + '[hardening]\ndevices = ["/dev/null"]\n'),
    ("hardening.sockets", FIXED + '[hardening]\nsockets = ["run/docker.sock"]\n'),
    ("hardening.command", FIXED + '[hardening]\ncommand = ["{bundle}"]\n'),
]


def test_hardening_is_parsed_and_declares_its_areas() -> None:
    """[hardening]: the promise per area, its source, and how the as-shipped sandbox starts."""
    table = (
        '[hardening]\nsource = "the docs"\ncommand = ["docker", "run"]\ncapabilities = ["CAP_KILL"]\n'
        'seccomp = "filter"\nmust_refuse = ["keyctl"]\nmasked_paths = ["/proc/kcore"]\n'
    )
    declared = runtime(FIXED + table).hardening
    assert declared.areas == ("caps", "seccomp", "paths")
    assert declared.command == ("docker", "run") and declared.shipped
    assert declared.to_json() == {
        "source": "the docs",
        "capabilities": ["CAP_KILL"],
        "seccomp": "filter",
        "must_refuse": ["keyctl"],
        "masked_paths": ["/proc/kcore"],
    }
    assert runtime(FIXED).hardening.areas == ()


@pytest.mark.parametrize(("key", "text"), BAD, ids=[f"{key}-{i}" for i, (key, _) in enumerate(BAD)])
def test_bad_profile_is_an_error_naming_the_file_and_the_key(key: str, text: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse(text, HERE)
    message = str(caught.value)
    assert message.startswith(f"profile {HERE}: key `{key}`: "), message


def test_bundle_key_must_come_before_tables() -> None:
    """A top-level key after a table header belongs to that table (TOML): the error names where it landed."""
    with pytest.raises(ProfileError, match=r"key `matrix.flags.bundle`"):
        parse(MATRIX + 'bundle = "oci"\n', HERE)


def test_not_toml_is_an_error_naming_the_file() -> None:
    with pytest.raises(ProfileError, match=rf"^profile {HERE}: not valid TOML"):
        parse("name = ", HERE)


@pytest.mark.parametrize("name", bundled())
def test_bundled_profile_is_valid(name: str) -> None:
    rt = resolve(name, ROOT)
    assert isinstance(rt, ProfileRuntime) and rt.name == name and rt.profile == str(PROFILES_DIR / f"{name}.toml")


def test_every_runtime_family_is_bundled() -> None:
    families = {"unshare", "bwrap", "runc", "crun", "podman", "docker", "lxc", "nspawn", "firejail", "runsc"}
    assert set(bundled()) >= families


def test_runtime_resolves_native_names_and_paths(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text(FIXED)
    assert resolve("native", tmp_path).name == "native"
    assert resolve("mine.toml", tmp_path).name == "fixed"
    assert resolve(str(tmp_path / "mine.toml"), ROOT).name == "fixed"
    with pytest.raises(RuntimeSpecError, match=r"neither a known runtime \(native, .*unshare.*\) nor a profile file"):
        resolve("nosuch", tmp_path)
    (tmp_path / "bad.toml").write_text(FIXED + "extra = 1\n")
    with pytest.raises(RuntimeSpecError, match=rf"profile {tmp_path / 'bad.toml'}: key `extra`"):
        resolve("bad.toml", tmp_path)


def test_bad_profile_stops_the_session_before_anything_runs(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """pytest --nsc-runtime bad.toml: a usage error naming the file and the key; no check runs, no report."""
    bad = tmp_path / "bad.toml"
    bad.write_text(FIXED.replace('["uts"]', '["uts", "utz"]'))
    result = pytester.runpytest_subprocess(
        "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider",
        "--nsc-report-dir", str(tmp_path / "reports"), "--nsc-runtime", str(bad), str(ROOT / "isolation_checks"),
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*profile {bad}: key `isolates`: unknown namespace utz*"])
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("content", [b'name = "caf\xe9"\n', None], ids=["invalid-utf8", "unreadable"])
def test_unreadable_profile_is_a_usage_error(pytester: pytest.Pytester, tmp_path: Path, content: bytes | None) -> None:
    """A profile that is not UTF-8 text, or that cannot be read (a directory named like one): usage error 4."""
    bad = tmp_path / "bad.toml"
    if content is None:
        bad.mkdir()
    else:
        bad.write_bytes(content)
    result = pytester.runpytest_subprocess(
        "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider",
        f"--nsc-report-dir={tmp_path / 'reports'}", f"--nsc-runtime={bad}", str(ROOT / "isolation_checks"),
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{bad}*"])
    assert "Traceback" not in result.stderr.str()


def test_unshare_matrix_builds_all_64_combinations(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--collect-only", "-q",
        "--nsc-runtime", "unshare", "--nsc-combinations", "all", str(ROOT / "isolation_checks" / "uts.py"),
    )  # fmt: skip
    ids = {line.rsplit("[", 1)[1] for line in result.outlines if "test_namespace_identity[" in line}
    assert len(ids) == 64


def test_fixed_profile_runs_declared_only(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess(
        "-c", str(ROOT / "pytest.ini"), "--rootdir", str(ROOT), "-p", "no:cacheprovider", "--collect-only", "-q",
        "--nsc-runtime", "bwrap", "--nsc-combinations", "all", str(ROOT / "isolation_checks" / "uts.py"),
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_missing_required_executable_skips_every_check_with_that_reason(run_suite, tmp_path: Path) -> None:
    profile = tmp_path / "absent.toml"
    profile.write_text(FIXED + 'requires = ["unshare", "nsconform-no-such-tool"]\n')
    run = run_suite("--nsc-runtime", str(profile), "--nsc-namespaces", "uts", str(ROOT / "isolation_checks" / "uts.py"))
    reasons = {r["reason"] for r in run.report["results"] if r["outcome"] == "skipped"}
    assert {r["outcome"] for r in run.report["results"]} == {"skipped"}
    assert any(f"nsconform-no-such-tool not found on PATH (profile {profile}: requires)" in r for r in reasons), reasons
