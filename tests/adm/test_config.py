"""Config validation: every error names the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylvs.adm import commands
from pylvs.adm.config import ConfigError, load, parse
from pylvs.core.director import Director
from pylvs.core.sysctls import Sysctls

GOOD = """
[director]
interface = "eth0"

[[virtual_server]]
address = "192.168.1.100:80"
protocol = "tcp"
scheduler = "wrr"
forward = "dr"

  [[virtual_server.real_server]]
  address = "192.168.1.12:80"
  weight = 3

  [[virtual_server.real_server]]
  address = "192.168.1.13"
"""


def test_good_config_builds_model_in_ipvs_order():
    config = parse(GOOD, "lb.toml")
    assert config.interface == "eth0"
    assert config.control_socket == "/run/pylvs.sock"
    (service,) = config.services
    assert (service.protocol, service.address, service.port) == ("tcp", "192.168.1.100", 80)
    assert service.scheduler.name == "wrr"
    # ipvsadm -a inserts at the head: the later server comes first
    assert [s.endpoint for s in service.real_servers] == ["192.168.1.13:80", "192.168.1.12:80"]
    assert [s.weight for s in service.real_servers] == [1, 3]
    assert all(s.forward == "dr" for s in service.real_servers)


def test_defaults_follow_ipvsadm():
    config = parse('[director]\ninterface="eth0"\n[[virtual_server]]\naddress="10.0.0.1:53"\n'
                   'protocol="udp"\n[[virtual_server.real_server]]\naddress="10.0.0.2"\n')
    (service,) = config.services
    assert service.scheduler.name == "wlc"
    assert service.real_servers[0].weight == 1
    assert service.forward == "dr"


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, "bad.toml")
    assert str(info.value).startswith("bad.toml: ")
    return info.value


def _with(service_extra: str = "", server: str = 'address = "192.168.1.12:80"') -> str:
    return ('[director]\ninterface = "eth0"\n[[virtual_server]]\naddress = "192.168.1.100:80"\n'
            f'{service_extra}\n[[virtual_server.real_server]]\n{server}\n')


@pytest.mark.parametrize("text,key,reason", [
    (_with('scheduler = "nope"'), "virtual_server[0].scheduler", "unknown scheduler 'nope'"),
    (_with(server='address = "192.168.1.300:80"'), "virtual_server[0].real_server[0].address",
     "not an IPv4 address"),
    (_with(server='address = "192.168.1.12:80"\nweight = 70000'),
     "virtual_server[0].real_server[0].weight", "out of range 0..65535"),
    (_with(server='address = "192.168.1.12:80"\nweight = -1'),
     "virtual_server[0].real_server[0].weight", "out of range"),
    (_with('protocol = "sctp"'), "virtual_server[0].protocol", "unknown protocol"),
    (_with('forward = "bogus"'), "virtual_server[0].forward", "unknown forwarding method"),
    (_with(server='address = "192.168.1.12:8080"'), "virtual_server[0].real_server[0].address",
     "only nat can map ports"),
    (_with('colour = "red"'), "virtual_server[0].colour", "unknown key"),
    ('[director]\n', "director.interface", "missing"),
    ('[director]\ninterface = "eth0"\nworkers = 0\n', "director.workers", "out of range 1..64"),
    ('[director]\ninterface = "eth0"\nworkers = "2"\n', "director.workers", "must be an integer"),
    ('x = 1', "x", "unknown key"),
    ('[director\n', "-", "not valid TOML"),
])
def test_bad_configs_name_key_and_reason(text, key, reason):
    error = _error(text)
    assert error.key == key
    assert reason in error.reason


def test_duplicate_service_and_server():
    text = _with() + '[[virtual_server]]\naddress = "192.168.1.100:80"\n'
    assert "duplicate service" in _error(text).reason
    dup = _with() + '[[virtual_server.real_server]]\naddress = "192.168.1.12"\n'
    error = _error(dup)
    assert error.key == "virtual_server[0].real_server[1].address"
    assert "duplicate real server" in error.reason


def test_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "absent.toml")
    assert "absent.toml" in str(info.value) and "cannot read" in str(info.value)


def test_nat_maps_ports_and_mixes_with_dr():
    config = parse('[director]\ninterface = "eth0"\ninside_interface = "eth1"\n'
                   '[[virtual_server]]\naddress = "192.168.1.100:80"\nforward = "nat"\n'
                   '[[virtual_server.real_server]]\naddress = "10.0.0.11:8080"\n'
                   '[[virtual_server.real_server]]\naddress = "192.168.1.12"\nforward = "dr"\n')
    assert config.inside_interface == "eth1"
    (service,) = config.services
    assert [(rs.endpoint, rs.forward) for rs in service.real_servers] == [
        ("192.168.1.12:80", "dr"), ("10.0.0.11:8080", "nat")]


def test_inside_interface_defaults_to_interface():
    assert parse(_with()).inside_interface == "eth0"


def test_scheduler_flags_thresholds_and_persistence():
    config = parse(_with('scheduler = "sh"\nscheduler_flags = ["sh-port", "sh-fallback"]\n'
                         'persistence_timeout = true\npersistence_netmask = "255.255.255.0"',
                         'address = "192.168.1.12"\nupper_threshold = 10\nlower_threshold = 5'))
    (service,) = config.services
    assert service.scheduler.flags == ("sh-fallback", "sh-port")  # IPVS's flag-1, flag-2
    assert (service.persistence_timeout, service.persistence_netmask) == (360, "255.255.255.0")
    (server,) = service.real_servers
    assert (server.upper_threshold, server.lower_threshold) == (10, 5)


@pytest.mark.parametrize("extra,key,reason", [
    ('scheduler = "rr"\nscheduler_flags = ["sh-port"]', "scheduler_flags", "has no flag"),
    ('scheduler_flags = "sh-port"', "scheduler_flags", "list of strings"),
    ('persistence_netmask = "255.255.255.0"', "persistence_netmask", "only a persistent"),
    ('persistence_timeout = 60\npersistence_netmask = "255.0.255.0"', "persistence_netmask",
     "not an IPv4 netmask"),
    ('persistence_timeout = 2678401', "persistence_timeout", "out of range"),
])
def test_bad_scheduling_keys(extra, key, reason):
    error = _error(_with(extra))
    assert error.key == f"virtual_server[0].{key}" and reason in error.reason


def test_workers_default_to_one():
    assert parse(GOOD).workers == 1
    assert parse(GOOD.replace('interface = "eth0"', 'interface = "eth0"\nworkers = 2')).workers == 2


CHECKED = GOOD.replace('forward = "dr"\n', 'forward = "dr"\ncheck = { type = "http", '
                       'interval = 2, path = "/health" }\nquorum = 2\nsorry_server = '
                       '"192.168.1.99"\n').replace(
    '  address = "192.168.1.13"\n', '  address = "192.168.1.13"\n  inhibit_on_failure = true\n'
    '  check = { type = "tcp", retry = 3 }\n  notify_down = "logger down"\n')


def test_health_checks_follow_keepalived_defaults_and_inherit_from_the_service():
    (health,) = parse(CHECKED).health
    assert (health.quorum, health.hysteresis, health.sorry_server) == (2, 0, ("192.168.1.99", 80))
    by_address = {s.server.address: s for s in health.servers}
    http, tcp = by_address["192.168.1.12"], by_address["192.168.1.13"]
    assert (http.spec.kind, http.spec.interval, http.spec.timeout, http.spec.retry,
            http.spec.delay_before_retry, http.spec.path) == ("http", 2, 5, 1, 3, "/health")
    assert (http.server.weight, http.inhibit, http.alive) == (3, False, True)
    assert (tcp.spec.kind, tcp.spec.interval, tcp.spec.retry, tcp.inhibit) == ("tcp", 60, 3, True)
    assert tcp.notify_down == "logger down" and parse(GOOD).health == []


@pytest.mark.parametrize("extra,key,reason", [
    ('check = { type = "ping" }', "virtual_server[0].check.type", "unknown check 'ping'"),
    ('check = { type = "tcp", interval = 0 }', "virtual_server[0].check.interval",
     "out of range"),
    ('check = { type = "tcp", path = "/" }', "virtual_server[0].check.path",
     "only an http or https check"),
    ('check = { type = "misc" }', "virtual_server[0].check.command", "missing"),
    ('check = { type = "http", status = [200, 999] }', "virtual_server[0].check.status",
     "HTTP status code"),
    ('check = { type = "http", path = "health" }', "virtual_server[0].check.path",
     "must start with /"),
    ('check = { type = "tcp", colour = 1 }', "virtual_server[0].check.colour", "unknown key"),
    ('check = "tcp"', "virtual_server[0].check", "must be a table"),
    ('quorum = 2', "virtual_server[0].quorum", "needs health checks"),
    ('check = { type = "tcp" }\nalpha = "yes"', "virtual_server[0].alpha", "true or false"),
    ('check = { type = "tcp" }\nsorry_server = "192.168.1.12:80"',
     "virtual_server[0].sorry_server", "also a real server"),
    ('check = { type = "tcp" }\nsorry_server = "192.168.1.99:81"',
     "virtual_server[0].sorry_server", "only nat can map ports"),
])
def test_bad_health_keys(extra, key, reason):
    error = _error(GOOD.replace('forward = "dr"\n', f'forward = "dr"\n{extra}\n'))
    assert error.key == key
    assert reason in error.reason


def test_notify_without_a_check_is_refused():
    error = _error(GOOD.replace('  weight = 3\n', '  weight = 3\n  notify_up = "x"\n'))
    assert error.key == "virtual_server[0].real_server[0].notify_up"


def test_vrrp_in_keepalived_words_with_its_defaults():
    config = parse(GOOD + '\n[vrrp]\nvirtual_router_id = 51\npriority = 150\n'
                   'authentication = { auth_type = "PASS", auth_pass = "secret" }\n')
    vrrp = config.vrrp
    assert (vrrp.interface, vrrp.virtual_router_id, vrrp.priority, vrrp.advert_int,
            vrrp.state, vrrp.preempt, vrrp.version, vrrp.auth_pass) == (
        "eth0", 51, 150, 1.0, "BACKUP", True, 2, "secret")
    assert parse(GOOD).vrrp is None
    assert parse(GOOD + '\n[vrrp]\nvirtual_router_id = 1\nnopreempt = true\n').vrrp.preempt is False
    v3 = parse(GOOD + '\n[vrrp]\nvirtual_router_id = 1\nversion = 3\nadvert_int = 0.5\n'
               'unicast_peers = ["192.168.1.3"]\n').vrrp
    assert (v3.version, v3.advert_int, v3.unicast_peers) == (3, 0.5, ("192.168.1.3",))


@pytest.mark.parametrize("table,key,reason", [
    ("priority = 100", "vrrp.virtual_router_id", "missing"),
    ("virtual_router_id = 256", "vrrp.virtual_router_id", "out of range 1..255"),
    ("virtual_router_id = 1\npriority = 0", "vrrp.priority", "out of range 1..255"),
    ("virtual_router_id = 1\nadvert_int = 0.5", "vrrp.advert_int", "whole seconds"),
    ("virtual_router_id = 1\nstate = \"FAULT\"", "vrrp.state", "MASTER or BACKUP"),
    ("virtual_router_id = 1\nstate = \"MASTER\"\nnopreempt = true", "vrrp.nopreempt",
     "needs state BACKUP"),
    ("virtual_router_id = 1\nversion = 3\nauthentication = { auth_pass = \"x\" }",
     "vrrp.authentication", "no authentication"),
    ("virtual_router_id = 1\nauthentication = { auth_type = \"AH\", auth_pass = \"x\" }",
     "vrrp.authentication.auth_type", "only PASS"),
    ("virtual_router_id = 1\nunicast_peers = [\"192.168.1.300\"]", "vrrp.unicast_peers[0]",
     "not an IPv4 address"),
    ("virtual_router_id = 1\ngarp = 1", "vrrp.garp", "unknown key"),
])
def test_bad_vrrp_keys(table, key, reason):
    error = _error(GOOD + f"\n[vrrp]\n{table}\n")
    assert error.key == key
    assert reason in error.reason


def test_vrrp_needs_a_virtual_server():
    error = _error('[director]\ninterface = "eth0"\n[vrrp]\nvirtual_router_id = 1\n')
    assert error.key == "vrrp" and "at least one virtual_server" in error.reason


SEVERAL = GOOD + """
[[virtual_server]]
address = "192.168.1.101:80"
  [[virtual_server.real_server]]
  address = "192.168.1.12:80"

