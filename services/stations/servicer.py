"""gRPC face of the stations service: translates messages, nothing more."""

from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from typing import Any

from kanban.stations.v1 import stations_pb2 as pb
from kanban.stations.v1 import stations_pb2_grpc

from services.core.config import Settings
from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.feeds import Heartbeat
from services.core.notify import Notifications
from services.core.periodic import every
from services.core.protobuf import read_timestamp, timestamp
from services.core.server import Components
from services.stations import commands, metrics, service, storage
from services.stations.analyst import Analyst
from services.stations.analytics import Distribution, LoopAnalysis, Safety
from services.stations.domain import (
    Board,
    Card,
    CardState,
    FeedItem,
    Instruction,
    Item,
    Loop,
    LotHoldNotice,
    Signal,
    SignalWithdrawal,
    Site,
    Station,
    Withdrawal,
)
from services.stations.sizing import SizingPolicy

_CARD_STATES = {
    CardState.FULL: pb.CARD_STATE_FULL,
    CardState.EMPTY: pb.CARD_STATE_EMPTY,
    CardState.IN_PROCESS: pb.CARD_STATE_IN_PROCESS,
    CardState.RETIRED: pb.CARD_STATE_RETIRED,
}
_INITIAL_STATES = {
    pb.CARD_STATE_UNSPECIFIED: CardState.FULL,
    pb.CARD_STATE_FULL: CardState.FULL,
    pb.CARD_STATE_EMPTY: CardState.EMPTY,
    pb.CARD_STATE_IN_PROCESS: CardState.IN_PROCESS,  # refused by the command, by name
    pb.CARD_STATE_RETIRED: CardState.RETIRED,  # refused by the command, by name
}


def _initial_state(value: int) -> CardState:
    if value not in _INITIAL_STATES:
        raise InvalidArgument("initial_card_state", f"unknown card state {value}")
    return _INITIAL_STATES[value]


def _site(site: Site) -> pb.Site:
    return pb.Site(site_id=site.site_id, name=site.name)


def _station(station: Station) -> pb.Station:
    return pb.Station(site_id=station.site_id, station_id=station.station_id, name=station.name)


def _item(item: Item) -> pb.Item:
    return pb.Item(
        site_id=item.site_id,
        item_id=item.item_id,
        description=item.description,
        unit_of_measure=item.unit_of_measure,
    )


def _loop(loop: Loop) -> pb.Loop:
    return pb.Loop(
        site_id=loop.site_id,
        loop_id=loop.loop_id,
        item_id=loop.item_id,
        supplier_station_id=loop.supplier_station_id,
        consumer_station_id=loop.consumer_station_id,
        supermarket_location_id=loop.supermarket_location_id,
        container_quantity=loop.container_quantity,
        card_count=loop.card_count,
        cap_units=loop.cap_units,
        target_card_count=loop.target_card_count,
    )


def _card(card: Card) -> pb.Card:
    return pb.Card(
        site_id=card.site_id,
        card_code=card.card_code,
        loop_id=card.loop_id,
        state=_CARD_STATES[card.state],
        lot_id=card.lot_id,
        quantity=card.quantity,
        updated_at=timestamp(card.updated_at),
        lot_quarantined=card.hold is not None,
    )


def _signal(signal: Signal | None) -> pb.Signal | None:
    return None if signal is None else _some_signal(signal)


def _some_signal(signal: Signal) -> pb.Signal:
    return pb.Signal(
        site_id=signal.site_id,
        station_id=signal.station_id,
        sequence=signal.sequence,
        loop_id=signal.loop_id,
        card_code=signal.card_code,
        item_id=signal.item_id,
        quantity=signal.quantity,
        state=pb.SignalState.Value(f"SIGNAL_STATE_{signal.state.value}"),
        raised_at=timestamp(signal.raised_at),
    )


