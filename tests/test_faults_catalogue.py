"""GET /v1/faults/types is docs/FAULTS.md's table as data: the same faults, the same
parameters, each accepted by the rule model (the dashboard's form is built from it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from emulators.core.faults import CATALOGUE, FaultSpec, FaultType

ROOT = Path(__file__).resolve().parents[1]


def documented() -> dict[str, set[str]]:
    """fault -> the parameters docs/FAULTS.md's table gives it."""
    table: dict[str, set[str]] = {}
    for line in (ROOT / "docs" / "FAULTS.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        params = set(re.findall(r"`([a-z_]+)`", cells[3]))
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            table[name] = params
    return table


def test_the_catalogue_names_every_fault_and_the_documented_parameters() -> None:
    assert set(CATALOGUE) == set(get_args(FaultType))
    docs = documented()
    assert set(docs) == set(CATALOGUE)
    for fault, spec in CATALOGUE.items():
        assert set(spec["required"]) | set(spec["optional"]) == docs[fault], fault


@pytest.mark.parametrize("fault", sorted(CATALOGUE))
def test_required_parameters_are_what_a_rule_needs(fault: str) -> None:
    """A rule of each fault is refused without its required parameters, and taken with them
    (values of the right type for each parameter)."""
    values = {"latency_ms": 10, "status": 503, "message": "x", "seconds": 1.0,
              "bytes_per_second": 100, "after_bytes": 10, "connack": 3}
    required = CATALOGUE[fault]["required"]
    if required:
        with pytest.raises(ValueError, match=f"needs {required[0]}"):
            FaultSpec.model_validate({"fault": fault})
    spec = FaultSpec.model_validate({"fault": fault, **{k: values[k] for k in required}})
    assert spec.fault == fault
    every = {k: values[k] for k in (*required, *CATALOGUE[fault]["optional"])}
    assert FaultSpec.model_validate({"fault": fault, **every}).fault == fault
