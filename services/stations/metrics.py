"""The stations service's domain metrics."""

from datetime import UTC, datetime, timedelta

from prometheus_client import Counter, Gauge, Histogram

from services.core.db import Database
from services.stations import storage
from services.stations.analyst import Analyst, Question
from services.stations.analytics import HOUR, Distribution, LineAnalysis, Window
from services.stations.domain import Board, CardState
from services.stations.sizing import enabled_safeties

_WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800)

SIGNALS_RAISED = Counter(
    "kanban_signals_raised",
    "Signals raised at supplier stations (one per emptied card).",
    ("site_id", "station_id", "loop_id"),
)
CARDS_RETIRED = Counter(
    "kanban_cards_retired",
    "Cards that came back empty and retired instead of raising a signal: their loop "
    "was being made smaller.",
    ("site_id", "loop_id"),
)
SIGNALS_COMPLETED = Counter(
    "kanban_signals_completed",
    "Signals whose container was completed FULL.",
    ("site_id", "station_id", "loop_id"),
)
OVERPRODUCTION_BLOCKED = Counter(
    "kanban_overproduction_blocked",
    "Completions refused: no started card or order instruction allowed them, or they exceeded "
    "it (loop_id is empty for a pacemaker's instructions).",
    ("site_id", "station_id", "loop_id"),
)
SCANS_REFUSED = Counter(
    "kanban_scans_refused",
    "Scans refused, by reason (e.g. LOT_QUARANTINED: the container's lot is on hold).",
    ("site_id", "station_id", "reason"),
)
SIGNAL_WAIT = Histogram(
    "kanban_signal_wait_seconds",
    "From the consumer's scan until the supplier starts the signal.",
    ("site_id", "station_id"),
    buckets=_WAIT_BUCKETS,
)
LEAD_TIME = Histogram(
    "kanban_card_lead_time_seconds",
    "From a card becoming EMPTY until it is FULL again.",
    ("site_id", "loop_id"),
    buckets=_WAIT_BUCKETS,
)
LOOP_WIP = Gauge(
    "kanban_loop_wip_units",
    "Units in the loop's supermarket plus units in process.",
    ("site_id", "loop_id", "supplier_station_id", "consumer_station_id"),
)
LOOP_CAP = Gauge(
    "kanban_loop_cap_units",
    "The loop's cap: cards x container quantity.",
    ("site_id", "loop_id", "supplier_station_id", "consumer_station_id"),
)
STATION_WIP = Gauge(
    "kanban_station_wip_units",
    "WIP of the loops a station supplies.",
    ("site_id", "station_id"),
)
STATION_CAP = Gauge(
    "kanban_station_cap_units",
    "Cap of the loops a station supplies.",
    ("site_id", "station_id"),
)
OPEN_SIGNALS = Gauge(
    "kanban_open_signals",
    "Signals queued at a station, not yet started.",
    ("site_id", "station_id"),
)
OPEN_INSTRUCTIONS = Gauge(
    "kanban_open_instructions",
    "Production instructions of orders queued at a pacemaker, not yet started.",
    ("site_id", "station_id"),
)
INSTRUCTIONS_COMPLETED = Counter(
    "kanban_instructions_completed",
    "Production instructions completed at pacemakers.",
    ("site_id", "station_id"),
)
INSTRUCTIONS_REFUSED = Counter(
    "kanban_instructions_refused",
    "Released instructions that could not be queued (e.g. the pacemaker is unknown).",
    ("site_id", "station_id", "reason"),
)
CARDS = Gauge("kanban_cards", "Cards by state.", ("site_id", "loop_id", "state"))

