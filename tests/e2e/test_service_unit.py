"""examples/pylvs.service as installed by `scripts/install.sh --service`: a copy of pylvs in a
virtualenv of its own, made by the python3 that ran the install, behind a launcher on systemd's
search path, so the unit depends neither on its PATH (pyenv's python3 is not on it) nor on where
the clone sits (the unit's PrivateTmp hides a clone under /tmp).

The clone here is a copy of this one under /tmp; the install goes to a directory of this run
under /opt (never /opt/pylvs or /usr/local/sbin/pylvs), removed afterwards; the install must find
every package installed already (it is given an apt-get that refuses). Then: systemd-analyze
verify on the unit as installed; a lab director started as the unit starts it (its ExecStart,
environment cleared but for systemd's PATH and $NOTIFY_SOCKET, cwd /, the unit's bounding set, a
private /tmp over the clone); and, where systemd is PID 1, the unit itself under systemd."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pylvs import cli
from pylvs.lab.topology import Lab, lab_config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "examples" / "pylvs.service"
INSTALL = REPO / "scripts" / "install.sh"
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
"""The PATH systemd gives a service (and its search path for a command without a slash)."""
REFUSING_APT = "#!/bin/sh\necho \"install.sh would install: $*\" >&2\nexit 100\n"
START_TIMEOUT = 30.0


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def exec_start() -> list[str]:
    return unit()["Service"]["ExecStart"].split()


def bounding_set() -> str:
    """The unit's CapabilityBoundingSet as setpriv's --bounding-set."""
    caps = unit()["Service"]["CapabilityBoundingSet"].split()
    return ",".join(["-all", *(f"+{cap.removeprefix('CAP_').lower()}" for cap in caps)])


def pid1() -> str:
    return subprocess.run(["ps", "-p", "1", "-o", "comm="], capture_output=True,
                          text=True).stdout.strip() or "unknown"


@dataclass
class Installed:
    clone: Path  # under /tmp
    base: Path  # this run's directory under /opt: all the install wrote
    prefix: Path
    launcher: Path
    python: str  # the interpreter the install ran with, symlinks resolved

    def env(self) -> dict[str, str]:
        """For install.sh: this python3 first on PATH, and an apt-get that refuses."""
        return {**os.environ, "PATH": os.pathsep.join(
            [str(self.base / "apt"), os.path.dirname(sys.executable), os.environ.get("PATH", "")])}

    def command(self, config: Path) -> list[str]:
        """The unit's ExecStart with this install's launcher (the one systemd would find) and
        ``config``."""
        argv = exec_start()
        assert argv == ["pylvs", "run", cli.DEFAULT_CONFIG]
        return [str(self.launcher), *argv[1:-1], str(config)]


@pytest.fixture(scope="module")
def installed() -> Iterator[Installed]:
    clone = Path(tempfile.mkdtemp(prefix="pylvs-clone-", dir="/tmp"))
    base = Path(tempfile.mkdtemp(prefix="pylvs-test-", dir="/opt"))
    try:
        shutil.copytree(REPO, clone, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns(".git", "__pycache__", ".*_cache",
                                                      ".hypothesis", "*.egg-info", "build", "fuzz"))
        (base / "apt").mkdir()
        (base / "apt" / "apt-get").write_text(REFUSING_APT)
        (base / "apt" / "apt-get").chmod(0o755)
        found = Installed(clone, base, base / "opt" / "pylvs", base / "sbin" / "pylvs",
                          os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
        done = subprocess.run(
            [str(clone / "scripts" / "install.sh"), "--service", "--prefix", str(found.prefix),
             "--launcher", str(found.launcher)],
            cwd="/", env=found.env(), capture_output=True, text=True, timeout=600)
        if done.returncode and "install.sh would install" in done.stderr:
            pytest.skip(f"packages are missing ({done.stderr.strip()}); this test installs none: "
                        "run scripts/install.sh --test first")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{found.launcher} -> {found.prefix}/bin/pylvs" in done.stdout
        yield found
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(clone, ignore_errors=True)


def test_the_copy_is_a_virtualenv_of_its_own_and_the_launcher_runs_it(installed):
    assert installed.launcher.is_symlink()
    assert installed.launcher.readlink() == installed.prefix / "bin" / "pylvs"
    script = (installed.prefix / "bin" / "pylvs").read_text().splitlines()
    assert script[0] == f"#!{installed.prefix}/bin/python3"  # no PATH to search
    cfg = (installed.prefix / "pyvenv.cfg").read_text()
    assert f"executable = {installed.python}" in cfg  # the python3 of the install, resolved
    assert "include-system-site-packages = false" in cfg  # the editable install plays no part
    found = subprocess.run(
        [installed.prefix / "bin" / "python3", "-c", "import pylvs; print(pylvs.__file__)"],
        cwd="/", env={}, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found).is_relative_to(installed.prefix)
    assert not (installed.clone / "build").exists()  # built from a copy, not in the clone


def test_the_unit_finds_the_default_launcher_first_on_systemds_search_path(installed):
    """The unit says `pylvs`; systemd looks for it in its own fixed search path, whose first
    directory is where install.sh --service puts the launcher by default."""
    assert exec_start()[0] == "pylvs"
    assert "launcher=/usr/local/sbin/pylvs" in INSTALL.read_text()
    assert "prefix=/opt/pylvs" in INSTALL.read_text()
    if shutil.which("systemd-path"):
        searched = subprocess.run(["systemd-path", "search-binaries-default"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        assert searched.split(":")[0] == "/usr/local/sbin"
    assert SYSTEMD_PATH.split(":")[0] == "/usr/local/sbin"


def test_install_refuses_what_the_unit_could_not_use(installed, tmp_path):
    """A copy under /tmp (PrivateTmp), a relative path, a directory it did not make; each
    refused before anything is written (and were it not, only this run's directory would be)."""
    elsewhere = ["--prefix", str(installed.base / "refused" / "opt"),
                 "--launcher", str(installed.base / "refused" / "sbin" / "pylvs")]
    for args, said in [(["--prefix", str(tmp_path / "pylvs")], "PrivateTmp hides"),
                       (["--launcher", "/var/tmp/pylvs"], "PrivateTmp hides"),
                       (["--launcher", "sbin/pylvs"], "an absolute path"),
                       (["--prefix", str(installed.base / "apt")], "is not a copy of pylvs"),
                       (["--test"], "--service goes alone")]:
        done = subprocess.run([str(INSTALL), "--service", *elsewhere, *args], cwd="/",
                              env=installed.env(), capture_output=True, text=True, timeout=60)
        assert (done.returncode, said in done.stderr) == (2, True), (args, done.stderr)
    assert not (installed.base / "refused").exists()
    assert (installed.base / "apt" / "apt-get").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="needs systemd-analyze (Debian's systemd; scripts/install.sh --test)")
