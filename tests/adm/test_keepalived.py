"""keepalived.conf → pylvs config: every sample Debian's keepalived ships, checked block by block
against a reading of it written out here by hand (not the converter's), then keepalived's
syntax, defaults, includes, notes and errors one by one."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from pylvs.adm import keepalived, keepalived_syntax
from pylvs.adm.config import Config, build
from pylvs.adm.keepalived import KeepalivedError, convert
from pylvs.ha.health import CheckSpec

SAMPLES = Path("/usr/share/doc/keepalived/samples")
needs_samples = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="Debian's keepalived samples are not here "
    "(/usr/share/doc/keepalived/samples: apt-get install keepalived, as CI does)")
OPTION = "ethX"  # --interface, where no vrrp_instance holds the services' addresses


# -- the hand-written reading of each sample ---------------------------------------------------

def tcp(interval, timeout, retry=1, dbr=1, port=0) -> CheckSpec:
    return CheckSpec("tcp", interval, timeout, retry, dbr, port=port)


def http(interval, timeout, retry, dbr, path, status=()) -> CheckSpec:
    return CheckSpec("http", interval, timeout, retry, dbr, path=path, status=status)


def https(interval, timeout, retry, dbr, path, status=(), port=0) -> CheckSpec:
    return CheckSpec("https", interval, timeout, retry, dbr, path=path, status=status, port=port)


def misc(interval, timeout, command, retry=0, dbr=1) -> CheckSpec:
    return CheckSpec("misc", interval, timeout, retry, dbr, command=command)


def rs(address, weight=1, check=None, alpha=False, inhibit=False) -> dict[str, Any]:
    return {"address": address, "weight": weight, "check": check, "alpha": alpha,
            "inhibit": inhibit}


def vs(address, protocol, scheduler, forward, persistence, servers, quorum=1, hysteresis=0,
       sorry=None) -> dict[str, Any]:
    return {"address": address, "protocol": protocol, "scheduler": scheduler,
            "forward": forward, "persistence": persistence, "servers": servers,
            "quorum": quorum, "hysteresis": hysteresis, "sorry": sorry}


def vips(*addresses: str, prefix: int = 32) -> list[str]:
    return [f"{a}/{prefix}" for a in addresses]


def vi(name, interface, vrid, **keys) -> dict[str, Any]:
    return {"name": name, "interface": interface, "virtual_router_id": vrid, **keys}


MAIL = ["`notification_email` is not carried over: pylvs sends no mail",
        "`smtp_server 192.168.200.1` is not carried over", "`router_id LVS_DEVEL`"]
TESTURL = "/testurl3/test.jsp"
LOCAL_SCRIPTS = {
    "chk_sshd": {"script": "killall -0 sshd", "interval": 2, "timeout": 2, "weight": -4,
                 "rise": 2, "fall": 2},
    "chk_haproxy": {"script": "killall -0 haproxy", "interval": 2, "timeout": 2, "weight": 0,
                    "rise": 1, "fall": 1},
    "chk_http_port": {"script": "</dev/tcp/127.0.0.1/80", "interval": 1, "timeout": 1,
                      "weight": -2, "rise": 1, "fall": 1},
    "chk_https_port": {"script": "</dev/tcp/127.0.0.1/443", "interval": 1, "timeout": 1,
                       "weight": -2, "rise": 1, "fall": 1},
    "chk_smtp_port": {"script": "</dev/tcp/127.0.0.1/25", "interval": 1, "timeout": 1,
                      "weight": -2, "rise": 1, "fall": 1}}
FIVE_TO_NINE = [vi(f"VI_{n}", "eth0", 50 + n, state="MASTER", priority=100,
                   virtual_ipaddress=[f"192.168.200.{15 + n}/27"]) for n in range(5, 10)]
GROUP_SERVERS = [rs("192.168.200.1:1358", check=http(6, 3, 3, 3, TESTURL)),
                 rs("192.168.200.2:1358", check=http(6, 3, 3, 3, TESTURL))]
ROUTES_VIPS = vips("192.168.200.16", "192.168.200.17", "192.168.200.18")

EXPECTED: dict[str, dict[str, Any]] = {
    "HTTP_GET.port": {
        "services": [vs("192.168.200.100:443", "tcp", "rr", "nat", 50,
                        [rs("192.168.201.100:443", check=https(6, 3, 3, 3, "/", port=444))])],
        "notes": [*MAIL, "`digest ff20ad2481f97b1754ef3e12ecd3a9cc` is not carried over"]},
    "IPv6": {
        "services": [vs("[ae00::1]:80", "tcp", "rr", "nat", 50, [rs("[ae00::10]:25")])],
        "notes": ["line 24: virtual_server ae00::1 80: real_server ae00::10 25: `SMTP_CHECK` is "
                  "not carried over: pylvs has no SMTP check",
                  "line 7: `virtual_server_group IPv6_group` is not carried over: no "
                  "virtual_server uses it"]},
    "PING_CHECK": {
        "services": [vs("10.10.10.2:1358", "udp", "rr", "nat", 50, [rs("192.168.200.6:1358")])],
        "notes": ["`PING_CHECK` is not carried over: pylvs has no ICMP check"]},
    "SMTP_CHECK": {
        "services": [vs("192.168.200.100:25", "tcp", "rr", "nat", 0,
                        [rs("172.16.1.10:25"), rs("172.16.1.11:25"), rs("172.16.1.12:25")])],
        "notes": ["line 39: virtual_server 192.168.200.100 25: real_server 172.16.1.10 25: "
                  "`SMTP_CHECK` is not carried over: pylvs has no SMTP check"]},
    "SSL_GET": {"refused": "auth_type AH"},
    "UDP_CHECK": {
        "services": [vs("10.10.10.2:1358", "udp", "rr", "nat", 50, [rs("192.168.200.6:1358")])],
        "notes": ["`UDP_CHECK` is not carried over: pylvs has no UDP check"]},
    "conditional_conf": {  # read as on a host that is neither `high` nor `low`
        "interface": "eth0",
        "vrrp": [vi("VI_0", "eth0", 1, state="BACKUP", advert_int=12, version=3,
                    virtual_ipaddress=["10.1.0.254/32"],
                    track_interface=["eth3", {"name": "eth2", "weight": 20}])],
        "notes": ["`vrrp_script check_VI_0` is refused: it has no `script`",
                  "`use_vmac` is not carried over",
                  "`check_VI_0` is not carried over: no vrrp_script check_VI_0"]},
    "fwmark": {  # real servers without a port: port 0, the packet's kept; checks connect_port
        "services": [vs("FWM 1", "", "rr", "nat", 900, [
            rs(f"192.168.201.{n}:0", check=tcp(6, 3, port=80)) for n in (100, 101)])],
        "notes": ["line 12: virtual_server fwmark 1: `protocol TCP` is not carried over: "
                  "keepalived ignores it too", "line 7: virtual_server fwmark 1: FWM 1 gets no "
                  "packet until a [[mark]] rule gives mark 1"]},
    "inhibit": {
        "services": [vs("10.10.10.2:1358", "tcp", "rr", "nat", 50, [
            rs("192.168.200.2:1358", check=http(6, 3, 3, 3, TESTURL), inhibit=True)])],
        "notes": ["`digest 640205b7b0fc66c1ea91c463fac6334d` is not carried over: pylvs's "
                  "http check looks at the status code only"]},
    "misc_check": {
        "services": [vs("10.10.10.2:1358", "tcp", "rr", "nat", 50, [
            rs("192.168.200.6:1358", check=misc(6, 6, "/usr/local/bin/script.sh"))])]},
    "misc_check_arg": {
        "services": [vs("10.10.10.2:1358", "tcp", "rr", "nat", 50, [
            rs("192.168.200.6:1358", check=misc(6, 6, "/usr/local/bin/script.sh arg1 arg2"))])]},
    "quorum": {
        "services": [vs("10.0.1.1:80", "tcp", "wrr", "nat", 900, [
            rs(f"10.0.0.{n}:8080", check=tcp(6, 3, port=80), alpha=True) for n in range(1, 11)],
            quorum=7, hysteresis=2)],
        "notes": ["`omega` is not carried over", "`quorum_up /usr/local/sbin/quorum-up.sh` is "
                  "not carried over: pylvs runs no quorum scripts", "`quorum_down"]},
    "sample": {
        "services": [vs("10.10.10.2:1358", "tcp", "rr", "nat", 50, [
            rs("192.168.200.2:1358", check=http(6, 3, 3, 3, TESTURL))],
            sorry=("192.168.200.200", 1358))],
        "vrrp": [vi("VI_1", "eth0", 50, priority=100, advert_int=1, nopreempt=True,
                    virtual_ipaddress=vips("192.168.200.11", "192.168.200.12",
                                           "192.168.200.13"))],
        "notes": MAIL},
    "status_code": {
        "services": [vs("192.168.200.100:443", "tcp", "rr", "nat", 50, [rs(
            "192.168.201.100:443", check=https(6, 3, 3, 3, "/", tuple(
                [*range(200, 300), *range(400, 500), 503, 505])))])],
        "notes": ["`url` is not carried over: pylvs's http check asks for one url"]},
    "track_interface": {
        "interface": "eth0.1",
        "vrrp": [vi("VI_1", "eth0.1", 51, state="MASTER", priority=100,
                    track_interface=["eth0", "eth1"], virtual_ipaddress=ROUTES_VIPS)],
        "notes": ["`static_routes` is not carried over", "`virtual_routes` is not carried over",
                  "`192.168.200.17 dev eth1`: its `dev eth1` is not carried over"]},
    "virtual_server_group": {
        "services": [*(vs(address, "tcp", "rr", "nat", 50, GROUP_SERVERS) for address in (
            "10.0.0.1:8080", "10.0.0.2:80", "192.168.200.1:1358",
            *(f"192.168.200.{n}:80" for n in range(3, 11)))),
            # the marks after the addresses, as ipvs_group_cmd adds them; NAT keeps the ports
            vs("FWM 1", "", "rr", "nat", 50, GROUP_SERVERS),
            vs("FWM 2", "", "rr", "nat", 50, GROUP_SERVERS)],
        "notes": ["line 22: virtual_server group VSG_1: FWM 1 gets no packet until a [[mark]] "
                  "rule gives mark 1", "FWM 2 gets no packet until a [[mark]] rule gives "
                  "mark 2"]},
    "virtualhost": {
        "services": [vs("192.168.200.100:80", "tcp", "rr", "nat", 50,
                        [rs("192.168.201.100:80", check=https(6, 3, 3, 3, "/"))])],
        "notes": ["`virtualhost www.firewall.loc` is not carried over",
                  "`url` is not carried over: pylvs's http check asks for one url"]},
    "vrrp": {
        "interface": "eth0",
        "vrrp": [
            vi("VI_1", "eth0", 51, state="MASTER", priority=100, advert_int=1,
               authentication={"auth_type": "PASS", "auth_pass": "1111"},
               virtual_ipaddress=ROUTES_VIPS),
            vi("VI_2", "eth0", 50, priority=50, advert_int=1,
               virtual_ipaddress=vips("192.168.200.13", "192.168.200.14", "192.168.200.15")),
            vi("VI_3", "eth1", 52, state="MASTER", priority=100, advert_int=1,
               authentication={"auth_type": "PASS", "auth_pass": "1111"},
               virtual_ipaddress=vips("192.168.201.13", "192.168.201.14", "192.168.201.15")),
            vi("VI_4", "eth1", 53, priority=50, advert_int=1,
               virtual_ipaddress=vips("192.168.201.16", "192.168.201.17", "192.168.201.18"))],
        "notes": ["line 17: vrrp_instance VI_1: `smtp_alert` is not carried over: pylvs sends "
                  "no mail", "`garp_master_delay 10` is not carried over",
                  "its `label eth0:1` is not carried over"]},
    "vrrp.localcheck": {
        "interface": "eth0", "scripts": LOCAL_SCRIPTS,
        "vrrp": [
            vi("VI_1", "eth0", 51, state="MASTER", priority=100,
               virtual_ipaddress=["192.168.200.18/25"],
               track_interface=[{"name": "eth1", "weight": 2}, {"name": "eth2", "weight": -2},
                                "eth3"],
               track_script=["chk_sshd", {"name": "chk_haproxy", "weight": 2}, "chk_http_port",
                             "chk_https_port", "chk_smtp_port"]),
            vi("VI_2", "eth1", 52, state="MASTER", priority=100,
               virtual_ipaddress=["192.168.201.18/26"],
               track_interface=[{"name": "eth0", "weight": 2}, {"name": "eth2", "weight": -2},
                                "eth3"],
               track_script=[{"name": "chk_haproxy", "weight": 2}, "chk_http_port",
                             "chk_https_port", "chk_smtp_port"]),
            vi("VI_3", "eth0", 53, priority=100, virtual_ipaddress=["192.168.200.19/27"]),
            vi("VI_4", "eth1", 54, priority=100, virtual_ipaddress=["192.168.201.19/28"]),
            *FIVE_TO_NINE]},
    "vrrp.lvs_syncd": {
        "interface": "eth0", "sync": ("eth1", 0),
        "services": [vs("192.168.200.19:80", "tcp", "rr", "nat", 50,
                        [rs("192.168.201.100:80", check=tcp(20, 3))])],
        "vrrp": [
            vi("VI_1", "eth0", 51, state="MASTER", priority=150, advert_int=1,
               authentication={"auth_type": "PASS", "auth_pass": "grr02"},
               virtual_ipaddress=ROUTES_VIPS),
            vi("VI_2", "eth0", 52, priority=100, advert_int=1,
               virtual_ipaddress=vips("192.168.200.19", "192.168.200.20", "192.168.200.21")),
            vi("VI_3", "eth1", 53, priority=100, advert_int=1,
               virtual_ipaddress=vips("192.168.201.19", "192.168.201.20", "192.168.201.21"))],
        "notes": ["line 4: vrrp_sync_group VG1: `VI_2` is not carried over: members go in "
                  "`group { ... }`", "`vrrp_sync_group VG1` is refused: it has no members",
                  "`lvs_sync_daemon_interface eth1`: the sync daemon is carried over, but not "
                  "its following this instance's state"]},
    "vrrp.routes": {
        "interface": "eth0",
        "vrrp": [vi("VI_1", "eth0", 51, state="MASTER", priority=100,
                    virtual_ipaddress=ROUTES_VIPS)],
        "notes": ["`static_routes` is not carried over: pylvs installs no routes",
                  "line 25: vrrp_instance VI_1: `virtual_routes` is not carried over"]},
    "vrrp.rules": {
        "interface": "eth0",
        "vrrp": [vi("VI_1", "eth0", 51, state="MASTER", priority=100,
                    virtual_ipaddress=ROUTES_VIPS)],
        "notes": ["`static_rules` is not carried over", "`virtual_rules` is not carried over"]},
    "vrrp.scripts": {
        "interface": "eth0",
        "vrrp": [
            vi("VI_1", "eth0", 51, state="MASTER", priority=100, advert_int=1,
               authentication={"auth_type": "PASS", "auth_pass": "1111"},
               virtual_ipaddress=ROUTES_VIPS,
               notify_backup="/usr/local/bin/vrrp.sh  BACKUP   VI_1",
               notify_master="/usr/local/bin/vrrp.sh  MASTER  VI_1",
               notify_fault="/usr/local/bin/vrrp.sh  FAULT  VI_1"),
            vi("VI_2", "eth0", 52, state="MASTER", priority=150,
               virtual_ipaddress=["192.168.200.100/27"]),
            vi("VI_3", "eth0", 53, state="MASTER", priority=150,
               virtual_ipaddress=["192.168.200.101/27"])],
        "groups": [{"name": "G1", "group": ["VI_2", "VI_3"],
                    "notify_backup": "/usr/local/bin/vrrp.back arg1 arg2",
                    "notify_master": "/usr/local/bin/vrrp.mast arg1 arg2",
                    "notify_fault": "/usr/local/bin/vrrp.fault arg1 arg2"}]},
    "vrrp.static_ipaddress": {
        "interface": "eth0",
        "vrrp": [vi("VI_1", "eth0", 51, state="MASTER", priority=100,
                    virtual_ipaddress=["192.168.200.20/32"])],
        "notes": ["`static_ipaddress` is not carried over: pylvs adds no static addresses"]},
    "vrrp.sync": {
        "interface": "eth0",
        "vrrp": [vi("VI_1", "eth0", 51, state="MASTER", priority=100,
                    virtual_ipaddress=["192.168.200.18/25"]),
                 vi("VI_2", "eth1", 52, state="MASTER", priority=100,
                    virtual_ipaddress=["192.168.201.18/26"]),
                 vi("VI_3", "eth0", 53, priority=100, virtual_ipaddress=["192.168.200.19/27"]),
                 vi("VI_4", "eth1", 54, priority=100, virtual_ipaddress=["192.168.201.19/28"]),
                 *FIVE_TO_NINE],
        "groups": [{"name": "G1", "group": ["VI_1", "VI_2", "VI_5", "VI_6", "VI_7", "VI_8",
                                            "VI_9"],
                    "notify_backup": "/usr/local/bin/vrrp.back arg1 arg2",
                    "notify_master": "/usr/local/bin/vrrp.mast arg1 arg2",
                    "notify_fault": "/usr/local/bin/vrrp.fault arg1 arg2"},
                   {"name": "G2", "group": ["VI_3", "VI_4"]}]},
}


def test_every_sample_has_a_reading():
    if SAMPLES.is_dir():
        shipped = {p.name.removeprefix("keepalived.conf.") for p in SAMPLES.glob(
            "keepalived.conf.*")}
        assert shipped == set(EXPECTED)
    assert len(EXPECTED) == 25


# -- each sample against its reading -----------------------------------------------------------

@needs_samples
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_debian_sample(name):
    expected = EXPECTED[name]
    text = (SAMPLES / f"keepalived.conf.{name}").read_text()
    if "refused" in expected:
        with pytest.raises(KeepalivedError) as refused:
            convert(text, name, interface=OPTION, config_id="testhost")
        assert expected["refused"] in refused.value.reason
        assert_notes(refused.value.notes, expected.get("notes", []))
        return
    conversion = converted(text, name, expected.get("interface"))
    config = build(conversion.data, name)
    assert tomllib.loads(conversion.toml()) == conversion.data
    assert config.interface == expected.get("interface", OPTION)
    assert_services(config, expected.get("services", []))
    assert conversion.data.get("vrrp", []) == expected.get("vrrp", [])
    assert [v.name for v in config.vrrp_instances] == [v["name"] for v in
                                                       expected.get("vrrp", [])]
    assert conversion.data.get("vrrp_script", {}) == expected.get("scripts", {})
    assert conversion.data.get("vrrp_sync_group", []) == expected.get("groups", [])
    assert (config.sync_interface, config.syncid) == expected.get("sync", ("", 0))
    assert_notes(conversion.notes, expected.get("notes", []))


def converted(text: str, name: str, interface: str | None) -> keepalived.Conversion:
    """Without --interface when a vrrp_instance says it; else refused without, read with."""
    if interface is not None:
        return convert(text, name, config_id="testhost")
    with pytest.raises(KeepalivedError) as unknown:
        convert(text, name, config_id="testhost")
    assert "--interface" in unknown.value.reason
    return convert(text, name, interface=OPTION, config_id="testhost")


def assert_services(config: Config, expected: list[dict[str, Any]]) -> None:
    got = [{"address": s.endpoint, "protocol": s.protocol, "scheduler": s.scheduler.spec,
            "forward": s.forward, "persistence": s.persistence_timeout,
            "servers": [r.endpoint for r in reversed(s.real_servers)]} for s in config.services]
    assert got == [{**{k: e[k] for k in ("address", "protocol", "scheduler", "forward",
                                         "persistence")},
                    "servers": [r["address"] for r in e["servers"]]} for e in expected]
    health = {h.key: h for h in config.health}
    for service, wanted in zip(config.services, expected, strict=True):
        weights = {r.endpoint: r.weight for r in service.real_servers}
        assert weights == {r["address"]: r["weight"] for r in wanted["servers"]}
        checked = [r for r in wanted["servers"] if r["check"] is not None]
        if not checked:
            assert service.key not in health
            continue
        found = health[service.key]
        assert (found.quorum, found.hysteresis, found.sorry_server) == (
            wanted["quorum"], wanted["hysteresis"], wanted["sorry"])
        assert [(f"{s.server.address}:{s.server.port}", s.spec, not s.alive, s.inhibit)
                for s in found.servers] == [(r["address"], r["check"], r["alpha"], r["inhibit"])
                                            for r in checked]


def assert_notes(notes: list[str], wanted: list[str]) -> None:
    for text in wanted:
        assert any(text in note for note in notes), f"no note says {text!r}: {notes}"


# -- keepalived's defaults ---------------------------------------------------------------------

def one(text: str, **options: Any) -> keepalived.Conversion:
    return convert(text, "k.conf", interface=options.pop("interface", "eth0"),
                   config_id=options.pop("config_id", "testhost"), **options)


def test_a_bare_virtual_server_takes_keepalived_defaults():
    conversion = one("virtual_server 10.0.0.1 53 {\n real_server 10.0.1.1 53 {\n }\n"
                     " persistence_timeout\n}\n")
    (service,) = build(conversion.data).services
    assert (service.protocol, service.forward, service.scheduler.spec) == ("udp", "nat", "wlc")
    assert service.persistence_timeout == 360 and service.real_servers[0].weight == 1
    assert_notes(conversion.notes, ["line 1: virtual_server 10.0.0.1 53: no `protocol`: UDP, "
                                    "as keepalived"])


def test_checker_values_come_from_the_checker_then_real_server_then_service():
    conversion = one("""virtual_server 10.0.0.1 80 {
  protocol TCP
  delay_loop 7
  connect_timeout 4
  retry 5
  delay_before_retry 2
  weight 3
  real_server 10.0.1.1 80 {
    TCP_CHECK {
    }
  }
  real_server 10.0.1.2 80 {
    delay_loop 8
    retry 6
    weight 9
    TCP_CHECK {
      connect_timeout 1.5
    }
  }
  real_server 10.0.1.3 80 {
    HTTP_GET {
      url {
        path /h
        status_code 200-202 404
      }
      nb_get_retry 4
      delay_loop 9
    }
  }
}
""")
    config = build(conversion.data)
    specs = {s.server.address: (s.spec, s.server.weight) for s in config.health[0].servers}
    assert specs == {"10.0.1.1": (tcp(7, 4, 5, 2), 3), "10.0.1.2": (tcp(8, 1.5, 6, 2), 9),
                     "10.0.1.3": (http(9, 4, 4, 2, "/h", (200, 201, 202, 404)), 3)}


def test_the_checkers_own_defaults():
    conversion = one("""virtual_server 10.0.0.1 80 {
  protocol TCP
  real_server 10.0.1.1 80 {
    HTTP_GET {
      url {
        path /
      }
    }
  }
  real_server 10.0.1.2 80 {
    MISC_CHECK {
      misc_path "/bin/true 10.0.1.2"
      delay_loop 5
    }
  }
  real_server 10.0.1.3 80 {
    TCP_CHECK {
      connect_port 8080
    }
  }
}
""")
    specs = {s.server.address: s.spec for s in build(conversion.data).health[0].servers}
    assert specs == {  # MISC_CHECK's timeout is the service's delay_loop, not its own
        "10.0.1.1": http(60, 5, 1, 3, "/"), "10.0.1.2": misc(5, 60, "/bin/true 10.0.1.2"),
        "10.0.1.3": tcp(60, 5, 1, 1, port=8080)}


def test_dr_real_servers_and_sorry_servers_take_the_service_port():
    conversion = one("""virtual_server 10.0.0.1 80 {
  protocol TCP
  lb_kind DR
  sorry_server 10.0.9.9
  real_server 10.0.1.1 8080 {
    TCP_CHECK {
    }
  }
}
""")
    config = build(conversion.data)
    assert config.services[0].real_servers[0].endpoint == "10.0.1.1:80"
    assert config.health[0].sorry_server == ("10.0.9.9", 80)
    assert_notes(conversion.notes, ["port 8080 of `real_server 10.0.1.1 8080` is not carried "
                                    "over: DR forwards to the service's port 80"])


def test_sync_daemon_id_defaults_to_the_vrid_of_the_instance_it_follows():
    text = """global_defs {
  lvs_sync_daemon eth1 inst VI_7 maxlen 1400
}
vrrp_instance VI_7 {
  interface eth0
  virtual_router_id 77
  virtual_ipaddress {
    10.0.0.1/24
  }
}
"""
    config = build(one(text, interface="").data)
    assert (config.sync_interface, config.syncid, config.interface) == ("eth1", 77, "eth0")
    given = build(one(text.replace("inst VI_7", "inst VI_7 id 5")).data)
    assert given.syncid == 5
    assert_notes(one(text).notes, ["its `maxlen 1400` is not carried over",
                                   "its `inst VI_7` is not carried over"])


def test_vrrp_version_preempt_and_auth_pass_as_keepalived_reads_them():
    conversion = one("""global_defs {
  vrrp_version 3
}
vrrp_instance A {
  interface eth0
  virtual_router_id 1
  nopreempt
  preempt
  preempt_delay 2.5
  unicast_src_ip 10.0.0.2
  unicast_peer {
    10.0.0.3
  }
  virtual_ipaddress {
    10.0.0.100
    10.0.0.101-102/24
  }
  notify "/bin/notify all"
  notify_stop /bin/stop
}
vrrp_instance B {
  interface eth0
  virtual_router_id 2
  version 2
  authentication {
    auth_pass 123456789
  }
  virtual_ipaddress {
    10.0.0.200
  }
}
""")
    a, b = conversion.data["vrrp"]
    assert a == vi("A", "eth0", 1, nopreempt=False, preempt_delay=2.5, version=3,
                   unicast_src_ip="10.0.0.2", unicast_peers=["10.0.0.3"],
                   virtual_ipaddress=["10.0.0.100/32", "10.0.0.101/24", "10.0.0.102/24"],
                   notify="/bin/notify all", notify_stop="/bin/stop")
    assert b["version"] == 2 and b["authentication"] == {"auth_type": "PASS",
                                                          "auth_pass": "12345678"}
    assert_notes(conversion.notes, ["auth_pass cut to its first 8 characters"])
    build(conversion.data)


def test_the_interface_comes_from_the_instance_holding_the_services():
    text = """vrrp_instance V {
  interface lan0
  virtual_router_id 9
  virtual_ipaddress {
    10.0.0.1/24
  }
}
virtual_server 10.0.0.1 80 {
  protocol TCP
}
"""
    assert build(one(text, interface="").data).interface == "lan0"
    assert build(one(text, interface="wan1").data).interface == "wan1"  # --interface wins
    two = text + text.replace("lan0", "lan1").replace("10.0.0.1", "10.0.0.2").replace(
        "V {", "W {").replace("id 9", "id 8")
    with pytest.raises(KeepalivedError) as both:
        one(two, interface="")
    assert "lan0 (V), lan1 (W)" in both.value.reason and "--interface" in both.value.reason


# -- conditionals and includes --------------------------------------------------

def test_conditional_sample_read_on_the_high_host():
    text = (SAMPLES / "keepalived.conf.conditional_conf").read_text() if SAMPLES.is_dir() \
        else None
    if text is None:
        pytest.skip("Debian's keepalived samples are not here (apt-get install keepalived)")
    conversion = convert(text, "c.conf", config_id="high")
    (instance,) = conversion.data["vrrp"]
    assert instance["priority"] == 170 and instance["track_script"] == ["check_VI_0"]
    assert conversion.data["vrrp_script"]["check_VI_0"]["script"] == \
        "/etc/keepalived/scripts/check_high_VI_0.sh"
    assert_notes(conversion.notes, ["`net_namespace high` is not carried over"])


def reader(files: dict[str, str]) -> keepalived_syntax.Include:
    """Includes from a dict, as the shell's glob reader answers (matches in sorted order)."""
    def include(pattern: str, including: str) -> list[tuple[str, str]]:
        import fnmatch
        names = [p for each in keepalived_syntax.expand_braces(pattern)
                 for p in sorted(files) if fnmatch.fnmatch(p, each)]
        return [(n, files[n]) for n in names]
    return include