def _instruction(instruction: Instruction) -> pb.Instruction:
    return pb.Instruction(
        site_id=instruction.site_id,
        instruction_id=instruction.instruction_id,
        erp_order_id=instruction.erp_order_id,
        station_id=instruction.station_id,
        item_id=instruction.item_id,
        quantity=instruction.quantity,
        due_time=timestamp(instruction.due_time),
        priority=instruction.priority,
        state=pb.InstructionState.Value(f"INSTRUCTION_STATE_{instruction.state.value}"),
        sequence=instruction.sequence,
        lot_id=instruction.lot_id,
        made_quantity=instruction.made_quantity,
    )


def _feed_item(item: FeedItem | Heartbeat) -> pb.WatchSignalsResponse:
    match item:
        case Signal():
            return pb.WatchSignalsResponse(signal=_some_signal(item))
        case Instruction():
            return pb.WatchSignalsResponse(instruction=_instruction(item))
        case Withdrawal():
            return pb.WatchSignalsResponse(
                withdrawal=pb.Withdrawal(
                    instruction_id=item.instruction.instruction_id,
                    erp_order_id=item.instruction.erp_order_id,
                    sequence=item.sequence,
                )
            )
        case SignalWithdrawal():
            return pb.WatchSignalsResponse(
                signal_withdrawal=pb.SignalWithdrawal(
                    loop_id=item.signal.loop_id,
                    card_code=item.signal.card_code,
                    signal_sequence=item.signal.sequence,
                    sequence=item.sequence,
                )
            )
        case LotHoldNotice():
            return pb.WatchSignalsResponse(
                lot_hold_notice=pb.LotHoldNotice(
                    lot_id=item.lot_id,
                    item_id=item.item_id,
                    reason=item.reason,
                    card_codes=item.card_codes,
                    status=pb.LotHoldStatus.Value(f"LOT_HOLD_STATUS_{item.status.value}"),
                    sequence=item.sequence,
                )
            )
        case Heartbeat():
            return pb.WatchSignalsResponse(
                heartbeat=pb.Heartbeat(
                    sent_at=timestamp(item.sent_at), last_sequence=item.last_sequence
                )
            )


def _board(board: Board) -> pb.GetBoardResponse:
    return pb.GetBoardResponse(
        loops=[
            pb.LoopStatus(
                loop=_loop(s.loop),
                full_cards=s.full_cards,
                empty_cards=s.empty_cards,
                in_process_cards=s.in_process_cards,
                units_in_supermarket=s.units_in_supermarket,
                units_in_process=s.units_in_process,
                wip_units=s.wip_units,
                quarantined_cards=s.quarantined_cards,
            )
            for s in board.loops
        ],
        stations=[
            pb.StationStatus(
                station_id=s.station_id,
                open_signals=s.open_signals,
                in_process_cards=s.in_process_cards,
                wip_units=s.wip_units,
                cap_units=s.cap_units,
                open_instructions=s.open_instructions,
            )
            for s in board.stations
        ],
    )


def _safety(factor: float, service_level: float) -> Safety:
    """Proto3 has no unset double: zero means not given."""
    if factor and service_level:
        raise InvalidArgument("safety_factor", "give a safety factor or a service level, not both")
    if service_level:
        return Safety(service_level=service_level)
    return Safety(factor=factor)


def _duration(field: str, value: Any) -> timedelta:
    # Far beyond any window; keeps timedelta from overflowing on garbage.
    if not 0 <= value.seconds <= 10**9:
        raise InvalidArgument(f"{field}.seconds", "is not a valid duration")
    if not 0 <= value.nanos < 1_000_000_000:
        raise InvalidArgument(f"{field}.nanos", "is not a valid duration")
    duration: timedelta = value.ToTimedelta()
    return duration


def _durations(d: Distribution) -> pb.Durations:
    return pb.Durations(
        count=d.count,
        mean_seconds=d.mean,
        stdev_seconds=d.stdev,
        p50_seconds=d.p50,
        p90_seconds=d.p90,
        p99_seconds=d.p99,
    )


