"""`pylvs realserver --check`'s judging, on made-up states: no host, no root."""

from __future__ import annotations

import json

import pytest

from pylvs.lab.realserver_check import (
    Address,
    FouPort,
    HostState,
    Link,
    Route,
    check,
    exit_status,
    parse_fou,
    parse_links,
    parse_routes,
    render,
)

VIP = "192.168.1.100"
ETH0 = Link("eth0", addresses=(Address("192.168.1.11", 24),))
LO = Link("lo", arp=False, addresses=(Address("127.0.0.1", 8, "host"),))
VIP32 = Address(VIP, 32)


def lo_with(*addresses: Address) -> Link:
    return Link("lo", arp=False, addresses=(*LO.addresses, *addresses))


def conf(**values: dict[str, int]) -> dict[str, dict[str, int]]:
    base = {name: {"arp_ignore": 0, "arp_announce": 0, "rp_filter": 0}
            for name in ("all", "default", "lo", "eth0")}
    for name, given in values.items():
        base.setdefault(name, {}).update(given)
    return base


def dr_state(all_: tuple[int, int] = (1, 2), eth0: tuple[int, int] = (1, 2),
             vip: Address | None = VIP32, **more: object) -> HostState:
    """A DR real server: (arp_ignore, arp_announce) on all and eth0, the VIP on lo."""
    lo = lo_with(vip) if vip else LO
    return HostState(conf=conf(all={"arp_ignore": all_[0], "arp_announce": all_[1]},
                               eth0={"arp_ignore": eth0[0], "arp_announce": eth0[1]}),
                     links=(lo, ETH0), **more)  # type: ignore[arg-type]


def by_step(verdicts):
    return {v.step: v for v in verdicts}


def test_a_correct_dr_real_server_passes_every_step():
    verdicts = check("dr", VIP, dr_state(), "eth0")
    assert [v.step for v in verdicts] == ["arp_ignore on eth0", "arp_announce on eth0",
                                         "the VIP on lo as /32"]
    assert all(v.ok for v in verdicts) and exit_status(verdicts) == 0
    assert all(not v.fix for v in verdicts)


@pytest.mark.parametrize(("all_", "eth0", "ok"), [
    (1, 0, True), (0, 1, True), (2, 0, True), (0, 2, True), (1, 2, True),
    (0, 0, False), (4, 0, False), (0, 7, False), (9, 1, False), (8, 1, False), (3, 0, False)])
def test_arp_ignore_is_the_larger_of_all_and_the_interface(all_, eth0, ok):
    """1 or 2 keeps the VIP quiet; 0, the reserved 4-7 and >8 answer; 8 answers nothing; 3
    keeps only scope-host addresses quiet (the VIP is scope global here). The larger value
    counts, so 8 or 9 on `all` spoils a 1 on eth0."""
    verdict = by_step(check("dr", VIP, dr_state((all_, 2), (eth0, 2)), "eth0"))[
        "arp_ignore on eth0"]
    assert verdict.ok is ok
    assert f"max(all {all_}, eth0 {eth0}) = {max(all_, eth0)}" in verdict.why


def test_arp_ignore_fix_sets_what_is_not_1_or_2_and_names_the_bypass():
    verdict = by_step(check("dr", VIP, dr_state((0, 2), (0, 2)), "eth0"))["arp_ignore on eth0"]
    assert verdict.fix == ("sysctl -w net.ipv4.conf.all.arp_ignore=1",
                           "sysctl -w net.ipv4.conf.eth0.arp_ignore=1")
    assert "bypassing the director" in verdict.why
    spoiled = by_step(check("dr", VIP, dr_state((8, 2), (1, 2)), "eth0"))["arp_ignore on eth0"]
    assert spoiled.fix == ("sysctl -w net.ipv4.conf.all.arp_ignore=1",)
    assert "not even for eth0's own address" in spoiled.why


