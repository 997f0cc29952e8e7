"""The audit log's gRPC face, served by every service."""

from kanban.audit.v1 import audit_pb2 as pb
from kanban.audit.v1 import audit_pb2_grpc

from services.core import audit
from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.paging import decode_token, encode_token
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
        after = decode_token(request.page_token, 1)
        if after and not after[0].isdigit():
            raise InvalidArgument("page_token", "is not a token this service returned")
        async with self._db.pool.acquire() as conn:
            found = await audit.records(
                conn,
                request.site_id,
                request.actor,
                request.rpc,
                read_timestamp("since", request),
                read_timestamp("until", request),
                int(after[0]) if after else None,
                limit + 1,
            )
        more = len(found) > limit
        found = found[:limit]
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
                for r in found
            ],
            next_page_token=encode_token([str(found[-1].id)]) if more and found else "",
        )
