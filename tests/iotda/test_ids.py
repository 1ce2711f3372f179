"""Resource ids: one source for every IoTDA resource of a member, never handed out twice (not
across types, not after a delete, a restart, a reset or a snapshot restored)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from huaweicloudsdkiotda.v5 import (
    AddCertificateRequest,
    CreateCertificateDTO,
    CreateServerCertificateDTO,
    CreateServerCertificateRequest,
    DeleteCertificateRequest,
    DeleteServerCertificateRequest,
    ListCertificatesRequest,
    ListServerCertificateRequest,
)

from emulators import pki
from emulators.iotda.models.common import MARKER_PATTERN
from emulators.testing import RunningFarm, single_member_scenario

from .clients import CA, OPTIONS, ClientFactory, server_identity

NAME = "iotda-ids"


def make_server_certificate(client: Any) -> str:
    cert, key = server_identity()
    body = CreateServerCertificateDTO(certificate_pem=pki.cert_pem(cert),
                                      private_key=pki.key_pem(key))
    reply = client.create_server_certificate(CreateServerCertificateRequest(body=body))
    return str(reply.server_certificate_id)


def make_device_ca(client: Any) -> str:
    reply = client.add_certificate(AddCertificateRequest(
        body=CreateCertificateDTO(content=CA("Id test CA").pem)))
    return str(reply.certificate_id)


def make_some(client: Any, each: int = 3) -> list[str]:
    """``each`` of both kinds, interleaved, all in the same (frozen) second."""
    made = []
    for _ in range(each):
        made += [make_server_certificate(client), make_device_ca(client)]
    return made


def delete_all(client: Any, ids: list[str]) -> None:
    """Free the quota; the ids stay used."""
    for listed in client.list_server_certificate(
            ListServerCertificateRequest(limit=50)).server_certificates:
        client.delete_server_certificate(DeleteServerCertificateRequest(
            server_certificate_id=listed.server_certificate_id))
    for listed in client.list_certificates(ListCertificatesRequest(limit=50)).certificates:
        client.delete_certificate(DeleteCertificateRequest(certificate_id=listed.certificate_id))


@pytest.fixture
def start(farm_factory: Callable[..., RunningFarm], make_client: ClientFactory, tmp_path: Path
          ) -> Callable[[float], tuple[RunningFarm, Any]]:
    """A farm on ``tmp_path`` with its clock frozen at ``at``, and an SDK client for it: the
    same frozen second before and after a restart is when colliding ids would show."""
    scenario = single_member_scenario("iotda", NAME, server_certificate_quota=20, **OPTIONS)

    def run(at: float) -> tuple[RunningFarm, Any]:
        farm = farm_factory(scenario, tmp_path, control=False)
        farm.freeze_clock(at)
        return farm, make_client(endpoint=farm[NAME].url)

    return run


def test_ids_are_unique_across_resource_types(start: Callable[..., Any]) -> None:
    _, client = start(time.time())
    ids = make_some(client)
    assert len(set(ids)) == len(ids), ids
    assert all(MARKER_PATTERN.fullmatch(i) for i in ids)
    assert ids == sorted(ids)  # one sequence, rising: each list still runs newest first


@pytest.mark.parametrize("after", ["restart", "reset", "snapshot-restored"])
def test_ids_are_never_handed_out_twice(start: Callable[..., Any], after: str) -> None:
    at = time.time()
    farm, client = start(at)
    if after == "snapshot-restored":
        farm.snapshot("empty")
    used = make_some(client)
    delete_all(client, used)
    used += make_some(client, 1)
    if after == "restart":
        farm.stop()
        farm, client = start(at)  # the same second again: the saved sequence goes on
    elif after == "reset":
        farm.reset()
    else:
        farm.restore("empty")
    kept = farm[NAME].state()["server_certificates"]["records"]
    assert len(kept) == (1 if after == "restart" else 0)  # a restart keeps, the others wipe
    later = make_some(client)
    assert not set(later) & set(used), (used, later)
    assert len(set(later)) == len(later)
