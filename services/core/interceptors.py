"""One interceptor gives every RPC the same metrics, logs and error statuses."""

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import structlog
from google.protobuf.message import DecodeError

from services.core import metrics, rpc_errors
from services.core.errors import InvalidArgument, KanbanError

log = structlog.get_logger()

# The database being away is the server's trouble, and worth a retry: unreachable,
# cut off, shutting down, or still recovering after a restart.
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    OSError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)


class ObservabilityInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        service, method = details.method.lstrip("/").rsplit("/", 1)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, service, method),
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _server_stream(handler.unary_stream, service, method),
                request_deserializer=_decoding(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler  # streaming requests (reflection) pass through untouched


class _Undecodable:
    """Request bytes that are not the message the method takes."""

    def __init__(self, error: DecodeError) -> None:
        self.error = error


def _decoding(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """The method's deserializer, except that bytes it cannot parse reach the handler,
    to be refused as INVALID_ARGUMENT: gRPC itself would answer UNKNOWN."""
    if deserialize is None:
        return None

    def parse(raw: bytes) -> Any:
        try:
            return deserialize(raw)
        except DecodeError as error:
            return _Undecodable(error)

    return parse


def _require_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        # No field is at fault: the request as a whole is.
        raise InvalidArgument("", f"not a valid request: {request.error}")


class _Call:
    """Book-keeping for one RPC: context for logs, metrics when it ends."""

    def __init__(self, grpc_type: str, service: str, method: str, request: Any, peer: str):
        self.labels = (grpc_type, service, method)
        self.started = time.perf_counter()
        self.code = grpc.StatusCode.OK
        metrics.RPC_STARTED.labels(*self.labels).inc()
        structlog.contextvars.bind_contextvars(
            rpc=f"{service}/{method}", peer=peer, request_id=getattr(request, "request_id", "")
        )

    async def fail(self, error: BaseException, context: grpc.aio.ServicerContext) -> None:
        if isinstance(error, KanbanError):
            status = rpc_errors.to_status(error)
            self.code = status.code
            log.info("rpc_refused", code=status.code.name, reason=str(error))
            await context.abort_with_status(status)
        if isinstance(error, _UNAVAILABLE):
            self.code = grpc.StatusCode.UNAVAILABLE
            log.warning("rpc_unavailable", error=str(error))
            await context.abort(self.code, "the database is unavailable; retry")
        self.code = grpc.StatusCode.INTERNAL
        log.exception("rpc_failed")
        await context.abort(self.code, "internal error; the server log has the details")

    def finish(self, context: grpc.aio.ServicerContext) -> None:
        code = context.code() or self.code
        elapsed = time.perf_counter() - self.started
        metrics.RPC_HANDLED.labels(*self.labels, code.name).inc()
        metrics.RPC_SECONDS.labels(*self.labels).observe(elapsed)
        log.debug("rpc_done", code=code.name, ms=round(elapsed * 1000, 3))
        structlog.contextvars.unbind_contextvars("rpc", "peer", "request_id")


def _unary(
    inner: Callable[..., Awaitable[Any]], service: str, method: str, grpc_type: str = "unary"
) -> Any:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(grpc_type, service, method, request, context.peer())
        try:
            _require_decoded(request)
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await call.fail(error, context)
        finally:
            call.finish(context)

    return handle


def _server_stream(inner: Callable[..., Any], service: str, method: str) -> Any:
    if not inspect.isasyncgenfunction(inner):
        # Writes through context.write (as the health servicer's Watch does).
        return _unary(inner, service, method, grpc_type="server_stream")

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call("server_stream", service, method, request, context.peer())
        try:
            _require_decoded(request)
            async for response in inner(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await call.fail(error, context)
        finally:
            call.finish(context)

    return handle
