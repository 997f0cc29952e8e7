"""Our errors as gRPC statuses with `google.rpc` details a program can act on."""

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    KanbanError,
    NotFound,
)

DOMAIN = "kanban"


def _pack(*details: Message) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        message = any_pb2.Any()
        message.Pack(detail)
        packed.append(message)
    return packed


def to_status(error: KanbanError) -> grpc.Status:
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.description
        )
        code = code_pb2.INVALID_ARGUMENT
        details = _pack(error_details_pb2.BadRequest(field_violations=[violation]))
    elif isinstance(error, NotFound):
        code = code_pb2.NOT_FOUND
        details = _pack(
            error_details_pb2.ResourceInfo(resource_type=error.resource, resource_name=error.key),
            error_details_pb2.ErrorInfo(
                reason=f"{error.resource.upper()}_NOT_FOUND", domain=DOMAIN
            ),
        )
    elif isinstance(error, AlreadyExists):
        code = code_pb2.ALREADY_EXISTS
        details = _pack(
            error_details_pb2.ResourceInfo(resource_type=error.resource, resource_name=error.key),
            error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN),
        )
    elif isinstance(error, FailedPrecondition):
        code = code_pb2.FAILED_PRECONDITION
        details = _pack(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
        )
    else:
        raise TypeError(f"no status for {type(error).__name__}")
    return rpc_status.to_status(status_pb2.Status(code=code, message=str(error), details=details))
