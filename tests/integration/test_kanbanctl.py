"""kanbanctl against the real services: apply a layout (again, and changed), print
a loop's cards, show the board, export WIP and stock, and manage tokens."""

import asyncio
import csv
import io
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml
from kanban.audit.v1 import audit_pb2, audit_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stock.v1 import stock_pb2

from clients.kanbanctl import cli
from clients.kanbanctl.layout import load_layout
from tests.conftest import Line, eventually, fresh_database, new_id
from tests.e2e.conftest import ROOT

EXAMPLE = ROOT / "examples" / "line.yaml"
SVG = "{http://www.w3.org/2000/svg}"


def example(site_id: str) -> dict[str, Any]:
    layout = load_layout(EXAMPLE)
    layout["site"]["site_id"] = site_id
    return layout


async def kanbanctl(stack, *argv: str) -> tuple[int, str, str]:
    """Runs kanbanctl in this process against the stack; its status, output and errors."""
    addresses = [
        f"--stations-addr={stack.peers['stations']}",
        f"--stock-addr={stack.peers['stock']}",
        f"--orders-addr={stack.peers['orders']}",
    ]
    out, err = io.StringIO(), io.StringIO()
    status = await cli.run(cli.parse([*addresses, *argv]), out, err)
    return status, out.getvalue(), err.getvalue()


async def apply(stack, tmp_path: Path, layout: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """Applies the layout from a file; the status, each entity's line, and all printed."""
    path = tmp_path / f"{new_id('layout')}.yaml"
    path.write_text(yaml.safe_dump(layout))
    status, out, err = await kanbanctl(stack, "apply", str(path))
    lines = out.splitlines()
    outcomes = {" ".join(line.split()[:2]): line.split(None, 2)[2] for line in lines[:-1]}
    return status, outcomes, out + err


async def audit_count(stack, site_id: str) -> int:
    """Every record the three services' audit logs hold for the site."""
    total = 0
    for channel in stack.channels[:3]:
        reply = await audit_pb2_grpc.AuditServiceStub(channel).ListAuditRecords(
            audit_pb2.ListAuditRecordsRequest(site_id=site_id, page_size=1000)
        )
        total += len(reply.records)
    return total


async def test_applying_the_example_twice_creates_it_once_then_changes_nothing(stack, tmp_path):
    site_id = new_id("ctl")
    status, outcomes, printed = await apply(stack, tmp_path, example(site_id))
    assert status == 0, printed
    assert set(outcomes.values()) == {"created"}, printed
    assert f"site {site_id}" in outcomes
    assert {"loop BRACKET", "loop FRAME", "location RAW-01", "product CHASSIS"} <= set(outcomes)
    assert printed.splitlines()[-1] == "15 entities: 15 created"
    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=site_id))
    assert [(s.loop.loop_id, s.full_cards) for s in board.loops] == [("BRACKET", 4), ("FRAME", 3)]

    audited = await audit_count(stack, site_id)
    status, outcomes, printed = await apply(stack, tmp_path, example(site_id))
    assert status == 0, printed
    assert set(outcomes.values()) == {"unchanged"}, printed
    assert printed.splitlines()[-1] == "15 entities: 15 unchanged"
    # Nothing was asked of the services but reads: not even an audit record is new.
    assert await audit_count(stack, site_id) == audited
    assert await stack.stations.GetBoard(pb.GetBoardRequest(site_id=site_id)) == board


async def test_a_grown_file_creates_only_what_was_added(stack, tmp_path):
    site_id = new_id("ctl")
    layout = example(site_id)
    assert (await apply(stack, tmp_path, layout))[0] == 0

    layout["stations"].append({"station_id": "PAINT", "name": "Painting"})
    layout["loops"].append(
        {
            "loop_id": "FRAME-PAINT",
            "item_id": "FRAME",
            "supplier_station_id": "WELD",
            "consumer_station_id": "PAINT",
            "supermarket_location_id": "SM-PAINT-IN",
            "container_quantity": 20,
            "card_count": 2,
        }
    )
    status, outcomes, printed = await apply(stack, tmp_path, layout)
    assert status == 0, printed
    created = {entity for entity, outcome in outcomes.items() if outcome == "created"}
    assert created == {"station PAINT", "loop FRAME-PAINT"}, printed
    assert len(outcomes) == 17
    assert all(outcome in ("created", "unchanged") for outcome in outcomes.values())
    assert printed.splitlines()[-1] == "17 entities: 2 created, 15 unchanged"
    loop = await stack.stations.GetLoop(pb.GetLoopRequest(site_id=site_id, loop_id="FRAME-PAINT"))
    assert [c.card_code for c in loop.cards] == ["FRAME-PAINT-001", "FRAME-PAINT-002"]


