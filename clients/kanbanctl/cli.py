"""kanbanctl: set up and look at a kanban line without grpcurl.

  kanbanctl apply examples/line.yaml          create what the file has and the site lacks
  kanbanctl cards PLANT1 BRACKET -o c.pdf     print a loop's cards, to cut out
  kanbanctl board PLANT1                      the line at a glance
  kanbanctl export wip PLANT1 -o wip.csv      WIP per loop, for a spreadsheet
  kanbanctl export stock PLANT1 -o stock.csv  stock on hand per location, item and lot
  kanbanctl simulate examples/line.yaml --cards FRAME=5
                                              preview a change on a simulated line
  kanbanctl token issue --name erp-sap --role erp
                                              issue (list, revoke) a bearer token

Calls present the bearer token in KANBAN_TOKEN (or --token). `token` talks to
the database instead (DATABASE_URL, else the embedded one of `make run`).
"""

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc
from kanban.stations.v1 import stations_pb2, stations_pb2_grpc
from kanban.stock.v1 import stock_pb2, stock_pb2_grpc

from clients.kanbanctl import board, drive, export, sheet, sheet_pdf, sheet_svg
from clients.kanbanctl import simulate as simulating
from clients.kanbanctl.apply import apply_layout
from clients.kanbanctl.layout import LayoutError, load_layout
from clients.kanbanctl.paging import all_pages
from services.core import client, tokens

STDOUT = "-"

# What to do about the refusals that are about the call, not the line.
_HINTS = {
    grpc.StatusCode.UNAVAILABLE: "is the service running there? (--stations-addr, --stock-addr,"
    " --orders-addr)",
    grpc.StatusCode.UNAUTHENTICATED: "give a token with --token or KANBAN_TOKEN",
    grpc.StatusCode.PERMISSION_DENIED: "the token lacks a role this needs: see kanbanctl"
    " COMMAND --help, and docs/operations.md",
}