[vrrp_script.chk_haproxy]
script = "killall -0 haproxy"
interval = 2
weight = -20
fall = 3

[vrrp_script.chk_alive]
script = "true"

[[vrrp]]
name = "VI_WEB"
virtual_router_id = 51
priority = 150
virtual_ipaddress = ["192.168.1.100/24"]
track_interface = ["eth1", { name = "eth2", weight = 10 }]
track_script = ["chk_haproxy", { name = "chk_alive", weight = 5 }]
notify_master = "/etc/keepalived/master.sh"
notify_fault = "/etc/keepalived/fault.sh"
notify = "/etc/keepalived/notify.sh"

[[vrrp]]
virtual_router_id = 52
virtual_ipaddress = ["192.168.1.101"]

[[vrrp_sync_group]]
name = "G1"
group = ["VI_WEB", "VI_2"]
notify_backup = "/etc/keepalived/group-backup.sh"
"""


def test_several_vrrp_instances_scripts_and_a_sync_group():
    from pylvs.ha.vrrp_track import ScriptSpec, Track
    config = parse(SEVERAL)
    web, second = config.vrrp_instances
    assert config.vrrp is web
    assert (web.name, web.virtual_ipaddress, web.own_vips) == ("VI_WEB", ("192.168.1.100",),
                                                               True)
    assert second.name == "VI_2" and second.priority == 100  # keepalived's VI_<n>, defaults
    assert web.track_interface == (Track("interface", "eth1", 0),
                                   Track("interface", "eth2", 10))
    # a track_script's weight: the instance's own, else the vrrp_script's
    assert web.track_script == (Track("script", "chk_haproxy", -20),
                                Track("script", "chk_alive", 5))
    assert (web.notifies.master, web.notifies.fault, web.notifies.generic,
            web.notifies.backup) == ("/etc/keepalived/master.sh", "/etc/keepalived/fault.sh",
                                     "/etc/keepalived/notify.sh", "")
    assert config.vrrp_scripts["chk_haproxy"] == ScriptSpec(
        "chk_haproxy", "killall -0 haproxy", interval=2.0, weight=-20, fall=3)
    assert config.vrrp_scripts["chk_alive"] == ScriptSpec("chk_alive", "true")  # defaults
    (group,) = config.vrrp_sync_groups
    assert (group.name, group.members, group.notifies.backup) == (
        "G1", ("VI_WEB", "VI_2"), "/etc/keepalived/group-backup.sh")


def test_a_lone_vrrp_instance_defaults_to_the_services_vips():
    """Today's [vrrp]: every service address is a VIP of the instance."""
    for text in (SEVERAL.split("[vrrp_script")[0] + "\n[vrrp]\nvirtual_router_id = 1\n",
                 SEVERAL.split("[vrrp_script")[0] + "\n[[vrrp]]\nvirtual_router_id = 1\n"):
        (only,) = parse(text).vrrp_instances
        assert only.name == "VI_1" and not only.own_vips
        assert only.virtual_ipaddress == ("192.168.1.100", "192.168.1.101")


