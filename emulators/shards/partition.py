"""Which shard runs which member: a pure function of the scenario and the shard count.

The rule (README, "Shards"):

- Emulators are dealt out in scenario order, fleets member by member: the ``k``-th (from 0)
  runs on shard ``(k + 1) % N``. Dealing starts at shard 1 so that shard 0, which carries the
  servers, is the last to get a device; the smallest scenario (one camera, one server) already
  runs its camera on another shard than its server when N > 1, as a big fleet does.
- Everything else runs on shard 0: every server, and every member coupled in-process to
  another (a kind with ``member_refs``, such as ``iotda-device``, and the members such a kind
  names), fleets of those included: they call each other's code, not each other's sockets.
  Coupled members are not counted in ``k``.

Members on other shards reach shard 0's servers over their sockets, as they reach them in one
process; a member that looks up a server it does not run gets an unstarted copy of it that
knows the server's address (``worker``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ..core.member import MemberSpec
from ..kinds import resolve
from ..scenario import Scenario


class Rule:
    """The partition, from what is known before any member is stamped: which scenario entries
    are coupled in-process (a kind with ``member_refs``) and which members such kinds name.
    A shard stamps only its own members with it (``keep``); ``shard_of`` applies the same."""

    def __init__(self, count: int, tied_groups: set[str], tied_names: set[str],
                 first: dict[str, int]) -> None:
        if count < 1:
            raise ValueError("a farm has at least one shard")
        self.count = count
        self.tied_groups = tied_groups
        self.tied_names = tied_names
        self.first = first  # entry name -> the k of its first member (dealt entries only)

    @classmethod
    def of(cls, scenario: Scenario, count: int) -> Rule:
        roles = {spec.group: spec.role for spec in scenario.members}
        counts = Counter(spec.group for spec in scenario.members)  # in scenario order
        return cls._from(scenario.members, {g: (roles[g], n) for g, n in counts.items()}, count)

    @classmethod
    def of_source(cls, source: str | Any, count: int) -> tuple[Rule, Scenario]:
        """The rule for the scenario at ``source`` without stamping its fleets: a shard started
        on its own (a Kubernetes pod) needs the rule, not the million members of the whole
        (the front, which checks the whole, has those). Stamps every server and singleton
        and each fleet's first member (a fleet's members share their entry's kind and
        references), and counts the rest; returns the rule and that partial scenario. Where
        a coupled kind names a fleet member past the first, the partial one does not
        validate and the whole scenario is stamped instead (same rule, slower)."""
        from ..scenario import ScenarioInvalid, load

        sizes: dict[str, tuple[str, int]] = {}

        def first_of_each(group: str, role: str, size: int, index: int, name: str) -> bool:
            sizes.setdefault(group, (role, size))
            return role == "server" or index == 0

        try:
            partial = load(source, keep=first_of_each)
        except ScenarioInvalid:
            whole = load(source)
            return cls.of(whole, count), whole
        return cls._from(partial.members, sizes, count), partial

    @classmethod
    def _from(cls, specs: Sequence[MemberSpec], sizes: dict[str, tuple[str, int]],
              count: int) -> Rule:
        """The rule from ``specs`` (at least one member of every entry: a fleet's members
        share kind and references) and ``sizes`` (entry -> role and member count, in scenario
        order)."""
        refs_of = {kind: resolve(kind).member_refs for kind in {m.kind for m in specs}}
        groups: set[str] = set()
        names: set[str] = set()
        for spec in specs:
            refs = refs_of[spec.kind]
            if refs:
                groups.add(spec.group)
                for field_name in refs:
                    target = getattr(spec.options, field_name, None)
                    if target:
                        names.add(str(target))
        # A fleet with one member named by a coupled kind stays whole on shard 0.
        kept_whole = groups | {spec.group for spec in specs if spec.name in names}
        first: dict[str, int] = {}
        dealt = 0
        for group, (role, size) in sizes.items():
            if role == "emulator" and group not in kept_whole:
                first[group] = dealt
                dealt += size
        return cls(count, groups, names, first)

    def plan(self) -> dict[str, Any]:
        """What a shard started elsewhere needs to apply the same rule (JSON)."""
        return {"count": self.count, "tied_groups": sorted(self.tied_groups),
                "tied_names": sorted(self.tied_names), "first": self.first}

    @classmethod
    def from_plan(cls, plan: dict[str, Any]) -> Rule:
        return cls(plan["count"], set(plan["tied_groups"]), set(plan["tied_names"]),
                   {str(k): int(v) for k, v in plan["first"].items()})

    def owner(self, role: str, group: str, index: int) -> int:
        first = self.first.get(group) if role == "emulator" else None
        return 0 if first is None else (first + index + 1) % self.count

    def keep(self, shard: int) -> Any:
        """scenario.load's ``keep`` for ``shard``: its own members, and every server and
        coupled member (few: what its members may look up)."""
        def keeps(group: str, role: str, count: int, index: int, name: str) -> bool:
            return (role == "server" or name in self.tied_names
                    or self.owner(role, group, index) == shard)
        return keeps


def shard_of(scenario: Scenario, count: int, rule: Rule | None = None) -> dict[str, int]:
    """member name -> shard index, for ``count`` shards."""
    rule = rule or Rule.of(scenario, count)
    return {spec.name: rule.owner(spec.role, spec.group, spec.index)
            for spec in scenario.members}


def slices(scenario: Scenario, count: int, rule: Rule | None = None) -> list[list[str]]:
    """The member names of each shard, in the scenario's start order."""
    owner = shard_of(scenario, count, rule)
    out: list[list[str]] = [[] for _ in range(count)]
    for spec in scenario.members:
        out[owner[spec.name]].append(spec.name)
    return out
