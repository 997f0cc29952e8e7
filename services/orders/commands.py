"""What callers ask the orders service to do; each checks its own fields."""

from dataclasses import dataclass
from datetime import datetime

from services.core.errors import InvalidArgument
from services.core.validation import (
    optional_id,
    page_size,
    require_id,
    require_positive,
    require_request_id,
    require_text,
)
from services.orders.domain import MAX_ERP_ORDER_ID, MAX_ORDER_QUANTITY, MAX_PRIORITY, OrderState

MAX_CONTAINER_QUANTITY = 1_000_000


def require_erp_order_id(value: str) -> str:
    require_id("erp_order_id", value)
    if len(value) > MAX_ERP_ORDER_ID:
        raise InvalidArgument(
            "erp_order_id",
            f"must be at most {MAX_ERP_ORDER_ID} characters, so that instruction ids "
            "<erp_order_id>-0001 fit in 64",
        )
    return value


def require_quantity(value: int) -> int:
    return require_positive("quantity", value, maximum=MAX_ORDER_QUANTITY)


def _require_time(field: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise InvalidArgument(field, "must carry a time zone")


@dataclass(frozen=True)
class DefineProduct:
    request_id: str
    site_id: str
    item_id: str
    pacemaker_station_id: str
    container_quantity: int
    finished_goods_location_id: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        for field in ("site_id", "item_id", "pacemaker_station_id", "finished_goods_location_id"):
            require_id(field, getattr(self, field))
        require_positive(
            "container_quantity", self.container_quantity, maximum=MAX_CONTAINER_QUANTITY
        )


@dataclass(frozen=True)
class CreateOrder:
    request_id: str
    site_id: str
    erp_order_id: str
    item_id: str
    quantity: int
    # Required; None only stands for "the caller sent none", refused here.
    due_time: datetime | None
    priority: int

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_erp_order_id(self.erp_order_id)
        require_id("item_id", self.item_id)
        require_quantity(self.quantity)
        if self.due_time is None:
            raise InvalidArgument("due_time", "is required")
        # Past due dates are fine: ERPs send late orders.
        _require_time("due_time", self.due_time)
        if not 0 <= self.priority <= MAX_PRIORITY:
            raise InvalidArgument("priority", f"must be between 0 and {MAX_PRIORITY}")

    @property
    def due(self) -> datetime:
        assert self.due_time is not None  # checked on construction
        return self.due_time


@dataclass(frozen=True)
class ReleaseOrder:
    request_id: str
    site_id: str
    erp_order_id: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_erp_order_id(self.erp_order_id)


@dataclass(frozen=True)
class ChangeOrderQuantity:
    request_id: str
    site_id: str
    erp_order_id: str
    quantity: int

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_erp_order_id(self.erp_order_id)
        require_quantity(self.quantity)


@dataclass(frozen=True)
class CancelOrder:
    request_id: str
    site_id: str
    erp_order_id: str
    reason: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_erp_order_id(self.erp_order_id)
        require_text("reason", self.reason, required=False)


@dataclass(frozen=True)
class ListOrders:
    site_id: str
    # None: every state.
    state: OrderState | None
    # Empty: every item.
    item_id: str
    # Due at or after due_after, and before due_before, when set.
    due_after: datetime | None
    due_before: datetime | None
    page_size: int
    page_token: str

    def __post_init__(self) -> None:
        require_id("site_id", self.site_id)
        optional_id("item_id", self.item_id)
        _require_time("due_after", self.due_after)
        _require_time("due_before", self.due_before)
        after, before = self.due_after, self.due_before
        if after is not None and before is not None and before <= after:
            raise InvalidArgument("due_before", "must be later than due_after")
        page_size(self.page_size)

    @property
    def limit(self) -> int:
        return page_size(self.page_size)