def test_arp_ignore_3_is_right_only_for_a_scope_host_vip():
    assert not by_step(check("dr", VIP, dr_state((3, 2), (0, 2)), "eth0"))[
        "arp_ignore on eth0"].ok
    host_vip = dr_state((3, 2), (0, 2), vip=Address(VIP, 32, "host"))
    assert by_step(check("dr", VIP, host_vip, "eth0"))["arp_ignore on eth0"].ok


@pytest.mark.parametrize(("all_", "eth0", "ok"), [
    (2, 0, True), (0, 2, True), (2, 2, True), (1, 1, False), (0, 0, False), (3, 2, False),
    (2, 5, False)])
def test_arp_announce_must_be_exactly_2_after_the_max(all_, eth0, ok):
    """Values above 2 are the kernel's default case, 0: a 3 on `all` spoils a 2 on eth0."""
    verdict = by_step(check("dr", VIP, dr_state((1, all_), (1, eth0)), "eth0"))[
        "arp_announce on eth0"]
    assert verdict.ok is ok
    if not ok:
        expected = tuple(f"sysctl -w net.ipv4.conf.{name}.arp_announce=2"
                         for name, value in (("all", all_), ("eth0", eth0)) if value != 2)
        assert verdict.fix == expected


def test_vip_on_lo_as_24_is_the_loop_and_the_fix_replaces_it():
    state = dr_state(vip=Address(VIP, 24),
                     local_routes=(Route("192.168.1.0/24", "lo", type="local"),
                                   Route(VIP, "lo", type="local")))
    verdict = by_step(check("dr", VIP, state, "eth0"))["the VIP on lo as /32"]
    assert not verdict.ok
    assert "`local 192.168.1.0/24 dev lo`" in verdict.why and "loop back" in verdict.why
    assert verdict.fix == (f"ip addr del {VIP}/24 dev lo", f"ip addr add {VIP}/32 dev lo")


def test_vip_absent_or_on_eth0_is_wrong_and_on_a_noarp_device_is_right():
    absent = by_step(check("dr", VIP, dr_state(vip=None), "eth0"))["the VIP on lo as /32"]
    assert not absent.ok and absent.fix == (f"ip addr add {VIP}/32 dev lo",)
    on_eth0 = HostState(conf=conf(all={"arp_ignore": 1, "arp_announce": 2}),
                        links=(LO, Link("eth0", addresses=(*ETH0.addresses, Address(VIP, 32)))))
    verdict = by_step(check("dr", VIP, on_eth0, "eth0"))["the VIP on lo as /32"]
    assert not verdict.ok and verdict.fix[0] == f"ip addr del {VIP}/32 dev eth0"
    dummy = HostState(conf=conf(all={"arp_ignore": 1, "arp_announce": 2}),
                      links=(LO, ETH0, Link("dummy0", arp=False, addresses=(Address(VIP, 32),))))
    assert by_step(check("dr", VIP, dummy, "eth0"))["the VIP on lo as /32"].ok


def test_without_interface_every_arp_link_with_an_address_is_checked():
    eth1 = Link("eth1", addresses=(Address("10.9.0.2", 24),))
    down_no_address = Link("eth2")
    tun = Link("pylvs-tun0", arp=False, addresses=(Address("10.8.0.1", 32),))
    state = HostState(conf=conf(all={"arp_ignore": 1, "arp_announce": 2}),
                      links=(lo_with(Address(VIP, 32)), ETH0, eth1, down_no_address, tun))
    steps = [v.step for v in check("dr", VIP, state)]
    assert steps == ["arp_ignore on eth0", "arp_announce on eth0", "arp_ignore on eth1",
                     "arp_announce on eth1", "the VIP on lo as /32"]


def test_an_unknown_interface_or_mode_is_refused():
    with pytest.raises(ValueError, match="no such interface: eth9"):
        check("dr", VIP, dr_state(), "eth9")
    with pytest.raises(ValueError, match="mode"):
        check("masq", VIP, dr_state())


