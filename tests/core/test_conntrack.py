"""The connection table against IPVS's ip_vs_proto_tcp.c tables and ip_vs_conn.c counting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylvs.core import conntrack as ct
from pylvs.core.model import RealServer, VirtualService

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10


class _NoScheduler:
    name = "none"

    def update(self, servers):
        pass


def _service(forward: str = "dr") -> tuple[VirtualService, RealServer]:
    service = VirtualService("tcp", "192.0.2.100", 80, _NoScheduler(), forward)
    server = RealServer("198.51.100.1", 80, forward=forward)
    service.add_real_server(server)
    return service, server


KEY = (6, 0xC0000205, 40000, 0xC0000264, 80)


def test_dr_lifecycle_follows_input_only_table():
    """IPVS DR: SYN → SYN_RECV (60 s), ACK → ESTABLISHED (900 s), FIN → FIN_WAIT and stays."""
    service, server = _service()
    table = ct.ConnectionTable()
    conn = table.create(KEY, service, server, now=0.0)
    assert conn.state == ct.NONE and conn.expires == 3.0
    assert (server.activeconns, server.inactconns) == (0, 1)
    table.update(conn, ct.INPUT, SYN, now=0.0)
    assert conn.state == ct.SYN_RECV and conn.expires == 60.0
    assert (server.activeconns, server.inactconns) == (1, 0)
    table.update(conn, ct.INPUT, ACK, now=1.0)
    assert conn.state == ct.ESTABLISHED and conn.expires == 901.0
    table.update(conn, ct.INPUT, FIN | ACK, now=2.0)
    assert conn.state == ct.FIN_WAIT and conn.expires == 122.0
    assert (server.activeconns, server.inactconns) == (0, 1)
    table.update(conn, ct.INPUT, ACK, now=3.0)
    assert conn.state == ct.FIN_WAIT


def test_nat_first_output_packet_leaves_input_only():
    """NAT conns use INPUT/OUTPUT: ES + client FIN → CLOSE_WAIT, + RS FIN → TIME_WAIT."""
    service, server = _service("nat")
    table = ct.ConnectionTable()
    conn = table.create(KEY, service, server, now=0.0)
    assert not conn.nooutput
    table.update(conn, ct.INPUT, SYN, 0)
    table.update(conn, ct.OUTPUT, SYN | ACK, 0)
    table.update(conn, ct.INPUT, ACK, 0)
    assert conn.state == ct.ESTABLISHED
    table.update(conn, ct.INPUT, FIN | ACK, 0)
    assert conn.state == ct.CLOSE_WAIT
    table.update(conn, ct.OUTPUT, FIN | ACK, 0)
    assert conn.state == ct.TIME_WAIT


def test_dr_output_direction_is_ignored_while_nooutput():
    service, server = _service()
    table = ct.ConnectionTable()
    conn = table.create(KEY, service, server, 0)
    table.update(conn, ct.INPUT, SYN, 0)
    table.update(conn, ct.INPUT, ACK, 0)
    table.update(conn, ct.INPUT, FIN, 0)
    # INPUT-ONLY fin from ES → FIN_WAIT, where INPUT would give CLOSE_WAIT
    assert conn.state == ct.FIN_WAIT


@pytest.mark.parametrize("flags,expected", [
    (RST | SYN | FIN | ACK, ct.EV_RST), (SYN | FIN | ACK, ct.EV_SYN), (FIN | ACK, ct.EV_FIN),
    (ACK, ct.EV_ACK), (0, None)])
def test_event_precedence_rst_syn_fin_ack(flags, expected):
    assert ct.tcp_event(flags) == expected


def test_packet_with_no_flag_moves_to_close():
    assert ct.next_tcp_state(ct.INPUT, 0x08, ct.ESTABLISHED) == ct.CLOSE


def test_tables_match_reference_rows():
    """Spot rows of reference §3.2 (INPUT rst, OUTPUT syn, INPUT-ONLY fin)."""
    names = [ct.STATE_NAMES[s][:2] for s in ct.TRANSITIONS[ct.INPUT][ct.EV_RST]]
    assert names == ["CL", "CL", "CL", "SY", "CL", "CL", "CL", "CL", "LA", "LI", "SY"]
    assert ct.TRANSITIONS[ct.OUTPUT][ct.EV_SYN][ct.NONE] == ct.SYN_SENT
    assert ct.TRANSITIONS[ct.INPUT_ONLY][ct.EV_FIN][ct.ESTABLISHED] == ct.FIN_WAIT
    assert ct.TRANSITIONS[ct.INPUT_ONLY][ct.EV_RST][ct.SYNACK] == ct.CLOSE
    assert ct.TRANSITIONS[ct.INPUT][ct.EV_RST][ct.SYNACK] == ct.SYN_RECV


@given(st.lists(st.tuples(st.sampled_from([ct.INPUT, ct.OUTPUT]),
                          st.integers(min_value=0, max_value=0x3F)), max_size=40),
       st.sampled_from(["dr", "nat"]))
def test_counts_stay_consistent_with_states(packets, forward):
    """activeconns counts the conns in ES/SYN_SENT/SYN_RECV/SYNACK (Linux ≥ 4.8)."""
    service, server = _service(forward)
    table = ct.ConnectionTable()
    conns = [table.create((6, 1, port, 2, 80), service, server, 0) for port in (1, 2)]
    for i, (direction, flags) in enumerate(packets):
        table.update(conns[i % 2], direction, flags, float(i))
        active = sum(c.state in ct.ACTIVE_STATES for c in conns)
        assert server.activeconns == active
        assert server.inactconns == 2 - active
    table.expire(10_000.0)
    assert len(table) == 0 and server.activeconns == 0 and server.inactconns == 0


def test_udp_is_always_inactive_with_300s():
    service = VirtualService("udp", "192.0.2.100", 53, _NoScheduler())
    server = RealServer("198.51.100.1", 53)
    service.add_real_server(server)
    table = ct.ConnectionTable()
    conn = table.create((17, 1, 5353, 2, 53), service, server, 0)
    table.update(conn, ct.INPUT, 0, 10.0)
    assert conn.state == ct.UDP_STATE and conn.expires == 310.0
    assert (server.activeconns, server.inactconns) == (0, 1)


def test_expire_removes_only_due_connections():
    service, server = _service()
    table = ct.ConnectionTable()
    a = table.create((6, 1, 1, 2, 80), service, server, 0)
    b = table.create((6, 1, 2, 2, 80), service, server, 0)
    table.update(a, ct.INPUT, SYN, 0)     # 60 s
    table.update(b, ct.INPUT, SYN, 0)
    table.update(b, ct.INPUT, ACK, 0)     # 900 s
    assert table.expire(61.0) == 1
    assert table.get(b.key) is b and table.get(a.key) is None
    assert (server.activeconns, server.inactconns) == (1, 0)


def test_set_timeouts_changes_only_three_states():
    timeouts = ct.Timeouts()
    timeouts.set(tcp=100, tcpfin=0, udp=50)
    assert timeouts.triple() == (100, 120, 50)
    assert timeouts.by_state[ct.SYN_RECV] == 60


def test_lnc_row_layout():
    """ipvsadm -Lnc row: "%-3s %-6s %-11s %-18s %-18s %s", expire as mm:ss."""
    service, server = _service()
    table = ct.ConnectionTable()
    conn = table.create((6, 0xC0A80105, 51234, 0xC0A80164, 80), service, server, 0)
    table.update(conn, ct.INPUT, SYN, 0)
    table.update(conn, ct.INPUT, ACK, 0)
    assert conn.row(now=0.5) == ("TCP 14:59  ESTABLISHED 192.168.1.5:51234  192.168.1.100:80"
                                 "   198.51.100.1:80")


def test_upper_threshold_sets_and_three_quarters_clears_overload():
    """ip_vs_bind_dest/unbind_dest: OVERLOAD at total ≥ u, cleared below ¾ of u."""
    service, server = _service()
    server.upper_threshold = 4
    table = ct.ConnectionTable()
    conns = [table.create((6, 1, p, 2, 80), service, server, 0) for p in range(4)]
    assert server.overloaded
    table.remove(conns[0])
    assert server.overloaded          # 3*4 = 12 is not < 4*3
    table.remove(conns[1])
    assert not server.overloaded      # 2*4 = 8 < 12
