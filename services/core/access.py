"""The interceptor that authenticates every call, checks its declared permission,
and records refused attempts at changes in the audit log."""

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
import structlog

from services.core import audit, auth, rpc_errors
from services.core.auth import Permission, Principal, TokenStore
from services.core.db import Database
from services.core.errors import KanbanError

log = structlog.get_logger()

# Deliberately plain: a caller without a valid token learns nothing more.
UNAUTHENTICATED = "a valid bearer token is required"
DENIED = "this token may not do that"
ACTOR_METADATA = "kanban-actor"


def _mutates(request: Any) -> bool:
    """Every mutating request carries a request_id; reads do not."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    return descriptor is not None and "request_id" in descriptor.fields_by_name


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        permissions: Mapping[str, Permission],
        tokens: TokenStore,
        db: Database,
        enabled: bool,
    ) -> None:
        self._permissions = permissions
        self._tokens = tokens
        self._db = db
        self._enabled = enabled

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        permission = self._permissions.get(method)
        if permission is not None and permission.public:
            return handler
        metadata = details.invocation_metadata or ()
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, permission, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, permission, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream:  # reflection: no request to look into
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method, permission, metadata),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _admit(
        self,
        method: str,
        permission: Permission | None,
        metadata: Any,
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> None:
        """Sets who is calling for the call; aborts it if it may not proceed."""
        auth.CURRENT_RPC.set(method)
        if not self._enabled:
            name = dict(metadata).get(ACTOR_METADATA) or "anonymous"
            auth.CURRENT.set(Principal(str(name), frozenset()))
            return
        token = auth.bearer(metadata)
        principal = await self._tokens.principal(token) if token else None
        auth.CURRENT.set(principal or Principal("unauthenticated", frozenset()))
        if principal is None:
            await self._refuse(request, context, grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
            return
        # An RPC nobody declared a permission for is refused: fail closed.
        if permission is None or not permission.allows(principal, request):
            await self._refuse(request, context, grpc.StatusCode.PERMISSION_DENIED, DENIED)

    async def _refuse(
        self, request: Any, context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
    ) -> None:
        log.info("access_refused", code=code.name, actor=auth.principal().name)
        await self._audit_refusal(request, code.name)
        await context.abort(code, message)

    async def _audit_refusal(self, request: Any, result: str) -> None:
        if not _mutates(request):
            return
        async with self._db.transaction() as conn:
            await audit.record(
                conn,
                getattr(request, "site_id", ""),
                getattr(request, "request_id", ""),
                audit.target_of(request),
                result,
            )

    async def _refused_change(self, request: Any, error: KanbanError) -> None:
        status = rpc_errors.to_status(error)
        reason = getattr(error, "reason", "") or getattr(error, "field", "")
        await self._audit_refusal(request, f"{status.code.name} {reason}".strip())

    def _unary(
        self,
        inner: Callable[..., Awaitable[Any]],
        method: str,
        permission: Permission | None,
        metadata: Any,
    ) -> Callable[..., Awaitable[Any]]:
        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(method, permission, metadata, request, context)
            try:
                return await inner(request, context)
            except KanbanError as error:
                await self._refused_change(request, error)
                raise

        return handle

    def _stream(
        self,
        inner: Callable[..., Any],
        method: str,
        permission: Permission | None,
        metadata: Any,
    ) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(inner):
            # Writes through context.write: admitted like a unary call.
            return self._unary(inner, method, permission, metadata)

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await self._admit(method, permission, metadata, request, context)
            async for response in inner(request, context):
                yield response

        return handle