def test_systemd_analyze_verify_the_unit_as_installed(installed):
    """The shipped unit with its `pylvs` resolved to this install's launcher, as systemd does."""
    def verify(launcher: Path) -> subprocess.CompletedProcess[str]:
        text = UNIT.read_text().replace("\nExecStart=pylvs ", f"\nExecStart={launcher} ")
        assert text != UNIT.read_text()
        path = installed.base / f"pylvs-verify-{os.getpid()}.service"
        path.write_text(text)
        try:
            return subprocess.run(["systemd-analyze", "verify", str(path)],
                                  capture_output=True, text=True, timeout=60)
        finally:
            path.unlink()

    found = verify(installed.launcher)
    assert (found.returncode, found.stdout + found.stderr) == (0, "")
    missing = verify(installed.base / "nowhere" / "pylvs")
    assert missing.returncode != 0 and "nowhere/pylvs" in missing.stderr  # what it checks


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    made = Lab(servers=2, mode="dr")
    try:
        made.setup()
        made.configure_real_servers()
        made.start_http_servers(80)
        yield made
    finally:
        made.close()


def messages(notify: socket.socket) -> dict[str, str]:
    notify.settimeout(START_TIMEOUT)
    data = notify.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("setpriv") is None,
                    reason="needs unshare and setpriv (util-linux) for the unit's private /tmp "
                           "and bounding set")