@dataclass(frozen=True)
class Channels:
    stations: grpc.aio.Channel
    stock: grpc.aio.Channel
    orders: grpc.aio.Channel


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="kanbanctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    main.add_argument("--stations-addr", default="localhost:50051", metavar="HOST:PORT")
    main.add_argument("--stock-addr", default="localhost:50052", metavar="HOST:PORT")
    main.add_argument("--orders-addr", default="localhost:50053", metavar="HOST:PORT")
    main.add_argument(
        "--token",
        default=os.environ.get("KANBAN_TOKEN", ""),
        help="bearer token (default: $KANBAN_TOKEN)",
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    apply = commands.add_parser(
        "apply",
        help="apply a line layout file",
        description="Creates what the layout file has and its site lacks, and reports each "
        "entity as created, unchanged or differs. Applying the same file again changes "
        "nothing. The services cannot change a station, item, loop ... once made: one that "
        "exists with other content is reported and left as it is, and the command exits 1 "
        "after applying everything else. Needs a token with the planner role (it reads "
        "the audit log), warehouse or admin (locations) and erp or planner (products).",
    )
    apply.add_argument("file", type=Path, help="the layout, e.g. examples/line.yaml")

    cards = commands.add_parser(
        "cards",
        help="print a loop's cards on a sheet to cut out",
        description="One card per cell: its QR code (the card code, which the terminals "
        "scan), the code in large text, the loop, item, supplier -> consumer station and "
        "container quantity. PDF: A4 pages of 8 cards; SVG: one sheet of them all.",
    )
    cards.add_argument("site")
    cards.add_argument("loop")
    cards.add_argument(
        "--format",
        choices=["svg", "pdf"],
        help="default: pdf if the output file ends in .pdf, else svg",
    )
    cards.add_argument("-o", "--output", required=True, help="the file to write; - for stdout")

    show = commands.add_parser(
        "board",
        help="the board of a site",
        description="Each loop's cards by state and its WIP against its cap, then each "
        "supplying station's open signals, WIP and open production instructions.",
    )
    show.add_argument("site")

    exporting = commands.add_parser("export", help="export WIP or stock as CSV")
    what = exporting.add_subparsers(dest="what", required=True, metavar="WHAT")
    for name, description in (
        ("wip", "Per loop: item, supplier, consumer, cap and WIP in units, cards by state."),
        ("stock", "Stock on hand per location, item and lot, with the lot's status."),
    ):
        export_one = what.add_parser(name, help=description, description=description)
        export_one.add_argument("site")
        export_one.add_argument("-o", "--output", default=STDOUT, help="default: - (stdout)")

    _add_simulate(commands)

    token = commands.add_parser(
        "token",
        help="issue, list and revoke bearer tokens (see: kanbanctl token --help)",
        add_help=False,
    )
    token.add_argument("arguments", nargs=argparse.REMAINDER)
    return main


def _add_simulate(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sim = commands.add_parser(
        "simulate",
        help="simulate a line from its layout file, and preview a change",
        description="A discrete-event simulation of the layout's line, with the process "
        "times and demand of its simulation: section (see clients/kanbanctl/simulate.py). "
        "Reports per loop WIP, throughput, stockouts, lead times and recommended cards, per "
        "station utilisation, the bottleneck and the demand served. With --cards, "
        "--container or --demand(-scale) it runs the line as it is and as changed, with "
        "the same seed, side by side. With --drive it plays the run against the stations "
        "service of a site applied from the same file (needs operator rights at each "
        "station, e.g. an admin token).",
    )
    sim.add_argument("file", type=Path, help="the layout, e.g. examples/line.yaml")
    sim.add_argument("--hours", type=float, help="simulated hours measured (default: the file's)")
    sim.add_argument("--warmup-hours", type=float, help="left out before (default: the file's)")
    sim.add_argument("--seed", type=int, help="default: the file's")
    sim.add_argument(
        "--cards", action="append", default=[], metavar="LOOP=N", help="a loop's cards"
    )
    sim.add_argument(
        "--container", action="append", default=[], metavar="LOOP=Q", help="a container's units"
    )
    sim.add_argument(
        "--demand",
        action="append",
        default=[],
        metavar="STATION=UNITS_PER_HOUR",
        help="demand at a pacemaker",
    )
    sim.add_argument("--demand-scale", type=float, default=1.0, metavar="F", help="all demand x F")
    sim.add_argument("--json", action="store_true", help="print the result as JSON")
    sim.add_argument(
        "--drive", action="store_true", help="play the run against the real stations service"
    )
    sim.add_argument(
        "--speed", type=float, default=1.0, metavar="F", help="with --drive: F simulated s a second"
    )


def _pairs(option: str, values: Sequence[str], kind: type[int] | type[float]) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for value in values:
        key, equals, number = value.partition("=")
        try:
            if not (key and equals):
                raise ValueError(value)
            pairs[key] = kind(number)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise simulating.SimulationError(f"{option} {value}: give NAME={what}") from None
    return pairs


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    command_line = parser()
    args, unknown = command_line.parse_known_args(argv)
    if args.command == "token":
        # Everything after `token` is the token command's, options included.
        args.arguments = [*unknown, *args.arguments]
    elif unknown:
        command_line.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "token":
        # Its own program (services.core.tokens), with its own event loop.
        tokens.main(args.arguments)
        return
    sys.exit(asyncio.run(run(args, sys.stdout, sys.stderr)))


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Runs a command, printing to `out` (and `err`); returns the exit status."""
    try:
        if args.command == "simulate":
            return await _simulate(args, out)
        async with _connect(args) as channels:
            if args.command == "apply":
                return await _apply(channels, args.file, out)
            if args.command == "cards":
                await _cards(channels, args.site, args.loop, args.format, args.output, out)
            elif args.command == "board":
                print(board.render(args.site, await _board(channels, args.site)), file=out)
            elif args.what == "wip":
                rows = export.wip_rows(await _board(channels, args.site))
                _write_csv(args.output, export.WIP_HEADER, rows, out)
            else:
                rows = export.stock_rows(await _stock_levels(channels, args.site))
                _write_csv(args.output, export.STOCK_HEADER, rows, out)
            return 0
    except grpc.aio.AioRpcError as error:
        print(f"kanbanctl: {error.code().name}: {error.details()}", file=err)
        if hint := _HINTS.get(error.code()):
            print(f"kanbanctl: {hint}", file=err)
        return 1
    except (LayoutError, simulating.SimulationError, OSError) as error:
        print(f"kanbanctl: {error}", file=err)
        return 1


@contextlib.asynccontextmanager
async def _connect(args: argparse.Namespace) -> AsyncIterator[Channels]:
    async with (
        client.channel(args.stations_addr, args.token) as stations,
        client.channel(args.stock_addr, args.token) as stock,
        client.channel(args.orders_addr, args.token) as orders,
    ):
        yield Channels(stations, stock, orders)


async def _simulate(args: argparse.Namespace, out: TextIO) -> int:
    model, settings = simulating.model_from_layout(load_layout(args.file))
    changes = simulating.Changes(
        cards=_pairs("--cards", args.cards, int),
        container=_pairs("--container", args.container, int),
        demand=_pairs("--demand", args.demand, float),
        demand_scale=args.demand_scale,
    )
    changed_model = simulating.apply_changes(model, changes)
    hours = settings.hours if args.hours is None else args.hours
    warmup = settings.warmup_hours if args.warmup_hours is None else args.warmup_hours
    seed = settings.seed if args.seed is None else args.seed
    baseline = simulating.simulate(model, hours, warmup, seed)
    changed = simulating.simulate(changed_model, hours, warmup, seed) if changes else None
    if args.drive:
        played = changed or baseline
        async with client.channel(args.stations_addr, args.token) as stations:
            await drive.drive(stations, changed_model, played.actions, args.speed, out)
        return 0
    if args.json:
        result = {
            "changes": changes.describe(),
            "baseline": baseline.to_json(),
            "changed": changed.to_json() if changed else None,
        }
        print(json.dumps(result, indent=2), file=out)
    else:
        print(simulating.render(baseline, changed, changes), file=out)
    return 0


async def _apply(channels: Channels, file: Path, out: TextIO) -> int:
    layout = load_layout(file)
    report = await apply_layout(channels.stations, channels.stock, channels.orders, layout)
    print(report.render(), file=out)
    return 0 if report.ok else 1


async def _cards(
    channels: Channels,
    site_id: str,
    loop_id: str,
    format_: str | None,
    output: str,
    out: TextIO,
) -> None:
    stub = stations_pb2_grpc.StationsServiceStub(channels.stations)
    found = await stub.GetLoop(stations_pb2.GetLoopRequest(site_id=site_id, loop_id=loop_id))
    loop = found.loop
    faces = [
        sheet.CardFace(
            code=card.card_code,
            loop_id=loop.loop_id,
            item_id=loop.item_id,
            supplier_station_id=loop.supplier_station_id,
            consumer_station_id=loop.consumer_station_id,
            container_quantity=loop.container_quantity,
        )
        for card in found.cards
    ]
    title = f"Kanban cards of loop {loop_id}, site {site_id}"
    if (format_ or ("pdf" if output.endswith(".pdf") else "svg")) == "pdf":
        _write(output, sheet_pdf.render(sheet.pages(faces), title), out)
    else:
        _write(output, sheet_svg.render(sheet.strip(faces), title), out)


async def _board(channels: Channels, site_id: str) -> stations_pb2.GetBoardResponse:
    stub = stations_pb2_grpc.StationsServiceStub(channels.stations)
    return await stub.GetBoard(stations_pb2.GetBoardRequest(site_id=site_id))


async def _stock_levels(channels: Channels, site_id: str) -> list[stock_pb2.StockLevel]:
    return await all_pages(
        stock_pb2_grpc.StockServiceStub(channels.stock).GetStockLevels,
        stock_pb2.GetStockLevelsRequest(site_id=site_id),
        "levels",
    )


def _write(output: str, data: str | bytes, out: TextIO) -> None:
    if output == STDOUT:
        if isinstance(data, bytes):
            out.flush()
            out.buffer.write(data)
        else:
            out.write(data)
    elif isinstance(data, bytes):
        Path(output).write_bytes(data)
    else:
        Path(output).write_text(data, encoding="utf-8")


def _write_csv(output: str, header: Sequence[str], rows: Sequence[export.Row], out: TextIO) -> None:
    if output == STDOUT:
        export.write_csv(out, header, rows)
        return
    with open(output, "w", newline="", encoding="utf-8") as file:
        export.write_csv(file, header, rows)