def test_a_vrrp_instance_with_its_own_vips_needs_no_service():
    config = parse('[director]\ninterface = "eth0"\n[vrrp]\nvirtual_router_id = 1\n'
                   'virtual_ipaddress = ["10.0.0.1"]\n')
    assert config.vrrp.virtual_ipaddress == ("10.0.0.1",) and config.services == []


@pytest.mark.parametrize("old,new,key,reason", [
    ('[[vrrp]]\nvirtual_router_id = 52\nvirtual_ipaddress = ["192.168.1.101"]',
     '[[vrrp]]\nvirtual_router_id = 52', "vrrp[1].virtual_ipaddress",
     "with several instances"),
    ('virtual_router_id = 52', 'virtual_router_id = 51', "vrrp[1].virtual_router_id",
     "VI_WEB's already"),
    ('virtual_router_id = 52', 'virtual_router_id = 52\nname = "VI_WEB"', "vrrp[1].name",
     "twice"),
    ('["192.168.1.101"]', '["192.168.1.100"]', "vrrp[1].virtual_ipaddress",
     "192.168.1.100 is VI_WEB's already"),
    ('["192.168.1.101"]', '["192.168.1.1/33"]', "vrrp[1].virtual_ipaddress[0]",
     "not A.B.C.D or A.B.C.D/len"),
    ('["192.168.1.101"]', '"192.168.1.101"', "vrrp[1].virtual_ipaddress", "list"),
    ('"chk_haproxy", {', '"chk_nothing", {', "vrrp[0].track_script[0]",
     "no [vrrp_script.chk_nothing]"),
    ('name = "chk_alive", weight = 5', 'name = "chk_alive", weight = 254',
     "vrrp[0].track_script[1].weight", "out of range -253..253"),
    ('{ name = "eth2", weight = 10 }', '{ name = "eth2", weigth = 10 }',
     "vrrp[0].track_interface[1].weigth", "unknown key"),
    ('track_interface = ["eth1"', 'track_interface = [1', "vrrp[0].track_interface[0]",
     "a name or { name, weight }"),
    ('script = "true"', 'interval = 1', "vrrp_script.chk_alive.script", "missing"),
    ('fall = 3', 'fall = 0', "vrrp_script.chk_haproxy.fall", "out of range"),
    ('interval = 2', 'interval = 0', "vrrp_script.chk_haproxy.interval", "out of range"),
    ('fall = 3', 'fall = 3\nretry = 1', "vrrp_script.chk_haproxy.retry", "unknown key"),
    ('notify = "/etc/keepalived/notify.sh"', 'notify = 3', "vrrp[0].notify",
     "non-empty string"),
    ('group = ["VI_WEB", "VI_2"]', 'group = ["VI_WEB", "VI_3"]', "vrrp_sync_group[0].group",
     "no vrrp instance named 'VI_3'"),
    ('group = ["VI_WEB", "VI_2"]', 'group = []', "vrrp_sync_group[0].group", "list of "
     "instance names"),
    ('name = "G1"', 'nome = "G1"', "vrrp_sync_group[0].nome", "unknown key"),
    ('[[vrrp_sync_group]]\nname = "G1"', '[[vrrp_sync_group]]\nname = "G0"\ngroup = '
     '["VI_2"]\n[[vrrp_sync_group]]\nname = "G1"', "vrrp_sync_group[1].group",
     "VI_2 is in group G0 already"),
])
def test_bad_keys_of_several_instances(old, new, key, reason):
    assert SEVERAL.count(old) == 1, old
    error = _error(SEVERAL.replace(old, new))
    assert error.key == key and reason in error.reason, (error.key, error.reason)


