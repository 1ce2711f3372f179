"""The partition of a scenario over shards: a pure function of the scenario and N."""

from __future__ import annotations

import pytest

from emulators import scenario
from emulators.shards.partition import shard_of, slices

SCENARIO = {
    "name": "parted",
    "servers": [{"name": "ftp", "kind": "ftp", "users": [{"name": "u", "password": "p"}]}],
    "emulators": [
        {"name": "cam", "kind": "instar-camera", "count": 5, "fleet": "ports",
         "upload_server": "ftp"},
        {"name": "acti", "kind": "acti-camera"},
        {"name": "iotda", "kind": "iotda"},
        {"name": "dev", "kind": "iotda-device", "cloud": "iotda", "count": 3,
         "product_id": "p", "secret": "s12345678"},
    ]}


def test_emulators_are_dealt_out_from_shard_1_and_servers_stay_on_shard_0() -> None:
    """The k-th emulator (fleets member by member, coupled ones not counted) on shard
    (k + 1) % N: the first device is never beside the servers."""
    loaded = scenario.load(SCENARIO)
    assert slices(loaded, 2) == [
        ["ftp", "cam-2", "cam-4", "acti", "iotda", "dev-1", "dev-2", "dev-3"],
        ["cam-1", "cam-3", "cam-5"]]
    assert slices(loaded, 3) == [
        ["ftp", "cam-3", "acti", "iotda", "dev-1", "dev-2", "dev-3"],
        ["cam-1", "cam-4"], ["cam-2", "cam-5"]]
    one_camera = scenario.load({"name": "small", "servers": SCENARIO["servers"],
                                "emulators": [{"name": "cam", "kind": "instar-camera",
                                               "upload_server": "ftp"}]})
    assert slices(one_camera, 4) == [["ftp"], ["cam"], [], []]


def test_one_shard_is_the_whole_farm_and_the_rule_is_pure() -> None:
    loaded = scenario.load(SCENARIO)
    assert slices(loaded, 1) == [[m.name for m in loaded.members]]
    assert shard_of(scenario.load(SCENARIO), 4) == shard_of(loaded, 4)
    assert sorted(n for part in slices(loaded, 8) for n in part) == sorted(
        m.name for m in loaded.members)
    with pytest.raises(ValueError, match="at least one shard"):
        shard_of(loaded, 0)


def test_members_coupled_in_process_stay_together() -> None:
    """iotda-device calls its cloud's code: the fleet and its cloud are never dealt out."""
    owner = shard_of(scenario.load(SCENARIO), 4)
    assert {owner[f"dev-{i}"] for i in (1, 2, 3)} == {owner["iotda"]} == {0}


def test_a_shard_stamps_its_own_slice_and_what_it_looks_up() -> None:
    """A shard loads the scenario with the rule's ``keep``: its members are stamped the same
    as in the whole scenario, plus the servers and coupled members it may look up, nothing
    else (a 100,000-camera scenario took 7.4 s to stamp whole, in every shard)."""
    from emulators.shards.partition import Rule

    whole = scenario.load(SCENARIO)
    rule = Rule.from_plan(Rule.of(whole, 3).plan())
    for shard, names in enumerate(slices(whole, 3)):
        part = scenario.load(SCENARIO, keep=rule.keep(shard))
        assert slices(part, 3, rule)[shard] == names
        looked_up = {"ftp", "iotda"}
        assert {m.name for m in part.members} == set(names) | looked_up
        specs = {m.name: m for m in whole.members}
        assert all(m == specs[m.name] for m in part.members)


@pytest.mark.parametrize("source", [
    SCENARIO,
    # a coupled kind naming a fleet member past its first: the whole is stamped instead
    {**SCENARIO, "emulators": [*SCENARIO["emulators"][:2],
                               {"name": "iotda", "kind": "iotda", "count": 2},
                               {**SCENARIO["emulators"][3], "cloud": "iotda-2"}]},
    "default", "iotda"])
def test_a_pod_finds_the_rule_without_stamping_the_fleets(source: object) -> None:
    """`emulators shard` (a pod) takes the rule from a scenario stamped partly: every server
    and singleton, each fleet's first member; the rule is the one of the whole scenario."""
    from emulators.shards.partition import Rule

    whole = scenario.load(source)  # type: ignore[arg-type]
    for count in (1, 2, 3, 8):
        rule, partial = Rule.of_source(source, count)
        assert rule.plan() == Rule.of(whole, count).plan()
        assert shard_of(whole, count, rule) == shard_of(whole, count)
    if source is SCENARIO:  # 5 cameras and 3 devices: one of each fleet stamped
        assert [m.name for m in partial.members] == ["ftp", "cam-1", "acti", "iotda", "dev-1"]


def test_a_pod_of_a_100000_camera_scenario_stamps_one_camera_a_fleet() -> None:
    from emulators.shards.partition import Rule

    big = {"name": "big", "emulators": [
        {"name": f"cam{k}", "kind": "instar-camera", "count": 50_000, "fleet": "addresses",
         "host": f"127.{k}.0.1", "port": 8080} for k in (1, 2)]}
    rule, partial = Rule.of_source(big, 6)
    assert [m.name for m in partial.members] == ["cam1-00001", "cam2-00001"]
    assert rule.plan() == {"count": 6, "tied_groups": [], "tied_names": [],
                           "first": {"cam1": 0, "cam2": 50_000}}
