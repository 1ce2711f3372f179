"""A farm of N worker processes (shards) behind one control plane: ``emulators run --shards N``.

``partition`` says which shard runs which member (a pure function of the scenario and N);
``worker`` is one shard (today's farm over its slice, with a private control plane);
``coordinator`` starts and supervises the shards and serves the farm's one control plane,
with the journal merged, one clock, and every other route fanned out or forwarded.
"""
