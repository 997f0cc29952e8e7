"""What callers ask the stock service to do; each checks its own fields."""

from dataclasses import dataclass

from services.core.errors import InvalidArgument
from services.core.validation import (
    optional_id,
    require_id,
    require_positive,
    require_request_id,
    require_text,
)
from services.stock.domain import LocationKind, Outcome, ReceiptSource

MAX_QUANTITY = 1_000_000_000


def _common(request_id: str, site_id: str) -> None:
    require_request_id(request_id)
    require_id("site_id", site_id)


def _stock_line(
    location_id: str, item_id: str, lot_id: str, quantity: int, location_field: str = "location_id"
) -> None:
    require_id(location_field, location_id)
    require_id("item_id", item_id)
    require_id("lot_id", lot_id)
    require_positive("quantity", quantity, maximum=MAX_QUANTITY)


@dataclass(frozen=True)
class CreateWarehouse:
    request_id: str
    site_id: str
    warehouse_id: str
    name: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("warehouse_id", self.warehouse_id)
        require_text("name", self.name)


@dataclass(frozen=True)
class CreateLocation:
    request_id: str
    site_id: str
    location_id: str
    warehouse_id: str
    kind: LocationKind

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("location_id", self.location_id)
        optional_id("warehouse_id", self.warehouse_id)
        in_warehouse = (LocationKind.WAREHOUSE_BIN, LocationKind.QUARANTINE)
        if self.kind in in_warehouse and not self.warehouse_id:
            raise InvalidArgument("warehouse_id", f"is required for a {self.kind.value} location")
        if self.kind is LocationKind.SUPERMARKET:
            raise InvalidArgument(
                "kind", "supermarkets are created by the stations service with their loop"
            )


@dataclass(frozen=True)
class CreateItem:
    request_id: str
    site_id: str
    item_id: str
    unit_of_measure: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("item_id", self.item_id)
        require_text("unit_of_measure", self.unit_of_measure)


@dataclass(frozen=True)
class ReceiveStock:
    request_id: str
    site_id: str
    actor: str
    location_id: str
    item_id: str
    lot_id: str
    quantity: int
    source: ReceiptSource
    origin_id: str
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        _stock_line(self.location_id, self.item_id, self.lot_id, self.quantity)
        field = "supplier" if self.source is ReceiptSource.SUPPLIER else "producing station"
        if not self.origin_id:
            raise InvalidArgument("origin_id", f"is required: the {field}")
        require_id("origin_id", self.origin_id)
        require_text("reason", self.reason, required=False)


@dataclass(frozen=True)
class IssueStock:
    request_id: str
    site_id: str
    actor: str
    location_id: str
    item_id: str
    lot_id: str
    quantity: int
    # The station (its consumption, for genealogy) or the order the stock goes to.
    to_station: bool
    destination_id: str
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        _stock_line(self.location_id, self.item_id, self.lot_id, self.quantity)
        require_id("destination_id", self.destination_id)
        require_text("reason", self.reason, required=False)


@dataclass(frozen=True)
class TransferStock:
    request_id: str
    site_id: str
    actor: str
    from_location_id: str
    to_location_id: str
    item_id: str
    lot_id: str
    quantity: int
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("from_location_id", self.from_location_id)
        _stock_line(self.to_location_id, self.item_id, self.lot_id, self.quantity, "to_location_id")
        if self.from_location_id == self.to_location_id:
            raise InvalidArgument("to_location_id", "must differ from from_location_id")
        require_text("reason", self.reason, required=False)


@dataclass(frozen=True)
class ReturnToSupplier:
    request_id: str
    site_id: str
    actor: str
    location_id: str
    item_id: str
    lot_id: str
    quantity: int
    supplier_id: str
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        _stock_line(self.location_id, self.item_id, self.lot_id, self.quantity)
        require_id("supplier_id", self.supplier_id)
        require_text("reason", self.reason)


