"""CSV exports for spreadsheets: WIP per loop (from the board) and stock on hand
per location, item and lot. Numbers are plain integers; states without their
enum prefix."""

import csv
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from kanban.stock.v1 import stock_pb2

WIP_HEADER = [
    "loop",
    "item",
    "supplier",
    "consumer",
    "cap_units",
    "wip_units",
    "full_cards",
    "empty_cards",
    "in_process_cards",
]
STOCK_HEADER = ["location", "item", "lot", "lot_status", "on_hand"]

Row = Sequence[str | int]


def wip_rows(board: Any) -> list[Row]:
    """`board` is a kanban.stations.v1.GetBoardResponse."""
    return [
        [
            s.loop.loop_id,
            s.loop.item_id,
            s.loop.supplier_station_id,
            s.loop.consumer_station_id,
            s.loop.cap_units,
            s.wip_units,
            s.full_cards,
            s.empty_cards,
            s.in_process_cards,
        ]
        for s in board.loops
    ]


def stock_rows(levels: Iterable[Any]) -> list[Row]:
    """`levels` are kanban.stock.v1.StockLevel."""
    return [
        [
            level.location_id,
            level.item_id,
            level.lot_id,
            stock_pb2.LotStatus.Name(level.lot_status).removeprefix("LOT_STATUS_"),
            level.on_hand,
        ]
        for level in levels
    ]


def write_csv(stream: TextIO, header: Sequence[str], rows: Iterable[Row]) -> None:
    writer = csv.writer(stream)
    writer.writerow(header)
    writer.writerows(rows)