def test_a_director_started_as_the_unit_starts_it_with_the_clone_hidden(installed, lab):
    """The unit's ExecStart with nothing of the install's shell: environment cleared but for
    systemd's PATH and $NOTIFY_SOCKET, cwd /, the unit's CapabilityBoundingSet, and /tmp and
    /var/tmp private (empty tmpfs), so the clone under /tmp is not there for it."""
    run = installed.base / "run"
    run.mkdir()
    config = run / "pylvs.toml"
    config.write_text(lab_config(lab, "rr"))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(run / "notify"))
    private_tmp = ('mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp && cd / || exit 1\n'
                   'if test -e "$1"; then echo "the clone is visible: $1" >&2; exit 1; fi\n'
                   'shift; exec "$@"')
    argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", private_tmp, "sh",
            str(installed.clone / "scripts" / "install.sh"),
            "ip", "netns", "exec", lab.director_ns, "setpriv", f"--bounding-set={bounding_set()}",
            "env", "-i", f"PATH={SYSTEMD_PATH}", f"NOTIFY_SOCKET={run / 'notify'}",
            *installed.command(config)]
    with (run / "stderr").open("w") as stderr:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, cwd="/")
    try:
        try:
            ready = messages(notify)
        except TimeoutError:
            pytest.fail(f"no READY=1; exit {proc.poll()}:\n{(run / 'stderr').read_text()}")
        assert ready["READY"] == "1", (run / "stderr").read_text()
        # the process systemd would watch is the director itself, from the copy
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[:2] == [f"{installed.prefix}/bin/python3".encode(),
                               str(installed.launcher).encode()]
        assert {lab.curl("/").strip() for _ in range(4)} == {"rs1", "rs2"}
        proc.send_signal(signal.SIGHUP)  # ExecReload
        assert messages(notify)["RELOADING"] == "1"
        assert messages(notify) == {"READY": "1", "STATUS": "SIGHUP: no changes"}
        proc.send_signal(signal.SIGTERM)  # KillMode=mixed: SIGTERM to the director alone
        assert proc.wait(30) == 0, (run / "stderr").read_text()
        assert messages(notify)["STOPPING"] == "1"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


@pytest.mark.skipif(not Path("/run/systemd/system").is_dir(),
                    reason=f"systemd is not PID 1 here (PID 1 is {pid1()}): the unit's start "
                           "is emulated by the test above instead")
def test_the_unit_under_systemd_runs_a_director(installed, lab):
    """The shipped unit, its ExecStart this install's launcher and a lab config, joined to the
    lab director's network namespace: started, reloaded and stopped by systemctl."""
    name = f"pylvs-test-{os.getpid()}-{time.monotonic_ns()}.service"
    path = Path("/run/systemd/system") / name
    config = installed.base / f"{name}.toml"
    config.write_text(lab_config(lab, "rr"))
    text = UNIT.read_text().replace(
        "\nExecStart=pylvs run /etc/pylvs/pylvs.toml\n",
        f"\nExecStart={' '.join(installed.command(config))}\n"
        f"NetworkNamespacePath=/run/netns/{lab.director_ns}\n")
    assert text != UNIT.read_text()
    path.write_text(text)

    def systemctl(*args: str) -> str:
        return subprocess.run(["systemctl", *args], capture_output=True, text=True, check=True,
                              timeout=90).stdout.strip()

    def show(prop: str) -> str:
        return systemctl("show", "-p", prop, "--value", name)

    try:
        systemctl("daemon-reload")
        systemctl("start", name)  # Type=notify: returns once READY=1 came
        assert show("ActiveState") == "active"
        assert {lab.curl("/").strip() for _ in range(4)} == {"rs1", "rs2"}
        systemctl("reload", name)
        assert show("StatusText") == "SIGHUP: no changes"
        systemctl("stop", name)
        assert (show("Result"), show("ExecMainStatus")) == ("success", "0")
    finally:
        subprocess.run(["systemctl", "stop", name], capture_output=True, timeout=90)
        path.unlink(missing_ok=True)
        subprocess.run(["systemctl", "daemon-reload"], capture_output=True, timeout=90)
        subprocess.run(["systemctl", "reset-failed", name], capture_output=True, timeout=90)