def test_includes_are_read_where_they_stand_with_their_own_lines():
    files = {"vs/b.conf": "virtual_server 10.0.0.2 80 {\n protocol TCP\n}\n",
             "vs/a.conf": "virtual_server 10.0.0.1 80 {\n protocol TCP\n smtp_alert\n}\n",
             "rs.conf": "real_server 10.0.1.1 80 {\n weight 4\n}\n"}
    text = "include vs/*.conf\nvirtual_server 10.0.0.3 80 {\n protocol TCP\n include rs.conf\n}\n" \
        "include none/*.conf\n"
    conversion = convert(text, "main.conf", interface="eth0", include=reader(files))
    config = build(conversion.data)
    assert [s.endpoint for s in config.services] == ["10.0.0.1:80", "10.0.0.2:80",
                                                     "10.0.0.3:80"]
    assert config.services[2].real_servers[0].weight == 4
    assert_notes(conversion.notes, ["vs/a.conf line 3: virtual_server 10.0.0.1 80: "
                                    "`smtp_alert` is not carried over",
                                    "line 6: `include none/*.conf` is not carried over: it "
                                    "matched no file"])


def test_include_loops_are_refused():
    loop = reader({"x.conf": "include x.conf\n"})
    with pytest.raises(keepalived.ConfigError) as deep:
        convert("include x.conf\n", "main.conf", include=loop)
    assert "32 levels deep" in str(deep.value)


