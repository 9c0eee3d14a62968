"""The config file from disk: TOML or keepalived.conf told apart by content or --format,
keepalived's includes globbed from real files, and `pylvs config from-keepalived`'s TOML loading
to the same Config the `pylvs run` path builds from the keepalived.conf itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pylvs.adm import config as config_mod
from pylvs.adm.config import Config, ConfigError
from pylvs.shell import config_file

SAMPLES = Path("/usr/share/doc/keepalived/samples")
KEEPALIVED = """! two instances and a DR service with a check
global_defs {
  router_id lb1
  lvs_sync_daemon eth1 id 7
}
vrrp_script chk {
  script "/bin/true"
  interval 2
  weight -10
}
vrrp_instance VI_1 {
  state MASTER
  interface eth0
  virtual_router_id 51
  priority 150
  advert_int 1
  authentication {
    auth_type PASS
    auth_pass secret
  }
  virtual_ipaddress {
    192.0.2.100/24
  }
  track_script {
    chk
  }
  notify_master "/bin/echo master"
}
vrrp_instance VI_2 {
  interface eth0
  virtual_router_id 52
  virtual_ipaddress {
    192.0.2.101/24
  }
}
vrrp_sync_group G {
  group {
    VI_1
    VI_2
  }
}
virtual_server 192.0.2.100 80 {
  delay_loop 3
  lb_algo wrr
  lb_kind DR
  persistence_timeout 60
  persistence_granularity 255.255.255.0
  protocol TCP
  quorum 2
  sorry_server 10.0.0.99 80
  real_server 10.0.0.11 80 {
    weight 2
    inhibit_on_failure
    notify_down "/bin/echo down"
    TCP_CHECK {
      connect_timeout 2
    }
  }
  real_server 10.0.0.12 80 {
    HTTP_GET {
      url {
        path /health
        status_code 200 204
      }
      retry 2
    }
  }
}
"""


def summary(config: Config) -> tuple:
    """Everything a Config holds that running it depends on, in comparable form."""
    services = [(s.protocol, s.endpoint, s.scheduler.spec, s.scheduler.flags, s.forward,
                 s.persistence_timeout, s.persistence_netmask, s.one_packet,
                 [(r.endpoint, r.weight, r.forward, r.upper_threshold, r.lower_threshold)
                  for r in s.real_servers]) for s in config.services]
    health = [(h.key, h.quorum, h.hysteresis, h.sorry_server,
               [(s.key, s.spec, s.inhibit, s.alive, s.notify_up, s.notify_down)
                for s in h.servers]) for h in config.health]
    return (config.interface, config.inside_interface, config.sync_interface, config.syncid,
            services, health, config.vrrp_instances, config.vrrp_scripts,
            config.vrrp_sync_groups)


def pylvs(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pylvs", *args], capture_output=True,
                          text=True, timeout=60)


def test_from_keepalived_writes_toml_that_loads_to_the_run_paths_config(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text(KEEPALIVED)
    result = pylvs("config", "from-keepalived", str(path))
    assert result.returncode == 0, result.stderr
    assert "line 3: global_defs: `router_id lb1` is not carried over" in result.stderr
    written = config_mod.parse(result.stdout, "written.toml")
    run, notes = config_file.load(str(path))
    assert run.source_format == "keepalived" and notes
    assert summary(written) == summary(run)
    assert run.interface == "eth0" and (run.sync_interface, run.syncid) == ("eth1", 7)
    assert len(run.services) == 1 and len(run.vrrp_instances) == 2


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="Debian's keepalived samples are not here "
                    "(apt-get install keepalived, as CI does)")
@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("keepalived.conf.*"))
                         if SAMPLES.is_dir() else ["none"])
def test_every_sample_round_trips_or_is_refused_alike(sample):
    path = str(SAMPLES / sample)
    result = pylvs("config", "from-keepalived", path, "--interface", "eth9")
    try:
        run, _ = config_file.load(path, interface="eth9")
    except ConfigError as exc:
        assert result.returncode == 1 and result.stdout == ""
        assert exc.reason in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert summary(config_mod.parse(result.stdout, sample)) == summary(run)


def test_a_file_without_services_or_instances_is_refused(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("global_defs {\n  router_id x\n}\n")
    result = pylvs("config", "from-keepalived", str(path))
    assert result.returncode == 1 and result.stdout == ""
    assert "no virtual_server block and no vrrp_instance block" in result.stderr
    run = pylvs("run", str(path), "--interface", "eth0")
    assert run.returncode == 2
    assert "no virtual_server block and no vrrp_instance block" in run.stderr


def test_format_is_told_by_content_or_forced(tmp_path):
    path = tmp_path / "lb.conf"
    path.write_text(KEEPALIVED)
    assert config_file.load(str(path), "keepalived")[0].source_format == "keepalived"
    with pytest.raises(ConfigError) as forced:
        config_file.load(str(path), "toml")
    assert "not valid TOML" in forced.value.reason
    toml = tmp_path / "lb.toml"
    toml.write_text('[director]\ninterface = "eth0"\n')
    config, notes = config_file.load(str(toml))
    assert (config.source_format, notes) == ("toml", [])
    with pytest.raises(ConfigError) as option:
        config_file.load(str(toml), interface="eth1")
    assert option.value.key == "--interface"


def test_errors_the_config_checks_find_name_the_keepalived_line(tmp_path):
    path = tmp_path / "keepalived.conf"
    path.write_text("virtual_server 10.0.0.1 80 {\n  protocol TCP\n  lb_algo nosuch\n}\n")
    with pytest.raises(ConfigError) as error:
        config_file.load(str(path), interface="eth0")
    assert error.value.key == ("line 1: virtual_server 10.0.0.1 80 "
                               "(virtual_server[0].scheduler)")
    assert "nosuch" in error.value.reason


def test_includes_glob_relative_to_the_including_file(tmp_path):
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("virtual_server 10.0.0.2 80 {\n"
                                                " protocol TCP\n include ../rs/*.conf\n}\n")
    (tmp_path / "conf.d" / "a.conf").write_text("virtual_server 10.0.0.1 80 {\n"
                                                " protocol TCP\n}\n")
    (tmp_path / "conf.d" / "skip.txt").write_text("not included\n")
    (tmp_path / "rs").mkdir()
    (tmp_path / "rs" / "one.conf").write_text("real_server 10.0.1.1 80 {\n weight 5\n}\n")
    (tmp_path / "x.conf").write_text("virtual_server 10.0.0.3 80 {\n protocol TCP\n}\n")
    (tmp_path / "y.conf").write_text("virtual_server 10.0.0.4 80 {\n protocol TCP\n}\n")
    main = tmp_path / "keepalived.conf"
    main.write_text("include conf.d/*.conf\ninclude {y,x}.conf\n")
    config, _ = config_file.load(str(main), interface="eth0")
    assert [s.endpoint for s in config.services] == ["10.0.0.1:80", "10.0.0.2:80",
                                                     "10.0.0.4:80", "10.0.0.3:80"]
    assert config.services[1].real_servers[0].weight == 5
