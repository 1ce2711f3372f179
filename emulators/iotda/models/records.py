"""One project-scoped record store, the shape both certificate stores share: records keyed by
their id, each owned by one project, a per-project quota, list pages newest first.

No HTTP here: the models take plain values and raise the typed errors of ``exceptions``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ..exceptions import CertificateNotFound, InvalidInput, QuotaExceeded
from .common import PATH_ID, IdSource, PageQuery, paginate


class Record(Protocol):
    @property
    def project_id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Record)


class ProjectRecords(Generic[R]):
    """Records of every project, by id. A record of another project is as unknown as a
    missing one: a project never learns another's ids."""

    def __init__(self, make: Callable[..., R], *, id_name: str, kind: str, quota: int,
                 ids: IdSource | None) -> None:
        self.make = make  # a record from its saved form
        self.id_name = id_name  # the id's field, in a record and in a request
        self.id_of: Callable[[R], str] = operator.attrgetter(id_name)
        self.kind = kind  # what the quota counts, for its detail
        self.quota = quota
        self.records: dict[str, R] = {}
        # The member's one sequence, shared by every resource that takes an id.
        self.ids = ids or IdSource()

    def load(self, data: dict[str, Any]) -> None:
        loaded = (self.make(**r) for r in data.get("records", []))
        self.records = {self.id_of(r): r for r in loaded}
        # "last_id" is where a document saved before the shared sequence kept it.
        self.ids.above(data.get("last_id"), *self.records)

    def dump(self) -> dict[str, Any]:
        return {"records": [r.to_dict() for r in self.records.values()]}

    def of(self, project_id: str) -> list[R]:
        return [r for r in self.records.values() if r.project_id == project_id]

    def make_room(self, project_id: str) -> None:
        """Raise unless ``project_id`` may have one more record."""
        if len(self.of(project_id)) >= self.quota:
            raise QuotaExceeded(f"project {project_id} has {self.quota} {self.kind}")

    def get(self, project_id: str, record_id: str) -> R:
        if not PATH_ID.fullmatch(record_id):
            raise InvalidInput(f"{self.id_name} {record_id!r}")
        record = self.records.get(record_id)
        if record is None or record.project_id != project_id:
            raise CertificateNotFound(record_id)
        return record

    def delete(self, project_id: str, record_id: str) -> None:
        del self.records[self.id_of(self.get(project_id, record_id))]

    def page(self, records: list[R], page: PageQuery) -> tuple[list[R], dict[str, Any]]:
        return paginate(records, [self.id_of(r) for r in records], page)