# -- TUN ---------------------------------------------------------------------------------------

TUN_ETH0 = Link("eth0", addresses=(Address("172.16.0.11", 24),))
DECAP = Link("pylvs-tun0", arp=False, addresses=(Address(VIP, 32),))


def tun_state(all_rp: int = 0, dev_rp: int = 0, pid: int | None = 4242,
              links: tuple[Link, ...] = (LO, TUN_ETH0, DECAP), ipip: bool = False) -> HostState:
    return HostState(conf=conf(all={"rp_filter": all_rp}, **{"pylvs-tun0": {"rp_filter": dev_rp}},
                               tunl0={"rp_filter": dev_rp}),
                     links=links, decap_pid=pid, ipip_module=ipip)


def test_a_correct_tun_real_server_passes():
    verdicts = check("tun", VIP, tun_state())
    assert exit_status(verdicts) == 0, render("tun", VIP, verdicts)
    steps = by_step(verdicts)
    assert "pid 4242" in steps["decapsulation (IP-in-IP)"].why
    assert "not needed" in steps["ARP for the VIP"].why


@pytest.mark.parametrize(("all_rp", "dev_rp", "ok"), [
    (0, 0, True), (2, 0, True), (0, 2, True), (2, 1, True), (1, 0, False), (0, 1, False)])
def test_rp_filter_on_the_decap_device_is_the_larger_of_all_and_the_device(all_rp, dev_rp, ok):
    """1 (strict) drops the unwrapped packets; 0 off and 2 loose let them in."""
    verdict = by_step(check("tun", VIP, tun_state(all_rp, dev_rp)))["rp_filter on pylvs-tun0"]
    assert verdict.ok is ok
    if not ok:
        assert all(fix.endswith("rp_filter=0") for fix in verdict.fix) and verdict.fix
        assert "IPReversePathFilter" in verdict.why


def test_without_decapsulator_or_tunl0_nothing_unwraps():
    verdicts = by_step(check("tun", VIP, tun_state(pid=None, links=(LO, TUN_ETH0))))
    decap = verdicts["decapsulation (IP-in-IP)"]
    assert not decap.ok and decap.fix == (f"pylvs realserver --mode tun --vip {VIP}   "
                                          f"(in the foreground)",)
    assert not verdicts["the VIP as /32 on the tunnel device"].ok


def test_tunl0_up_with_the_vip_is_the_kernel_way_and_down_is_wrong():
    tunl0 = Link("tunl0", arp=False, addresses=(Address(VIP, 32),))
    up = check("tun", VIP, tun_state(pid=None, links=(LO, TUN_ETH0, tunl0), ipip=True))
    assert exit_status(up) == 0, render("tun", VIP, up)
    assert "rp_filter on tunl0" in by_step(up)
    down = Link("tunl0", up=False, arp=False, addresses=(Address(VIP, 32),))
    verdict = by_step(check("tun", VIP, tun_state(pid=None, links=(LO, TUN_ETH0, down),
                                                  ipip=True)))["decapsulation (IP-in-IP)"]
    assert not verdict.ok and verdict.fix == ("ip link set tunl0 up",)


def test_a_tun_real_server_on_the_vips_segment_needs_the_arp_steps():
    on_segment = tun_state(links=(LO, ETH0, DECAP))
    steps = by_step(check("tun", VIP, on_segment))
    assert not steps["arp_ignore on eth0"].ok and not steps["arp_announce on eth0"].ok


# -- NAT ---------------------------------------------------------------------------------------

def nat_state(*routes: Route) -> HostState:
    return HostState(conf=conf(), links=(LO, Link("eth0", addresses=(Address("10.0.0.11", 24),))),
                     routes=routes)