def _policy(policy: SizingPolicy) -> pb.SizingPolicy:
    message = pb.SizingPolicy(
        site_id=policy.site_id,
        loop_id=policy.loop_id,
        enabled=policy.enabled,
        min_cards=policy.min_cards,
        max_cards=policy.max_cards,
        safety_factor=policy.safety.factor or 0.0,
        service_level=policy.safety.service_level or 0.0,
    )
    message.period.FromTimedelta(policy.period)
    message.window.FromTimedelta(policy.window)
    if policy.checked_at:
        message.checked_at.CopyFrom(timestamp(policy.checked_at))
    if policy.resized_at:
        message.resized_at.CopyFrom(timestamp(policy.resized_at))
    return message


def _loop_analysis(loop: LoopAnalysis, policy: SizingPolicy | None) -> pb.LoopAnalysis:
    sizing = loop.sizing
    return pb.LoopAnalysis(
        loop_id=loop.loop_id,
        supplier_station_id=loop.shape.supplier_station_id,
        consumer_station_id=loop.shape.consumer_station_id,
        container_quantity=loop.shape.container_quantity,
        card_count=loop.shape.card_count,
        completed_cards=loop.completed_cards,
        throughput_units_per_hour=loop.throughput_units_per_hour,
        consumed_cards=loop.consumed_cards,
        consumption_units_per_hour=loop.consumption_units_per_hour,
        consumption_trend=loop.consumption_trend,
        lead_time=_durations(loop.lead_time),
        waiting_time=_durations(loop.waiting_time),
        process_time=_durations(loop.process_time),
        average_replenishing_cards=loop.average_replenishing_cards,
        average_inventory_units=loop.average_inventory_units,
        average_wip_units=loop.average_wip_units,
        wip_turnover_days=loop.wip_turnover_days,
        inventory_turns_per_year=loop.inventory_turnover_per_year,
        stockout_fraction=loop.stockout_fraction,
        littles_law=pb.LittlesLaw(
            measured_cards=loop.little.measured_cards,
            predicted_cards=loop.little.predicted_cards,
            adds_up=loop.little.adds_up,
        ),
        sizing=None
        if sizing is None
        else pb.Sizing(
            current_cards=sizing.current_cards,
            recommended_cards=sizing.recommended_cards,
            safety_factor=sizing.safety_factor,
            demand_units_per_hour=sizing.demand_units_per_hour,
            lead_time_hours=sizing.lead_time_hours,
            wip_change_units=sizing.wip_change_units,
            stockout_risk_current=sizing.stockout_risk_current,
            stockout_risk_recommended=sizing.stockout_risk_recommended,
        ),
        sizing_policy=None if policy is None else _policy(policy),
    )


def _line_report(report: service.LineReport) -> pb.AnalyzeLineResponse:
    analysis = report.analysis
    bottleneck = analysis.bottleneck
    return pb.AnalyzeLineResponse(
        start_time=timestamp(analysis.window.start),
        end_time=timestamp(analysis.window.end),
        loops=[_loop_analysis(a, report.policies.get(a.loop_id)) for a in analysis.loops],
        stations=[
            pb.StationAnalysis(
                station_id=s.station_id,
                completed_cards=s.completed_cards,
                utilisation=s.utilisation,
                average_queue=s.average_queue,
                queue_growth_per_hour=s.queue_growth_per_hour,
                starving_loops=[
                    pb.StarvingLoop(loop_id=loop_id, stockout_fraction=share)
                    for loop_id, share in sorted(s.starving_loops.items())
                ],
            )
            for s in analysis.stations
        ],
        bottleneck=None
        if bottleneck is None
        else pb.Bottleneck(station_id=bottleneck.station_id, evidence=bottleneck.evidence),
    )