# -- errors and refusals -----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "where", "reason"), [
    ("global_defs {\n router_id x\n}\n", "-", keepalived.NO_BLOCKS),
    ("virtual_server 1.2.3.4 80 {\n", "line 1", "never closed"),
    ("}\n", "line 1", "without a block"),
    ("virtual_server 1.2.3.4 99999 {\n}\n", "line 1", "port '99999'"),
    ("virtual_server 1.2.3.4 80 {\n real_server 10.0.0.1 80 {\n  MISC_CHECK {\n  }\n }\n}\n",
     "line 3", "misc_path"),
    ("$IP=1.2.3.4\n", "line 1", "$NAME"),
    ("virtual_server nosuch 80 {\n}\n", "line 1", "not an IP address"),
    ("vrrp_instance V {\n interface eth0\n}\n", "line 1", "virtual_router_id"),
])
def test_errors_name_the_line_and_reason(text, where, reason):
    with pytest.raises(keepalived.ConfigError) as error:
        convert(text, "bad.conf", interface="eth0")
    assert error.value.source == "bad.conf" and error.value.key.startswith(where)
    assert reason in error.value.reason


def test_a_file_without_services_or_instances_is_refused_with_that_sentence():
    with pytest.raises(KeepalivedError) as error:
        convert("global_defs {\n}\nstatic_routes {\n}\n", "k.conf", interface="eth0")
    assert "no virtual_server block and no vrrp_instance block" in str(error.value)


