"""An ERP order becomes finished goods through a three-station line of real processes,
driven by the example ERP client and a pacemaker terminal; the ERP cuts it midway."""

import asyncio
import sys
from asyncio.subprocess import PIPE, STDOUT

from kanban.orders.v1 import orders_pb2, orders_pb2_grpc
from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2_grpc

from tests.conftest import Line, eventually, new_id, stock_by_lot
from tests.e2e.conftest import ROOT, Launcher, open_channel

ERP_CLIENT = ROOT / "examples" / "erp_client.py"


async def erp(orders_address: str, site_id: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(ERP_CLIENT),
        "--orders",
        orders_address,
        "--site",
        site_id,
        *args,
        stdout=PIPE,
        stderr=STDOUT,
        cwd=ROOT,
    )


async def finished(process: asyncio.subprocess.Process) -> str:
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def test_an_order_is_made_through_the_line_and_follows_a_cut(launcher: Launcher):
    services = await launcher.start_line()
    orders_address = services["orders"].address
    async with (
        open_channel(services["stations"].address) as stations_channel,
        open_channel(orders_address) as orders_channel,
        open_channel(services["stock"].address) as stock_channel,
    ):
        stations = stations_pb2_grpc.StationsServiceStub(stations_channel)
        line = await Line(stations, new_id("site")).create(cards=2, container_quantity=10)
        site = line.site_id
        await orders_pb2_grpc.OrdersServiceStub(orders_channel).DefineProduct(
            orders_pb2.DefineProductRequest(
                request_id=new_id("r"),
                site_id=site,
                item_id="CHASSIS",
                pacemaker_station_id="ASSY",
                container_quantity=10,
                finished_goods_location_id="FG",
            )
        )
        follower = await erp(orders_address, site, "follow", "--until-done", "ORD-1")
        created = await finished(
            await erp(
                orders_address,
                site,
                "create",
                "ORD-1",
                "--item",
                "CHASSIS",
                "--quantity",
                "30",
                "--due",
                "2030-01-01T08:00:00Z",
                "--release",
            )
        )
        assert "released ORD-1 CHASSIS RELEASED made 0/30" in created

        pacemaker = stations.WatchSignals(pb.WatchSignalsRequest(site_id=site, station_id="ASSY"))
        queue = [await next_of(pacemaker, "instruction") for _ in range(3)]
        assert [i.quantity for i in queue] == [10, 10, 10]

        await make(line, queue[0])
        # The customer cuts the order from 30 to 20: the last container is withdrawn.
        assert "changed" in await finished(
            await erp(orders_address, site, "change", "ORD-1", "--quantity", "20")
        )
        withdrawn = await next_of(pacemaker, "withdrawal")
        assert withdrawn.instruction_id == queue[2].instruction_id
        await make(line, queue[1])
        pacemaker.cancel()

        followed = await finished(follower)
        assert "ORD-1 CHASSIS COMPLETED made 20/20" in followed
        stock = stock_pb2_grpc.StockServiceStub(stock_channel)
        held = await eventually(lambda: stock_by_lot(stock, site, "FG"))
        assert held == {f"FG-{queue[0].instruction_id}": 10, f"FG-{queue[1].instruction_id}": 10}
    print(f"\nERP client followed:\n{followed}")


async def next_of(stream, kind: str):
    async with asyncio.timeout(30):
        while True:
            message = await stream.read()
            if message.HasField(kind):
                return getattr(message, kind)


async def make(line: Line, instruction: pb.Instruction) -> None:
    """The pacemaker makes one container: it pulls a welded part, welding pulls a part."""
    site, stub = line.site_id, line.stub
    await stub.StartInstruction(
        pb.StartInstructionRequest(
            request_id=new_id("r"),
            site_id=site,
            station_id="ASSY",
            instruction_id=instruction.instruction_id,
        )
    )
    welded = next(c for c in await line.cards("W") if c.state == pb.CARD_STATE_FULL)
    await line.scan("ASSY", welded.card_code)
    await line.start("WELD")
    part = next(c for c in await line.cards("P") if c.state == pb.CARD_STATE_FULL)
    await line.scan("WELD", part.card_code)
    await line.complete("WELD", welded.card_code, new_id("WLOT"), 10)
    await line.start("STAMP")
    await line.complete("STAMP", part.card_code, new_id("PLOT"), 10)
    await stub.CompleteInstruction(
        pb.CompleteInstructionRequest(
            request_id=new_id("r"),
            site_id=site,
            station_id="ASSY",
            instruction_id=instruction.instruction_id,
            lot_id=f"FG-{instruction.instruction_id}",
            quantity=instruction.quantity,
        )
    )