# The line's analysis over the last analysis window (see services/stations/analytics.py).
ANALYSIS_WINDOW = Gauge(
    "kanban_analysis_window_seconds", "The window the analysis gauges cover.", ("site_id",)
)
LOOP_THROUGHPUT = Gauge(
    "kanban_loop_throughput_units_per_second",
    "Units the loop's supplier completed over the window.",
    ("site_id", "loop_id"),
)
LOOP_CONSUMPTION = Gauge(
    "kanban_loop_consumption_units_per_second",
    "Units the loop's consumer took (containers emptied) over the window.",
    ("site_id", "loop_id"),
)
LOOP_CONSUMPTION_TREND = Gauge(
    "kanban_loop_consumption_trend_ratio",
    "How much the consumption rate changed across the window, as a share of its mean.",
    ("site_id", "loop_id"),
)
LOOP_LEAD_TIME = Gauge(
    "kanban_loop_lead_time_window_seconds",
    "Lead time from EMPTY to FULL of the cards completed over the window, by percentile.",
    ("site_id", "loop_id", "percentile"),
)
LOOP_WAITING_TIME = Gauge(
    "kanban_loop_waiting_time_window_seconds",
    "From EMPTY until the supplier started, over the window, by percentile (p50, p90, p99).",
    ("site_id", "loop_id", "percentile"),
)
LOOP_AVERAGE_WIP = Gauge(
    "kanban_loop_average_wip_units",
    "Units in the supermarket plus in process, averaged over the window.",
    ("site_id", "loop_id"),
)
LOOP_WIP_TURNOVER = Gauge(
    "kanban_loop_wip_turnover_seconds",
    "How long the loop's average WIP lasts at its throughput (WIP turnover days, in seconds).",
    ("site_id", "loop_id"),
)
LOOP_INVENTORY_TURNS = Gauge(
    "kanban_loop_inventory_turns_per_year",
    "Yearly consumption over the supermarket's average stock.",
    ("site_id", "loop_id"),
)
LOOP_STOCKOUT = Gauge(
    "kanban_loop_stockout_ratio",
    "Share of the window the supermarket held no full container.",
    ("site_id", "loop_id"),
)
LOOP_LITTLE_ADDS_UP = Gauge(
    "kanban_loop_littles_law_adds_up",
    "1 when cards in replenishment match throughput x lead time, 0 when the data do not add up.",
    ("site_id", "loop_id"),
)
LOOP_CARDS = Gauge(
    "kanban_loop_cards",
    "Cards in the loop: the current count and the recommended N = ceil(D x L x (1 + a) / C).",
    ("site_id", "loop_id", "sizing"),
)
LOOP_STOCKOUT_RISK = Gauge(
    "kanban_loop_stockout_risk_ratio",
    "Chance one lead time's demand exceeds the loop's cap, with the current and the "
    "recommended number of cards.",
    ("site_id", "loop_id", "sizing"),
)
STATION_UTILISATION = Gauge(
    "kanban_station_utilisation_ratio",
    "Share of the window with at least one card in process at the station.",
    ("site_id", "station_id"),
)
STATION_AVERAGE_QUEUE = Gauge(
    "kanban_station_average_queue_signals",
    "Signals waiting to be started at the station, averaged over the window.",
    ("site_id", "station_id"),
)
STATION_QUEUE_GROWTH = Gauge(
    "kanban_station_queue_growth_signals_per_second",
    "How fast the station's queue of waiting signals grew over the window.",
    ("site_id", "station_id"),
)
BOTTLENECK = Gauge(
    "kanban_line_bottleneck",
    "1 for the station that limits the line's output over the window, 0 for the others.",
    ("site_id", "station_id"),
)
SIZING_RESIZES = Counter(
    "kanban_sizing_policy_resizes",
    "Loops resized by their automatic sizing policy.",
    ("site_id", "loop_id"),
)


def publish(site_id: str, board: Board) -> None:
    for status in board.loops:
        loop = status.loop
        labels = (site_id, loop.loop_id, loop.supplier_station_id, loop.consumer_station_id)
        LOOP_WIP.labels(*labels).set(status.wip_units)
        LOOP_CAP.labels(*labels).set(loop.cap_units)
        for state, count in (
            (CardState.FULL, status.full_cards),
            (CardState.EMPTY, status.empty_cards),
            (CardState.IN_PROCESS, status.in_process_cards),
        ):
            CARDS.labels(site_id, loop.loop_id, state.value).set(count)
    for station in board.stations:
        STATION_WIP.labels(site_id, station.station_id).set(station.wip_units)
        STATION_CAP.labels(site_id, station.station_id).set(station.cap_units)
        OPEN_SIGNALS.labels(site_id, station.station_id).set(station.open_signals)
        OPEN_INSTRUCTIONS.labels(site_id, station.station_id).set(station.open_instructions)


