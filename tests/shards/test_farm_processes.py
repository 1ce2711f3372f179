"""The processes of `emulators run --shards N`, as another local user sees them in `ps`: no
process's command line holds the shards' control token, and no child of the farm is left a
zombie once the farm is ready (the key-making fork of `emulators run` included)."""

from __future__ import annotations

from pathlib import Path

from emulators.testing import ShardedFarm


def children(pid: int) -> dict[int, tuple[str, bytes]]:
    """Every live process whose parent is ``pid``: its state letter and command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        state, ppid = stat[stat.rindex(")") + 2:].split()[:2]
        if int(ppid) == pid:
            found[int(entry.name)] = (state, cmdline)
    return found


def shard_token(farm: ShardedFarm) -> bytes:
    """The token the shards' control planes demand, as a shard reads it: from its own
    environment (readable by its user alone, unlike a command line)."""
    [pid, *_] = [s["pid"] for s in farm.api("GET", "/v1/farm")["shards"]]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    given = [v.partition(b"=")[2] for v in environ if v.startswith(b"EMULATORS_SHARD_TOKEN=")]
    assert given, "the shard was not given its token in its environment"
    assert len(given[0]) >= 16
    return given[0]


def test_the_shards_token_is_on_no_command_line(farms: tuple[ShardedFarm, ShardedFarm]) -> None:
    _, four = farms
    token = shard_token(four)
    shards = {s["pid"] for s in four.api("GET", "/v1/farm")["shards"]}
    found = children(four.process.pid)
    assert shards <= set(found)
    for pid, (_, cmdline) in {four.process.pid: ("", Path(
            f"/proc/{four.process.pid}/cmdline").read_bytes()), **found}.items():
        assert token not in cmdline, pid


def test_no_child_of_the_farm_is_a_zombie(farms: tuple[ShardedFarm, ShardedFarm]) -> None:
    _, four = farms  # ready: its ready file was written (and its key-making fork long done)
    found = children(four.process.pid)
    assert {s["pid"] for s in four.api("GET", "/v1/farm")["shards"]} <= set(found)
    zombies = [pid for pid, (state, _) in found.items() if state == "Z"]
    assert zombies == [], f"zombie children of {four.process.pid}: {zombies}"

