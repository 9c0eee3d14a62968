"""Which links the fast path sends into (pylvs.core.offloaded.choose) and the safety net
under it (DropWatch), from facts and counters as the shell reads them, with no kernel."""

from __future__ import annotations

from pylvs.core.offloaded import (
    MIN_FRAMES,
    STRIKES,
    XDP_ACT_BASIC,
    XDP_ACT_NDO_XMIT,
    XDP_ACT_REDIRECT,
    Drops,
    DropWatch,
    LinkFacts,
    choose,
    dropped_since,
    fix,
    worth_attaching,
)

PEER = "director in netns lab-bridge"
BARE_VETH = LinkFacts("eth0", "veth", peer=PEER, peer_xdp=0)
READY_VETH = LinkFacts("eth0", "veth", attached=True, peer=PEER, peer_xdp=42,
                       xdp_features=XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT)


def test_auto_leaves_a_veth_whose_peer_has_no_xdp_program_to_python():
    assert not worth_attaching(BARE_VETH)  # not even attached: it would change the peer
    choice = choose(BARE_VETH, "auto")
    assert not choice.fast and not choice.warn
    assert PEER in choice.reason and "no XDP program" in choice.reason


def test_gro_on_the_peer_is_not_enough():
    """GRO makes the kernel call the veth a redirect target (ndo-xmit); measured on 6.18 it
    passed 256 frames and dropped the rest: only a program on the peer counts."""
    gro = LinkFacts("eth0", "veth", attached=True, peer=PEER, peer_xdp=0,
                    xdp_features=XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT)
    assert not choose(gro, "auto").fast


def test_auto_takes_a_veth_whose_peer_has_a_program_and_a_nic_that_takes_redirects():
    assert worth_attaching(READY_VETH)
    assert choose(READY_VETH, "auto").fast
    assert "(id 42)" in choose(READY_VETH, "auto").reason
    nic = LinkFacts("eth0", "", attached=True,
                    xdp_features=XDP_ACT_BASIC | XDP_ACT_REDIRECT | XDP_ACT_NDO_XMIT)
    assert worth_attaching(LinkFacts("eth0")) and choose(nic, "auto").fast
    old_kernel = LinkFacts("eth0", "", attached=True)  # no netdev family: watched
    assert choose(old_kernel, "auto").fast


def test_auto_refuses_what_it_cannot_attach_or_a_nic_without_redirects():
    refused = LinkFacts("eth0", "", error="Operation not supported")
    assert not choose(refused, "auto").fast
    assert "Operation not supported" in choose(refused, "auto").reason
    no_xmit = LinkFacts("eth0", "", attached=True, xdp_features=XDP_ACT_BASIC)
    assert not choose(no_xmit, "auto").fast
    unseen = LinkFacts("eth0", "veth", attached=True)  # the peer could not be read
    assert not choose(unseen, "auto").fast


def test_xdp_goes_on_anyway_with_a_warning_and_the_fix():
    forced = choose(LinkFacts("eth0", "veth", attached=True, peer=PEER, peer_xdp=0), "xdp")
    assert forced.fast and forced.warn
    assert "watched for drops" in forced.reason and f"attach an XDP program to {PEER}" in \
        forced.reason
    assert not choose(READY_VETH, "xdp").warn
    assert "ethtool" not in fix(LinkFacts("eth0")) and "offload = \"none\"" in fix(None)


def _window(watch: DropWatch, counts: dict[str, Drops], forwarded: int,
            fast=("eth0", "eth1")):
    return watch.observe(counts, forwarded, list(fast))


def test_tx_drops_of_nearly_everything_withdraw_the_link_after_strikes():
    watch = DropWatch({"eth0": Drops()})
    for i in range(1, STRIKES):
        assert _window(watch, {"eth0": Drops(0, 1000 * i)}, 1000, ["eth0"]) == []
    (out,) = _window(watch, {"eth0": Drops(0, 1000 * STRIKES)}, 1000, ["eth0"])
    assert (out.link, out.how, out.counted_on) == ("eth0", "TX dropped", "eth0")
    assert out.dropped == 1000 * STRIKES and out.forwarded == 1000 * STRIKES


def test_rx_drops_are_failed_redirects_out_of_the_link_they_count_on():
    watch = DropWatch({"eth0": Drops(), "eth1": Drops()})
    for i in range(1, STRIKES + 1):
        out = _window(watch, {"eth0": Drops(5000 * i, 0), "eth1": Drops()}, 5000)
    (found,) = out
    assert (found.link, found.how, found.counted_on) == ("eth1", "RX dropped", "eth0")


def test_a_burst_a_trickle_or_drops_without_the_programs_frames_withdraw_nothing():
    watch = DropWatch({"eth0": Drops()})
    assert _window(watch, {"eth0": Drops(0, 5000)}, 5000, ["eth0"]) == []
    assert _window(watch, {"eth0": Drops(0, 5000)}, 5000, ["eth0"]) == []  # not sustained
    tx = 5000
    for _ in range(2 * STRIKES):  # a few percent: an overloaded ring, not a broken link
        tx += 300
        assert _window(watch, {"eth0": Drops(0, tx)}, 10_000, ["eth0"]) == []
    for _ in range(2 * STRIKES):  # the program forwards nothing: not its drops
        tx += 10 * MIN_FRAMES
        assert _window(watch, {"eth0": Drops(0, tx)}, 0, ["eth0"]) == []


def test_a_withdrawn_link_is_not_withdrawn_again_and_the_status_counts_since_start():
    watch = DropWatch({"eth0": Drops(3, 4)})
    for i in range(1, 2 * STRIKES):
        assert _window(watch, {"eth0": Drops(3, 4 + 1000 * i)}, 1000, []) == []
    assert dropped_since({"eth0": Drops(3, 4)}, {"eth0": Drops(10, 14), "lo": Drops()}) == \
        {"eth0": 17}
