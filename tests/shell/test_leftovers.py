"""What a starting director does about an earlier run's leftovers (pylvs.core.leftovers): the
decision alone, over the names present and the pids alive."""

from __future__ import annotations

from pylvs.core import leftovers

OWN = 500


def test_tables_of_dead_pids_go_and_live_ones_stay():
    tables = ["pylvs_100", "pylvs_100_inside", "pylvs_200", "pylvs_200_inside", "pylvs_300"]
    assert leftovers.owners(tables) == {100, 200, 300}
    assert leftovers.stale(tables, live={200}, own=OWN) == ["pylvs_100", "pylvs_100_inside",
                                                            "pylvs_300"]


def test_our_own_tables_stay_even_when_the_liveness_read_missed_us():
    assert leftovers.stale([f"pylvs_{OWN}", f"pylvs_{OWN}_inside"], live=set(), own=OWN) == []


def test_tables_not_named_after_a_pid_are_never_anyones_to_remove():
    others = ["pylvs", "pylvs_", "pylvs_x", "pylvs_12a", "pylvs_0", "pylvs_012", "pylvs_12_out",
              "my_pylvs_12", "filter", "keepalived", "pylvs_vips", "pylvs-12-bird"]
    assert leftovers.owners(others) == set()
    assert leftovers.stale(others, live=set(), own=OWN) == []


def test_bird_folders_of_dead_pids_go_unless_their_bird_still_answers():
    names = ["pylvs-100-bird", "pylvs-200-bird", "pylvs-300-bird", f"pylvs-{OWN}-bird",
             "pylvs-abc.sock", "pylvs_100", "pylvs-100-bird.old"]
    assert leftovers.owners(names, leftovers.RUN_DIR) == {100, 200, 300, OWN}
    orphans = leftovers.stale(names, {200}, OWN, leftovers.RUN_DIR)
    assert orphans == ["pylvs-100-bird", "pylvs-300-bird"]
    assert leftovers.stale(orphans, {200}, OWN, leftovers.RUN_DIR,
                           in_use={"pylvs-300-bird"}) == ["pylvs-100-bird"]


def test_a_configured_vip_found_at_start_is_held_while_wanted():
    keep, drop = leftovers.vips_at_start(["10.0.0.100", "10.0.0.101"], ["10.0.0.100"],
                                         wanted={"10.0.0.100", "10.0.0.101"})
    assert (keep, drop) == (["10.0.0.100"], [])


def test_a_backup_removes_the_configured_vips_it_finds_as_keepalived_starts():
    """keepalived: "(VI_1) removing VIPs." before "Entering BACKUP STATE (init)"."""
    keep, drop = leftovers.vips_at_start(["10.0.0.100", "2001:db8::100"],
                                         ["10.0.0.100", "2001:db8::100"], wanted=set())
    assert (keep, drop) == ([], ["10.0.0.100", "2001:db8::100"])


def test_an_address_the_config_does_not_name_is_never_taken():
    keep, drop = leftovers.vips_at_start(["10.0.0.100"], ["10.0.0.1", "10.0.0.77"],
                                         wanted={"10.0.0.100"})
    assert (keep, drop) == ([], [])


def test_a_vip_held_already_is_not_taken_twice():
    keep, drop = leftovers.vips_at_start(["10.0.0.100", "10.0.0.100"], ["10.0.0.100"],
                                         wanted={"10.0.0.100"}, held=["10.0.0.100"])
    assert (keep, drop) == ([], [])
