"""ERP orders and the production instructions they release: the rules, with no I/O.

An order goes OPEN (known) -> RELEASED (its product's pacemaker station has one
instruction per container) -> COMPLETED (the pacemaker made the quantity), or to
CANCELLED from OPEN or RELEASED. COMPLETED and CANCELLED are closed: nothing but
completions of instructions already started changes them, and those still count
in made_quantity.

Instructions are numbered per order, <erp_order_id>-0001, -0002, ...; a release
covers what the order wants beyond what was released before, so an increase
continues the numbering and a decrease tells stations to withdraw instructions
not yet started.
"""

import enum
import math
from dataclasses import dataclass
from datetime import datetime

from services.core.errors import FailedPrecondition, InvalidArgument
from services.core.events import OrderReduced, OrderReleased, ReleasedInstruction

ORDER_CLOSED = "ORDER_CLOSED"
QUANTITY_BELOW_MADE = "QUANTITY_BELOW_MADE"
INSTRUCTION_NUMBERS_EXHAUSTED = "INSTRUCTION_NUMBERS_EXHAUSTED"

# ERP order ids leave room for "-0001" (and beyond) within the 64-character id rule.
MAX_ERP_ORDER_ID = 48
MAX_ORDER_QUANTITY = 10_000_000
MAX_PRIORITY = 1000
# One instruction per container: an order of more containers than this is a
# mistake (wrong unit, wrong product), and would make events too big to deliver.
MAX_CONTAINERS_PER_ORDER = 9_999
# Instruction numbers have four digits, so that ids sort as their numbers do. An
# order cut and raised again and again could run out of them; it is refused then.
MAX_INSTRUCTION_NUMBER = 9_999
# A release of many containers is told in several OrderReleased events of at
# most this many instructions, so that a relay batch stays well under gRPC's
# message size limit.
MAX_INSTRUCTIONS_PER_EVENT = 100


class OrderState(enum.Enum):
    OPEN = "OPEN"
    RELEASED = "RELEASED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def closed(self) -> bool:
        return self in (OrderState.COMPLETED, OrderState.CANCELLED)


@dataclass(frozen=True)
class Product:
    """How an item is made: where, in what containers, and where it goes."""

    site_id: str
    item_id: str
    pacemaker_station_id: str
    container_quantity: int
    finished_goods_location_id: str

    def containers(self, quantity: int) -> int:
        return math.ceil(quantity / self.container_quantity)

    def check_quantity(self, quantity: int) -> None:
        """An order quantity must fit in MAX_CONTAINERS_PER_ORDER containers."""
        containers = self.containers(quantity)
        if containers > MAX_CONTAINERS_PER_ORDER:
            raise InvalidArgument(
                "quantity",
                f"needs {containers} containers of {self.container_quantity}; "
                f"an order may need at most {MAX_CONTAINERS_PER_ORDER}",
            )


def instruction_id(erp_order_id: str, number: int) -> str:
    return f"{erp_order_id}-{number:04d}"


def split(
    erp_order_id: str, quantity: int, container_quantity: int, after_number: int = 0
) -> list[ReleasedInstruction]:
    """One instruction per container, numbered after `after_number`; the last may be partial."""
    full, rest = divmod(quantity, container_quantity)
    sizes = [container_quantity] * full + ([rest] if rest else [])
    return [
        ReleasedInstruction(instruction_id(erp_order_id, after_number + n), size)
        for n, size in enumerate(sizes, start=1)
    ]


OrderEvent = OrderReleased | OrderReduced


