"""The audit log's gRPC face, served by every service."""

from kanban.audit.v1 import audit_pb2 as pb
from kanban.audit.v1 import audit_pb2_grpc

from services.core import audit
from services.core.db import Database
from services.core.paging import decode_position, page_of
from services.core.protobuf import read_timestamp, timestamp
from services.core.validation import page_size, require_id, require_text


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):  # type: ignore[misc]
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: object
    ) -> pb.ListAuditRecordsResponse:
        require_id("site_id", request.site_id)
        require_text("actor", request.actor, required=False)
        require_text("rpc", request.rpc, required=False)
        limit = page_size(request.page_size)
        after = decode_position(request.page_token)
        async with self._db.pool.acquire() as conn:
            found = await audit.records(
                conn,
                request.site_id,
                request.actor,
                request.rpc,
                read_timestamp("since", request),
                read_timestamp("until", request),
                after,
                limit + 1,
            )
        page = page_of(found, limit, lambda r: [str(r.id)])
        return pb.ListAuditRecordsResponse(
            records=[
                pb.AuditRecord(
                    id=r.id,
                    site_id=r.site_id,
                    actor=r.actor,
                    roles=r.roles,
                    station_id=r.station_id,
                    rpc=r.rpc,
                    request_id=r.request_id,
                    target=r.target,
                    before=r.before,
                    after=r.after,
                    result=r.result,
                    at=timestamp(r.at),
                )
                for r in page.rows
            ],
            next_page_token=page.next_page_token,
        )
