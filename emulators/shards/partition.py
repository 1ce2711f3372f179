"""Which shard runs which member: a pure function of the scenario and the shard count.

The rule (README, "Shards"):

- A fleet of emulators (an entry with ``count`` > 1) is dealt out: its member number ``i``
  (from 0) runs on shard ``i % N``.
- Everything else runs on shard 0: every server, every single emulator, and every member
  coupled in-process to another (a kind with ``member_refs``, such as ``iotda-device``, and
  the members such a kind names), fleets of those included: they call each other's code,
  not each other's sockets.

Members on other shards reach shard 0's servers over their sockets, as they reach them in one
process; a member that looks up a server it does not run gets an unstarted copy of it that
knows the server's address (``worker``).
"""

from __future__ import annotations

from ..kinds import resolve
from ..scenario import Scenario


def coupled(scenario: Scenario) -> set[str]:
    """Names of the members that must share shard 0: kinds with member_refs and what they
    name."""
    names: set[str] = set()
    refs_of = {kind: resolve(kind).member_refs for kind in {m.kind for m in scenario.members}}
    for spec in scenario.members:
        refs = refs_of[spec.kind]
        if refs:
            names.add(spec.name)
            for field_name in refs:
                target = getattr(spec.options, field_name, None)
                if target:
                    names.add(str(target))
    return names


def shard_of(scenario: Scenario, count: int) -> dict[str, int]:
    """member name -> shard index, for ``count`` shards."""
    if count < 1:
        raise ValueError("a farm has at least one shard")
    tied = coupled(scenario)
    fleets = {name for name in scenario.fleets}
    owner: dict[str, int] = {}
    for spec in scenario.members:
        dealt = (spec.role == "emulator" and spec.group in fleets and spec.name not in tied
                 and spec.group not in tied)
        owner[spec.name] = spec.index % count if dealt else 0
    return owner


def slices(scenario: Scenario, count: int) -> list[list[str]]:
    """The member names of each shard, in the scenario's start order."""
    owner = shard_of(scenario, count)
    out: list[list[str]] = [[] for _ in range(count)]
    for spec in scenario.members:
        out[owner[spec.name]].append(spec.name)
    return out