def test_vrrp_script_without_an_instance_is_refused():
    error = _error(GOOD + '\n[vrrp_script.x]\nscript = "true"\n')
    assert error.key == "vrrp_script" and "needs a [vrrp] instance" in error.reason


def test_sync_daemon_keys():
    config = parse(GOOD.replace('interface = "eth0"', 'interface = "eth0"\nsync_daemon = true\n'
                                'syncid = 7'))
    assert (config.sync_interface, config.syncid) == ("eth0", 7)
    assert parse(GOOD).sync_interface == ""
    error = _error(GOOD.replace('interface = "eth0"', 'interface = "eth0"\nsyncid = 7'))
    assert error.key == "director.syncid" and "needs sync_daemon = true" in error.reason


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("method", ["dr", "nat", "tun"])
def test_each_example_config_loads_and_says_what_it_does(method):
    """examples/<method>.toml loads, forwards by its method, and the ipvsadm lines its comment
    gives build the same table (-S -n) as the file does."""
    path = EXAMPLES / f"{method}.toml"
    config = load(path)
    assert config.services and all(rs.forward == method for svc in config.services
                                   for rs in svc.real_servers)
    lines = [line.split("ipvsadm ", 1)[1] for line in path.read_text().splitlines()
             if line.lstrip("# ").startswith("ipvsadm -")]
    if not lines:
        return
    by_hand = Director([])
    for line in lines:
        assert commands.adm(by_hand, line.split(), 0.0)[0] == 0, line
    assert (commands.adm(by_hand, ["-S", "-n"], 0.0)
            == commands.adm(Director(config.services), ["-S", "-n"], 0.0))