@dataclass
class Order:
    site_id: str
    erp_order_id: str
    item_id: str
    quantity: int
    made_quantity: int
    due_time: datetime
    priority: int
    state: OrderState
    created_at: datetime
    updated_at: datetime
    cancel_reason: str
    # Units stations was told to make: 0 until released, then the quantity
    # (after a cut, the new quantity; after a cancellation, 0).
    released_quantity: int
    # The number of the last instruction released; the next one continues from it.
    last_instruction_number: int

    @classmethod
    def create(
        cls,
        product: Product,
        erp_order_id: str,
        quantity: int,
        due_time: datetime,
        priority: int,
        now: datetime,
    ) -> "Order":
        product.check_quantity(quantity)
        return cls(
            site_id=product.site_id,
            erp_order_id=erp_order_id,
            item_id=product.item_id,
            quantity=quantity,
            made_quantity=0,
            due_time=due_time,
            priority=priority,
            state=OrderState.OPEN,
            created_at=now,
            updated_at=now,
            cancel_reason="",
            released_quantity=0,
            last_instruction_number=0,
        )

    def same_content(self, other: "Order") -> bool:
        """What the ERP sends in CreateOrder, compared: the same order, asked again."""
        return (self.item_id, self.quantity, self.due_time, self.priority) == (
            other.item_id,
            other.quantity,
            other.due_time,
            other.priority,
        )

    @property
    def open_units(self) -> int:
        """Units still to make: 0 once closed."""
        return 0 if self.state.closed else max(self.quantity - self.made_quantity, 0)

    def release(self, product: Product, now: datetime) -> list[OrderEvent]:
        """OPEN -> RELEASED: the pacemaker is told to make the whole quantity."""
        self._require_not_closed("release")
        if self.state is OrderState.RELEASED:
            return []
        events: list[OrderEvent] = [
            *self._release(product, self.quantity - self.released_quantity, self.quantity)
        ]
        self.state = OrderState.RELEASED
        self.updated_at = now
        return events

    def change_quantity(self, quantity: int, product: Product, now: datetime) -> list[OrderEvent]:
        """The customer wants `quantity` in all now; stations learns what changes for it."""
        self._require_not_closed("change the quantity of")
        if quantity < self.made_quantity:
            raise FailedPrecondition(
                QUANTITY_BELOW_MADE,
                f"order {self.erp_order_id} already has {self.made_quantity} made; "
                f"its quantity cannot go below that (asked {quantity})",
                {
                    "erp_order_id": self.erp_order_id,
                    "made_quantity": str(self.made_quantity),
                    "quantity": str(quantity),
                },
            )
        if quantity == self.quantity:
            return []
        product.check_quantity(quantity)
        events: list[OrderEvent] = []
        if self.state is OrderState.RELEASED:
            if quantity > self.released_quantity:
                events += self._release(product, quantity - self.released_quantity, quantity)
            elif quantity < self.released_quantity:
                events.append(OrderReduced(erp_order_id=self.erp_order_id, quantity=quantity))
                self.released_quantity = quantity
        self.quantity = quantity
        self.updated_at = now
        self._complete_if_made()
        return events

    def cancel(self, reason: str, now: datetime) -> list[OrderEvent]:
        """-> CANCELLED; a released order's instructions not yet started are withdrawn."""
        self._require_not_closed("cancel")
        events: list[OrderEvent] = []
        if self.state is OrderState.RELEASED:
            events.append(OrderReduced(erp_order_id=self.erp_order_id, quantity=0))
        self.state = OrderState.CANCELLED
        self.cancel_reason = reason
        self.released_quantity = 0
        self.updated_at = now
        return events

    def record_made(self, quantity: int, now: datetime) -> None:
        """The pacemaker completed an instruction of this order.

        It counts in whatever state the order is: a started instruction finishes
        and counts even after a cut or a cancellation.
        """
        self.made_quantity += quantity
        self.updated_at = now
        self._complete_if_made()

    def _release(self, product: Product, quantity: int, order_quantity: int) -> list[OrderReleased]:
        instructions = split(
            self.erp_order_id, quantity, product.container_quantity, self.last_instruction_number
        )
        if self.last_instruction_number + len(instructions) > MAX_INSTRUCTION_NUMBER:
            raise FailedPrecondition(
                INSTRUCTION_NUMBERS_EXHAUSTED,
                f"order {self.erp_order_id} has used {self.last_instruction_number} of its "
                f"{MAX_INSTRUCTION_NUMBER} instruction numbers; {len(instructions)} more do "
                "not fit: create a new order for the added quantity",
                {
                    "erp_order_id": self.erp_order_id,
                    "last_instruction_number": str(self.last_instruction_number),
                },
            )
        self.last_instruction_number += len(instructions)
        self.released_quantity += quantity
        return [
            OrderReleased(
                erp_order_id=self.erp_order_id,
                item_id=self.item_id,
                pacemaker_station_id=product.pacemaker_station_id,
                location_id=product.finished_goods_location_id,
                due_time=self.due_time,
                priority=self.priority,
                instructions=instructions[start : start + MAX_INSTRUCTIONS_PER_EVENT],
                order_quantity=order_quantity,
            )
            for start in range(0, len(instructions), MAX_INSTRUCTIONS_PER_EVENT)
        ]

    def _complete_if_made(self) -> None:
        if not self.state.closed and self.made_quantity >= self.quantity:
            self.state = OrderState.COMPLETED

    def _require_not_closed(self, action: str) -> None:
        if self.state.closed:
            raise FailedPrecondition(
                ORDER_CLOSED,
                f"cannot {action} order {self.erp_order_id}: it is {self.state.value}",
                {"erp_order_id": self.erp_order_id, "order_state": self.state.value},
            )
