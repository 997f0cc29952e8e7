"""What callers ask the stations service to do; each checks its own fields."""

from dataclasses import dataclass
from datetime import timedelta

from services.core.errors import InvalidArgument
from services.core.validation import (
    optional_id,
    require_id,
    require_positive,
    require_request_id,
    require_text,
)
from services.stations.analytics import Safety
from services.stations.domain import MAX_CARDS_PER_LOOP, CardState

MAX_CONTAINER_QUANTITY = 1_000_000
MAX_WINDOW = timedelta(days=366)


@dataclass(frozen=True)
class CreateSite:
    request_id: str
    site_id: str
    name: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_text("name", self.name)


@dataclass(frozen=True)
class CreateStation:
    request_id: str
    site_id: str
    station_id: str
    name: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        require_text("name", self.name)


@dataclass(frozen=True)
class CreateItem:
    request_id: str
    site_id: str
    item_id: str
    description: str
    unit_of_measure: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("item_id", self.item_id)
        require_text("description", self.description, required=False)
        require_text("unit_of_measure", self.unit_of_measure)


@dataclass(frozen=True)
class CreateLoop:
    request_id: str
    site_id: str
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    supermarket_location_id: str
    container_quantity: int
    card_count: int
    initial_card_state: CardState

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        for field in (
            "site_id",
            "loop_id",
            "item_id",
            "supplier_station_id",
            "consumer_station_id",
            "supermarket_location_id",
        ):
            require_id(field, getattr(self, field))
        if self.consumer_station_id == self.supplier_station_id:
            raise InvalidArgument("consumer_station_id", "must differ from supplier_station_id")
        require_positive(
            "container_quantity", self.container_quantity, maximum=MAX_CONTAINER_QUANTITY
        )
        require_positive("card_count", self.card_count, maximum=MAX_CARDS_PER_LOOP)
        if self.initial_card_state not in (CardState.FULL, CardState.EMPTY):
            raise InvalidArgument("initial_card_state", "must be FULL or EMPTY")


@dataclass(frozen=True)
class ScanCard:
    request_id: str
    site_id: str
    station_id: str
    card_code: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        require_id("card_code", self.card_code)


@dataclass(frozen=True)
class StartSignal:
    request_id: str
    site_id: str
    station_id: str
    # Empty: the station's oldest open signal.
    card_code: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        optional_id("card_code", self.card_code)


@dataclass(frozen=True)
class CompleteCard:
    request_id: str
    site_id: str
    station_id: str
    card_code: str
    lot_id: str
    quantity: int

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        require_id("card_code", self.card_code)
        require_id("lot_id", self.lot_id)
        # The upper bound is the loop's container quantity, a domain rule.
        require_positive("quantity", self.quantity, maximum=MAX_CONTAINER_QUANTITY * 1000)


@dataclass(frozen=True)
class StartInstruction:
    request_id: str
    site_id: str
    station_id: str
    # Empty: the most urgent open instruction.
    instruction_id: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        optional_id("instruction_id", self.instruction_id)


@dataclass(frozen=True)
class CompleteInstruction:
    request_id: str
    site_id: str
    station_id: str
    instruction_id: str
    lot_id: str
    quantity: int

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("station_id", self.station_id)
        require_id("instruction_id", self.instruction_id)
        require_id("lot_id", self.lot_id)
        # The upper bound is the instruction's quantity, a domain rule.
        require_positive("quantity", self.quantity, maximum=MAX_CONTAINER_QUANTITY * 1000)


@dataclass(frozen=True)
class ResizeLoop:
    request_id: str
    site_id: str
    loop_id: str
    card_count: int
    reason: str

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("loop_id", self.loop_id)
        require_positive("card_count", self.card_count, maximum=MAX_CARDS_PER_LOOP)
        require_text("reason", self.reason, required=False)


@dataclass(frozen=True)
class SetSizingPolicy:
    request_id: str
    site_id: str
    loop_id: str
    enabled: bool
    min_cards: int
    max_cards: int
    safety: Safety
    period: timedelta
    window: timedelta

    def __post_init__(self) -> None:
        require_request_id(self.request_id)
        require_id("site_id", self.site_id)
        require_id("loop_id", self.loop_id)
        require_positive("min_cards", self.min_cards, maximum=MAX_CARDS_PER_LOOP)
        require_positive("max_cards", self.max_cards, maximum=MAX_CARDS_PER_LOOP)
        if self.max_cards < self.min_cards:
            raise InvalidArgument("max_cards", "must be at least min_cards")
        require_duration("period", self.period, timedelta(minutes=1), MAX_WINDOW)
        require_duration("window", self.window, timedelta(hours=1), MAX_WINDOW)


def require_duration(field: str, value: timedelta, least: timedelta, most: timedelta) -> None:
    if not least <= value <= most:
        # Its seconds are what is out of range (nanos alone cannot be).
        raise InvalidArgument(f"{field}.seconds", f"must be from {least} to {most.days} days")