@dataclass(frozen=True)
class ScrapStock:
    request_id: str
    site_id: str
    actor: str
    location_id: str
    item_id: str
    lot_id: str
    quantity: int
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        _stock_line(self.location_id, self.item_id, self.lot_id, self.quantity)
        require_text("reason", self.reason)


@dataclass(frozen=True)
class AdjustStock:
    request_id: str
    site_id: str
    actor: str
    location_id: str
    item_id: str
    lot_id: str
    quantity_delta: int
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("location_id", self.location_id)
        require_id("item_id", self.item_id)
        require_id("lot_id", self.lot_id)
        if self.quantity_delta == 0:
            raise InvalidArgument(
                "quantity_delta", "must not be zero: units found (+) or missing (-)"
            )
        if abs(self.quantity_delta) > MAX_QUANTITY:
            raise InvalidArgument("quantity_delta", f"must be at most {MAX_QUANTITY} either way")
        require_text("reason", self.reason)


@dataclass(frozen=True)
class QuarantineLot:
    request_id: str
    site_id: str
    actor: str
    lot_id: str
    reason: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("lot_id", self.lot_id)
        require_text("reason", self.reason)


@dataclass(frozen=True)
class ReleaseLot:
    request_id: str
    site_id: str
    actor: str
    lot_id: str
    comment: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("lot_id", self.lot_id)
        require_text("comment", self.comment, required=False)


@dataclass(frozen=True)
class CloseDisposition:
    request_id: str
    site_id: str
    actor: str
    disposition_id: str
    outcome: Outcome
    scrapped_quantity: int
    comment: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("disposition_id", self.disposition_id)
        if self.outcome is Outcome.RELEASE:
            raise InvalidArgument("outcome", "RELEASE is done with ReleaseLot")
        if self.scrapped_quantity and self.outcome is not Outcome.REWORK:
            raise InvalidArgument("scrapped_quantity", "applies to REWORK only")
        if not 0 <= self.scrapped_quantity <= MAX_QUANTITY:
            raise InvalidArgument("scrapped_quantity", f"must be between 0 and {MAX_QUANTITY}")
        require_text("comment", self.comment, required=False)


@dataclass(frozen=True)
class OpenCount:
    request_id: str
    site_id: str
    actor: str
    count_id: str
    location_id: str
    tolerance_percent: float

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("count_id", self.count_id)
        require_id("location_id", self.location_id)
        if not 0 <= self.tolerance_percent <= 100:  # also refuses NaN
            raise InvalidArgument("tolerance_percent", "must be between 0 and 100")


@dataclass(frozen=True)
class RecordCount:
    request_id: str
    site_id: str
    actor: str
    count_id: str
    item_id: str
    lot_id: str
    counted_quantity: int

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("count_id", self.count_id)
        require_id("item_id", self.item_id)
        require_id("lot_id", self.lot_id)
        if not 0 <= self.counted_quantity <= MAX_QUANTITY:
            raise InvalidArgument("counted_quantity", f"must be between 0 and {MAX_QUANTITY}")


@dataclass(frozen=True)
class ReconcileCount:
    request_id: str
    site_id: str
    actor: str
    count_id: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("count_id", self.count_id)


@dataclass(frozen=True)
class ApproveCount:
    request_id: str
    site_id: str
    actor: str
    count_id: str
    comment: str

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("count_id", self.count_id)
        require_text("comment", self.comment, required=False)


@dataclass(frozen=True)
class SetThreshold:
    request_id: str
    site_id: str
    item_id: str
    location_id: str
    safety_stock: int
    overstock: int

    def __post_init__(self) -> None:
        _common(self.request_id, self.site_id)
        require_id("item_id", self.item_id)
        optional_id("location_id", self.location_id)
        for field in ("safety_stock", "overstock"):
            if not 0 <= getattr(self, field) <= MAX_QUANTITY:
                raise InvalidArgument(field, f"must be between 0 and {MAX_QUANTITY}")
        if self.overstock and self.overstock <= self.safety_stock:
            raise InvalidArgument("overstock", "must be above safety_stock (or 0 for none)")
