"""A site's board as plain text: each loop's cards by state and WIP against its
cap, then each supplying station's open signals."""

from collections.abc import Sequence
from typing import Any


def render(site_id: str, board: Any) -> str:
    """`board` is a kanban.stations.v1.GetBoardResponse."""
    if not board.loops:
        return f"Site {site_id} has no loops."
    loops = table(
        [
            "LOOP",
            "ITEM",
            "SUPPLIER -> CONSUMER",
            "FULL",
            "EMPTY",
            "IN PROCESS",
            "ON HOLD",
            "WIP/CAP",
            "WIP %",
        ],
        [
            [
                s.loop.loop_id,
                s.loop.item_id,
                f"{s.loop.supplier_station_id} -> {s.loop.consumer_station_id}",
                s.full_cards,
                s.empty_cards,
                s.in_process_cards,
                s.quarantined_cards,
                f"{s.wip_units}/{s.loop.cap_units}",
                percent(s.wip_units, s.loop.cap_units),
            ]
            for s in board.loops
        ],
        numbers_from=3,
    )
    stations = table(
        ["STATION", "OPEN SIGNALS", "IN PROCESS", "OPEN INSTRUCTIONS", "WIP/CAP", "WIP %"],
        [
            [
                s.station_id,
                s.open_signals,
                s.in_process_cards,
                s.open_instructions,
                f"{s.wip_units}/{s.cap_units}",
                percent(s.wip_units, s.cap_units),
            ]
            for s in board.stations
        ],
        numbers_from=1,
    )
    return f"Site {site_id}\n\n{loops}\n\n{stations}"


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], numbers_from: int) -> str:
    """Columns as wide as their widest cell; the columns from `numbers_from` on hold
    numbers, set to the right so that they line up."""
    cells = [list(header), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[n]) for row in cells) for n in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if n >= numbers_from else cell.ljust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    )