def test_sctp_blocks_are_refused_and_the_rest_runs():
    """IPv6 runs (tests/adm/test_keepalived_ipv6.py), and so does a real server of the other
    family in a TUN service; GUE runs too (its real servers take the service's tunnel)."""
    conversion = one("""virtual_server ae00::1 80 {
  protocol TCP
}
virtual_server 10.0.0.1 80 {
  protocol SCTP
}
virtual_server 10.0.0.2 80 {
  protocol TCP
  lb_kind TUN type gue port 6080
}
virtual_server 10.0.0.3 80 {
  protocol TCP
  lb_kind TUN type ipip nocsum
  real_server ae00::10 80 {
  }
  real_server 10.0.1.1 80 {
  }
}
""")
    services = build(conversion.data).services
    assert [s.endpoint for s in services] == ["[ae00::1]:80", "10.0.0.2:80", "10.0.0.3:80"]
    assert [r.endpoint for r in services[2].real_servers] == ["10.0.1.1:80", "[ae00::10]:80"]
    assert_notes(conversion.notes, [
        "line 4: `virtual_server 10.0.0.1 80` is refused: protocol SCTP",
        "its `nocsum` is not carried over: IP-in-IP has no checksum option"])
    assert not any("refused" in note and "ae00" in note for note in conversion.notes)