async def test_what_differs_is_reported_and_left_while_the_rest_is_applied(stack, tmp_path):
    site_id = new_id("ctl")
    layout = example(site_id)
    assert (await apply(stack, tmp_path, layout))[0] == 0

    layout["loops"][0]["card_count"] = 9
    layout["loops"][1]["container_quantity"] = 60
    layout["stations"][1]["name"] = "Welding cell"
    layout["locations"].append(
        {"location_id": "RAW-02", "warehouse_id": "WH1", "kind": "QUARANTINE"}
    )
    status, outcomes, printed = await apply(stack, tmp_path, layout)

    assert status == 1, printed
    assert outcomes["loop BRACKET"] == "resized: card_count 4 -> 9"
    assert outcomes["loop FRAME"].startswith(
        "differs: container_quantity 50 -> 60; cannot be changed in place (of an existing loop"
    )
    assert outcomes["station WELD"].startswith("differs: name 'Welding' -> 'Welding cell'; cannot")
    assert outcomes["location RAW-02"] == "created"
    assert [line for line in printed.splitlines() if "entities" in line] == [
        "16 entities: 1 created, 1 resized, 12 unchanged, 2 differs"
    ]
    loop = await stack.stations.GetLoop(pb.GetLoopRequest(site_id=site_id, loop_id="BRACKET"))
    assert loop.loop.card_count == 9 and len(loop.cards) == 9
    # Applied again, the resize is done: nothing more changes.
    layout["loops"][1]["container_quantity"] = 50
    layout["stations"][1]["name"] = "Welding"
    status, outcomes, printed = await apply(stack, tmp_path, layout)
    assert status == 0, printed
    assert set(outcomes.values()) == {"unchanged"}
    raw = await stack.stock.ListLocations(
        stock_pb2.ListLocationsRequest(site_id=site_id, warehouse_id="WH1")
    )
    assert "RAW-02" in [location.location_id for location in raw.locations]


async def test_a_file_naming_what_does_not_exist_fails_that_entity_only(stack, tmp_path):
    layout = example(new_id("ctl"))
    layout["loops"][1]["consumer_station_id"] = "NOWHERE"
    status, outcomes, printed = await apply(stack, tmp_path, layout)
    assert status == 1, printed
    assert outcomes["loop FRAME"].startswith("failed: NOT_FOUND: station 'NOWHERE'"), printed
    assert outcomes["loop BRACKET"] == "created"
    assert outcomes["product CHASSIS"] == "created"


async def test_the_cards_of_a_loop_print_as_svg_and_pdf(stack, tmp_path):
    line = await Line(stack.stations, new_id("site")).create(cards=5)
    codes = [card.card_code for card in await line.cards("P")]
    assert len(codes) == 5

    status, _, err = await kanbanctl(
        stack, "cards", line.site_id, "P", "--format", "svg", "-o", str(tmp_path / "p.svg")
    )
    assert status == 0, err
    svg = ET.parse(tmp_path / "p.svg").getroot()
    assert [t.text for t in svg.iter(f"{SVG}text") if t.get("class") == "code"] == codes
    assert len([p for p in svg.iter(f"{SVG}path") if p.get("class") == "qr"]) == 5
    assert "STAMP -> WELD" in [t.text for t in svg.iter(f"{SVG}text")]

    # The format follows the file's name; 8 cards fit a page.
    status, _, err = await kanbanctl(
        stack, "cards", line.site_id, "P", "-o", str(tmp_path / "p.pdf")
    )
    assert status == 0, err
    document = (tmp_path / "p.pdf").read_bytes()
    assert document.startswith(b"%PDF-") and document.rstrip().endswith(b"%%EOF")
    assert all(f"({code}) Tj".encode() in document for code in codes)
    assert document.count(b"/QR BMC") == 5
    assert document.count(b"/Type /Page ") == 1


async def test_the_board_lists_each_loop_with_its_cards_and_wip(stack, line):
    await line.scan("WELD", "P-001")
    status, out, err = await kanbanctl(stack, "board", line.site_id)
    assert status == 0, err
    rows = {row.split()[0]: row.split() for row in out.splitlines() if row}
    # LOOP ITEM SUPPLIER -> CONSUMER FULL EMPTY IN-PROCESS ON-HOLD WIP/CAP WIP%
    assert rows["P"] == ["P", "PART", "STAMP", "->", "WELD", "2", "1", "0", "0", "1000/1500", "67%"]
    assert rows["W"] == [
        "W",
        "WELDED",
        "WELD",
        "->",
        "ASSY",
        "3",
        "0",
        "0",
        "0",
        "1500/1500",
        "100%",
    ]
    # STATION OPEN-SIGNALS IN-PROCESS OPEN-INSTRUCTIONS WIP/CAP WIP%
    assert rows["STAMP"] == ["STAMP", "1", "0", "0", "1000/1500", "67%"]