def test_one_packet_is_a_udp_services_flag():
    udp = GOOD.replace('protocol = "tcp"', 'protocol = "udp"\none_packet = true')
    (service,) = parse(udp, "lb.toml").services
    assert service.one_packet
    with pytest.raises(ConfigError) as err:
        parse(GOOD.replace('protocol = "tcp"', 'protocol = "tcp"\none_packet = true'), "lb.toml")
    assert err.value.key == "virtual_server[0].one_packet" and "UDP" in err.value.reason


def test_sysctl_sets_ipvs_defences_and_defaults_to_the_kernels():
    assert parse(_with()).sysctls == Sysctls()
    config = parse(_with() + "[sysctl]\ndrop_entry = 1\nsecure_tcp = 3\namemthresh = 4096\n")
    assert config.sysctls == Sysctls(amemthresh=4096, drop_entry=1, secure_tcp=3)


@pytest.mark.parametrize("table,key,reason", [
    ("drop_entry = 4", "sysctl.drop_entry", "is a mode: 0, 1, 2 or 3"),
    ("secure_tcp = true", "sysctl.secure_tcp", "must be an integer"),
    ("amemthresh = -1", "sysctl.amemthresh", "out of range"),
    ("sloppy_sctp = 1", "sysctl.sloppy_sctp", "unknown key"),
])
def test_bad_sysctls_name_key_and_reason(table, key, reason):
    error = _error(_with() + f"[sysctl]\n{table}\n")
    assert (error.key, reason in error.reason) == (key, True)