def test_every_unknown_key_is_noted_with_its_line_and_block():
    conversion = one("""virtual_server 10.0.0.1 80 {
  protocol TCP
  lb_kind DR
  smtp_alert
  made_up_key 1
  real_server 10.0.1.1 80 {
    TCP_CHECK {
      bindto 10.0.0.9
    }
    HTTP_GET {
      url {
        path /
      }
    }
  }
}
""")
    assert conversion.notes == [
        "line 4: virtual_server 10.0.0.1 80: `smtp_alert` is not carried over: pylvs sends no "
        "mail",
        "line 5: virtual_server 10.0.0.1 80: `made_up_key 1` is not carried over: pylvs has "
        "no equivalent",
        "line 8: virtual_server 10.0.0.1 80: real_server 10.0.1.1 80: TCP_CHECK: `bindto "
        "10.0.0.9` is not carried over: pylvs's checks leave from the address the route picks",
        "line 10: virtual_server 10.0.0.1 80: real_server 10.0.1.1 80: `HTTP_GET` is not "
        "carried over: pylvs runs one check per real server (the first, TCP_CHECK), where "
        "keepalived needs all to pass"]


def test_config_errors_found_after_conversion_keep_the_keepalived_line():
    conversion = one("virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo nosuch\n}\n")
    assert conversion.where["virtual_server[0]"] == "line 1: virtual_server 10.0.0.1 80"