async def test_an_unknown_site_is_an_error_not_a_traceback(stack):
    status, out, err = await kanbanctl(stack, "board", new_id("nowhere"))
    assert status == 1 and not out
    assert err.startswith("kanbanctl: NOT_FOUND: site ")


async def test_the_csv_exports_say_what_the_services_say(stack, tmp_path, line):
    await line.scan("WELD", "P-001")
    await line.start("STAMP")
    status, _, err = await kanbanctl(
        stack, "export", "wip", line.site_id, "-o", str(tmp_path / "wip.csv")
    )
    assert status == 0, err
    wip = list(csv.DictReader(io.StringIO((tmp_path / "wip.csv").read_text(), newline="")))
    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=line.site_id))
    assert wip == [
        {
            "loop": s.loop.loop_id,
            "item": s.loop.item_id,
            "supplier": s.loop.supplier_station_id,
            "consumer": s.loop.consumer_station_id,
            "cap_units": str(s.loop.cap_units),
            "wip_units": str(s.wip_units),
            "full_cards": str(s.full_cards),
            "empty_cards": str(s.empty_cards),
            "in_process_cards": str(s.in_process_cards),
        }
        for s in board.loops
    ]
    assert [row["in_process_cards"] for row in wip] == ["1", "0"]

    # Stock follows the scan through events: wait until each supermarket holds what the
    # board says is in it, so the export is compared with a settled ledger.
    wip_by_item = {s.loop.item_id: s.units_in_supermarket for s in board.loops}

    async def levels() -> list[Any]:
        reply = await stack.stock.GetStockLevels(
            stock_pb2.GetStockLevelsRequest(site_id=line.site_id, page_size=1000)
        )
        on_hand = {level.item_id: level.on_hand for level in reply.levels}
        return list(reply.levels) if on_hand == wip_by_item else []

    stored = await eventually(levels)
    assert stored
    status, out, err = await kanbanctl(stack, "export", "stock", line.site_id, "-o", "-")
    assert status == 0, err
    exported = list(csv.reader(io.StringIO(out)))
    assert exported[0] == ["location", "item", "lot", "lot_status", "on_hand"]
    assert exported[1:] == [
        [
            level.location_id,
            level.item_id,
            level.lot_id,
            stock_pb2.LotStatus.Name(level.lot_status).removeprefix("LOT_STATUS_"),
            str(level.on_hand),
        ]
        for level in stored
    ]


async def test_tokens_are_issued_listed_and_revoked_through_the_token_command(database_url):
    env = dict(os.environ, DATABASE_URL=await fresh_database(database_url))

    async def kanbanctl_token(*argv: str) -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "clients.kanbanctl",
            "token",
            *argv,
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        return out.decode()

    token = (await kanbanctl_token("issue", "--name", "planner-1", "--role", "planner")).strip()
    assert token.startswith("kbn_")
    assert "planner-1  planner" in await kanbanctl_token("list")
    assert "revoked 1 token(s)" in await kanbanctl_token("revoke", "--name", "planner-1")
    assert "usage:" in await kanbanctl_token("--help")


async def test_a_simulated_run_drives_the_real_line_card_for_card(stack, tmp_path):
    site_id = new_id("sim")
    layout = example(site_id)
    status, _, printed = await apply(stack, tmp_path, layout)
    assert status == 0, printed
    path = tmp_path / "simulated.yaml"
    path.write_text(yaml.safe_dump(layout))

    # Twelve simulated hours in a second or so.
    argv = ["simulate", str(path), "--hours", "12", "--warmup-hours", "0", "--drive"]
    status, out, err = await kanbanctl(stack, *argv, "--speed", "100000")
    assert (status, err) == (0, "")
    scans, starts, completes = (int(out.split()[-n]) for n in (6, 4, 2))
    assert scans >= starts >= completes > 10, out[-300:]

    board = await stack.stations.GetBoard(pb.GetBoardRequest(site_id=site_id))
    # Every card the run emptied and did not refill is still on its way back.
    in_flight = sum(s.loop.card_count - s.full_cards for s in board.loops)
    assert in_flight == scans - completes
    assert sum(s.full_cards for s in board.loops) == 7 - in_flight


async def test_driving_a_site_the_file_does_not_describe_is_refused(stack, tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(example(new_id("absent"))))
    status, out, err = await kanbanctl(stack, "simulate", str(path), "--drive", "--hours", "1")
    assert (status, out) == (1, "")
    assert "not on site" in err and "kanbanctl apply" in err