def test_nat_default_route_via_the_director():
    via = Route("default", "eth0", "10.0.0.1")
    right = check("nat", VIP, nat_state(via), director="10.0.0.1")
    assert exit_status(right) == 0
    assert render("nat", VIP, right).endswith("\nthe one step is right\n")
    wrong = check("nat", VIP, nat_state(Route("default", "eth0", "10.0.0.254")),
                  director="10.0.0.1")[0]
    assert not wrong.ok and "bypass the director" in wrong.why
    assert wrong.fix == ("ip route replace default via 10.0.0.1",)
    missing = check("nat", VIP, nat_state(Route("10.0.0.0/24", "eth0")), director="10.0.0.1")[0]
    assert not missing.ok and "no default route" in missing.why


def test_nat_without_director_reports_the_default_route_found():
    verdict = check("nat", VIP, nat_state(Route("default", "eth0", "10.0.0.1")))[0]
    assert verdict.ok and "default via 10.0.0.1 dev eth0" in verdict.why
    assert "--director" in verdict.why
    assert check("nat", VIP, nat_state())[0].fix == ("ip route replace default via DIP",)


# -- parsing and the report --------------------------------------------------------------------

IP_ADDR = json.dumps([
    {"ifname": "lo", "flags": ["LOOPBACK", "UP", "LOWER_UP"], "addr_info": [
        {"family": "inet", "local": "127.0.0.1", "prefixlen": 8, "scope": "host"},
        {"family": "inet", "local": VIP, "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "::1", "prefixlen": 128, "scope": "host"}]},
    {"ifname": "eth0", "flags": ["BROADCAST", "MULTICAST", "UP", "LOWER_UP"], "addr_info": [
        {"family": "inet", "local": "192.168.1.11", "prefixlen": 24, "scope": "global"}]},
    {"ifname": "pylvs-tun0", "flags": ["POINTOPOINT", "MULTICAST", "NOARP", "UP"],
     "addr_info": []},
    {"ifname": "eth1", "flags": ["BROADCAST", "MULTICAST"], "addr_info": []}])
IP_ROUTE_LOCAL = json.dumps([
    {"type": "local", "dst": "127.0.0.0/8", "dev": "lo"},
    {"type": "local", "dst": "192.168.1.0/24", "dev": "lo", "prefsrc": VIP},
    {"type": "broadcast", "dst": "192.168.1.255", "dev": "eth0"}])


def test_parse_ip_json():
    lo, eth0, tun, eth1 = parse_links(IP_ADDR)
    assert lo == Link("lo", True, False, (Address("127.0.0.1", 8, "host"), Address(VIP, 24)),
                      (Address("::1", 128, "host"),))
    assert eth0.arp and eth0.up and eth0.addresses == (Address("192.168.1.11", 24),)
    assert not tun.arp and tun.up and not eth1.up
    routes = parse_routes(json.dumps([{"dst": "default", "gateway": "10.0.0.1", "dev": "eth0"}]))
    assert routes == (Route("default", "eth0", "10.0.0.1"),)
    assert parse_routes(IP_ROUTE_LOCAL)[1] == Route("192.168.1.0/24", "lo", type="local")
    assert parse_links("") == () and parse_routes("[]") == ()


def test_render_marks_each_step_with_its_fix_and_sums_up():
    state = HostState(conf=conf(), links=parse_links(IP_ADDR),
                      local_routes=parse_routes(IP_ROUTE_LOCAL))
    verdicts = check("dr", VIP, state, "eth0")
    text = render("dr", VIP, verdicts)
    lines = text.splitlines()
    assert lines[0] == f"check: this host as a dr real server for {VIP}"
    assert lines[1].startswith("  WRONG  arp_ignore on eth0: arp_ignore = max(all 0, eth0 0) = 0")
    assert "           fix: sysctl -w net.ipv4.conf.all.arp_ignore=1" in lines
    assert f"           fix: ip addr del {VIP}/24 dev lo" in lines
    assert lines[-1] == ("3 of 3 steps wrong: arp_ignore on eth0, arp_announce on eth0, "
                         "the VIP on lo as /32")
    assert exit_status(verdicts) == 1
    assert render("dr", VIP, check("dr", VIP, dr_state(), "eth0")).endswith(
        "all 3 steps right\n")
    assert all(len(line) <= 100 for line in lines)


# -- IPv6 --------------------------------------------------------------------------------------

VIP6 = "2001:db8:1::100"
ETH0_6 = Link("eth0", addresses6=(Address("2001:db8:1::11", 64, flags=("nodad",)),
                                  Address("fe80::1", 64, "link")))
LO6 = Link("lo", arp=False, addresses6=(Address("::1", 128, "host"),))


def conf6(**values: dict[str, int]) -> dict[str, dict[str, int]]:
    base = {name: {"disable_ipv6": 0, "accept_dad": 0, "forwarding": 0}
            for name in ("all", "default", "lo", "eth0", "pylvs-tun6")}
    for name, given in values.items():
        base.setdefault(name, {}).update(given)
    return base


VIP128 = Address(VIP6, 128, "global", ("nodad",))


def dr6_state(vip: Address | None = VIP128, link: Link = ETH0_6,
              **conf: dict[str, int]) -> HostState:
    """An IPv6 DR real server: ``vip`` on lo, ``link`` as eth0, the IPv6 sysctls ``conf``."""
    lo = Link("lo", arp=False, addresses6=(*LO6.addresses6, *([vip] if vip else [])))
    return HostState(conf={}, conf6=conf6(**conf), links=(lo, link))


def test_a_correct_ipv6_dr_real_server_needs_only_the_128_on_lo():
    verdicts = check("dr", VIP6, dr6_state(), "eth0")
    assert [v.step for v in verdicts] == ["IPv6 on lo, eth0", "the VIP on lo as /128",
                                         "NDP for the VIP", "DAD on eth0"]
    assert exit_status(verdicts) == 0, render("dr", VIP6, verdicts)
    ndp = by_step(verdicts)["NDP for the VIP"]
    assert "no arp_ignore or arp_announce for IPv6" in ndp.why and "ndisc_recv_ns" in ndp.why
    assert not any("arp_" in v.step for v in verdicts)  # IPv4's sysctls are not asked for


def test_an_ipv6_vip_is_matched_whatever_its_spelling():
    spelled = Address("2001:0db8:0001:0000:0000:0000:0000:0100", 128)
    assert by_step(check("dr", VIP6, dr6_state(vip=spelled), "eth0"))[
        "the VIP on lo as /128"].ok


def test_ipv6_vip_absent_narrow_or_on_eth0_is_wrong_with_its_fix():
    absent = by_step(check("dr", VIP6, dr6_state(vip=None), "eth0"))["the VIP on lo as /128"]
    assert not absent.ok and absent.fix == (f"ip -6 addr add {VIP6}/128 dev lo nodad",)
    narrow = by_step(check("dr", VIP6, dr6_state(vip=Address(VIP6, 64)), "eth0"))[
        "the VIP on lo as /128"]
    assert not narrow.ok and "routes all of 2001:db8:1::/64 through lo" in narrow.why
    assert narrow.fix == (f"ip -6 addr del {VIP6}/64 dev lo",
                          f"ip -6 addr add {VIP6}/128 dev lo nodad")
    loud = Link("eth0", addresses6=(*ETH0_6.addresses6, Address(VIP6, 128, flags=("nodad",))))
    steps = by_step(check("dr", VIP6, dr6_state(vip=None, link=loud), "eth0"))
    assert not steps["the VIP on lo as /128"].ok
    assert "answers Neighbor Solicitations for it" in steps["the VIP on lo as /128"].why
    assert not steps["NDP for the VIP"].ok and "eth0 holds" in steps["NDP for the VIP"].why


def test_dad_a_dadfailed_vip_is_the_vips_step_a_tentative_own_address_is_dads():
    """DAD on eth0 finds the director holding the VIP: the VIP is unusable there (and must
    leave eth0); a real server's own tentative address is DAD's step, re-added nodad."""
    failed = Link("eth0", addresses6=(*ETH0_6.addresses6,
                                      Address(VIP6, 128, flags=("tentative", "dadfailed"))))
    steps = by_step(check("dr", VIP6, dr6_state(vip=None, link=failed, eth0={"accept_dad": 1}),
                          "eth0"))
    assert steps["DAD on eth0"].ok  # the VIP is not one of the host's own addresses
    assert "accept_dad = max(all 0, eth0 1) = 1" in steps["DAD on eth0"].why
    waiting = Link("eth0", addresses6=(Address("2001:db8:1::11", 64, flags=("tentative",)),))
    dad = by_step(check("dr", VIP6, dr6_state(link=waiting), "eth0"))["DAD on eth0"]
    assert not dad.ok and "2001:db8:1::11/64 (tentative)" in dad.why
    assert dad.fix == ("ip -6 addr del 2001:db8:1::11/64 dev eth0; ip -6 addr add "
                       "2001:db8:1::11/64 dev eth0 nodad",)
    tentative_vip = Address(VIP6, 128, flags=("tentative",))
    assert "tentative" in by_step(check("dr", VIP6, dr6_state(vip=tentative_vip), "eth0"))[
        "the VIP on lo as /128"].why


def test_ipv6_off_on_a_device_or_on_the_host():
    off = by_step(check("dr", VIP6, dr6_state(lo={"disable_ipv6": 1}), "eth0"))[
        "IPv6 on lo, eth0"]
    assert not off.ok and off.fix == ("sysctl -w net.ipv6.conf.lo.disable_ipv6=0",)
    none = HostState(conf={}, links=(LO6, ETH0_6))
    assert "no IPv6" in check("dr", VIP6, none, "eth0")[0].why


def test_without_interface_every_ndp_link_with_a_global_ipv6_address_is_checked():
    only_link_local = Link("eth1", addresses6=(Address("fe80::2", 64, "link"),))
    state = HostState(conf={}, conf6=conf6(), links=(
        Link("lo", arp=False, addresses6=(Address(VIP6, 128),)), ETH0_6, only_link_local))
    assert [v.step for v in check("dr", VIP6, state)][-1] == "DAD on eth0"


DECAP6 = Link("pylvs-tun6", arp=False, addresses6=(Address(VIP6, 128, flags=("nodad",)),))


def test_a_correct_ipv6_tun_real_server_and_no_rp_filter_to_judge():
    state = HostState(conf={}, conf6=conf6(all={"forwarding": 0}), decap_pid=77,
                      links=(LO6, Link("eth0", addresses6=(Address("2001:db8:172:16::11",
                                                                   64),)), DECAP6))
    verdicts = check("tun", VIP6, state)
    assert exit_status(verdicts) == 0, render("tun", VIP6, verdicts)
    steps = by_step(verdicts)
    assert "unwraps ip6ip6 and 6in4 into pylvs-tun6" in steps["decapsulation (ip6ip6, 6in4)"].why
    assert "no IPv6 rp_filter sysctl" in steps["rp_filter"].why
    nothing = by_step(check("tun", VIP6, HostState(conf={}, conf6=conf6(), links=(LO6,))))
    assert nothing["decapsulation (ip6ip6, 6in4)"].fix == (
        f"pylvs realserver --mode tun --vip {VIP6}   (in the foreground)",)
    assert nothing["the VIP as /128 on the tunnel device"].fix == (
        f"ip -6 addr add {VIP6}/128 dev ip6tnl0 nodad",)


def test_ipv6_nat_reads_the_ipv6_routes():
    state = HostState(conf={}, conf6=conf6(), links=(LO6, ETH0_6),
                      routes=(Route("default", "eth0", "10.0.0.1"),),
                      routes6=(Route("default", "eth0", "2001:db8:10::1"),))
    right = check("nat", VIP6, state, director="2001:db8:10::1")
    assert exit_status(right) == 0, render("nat", VIP6, right)
    wrong = check("nat", VIP6, HostState(conf={}, conf6=conf6(), links=(LO6, ETH0_6)),
                  director="2001:db8:10::1")[-1]
    assert not wrong.ok and wrong.fix == ("ip -6 route replace default via 2001:db8:10::1",)


def test_parse_ip_json_keeps_ipv6_flags():
    (eth0,) = parse_links(json.dumps([{"ifname": "eth0", "flags": ["UP"], "addr_info": [
        {"family": "inet6", "local": VIP6, "prefixlen": 64, "scope": "global",
         "tentative": True, "dadfailed": True},
        {"family": "inet6", "local": "2001:db8:1::11", "prefixlen": 64, "scope": "global",
         "nodad": True}]}]))
    assert eth0.addresses == () and [a.flags for a in eth0.addresses6] == [
        ("tentative", "dadfailed"), ("nodad",)]


# -- GUE and GRE (issue 24) --------------------------------------------------------------------


def gue_check(state: HostState, port: int = 6080, vip: str = VIP):
    return by_step(check("tun", vip, state, tun_type="gue", tun_port=port))


def test_a_userspace_gue_decapsulator_on_the_port_passes_and_on_another_does_not():
    running = HostState(**{**tun_state().__dict__, "decap_kind": "gue 6080"})
    verdicts = check("tun", VIP, running, tun_type="gue", tun_port=6080)
    assert exit_status(verdicts) == 0, render("tun", VIP, verdicts, "gue")
    assert "unwraps GUE on UDP port 6080 into pylvs-tun0" in verdicts[0].why
    assert render("tun", VIP, verdicts, "gue").startswith(
        f"check: this host as a tun (gue) real server for {VIP}")
    wrong = gue_check(running, 7000)["decapsulation (GUE on UDP port 7000)"]
    assert not wrong.ok and "unwraps GUE on UDP port 6080, not GUE on UDP port 7000" in wrong.why
    assert wrong.fix == (f"pylvs realserver --mode tun --vip {VIP} --undo",
                         f"pylvs realserver --mode tun --tun-type gue --tun-port 7000 --vip "
                         f"{VIP}   (in the foreground)")
    ipip = tun_state()                                   # a decapsulator that does not say
    assert not check("tun", VIP, ipip, tun_type="gre")[0].ok
    assert "unwraps IP-in-IP, not GRE" in check("tun", VIP, ipip, tun_type="gre")[0].why


def test_fou_on_the_port_hands_gue_to_tunl0():
    tunl0 = Link("tunl0", arp=False, addresses=(Address(VIP, 32),))
    base = dict(conf=conf(tunl0={"rp_filter": 0}), links=(LO, TUN_ETH0, tunl0),
                ipip_module=True, fou_module=True)
    right = HostState(**base, fou_ports=(FouPort(6080), FouPort(6080, family=6)))
    verdicts = check("tun", VIP, right, tun_type="gue", tun_port=6080)
    assert exit_status(verdicts) == 0, render("tun", VIP, verdicts, "gue")
    assert "(IPv4 and IPv6 outer) hands what it unwraps to tunl0" in verdicts[0].why
    other = gue_check(HostState(**base, fou_ports=(FouPort(5555),)))
    verdict = other["decapsulation (GUE on UDP port 6080)"]
    assert not verdict.ok and "fou listens on 5555 (gue), not on UDP port 6080" in verdict.why
    assert verdict.fix == ("ip fou add port 6080 gue", "ip -6 fou add port 6080 gue")
    fou = gue_check(HostState(**base, fou_ports=(FouPort(6080, "ipproto 4"),)))
    assert "FOU: no GUE header" in fou["decapsulation (GUE on UDP port 6080)"].why
    no_tunl0 = HostState(conf=conf(), links=(LO, TUN_ETH0), fou_ports=(FouPort(6080),))
    verdict = gue_check(no_tunl0)["decapsulation (GUE on UDP port 6080)"]
    assert not verdict.ok and "tunl0, which is missing" in verdict.why
    assert verdict.fix == ("modprobe ipip && ip link set tunl0 up",)


def test_nothing_on_the_port_is_icmp_port_unreachable():
    verdict = gue_check(tun_state(pid=None, links=(LO, TUN_ETH0)))[
        "decapsulation (GUE on UDP port 6080)"]
    assert not verdict.ok and "ICMP port unreachable" in verdict.why
    assert verdict.fix == (f"pylvs realserver --mode tun --tun-type gue --tun-port 6080 --vip "
                           f"{VIP}   (in the foreground)",)
    with pytest.raises(ValueError, match="--tun-port"):
        check("tun", VIP, tun_state(), tun_type="gue")


def test_gre_by_gre0_or_the_decapsulator():
    gre0 = Link("gre0", arp=False, addresses=(Address(VIP, 32),))
    up = HostState(conf=conf(gre0={"rp_filter": 0}), links=(LO, TUN_ETH0, gre0),
                   gre_module=True)
    verdicts = check("tun", VIP, up, tun_type="gre")
    assert exit_status(verdicts) == 0, render("tun", VIP, verdicts, "gre")
    assert "rp_filter on gre0" in by_step(verdicts)
    down = HostState(conf=conf(), links=(LO, TUN_ETH0, Link("gre0", up=False, arp=False)),
                     gre_module=True)
    steps = by_step(check("tun", VIP, down, tun_type="gre"))
    assert steps["decapsulation (GRE)"].fix == ("ip link set gre0 up",)
    assert steps["the VIP as /32 on the tunnel device"].fix == (f"ip addr add {VIP}/32 dev gre0",)
    nothing = by_step(check("tun", VIP, HostState(conf=conf(), links=(LO, TUN_ETH0)),
                            tun_type="gre"))["decapsulation (GRE)"]
    assert "ICMP protocol unreachable" in nothing.why
    running = HostState(**{**tun_state().__dict__, "decap_kind": "gre"})
    assert exit_status(check("tun", VIP, running, tun_type="gre")) == 0


def test_an_ipv6_vip_behind_gue_or_gre():
    state = HostState(conf={}, conf6=conf6(), decap_pid=77, decap_kind="gre",
                      links=(LO6, Link("eth0", addresses6=(Address("2001:db8:172:16::11",
                                                                   64),)), DECAP6))
    verdicts = check("tun", VIP6, state, tun_type="gre")
    assert exit_status(verdicts) == 0, render("tun", VIP6, verdicts, "gre")
    assert "unwraps GRE into pylvs-tun6" in verdicts[0].why
    nothing = by_step(check("tun", VIP6, HostState(conf={}, conf6=conf6(), links=(LO6,)),
                            tun_type="gre"))
    assert nothing["the VIP as /128 on the tunnel device"].fix == (
        f"ip -6 addr add {VIP6}/128 dev gre0 nodad",)
    fou = HostState(conf={}, conf6=conf6(), fou_ports=(FouPort(6080, family=6),),
                    links=(LO6, Link("ip6tnl0", arp=False)))
    assert check("tun", VIP6, fou, tun_type="gue", tun_port=6080)[0].ok


def test_ip_fou_show_is_read():
    text = "port 6080 gue\nport 7777 ipproto 47\nport 6080 gue -6\nnonsense\n"
    assert parse_fou(text) == (FouPort(6080), FouPort(7777, "ipproto 47"),
                               FouPort(6080, family=6))
    assert parse_fou("") == ()