def test_keys_that_need_a_check_are_noted_on_a_server_without_one():
    conversion = one("""virtual_server 10.0.0.1 53 {
  protocol UDP
  ops
  quorum 2
  sorry_server 10.0.9.9 53
  real_server 10.0.1.1 53 {
    notify_up /bin/up
    inhibit_on_failure
  }
}
virtual_server 10.0.0.2 80 {
  protocol TCP
  ops
  real_server 10.0.1.2 80 {
    notify_up "/bin/up 10.0.1.2"
    notify_down /bin/down now
    TCP_CHECK {
    }
  }
}
""")
    first, second = conversion.data["virtual_server"]
    assert first["one_packet"] is True and "quorum" not in first and "sorry_server" not in first
    assert "one_packet" not in second
    server = second["real_server"][0]
    assert (server["notify_up"], server["notify_down"]) == ("/bin/up 10.0.1.2", "/bin/down now")
    assert_notes(conversion.notes, [
        "line 4: virtual_server 10.0.0.1 53: `quorum 2` is not carried over: no real server has "
        "a check pylvs runs", "`sorry_server 10.0.9.9 53` is not carried over",
        "line 7: virtual_server 10.0.0.1 53: real_server 10.0.1.1 53: `notify_up /bin/up` is "
        "not carried over: the real server has no check pylvs runs",
        "`inhibit_on_failure` is not carried over: the real server has no check",
        "line 13: virtual_server 10.0.0.2 80: `ops` is not carried over: one-packet scheduling "
        "is for UDP"])
    build(conversion.data)


def test_gue_and_gre_tunnels_reach_their_real_servers():
    """keepalived's `lvs_method TUN type gue port N csum` (the lbkind handler's words): a
    service's tunnel is its real servers' default, a real server's own overrides it."""
    conversion = one("""virtual_server 10.0.0.2 80 {
  protocol TCP
  lb_kind TUN type gue port 6080 csum
  real_server 10.0.1.1 80 {
  }
  real_server 10.0.1.2 80 {
    lvs_method TUN type gre
  }
}
""")
    servers = build(conversion.data).services[0].real_servers
    tunnels = {(rs.address, rs.tun_type, rs.tun_port, rs.tun_flags) for rs in servers}
    assert tunnels == {("10.0.1.1", "gue", 6080, "csum"), ("10.0.1.2", "gre", 0, "nocsum")}