async def refresh_gauges(db: Database) -> None:
    """Gauges come from the database, so every replica reports the same truth."""
    async with db.pool.acquire() as conn:
        statuses = await storage.loop_statuses(conn, None)
        for site_id in await storage.site_ids(conn):
            loops = [s for s in statuses if s.loop.site_id == site_id]
            signals = await storage.open_signal_counts(conn, site_id)
            instructions = await storage.open_instruction_counts(conn, site_id)
            publish(site_id, Board.of(loops, signals, instructions))


def publish_line(site_id: str, analysis: LineAnalysis) -> None:
    ANALYSIS_WINDOW.labels(site_id).set(analysis.window.seconds)
    for loop in analysis.loops:
        labels = (site_id, loop.loop_id)
        LOOP_THROUGHPUT.labels(*labels).set(loop.throughput_units_per_hour / HOUR)
        LOOP_CONSUMPTION.labels(*labels).set(loop.consumption_units_per_hour / HOUR)
        LOOP_CONSUMPTION_TREND.labels(*labels).set(loop.consumption_trend)
        _set_quantiles(LOOP_LEAD_TIME, labels, loop.lead_time)
        _set_quantiles(LOOP_WAITING_TIME, labels, loop.waiting_time)
        LOOP_AVERAGE_WIP.labels(*labels).set(loop.average_wip_units)
        if loop.wip_turnover_days is not None:
            LOOP_WIP_TURNOVER.labels(*labels).set(loop.wip_turnover_days * 24 * HOUR)
        if loop.inventory_turnover_per_year is not None:
            LOOP_INVENTORY_TURNS.labels(*labels).set(loop.inventory_turnover_per_year)
        LOOP_STOCKOUT.labels(*labels).set(loop.stockout_fraction)
        LOOP_LITTLE_ADDS_UP.labels(*labels).set(1 if loop.little.adds_up else 0)
        LOOP_CARDS.labels(*labels, "current").set(loop.shape.card_count)
        if loop.sizing is not None:
            LOOP_CARDS.labels(*labels, "recommended").set(loop.sizing.recommended_cards)
            LOOP_STOCKOUT_RISK.labels(*labels, "current").set(loop.sizing.stockout_risk_current)
            LOOP_STOCKOUT_RISK.labels(*labels, "recommended").set(
                loop.sizing.stockout_risk_recommended
            )
    bottleneck = analysis.bottleneck.station_id if analysis.bottleneck else None
    for station in analysis.stations:
        labels = (site_id, station.station_id)
        STATION_UTILISATION.labels(*labels).set(station.utilisation)
        STATION_AVERAGE_QUEUE.labels(*labels).set(station.average_queue)
        STATION_QUEUE_GROWTH.labels(*labels).set(station.queue_growth_per_hour / HOUR)
        BOTTLENECK.labels(*labels).set(1 if station.station_id == bottleneck else 0)


def _set_quantiles(gauge: Gauge, labels: tuple[str, str], durations: Distribution) -> None:
    if durations.count:
        for percentile, value in (
            ("p50", durations.p50),
            ("p90", durations.p90),
            ("p99", durations.p99),
        ):
            gauge.labels(*labels, percentile).set(value)


async def publish_analysis(db: Database, analyst: Analyst, window_seconds: float) -> None:
    """The analysis gauges over the window ending now, for each site."""
    end = datetime.now(UTC)
    window = Window(end - timedelta(seconds=window_seconds), end)
    async with db.pool.acquire() as conn:
        policies = {
            site_id: await storage.sizing_policies(conn, site_id)
            for site_id in await storage.site_ids(conn)
        }
    questions = [Question(site, window, enabled_safeties(p)) for site, p in policies.items()]
    for question, analysis in zip(questions, await analyst.analyze(questions), strict=True):
        publish_line(question.site_id, analysis)
