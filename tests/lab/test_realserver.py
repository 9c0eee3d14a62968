"""`configure_dr`: the seed's real-server steps, done and undone inside a namespace of our own."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys

import pytest

from pylvs.lab.realserver import check, configure_dr, run_tun

VIP = "192.0.2.100"


def test_bad_vip_is_refused_before_anything_changes():
    with pytest.raises(ValueError, match="300.1.1.1"):
        configure_dr("300.1.1.1")


def test_a_tunnel_type_is_checked_before_anything_changes():
    with pytest.raises(ValueError, match="--tun-port"):
        run_tun(VIP, False, tun_type="gue")
    with pytest.raises(ValueError, match="goes with --tun-type gue"):
        run_tun(VIP, False, tun_type="gre", tun_port=6080)
    with pytest.raises(ValueError, match="tunnel type"):
        run_tun(VIP, False, tun_type="vxlan")
    with pytest.raises(ValueError, match="go with --mode tun"):
        check("dr", VIP, tun_type="gue", tun_port=6080)


@pytest.mark.parametrize("argv", [["--mode", "dr", "--tun-type", "gre"],
                                  ["--mode", "dr", "--tun-port", "6080"],
                                  ["--check", "--mode", "dr", "--tun-type", "gue",
                                   "--tun-port", "1"]])
def test_the_tunnel_flags_go_with_tun_only(argv):
    done = subprocess.run([sys.executable, "-m", "pylvs", "realserver", "--vip", VIP, *argv],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--mode tun" in done.stderr, done.stderr


root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip"),
                          reason="needs root and iproute2 to make a network namespace")


@pytest.fixture
def namespace():
    name = f"pylvs-t-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "eth0", "type", "veth", "peer", "name",
                        "eth1"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                          check=True).stdout


def sysctls(ns: str) -> dict[str, str]:
    keys = [f"/proc/sys/net/ipv4/conf/{i}/{k}" for i in ("all", "lo", "eth0", "eth1")
            for k in ("arp_ignore", "arp_announce")]
    values = in_ns(ns, "cat", *keys).split()
    return {key.split("conf/")[1]: value for key, value in zip(keys, values, strict=True)}


def configure(ns: str, undo: bool = False) -> str:
    return in_ns(ns, sys.executable, "-c",
                 "import sys\nfrom pylvs.lab.realserver import configure_dr\n"
                 f"print('\\n'.join(configure_dr({VIP!r}, 'eth0', undo={undo})))")


@root
def test_dr_steps_and_undo(namespace):
    lines = configure(namespace)
    assert "net.ipv4.conf.eth0.arp_ignore = 1" in lines
    assert f"ip addr add {VIP}/32 dev lo" in lines
    values = sysctls(namespace)
    for ifname in ("all", "lo", "eth0"):
        assert (values[f"{ifname}/arp_ignore"], values[f"{ifname}/arp_announce"]) == ("1", "2")
    assert (values["eth1/arp_ignore"], values["eth1/arp_announce"]) == ("0", "0")
    assert f"{VIP}/32" in in_ns(namespace, "ip", "-o", "addr", "show", "dev", "lo")
    assert "already present" in configure(namespace)
    configure(namespace, undo=True)
    assert set(sysctls(namespace).values()) == {"0"}
    assert VIP not in in_ns(namespace, "ip", "-o", "addr", "show", "dev", "lo")


@root
def test_unknown_interface_is_refused(namespace):
    result = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "pylvs",
                             "realserver", "--mode", "dr", "--vip", VIP, "--interface", "nope0"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "no such interface: nope0" in result.stderr
    assert VIP not in in_ns(namespace, "ip", "-o", "addr", "show", "dev", "lo")


@root
def test_tun_userspace_decapsulator_runs_until_undo_and_restores(namespace):
    in_ns(namespace, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    proc = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m", "pylvs",
                             "realserver", "--mode", "tun", "--vip", VIP],
                            stdout=subprocess.PIPE, text=True)
    try:
        out = ""
        while not out.endswith("--undo`\n") and proc.poll() is None:
            out += proc.stdout.readline()
        assert "no ipip module" in out or "tunl0" in out
        if "no ipip module" in out:
            assert f"{VIP}/32" in in_ns(namespace, "ip", "-o", "addr", "show", "dev",
                                        "pylvs-tun0")
            assert in_ns(namespace, "cat", "/proc/sys/net/ipv4/conf/all/rp_filter").strip() == "0"
        undo = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "pylvs",
                               "realserver", "--mode", "tun", "--vip", VIP, "--undo"],
                              capture_output=True, text=True, timeout=30)
        assert undo.returncode == 0 and "stopped" in undo.stdout
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        proc.stdout.close()
    assert "pylvs-tun0" not in in_ns(namespace, "ip", "-o", "link")
    assert in_ns(namespace, "cat", "/proc/sys/net/ipv4/conf/all/rp_filter").strip() == "1"


@pytest.fixture
def two_namespaces():
    names = [f"pylvs-t-{secrets.token_hex(3)}" for _ in range(2)]
    try:
        for name in names:
            subprocess.run(["ip", "netns", "add", name], check=True)
        yield names
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name])


def _decapsulator(ns: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "pylvs",
                             "realserver", "--mode", "tun", "--vip", VIP],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = ""
    while not out.endswith("--undo`\n") and proc.poll() is None:
        out += proc.stdout.readline()
    return proc


def _undo(ns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "pylvs",
                           "realserver", "--mode", "tun", "--vip", VIP, "--undo"],
                          capture_output=True, text=True, timeout=30, check=True).stdout


@root
def test_each_namespace_undoes_its_own_decapsulator_and_kill_9_leaves_nothing(two_namespaces):
    """Two TUN real servers of one VIP, each in its namespace (as in a lab): --undo in one
    stops that one only; after kill -9 no stale state remains, and a new one starts."""
    first, second = two_namespaces
    if "tunl0" in in_ns(first, "ip", "-o", "link"):
        pytest.skip("the kernel has ipip: no userspace decapsulator to run")
    procs = [_decapsulator(first), _decapsulator(second)]
    try:
        assert "stopped the decapsulator" in _undo(first)
        assert procs[0].wait(10) == 0 and procs[1].poll() is None
        again = subprocess.run(["ip", "netns", "exec", second, sys.executable, "-m", "pylvs",
                                "realserver", "--mode", "tun", "--vip", VIP],
                               capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already runs in this namespace" in again.stdout
        procs[1].kill()
        procs[1].wait(10)
        assert "no decapsulator is running" in _undo(second)
        procs.append(_decapsulator(second))
        assert procs[2].poll() is None
        assert "stopped the decapsulator" in _undo(second)
        assert procs[2].wait(10) == 0
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def check_in(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "pylvs", "realserver",
                           "--check", "--vip", VIP, *args], capture_output=True, text=True,
                          timeout=30)


def apply_fixes(ns: str, report: str) -> list[str]:
    """Run every `fix:` command of a --check report in the namespace, as a user would."""
    fixes = [line.split("fix: ", 1)[1] for line in report.splitlines() if "  fix: " in line]
    for fix in fixes:
        subprocess.run(["ip", "netns", "exec", ns, *fix.split()], check=True, capture_output=True)
    return fixes


@root
def test_check_reads_a_real_namespace_and_its_fixes_fix_it(namespace):
    """Nothing set: every DR step is wrong (exit 1); the fixes it prints, run as printed, make
    it pass (exit 0); a /24 on lo is found again, and its fix too."""
    in_ns(namespace, "ip", "link", "set", "lo", "up")
    in_ns(namespace, "ip", "link", "set", "eth0", "up")
    in_ns(namespace, "ip", "addr", "add", "192.0.2.11/24", "dev", "eth0")
    broken = check_in(namespace, "--mode", "dr", "--interface", "eth0")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout.splitlines()[-1].startswith("3 of 3 steps wrong")
    assert len(apply_fixes(namespace, broken.stdout)) == 5
    fixed = check_in(namespace, "--mode", "dr", "--interface", "eth0")
    assert fixed.returncode == 0, fixed.stdout
    assert fixed.stdout.splitlines()[-1] == "all 3 steps right"
    in_ns(namespace, "ip", "addr", "del", f"{VIP}/32", "dev", "lo")
    in_ns(namespace, "ip", "addr", "add", f"{VIP}/24", "dev", "lo")
    looped = check_in(namespace, "--mode", "dr", "--interface", "eth0")
    assert looped.returncode == 1 and "`local 192.0.2.0/24 dev lo`" in looped.stdout
    assert apply_fixes(namespace, looped.stdout) == [f"ip addr del {VIP}/24 dev lo",
                                                     f"ip addr add {VIP}/32 dev lo"]
    assert check_in(namespace, "--mode", "dr", "--interface", "eth0").returncode == 0


@root
def test_check_nat_default_route_and_usage_errors(namespace):
    in_ns(namespace, "ip", "link", "set", "eth0", "up")
    in_ns(namespace, "ip", "addr", "add", "10.9.0.11/24", "dev", "eth0")
    missing = check_in(namespace, "--mode", "nat", "--director", "10.9.0.1")
    assert missing.returncode == 1 and "no default route" in missing.stdout
    apply_fixes(namespace, missing.stdout)
    assert "default via 10.9.0.1" in in_ns(namespace, "ip", "route")
    assert check_in(namespace, "--mode", "nat", "--director", "10.9.0.1").returncode == 0
    other = check_in(namespace, "--mode", "nat", "--director", "10.9.0.2")
    assert other.returncode == 1 and "bypass the director 10.9.0.2" in " ".join(
        other.stdout.split())
    assert check_in(namespace, "--mode", "dr", "--interface", "nope0").returncode == 2
    assert check_in(namespace, "--mode", "dr", "--undo").returncode == 2


@root
def test_check_tun_sees_the_running_decapsulator_and_strict_rp_filter(namespace):
    if "tunl0" in in_ns(namespace, "ip", "-o", "link"):
        pytest.skip("the kernel has ipip: no userspace decapsulator to run")
    none = check_in(namespace, "--mode", "tun")
    assert none.returncode == 1 and "nothing here unwraps IP-in-IP" in " ".join(
        none.stdout.split())
    proc = _decapsulator(namespace)
    try:
        for _ in range(20):  # more probes than the handle's queue holds: none may hang
            running = check_in(namespace, "--mode", "tun")
            assert running.returncode == 0, running.stdout
        assert "userspace decapsulator for 192.0.2.100 runs (pid" in " ".join(
            running.stdout.split())
        in_ns(namespace, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
        strict = check_in(namespace, "--mode", "tun")
        assert strict.returncode == 1
        assert strict.stdout.splitlines()[-1] == "1 of 4 steps wrong: rp_filter on pylvs-tun0"
        apply_fixes(namespace, strict.stdout)
        assert check_in(namespace, "--mode", "tun").returncode == 0
    finally:
        try:
            _undo(namespace)
            proc.wait(10)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()


# -- IPv6 --------------------------------------------------------------------------------------

VIP6 = "2001:db8:1::100"


def configure6(ns: str, undo: bool = False, interface: str = "eth0") -> str:
    return in_ns(ns, sys.executable, "-c",
                 "import sys\nfrom pylvs.lab.realserver import configure_dr\n"
                 f"print('\\n'.join(configure_dr({VIP6!r}, {interface!r}, undo={undo})))")


def test_an_ipv6_vip_is_taken_and_a_bad_one_named():
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 address"):
        configure_dr("2001:db8::g")


@root
def test_ipv6_dr_steps_are_the_128_on_lo_and_no_arp_sysctl(namespace):
    before = sysctls(namespace)
    lines = configure6(namespace).splitlines()
    assert lines == [f"ip -6 addr add {VIP6}/128 dev lo nodad",
                     "(no arp_ignore or arp_announce for IPv6: eth0 answers a Neighbor "
                     "Solicitation only for its own addresses (ndisc_recv_ns), never for the "
                     "VIP on lo)"]
    shown = in_ns(namespace, "ip", "-o", "-6", "addr", "show", "dev", "lo")
    assert f"{VIP6}/128" in shown and "tentative" not in shown
    assert sysctls(namespace) == before  # IPv4's ARP sysctls untouched
    assert "already present" in configure6(namespace)
    assert configure6(namespace, undo=True).splitlines() == [
        f"ip -6 addr del {VIP6}/128 dev lo"]
    assert VIP6 not in in_ns(namespace, "ip", "-o", "-6", "addr", "show", "dev", "lo")


@root
def test_ipv6_check_reads_this_namespace_and_refuses_a_director_of_the_other_family(namespace):
    def check(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", namespace, sys.executable, "-m", "pylvs",
                               "realserver", "--check", "--vip", VIP6, *argv],
                              capture_output=True, text=True, timeout=30)

    in_ns(namespace, "ip", "link", "set", "lo", "up")
    missing = check("--mode", "dr", "--interface", "eth0")
    assert missing.returncode == 1 and "WRONG  the VIP on lo as /128" in missing.stdout
    configure6(namespace)
    right = check("--mode", "dr", "--interface", "eth0")
    assert right.returncode == 0, right.stdout
    assert "NDP for the VIP: nothing to set" in right.stdout
    mixed = check("--mode", "nat", "--director", "10.0.0.1")
    assert mixed.returncode == 2 and "not of the VIP's family" in mixed.stderr


def test_ipv6_nat_advice_names_ip_6():
    result = subprocess.run([sys.executable, "-m", "pylvs", "realserver", "--mode", "nat",
                             "--vip", VIP6], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "ip -6 route replace default via DIP" in result.stderr
