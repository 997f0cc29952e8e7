"""kanbanctl's board and CSV exports, from the services' answers."""

import csv
import io

from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from clients.kanbanctl import board, export


def a_board() -> pb.GetBoardResponse:
    def loop(loop_id, supplier, consumer, cards, quantity):
        return pb.Loop(
            loop_id=loop_id,
            item_id=loop_id,
            supplier_station_id=supplier,
            consumer_station_id=consumer,
            container_quantity=quantity,
            card_count=cards,
            cap_units=cards * quantity,
        )

    return pb.GetBoardResponse(
        loops=[
            pb.LoopStatus(
                loop=loop("BRACKET", "STAMP", "WELD", 4, 500),
                full_cards=2,
                empty_cards=1,
                in_process_cards=1,
                units_in_supermarket=1000,
                units_in_process=500,
                wip_units=1500,
                quarantined_cards=1,
            ),
            pb.LoopStatus(loop=loop("FRAME", "WELD", "ASSY", 3, 50), full_cards=3, wip_units=150),
        ],
        stations=[
            pb.StationStatus(
                station_id="STAMP",
                open_signals=1,
                in_process_cards=1,
                wip_units=1500,
                cap_units=2000,
            ),
            pb.StationStatus(station_id="ASSY", open_instructions=3),
        ],
    )


BOARD = """\
Site PLANT1

LOOP     ITEM     SUPPLIER -> CONSUMER  FULL  EMPTY  IN PROCESS  ON HOLD    WIP/CAP  WIP %
BRACKET  BRACKET  STAMP -> WELD            2      1           1        1  1500/2000    75%
FRAME    FRAME    WELD -> ASSY             3      0           0        0    150/150   100%

STATION  OPEN SIGNALS  IN PROCESS  OPEN INSTRUCTIONS    WIP/CAP  WIP %
STAMP               1           1                  0  1500/2000    75%
ASSY                0           0                  3        0/0      -"""


def test_the_board_is_a_table_of_loops_then_one_of_stations():
    assert board.render("PLANT1", a_board()) == BOARD


def test_a_site_without_loops_says_so():
    assert board.render("EMPTY", pb.GetBoardResponse()) == "Site EMPTY has no loops."


def test_wip_rows_are_the_boards_numbers():
    rows = export.wip_rows(a_board())
    assert rows == [
        ["BRACKET", "BRACKET", "STAMP", "WELD", 2000, 1500, 2, 1, 1],
        ["FRAME", "FRAME", "WELD", "ASSY", 150, 150, 3, 0, 0],
    ]
    assert len(export.WIP_HEADER) == len(rows[0])


def test_stock_rows_name_the_lot_status_without_its_prefix():
    levels = [
        stock_pb2.StockLevel(
            location_id="RAW-01",
            item_id="STEEL",
            lot_id="COIL-7",
            on_hand=1480,
            lot_status=stock_pb2.LOT_STATUS_QUARANTINED,
        )
    ]
    assert export.stock_rows(levels) == [["RAW-01", "STEEL", "COIL-7", "QUARANTINED", 1480]]


def test_the_csv_reads_back_as_written():
    stream = io.StringIO()
    export.write_csv(stream, export.STOCK_HEADER, [["SM,1", 'it"em', "L", "AVAILABLE", 5]])
    assert list(csv.reader(io.StringIO(stream.getvalue()))) == [
        export.STOCK_HEADER,
        ["SM,1", 'it"em', "L", "AVAILABLE", "5"],
    ]