class StationsServicer(stations_pb2_grpc.StationsServiceServicer):  # type: ignore[misc]
    def __init__(
        self, db: Database, notifications: Notifications, analyst: Analyst, settings: Settings
    ) -> None:
        self._db = db
        self._notifications = notifications
        self._analyst = analyst
        self._settings = settings

    async def CreateSite(
        self, request: pb.CreateSiteRequest, context: object
    ) -> pb.CreateSiteResponse:
        cmd = commands.CreateSite(request.request_id, request.site_id, request.name)
        return pb.CreateSiteResponse(site=_site(await service.create_site(self._db, cmd)))

    async def CreateStation(
        self, request: pb.CreateStationRequest, context: object
    ) -> pb.CreateStationResponse:
        cmd = commands.CreateStation(
            request.request_id, request.site_id, request.station_id, request.name
        )
        return pb.CreateStationResponse(
            station=_station(await service.create_station(self._db, cmd))
        )

    async def CreateItem(
        self, request: pb.CreateItemRequest, context: object
    ) -> pb.CreateItemResponse:
        cmd = commands.CreateItem(
            request.request_id,
            request.site_id,
            request.item_id,
            request.description,
            request.unit_of_measure,
        )
        return pb.CreateItemResponse(item=_item(await service.create_item(self._db, cmd)))

    async def CreateLoop(
        self, request: pb.CreateLoopRequest, context: object
    ) -> pb.CreateLoopResponse:
        cmd = commands.CreateLoop(
            request_id=request.request_id,
            site_id=request.site_id,
            loop_id=request.loop_id,
            item_id=request.item_id,
            supplier_station_id=request.supplier_station_id,
            consumer_station_id=request.consumer_station_id,
            supermarket_location_id=request.supermarket_location_id,
            container_quantity=request.container_quantity,
            card_count=request.card_count,
            initial_card_state=_initial_state(request.initial_card_state),
        )
        created = await service.create_loop(self._db, cmd)
        return pb.CreateLoopResponse(
            loop=_loop(created.loop), cards=[_card(c) for c in created.cards]
        )

    async def ResizeLoop(
        self, request: pb.ResizeLoopRequest, context: object
    ) -> pb.ResizeLoopResponse:
        cmd = commands.ResizeLoop(
            request.request_id, request.site_id, request.loop_id, request.card_count, request.reason
        )
        resized = await service.resize_loop(self._db, cmd)
        return pb.ResizeLoopResponse(
            loop=_loop(resized.loop),
            added_cards=[_card(c) for c in resized.added],
            signals=[_some_signal(s) for s in resized.signals],
            retired_cards=[_card(c) for c in resized.retired],
        )

    async def GetLoop(self, request: pb.GetLoopRequest, context: object) -> pb.GetLoopResponse:
        found = await service.get_loop(self._db, request.site_id, request.loop_id)
        return pb.GetLoopResponse(loop=_loop(found.loop), cards=[_card(c) for c in found.cards])

    async def ListLoops(
        self, request: pb.ListLoopsRequest, context: object
    ) -> pb.ListLoopsResponse:
        page = await service.list_loops(
            self._db, request.site_id, request.page_size, request.page_token
        )
        return pb.ListLoopsResponse(
            loops=[_loop(loop) for loop in page.loops], next_page_token=page.next_page_token
        )

    async def GetCard(self, request: pb.GetCardRequest, context: object) -> pb.GetCardResponse:
        card = await service.get_card(self._db, request.site_id, request.card_code)
        return pb.GetCardResponse(card=_card(card))

    async def ScanCard(self, request: pb.ScanCardRequest, context: object) -> pb.ScanCardResponse:
        cmd = commands.ScanCard(
            request.request_id, request.site_id, request.station_id, request.card_code
        )
        done = await service.scan_card(self._db, cmd)
        return pb.ScanCardResponse(card=_card(done.card), signal=_signal(done.signal))

    async def StartSignal(
        self, request: pb.StartSignalRequest, context: object
    ) -> pb.StartSignalResponse:
        cmd = commands.StartSignal(
            request.request_id, request.site_id, request.station_id, request.card_code
        )
        done = await service.start_signal(self._db, cmd)
        return pb.StartSignalResponse(card=_card(done.card), signal=_signal(done.signal))

    async def CompleteCard(
        self, request: pb.CompleteCardRequest, context: object
    ) -> pb.CompleteCardResponse:
        cmd = commands.CompleteCard(
            request.request_id,
            request.site_id,
            request.station_id,
            request.card_code,
            request.lot_id,
            request.quantity,
        )
        done = await service.complete_card(self._db, cmd)
        return pb.CompleteCardResponse(card=_card(done.card), signal=_signal(done.signal))

    async def WatchSignals(
        self, request: pb.WatchSignalsRequest, context: object
    ) -> AsyncIterator[pb.WatchSignalsResponse]:
        updates = service.watch_signals(
            self._db,
            self._notifications,
            request.site_id,
            request.station_id,
            request.after_sequence,
            self._settings.heartbeat_seconds,
        )
        async for update in updates:
            yield _feed_item(update)

    async def StartInstruction(
        self, request: pb.StartInstructionRequest, context: object
    ) -> pb.StartInstructionResponse:
        cmd = commands.StartInstruction(
            request.request_id, request.site_id, request.station_id, request.instruction_id
        )
        started = await service.start_instruction(self._db, cmd)
        return pb.StartInstructionResponse(instruction=_instruction(started))

    async def CompleteInstruction(
        self, request: pb.CompleteInstructionRequest, context: object
    ) -> pb.CompleteInstructionResponse:
        cmd = commands.CompleteInstruction(
            request.request_id,
            request.site_id,
            request.station_id,
            request.instruction_id,
            request.lot_id,
            request.quantity,
        )
        completed = await service.complete_instruction(self._db, cmd)
        return pb.CompleteInstructionResponse(instruction=_instruction(completed))

    async def GetBoard(self, request: pb.GetBoardRequest, context: object) -> pb.GetBoardResponse:
        return _board(await service.get_board(self._db, request.site_id))

    async def AnalyzeLine(
        self, request: pb.AnalyzeLineRequest, context: object
    ) -> pb.AnalyzeLineResponse:
        report = await service.analyze_line(
            self._db,
            self._analyst,
            request.site_id,
            read_timestamp("start_time", request),
            read_timestamp("end_time", request),
            _safety(request.safety_factor, request.service_level),
        )
        return _line_report(report)

    async def SetSizingPolicy(
        self, request: pb.SetSizingPolicyRequest, context: object
    ) -> pb.SetSizingPolicyResponse:
        cmd = commands.SetSizingPolicy(
            request_id=request.request_id,
            site_id=request.site_id,
            loop_id=request.loop_id,
            enabled=request.enabled,
            min_cards=request.min_cards,
            max_cards=request.max_cards,
            safety=_safety(request.safety_factor, request.service_level),
            period=_duration("period", request.period),
            window=_duration("window", request.window),
        )
        return pb.SetSizingPolicyResponse(
            policy=_policy(await service.set_sizing_policy(self._db, cmd))
        )


def assemble(db: Database, settings: Settings) -> Components:
    notifications = Notifications(settings.database_url, storage.SIGNALS_CHANNEL)
    analyst = Analyst(settings.database_url, db.schema)
    return Components(
        servicers=[
            (
                stations_pb2_grpc.add_StationsServiceServicer_to_server,
                StationsServicer(db, notifications, analyst, settings),
            ),
        ],
        service_names=[
            pb.DESCRIPTOR.services_by_name["StationsService"].full_name,
        ],
        background=[
            notifications.run(),
            every(
                settings.analysis_refresh_seconds,
                partial(metrics.publish_analysis, db, analyst, settings.analysis_window_seconds),
            ),
            every(
                settings.sizing_check_seconds, partial(service.apply_sizing_policies, db, analyst)
            ),
        ],
        on_stop=[notifications.close],
    )