_BGP = ('[bgp]\nlocal_as = 65001\nhold_time = 3\nbfd = true\nbfd_interval = 0.05\n'
        'drain_seconds = 2\n[[bgp.neighbor]]\naddress = "10.0.0.1"\nremote_as = 65000\n')


def test_bgp_reads_the_speaker_and_its_neighbours():
    from pylvs.ha.bgp import Bgp, Neighbor
    config = parse(_with() + _BGP)
    assert config.bgp == Bgp(65001, (Neighbor("10.0.0.1", 65000),), "", 3, True, 0.05, 3, 2.0)
    assert parse(_with()).bgp is None
    assert parse(_with() + "[sysctl]\nsloppy_tcp = 1\n").sysctls.sloppy_tcp == 1


@pytest.mark.parametrize("table,key,reason", [
    ("[bgp]\n[[bgp.neighbor]]\naddress = '10.0.0.1'\nremote_as = 1\n", "bgp.local_as",
     "missing"),
    ("[bgp]\nlocal_as = 65001\n", "bgp.neighbor", "at least one"),
    (_BGP.replace("hold_time = 3", "hold_time = 2"), "bgp.hold_time", "out of range"),
    (_BGP.replace('"10.0.0.1"', '"10.0.0"'), "bgp.neighbor[0].address", "not an IPv4"),
    (_BGP.replace("remote_as = 65000\n", ""), "bgp.neighbor[0].remote_as", "missing"),
    (_BGP.replace("local_as = 65001", 'local_as = 65001\nbird_socket = "/run/b.ctl"'),
     "bgp.bird_include", "go together"),
    (_BGP.replace("local_as = 65001", "local_as = 65001\nholdtime = 3"), "bgp.holdtime",
     "unknown key"),
    (_BGP.replace("local_as = 65001", "local_as = 0"), "bgp.local_as", "out of range"),
])
def test_bad_bgp_names_key_and_reason(table, key, reason):
    error = _error(_with() + table)
    assert (error.key, reason in error.reason) == (key, True), error


def test_an_https_check_is_ssl_get_with_http_gets_keys_and_defaults():
    config = parse(_with('check = { type = "https", path = "/h", status = [200, 301] }'))
    spec = config.health[0].servers[0].spec
    assert (spec.kind, spec.path, spec.status, spec.delay_before_retry) == (
        "https", "/h", (200, 301), 3.0)
