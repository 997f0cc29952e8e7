"""Alert rules as plain Python: which conditions hold in a site's picture of the
line, and how each alert lives: FIRING -> ACKNOWLEDGED -> RESOLVED.

One alert per condition key, never a flood: while a key's condition holds, its
alert stays open; when it clears, the alert resolves only after the condition
stayed clear for the rule's clear delay (hysteresis), and a value hovering at a
threshold keeps its one alert instead of firing again and again.
"""

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.core.errors import FailedPrecondition

ALERT_RESOLVED = "ALERT_RESOLVED"


class Rule(enum.Enum):
    WIP_ABOVE_THRESHOLD = "WIP_ABOVE_THRESHOLD"
    FULL_CONTAINER_WAITING = "FULL_CONTAINER_WAITING"
    SIGNAL_NOT_STARTED = "SIGNAL_NOT_STARTED"
    STOCK_BELOW_SAFETY_STOCK = "STOCK_BELOW_SAFETY_STOCK"
    STOCK_ABOVE_OVERSTOCK = "STOCK_ABOVE_OVERSTOCK"
    OVERPRODUCTION_ATTEMPTED = "OVERPRODUCTION_ATTEMPTED"
    LOT_QUARANTINED = "LOT_QUARANTINED"
    COUNT_VARIANCE = "COUNT_VARIANCE"
    CARD_NOT_SEEN = "CARD_NOT_SEEN"


class Severity(enum.Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertState(enum.Enum):
    FIRING = "FIRING"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    RESOLVED = "RESOLVED"


class Scope(enum.Enum):
    SITE = "SITE"
    LOOP = "LOOP"
    STATION = "STATION"
    ITEM = "ITEM"


HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class RuleSpec:
    severity: Severity
    # The threshold when none is set; 0 means the rule is off until one is.
    default: float
    # Whether a clearing condition waits out the clear delay before resolving.
    hysteresis: bool


RULES: dict[Rule, RuleSpec] = {
    # Kanban WIP never exceeds the cap: this warns of buffers near it, where the
    # plant wants to know; off until a plant sets a share of cap.
    Rule.WIP_ABOVE_THRESHOLD: RuleSpec(Severity.WARNING, 0.0, True),
    Rule.FULL_CONTAINER_WAITING: RuleSpec(Severity.WARNING, 8 * HOUR, False),
    Rule.SIGNAL_NOT_STARTED: RuleSpec(Severity.CRITICAL, 1 * HOUR, False),
    Rule.STOCK_BELOW_SAFETY_STOCK: RuleSpec(Severity.CRITICAL, 0.0, True),
    Rule.STOCK_ABOVE_OVERSTOCK: RuleSpec(Severity.WARNING, 0.0, True),
    # Resolves after this long without another attempt.
    Rule.OVERPRODUCTION_ATTEMPTED: RuleSpec(Severity.WARNING, 15 * 60.0, False),
    Rule.LOT_QUARANTINED: RuleSpec(Severity.WARNING, 0.0, False),
    Rule.COUNT_VARIANCE: RuleSpec(Severity.WARNING, 0.0, False),
    Rule.CARD_NOT_SEEN: RuleSpec(Severity.INFO, 7 * DAY, False),
}
# Rules whose threshold people may set; the others follow lines set elsewhere.
TUNABLE = {
    Rule.WIP_ABOVE_THRESHOLD,
    Rule.FULL_CONTAINER_WAITING,
    Rule.SIGNAL_NOT_STARTED,
    Rule.OVERPRODUCTION_ATTEMPTED,
    Rule.CARD_NOT_SEEN,
}
# A WIP alert resolves only once WIP fell this share below its threshold.
WIP_BAND = 0.1


# The site's picture of the line, kept from the events other services send.


@dataclass(frozen=True)
class LoopFacts:
    loop_id: str
    item_id: str
    supplier_station_id: str
    consumer_station_id: str
    cap_units: int
    container_quantity: int


@dataclass(frozen=True)
class CardFacts:
    card_code: str
    loop_id: str
    # FULL, EMPTY or IN_PROCESS.
    state: str
    quantity: int
    since: datetime


@dataclass(frozen=True)
class StockFacts:
    item_id: str
    location_id: str
    state: str
    on_hand: int
    safety_stock: int
    overstock: int


@dataclass(frozen=True)
class HoldFacts:
    lot_id: str
    item_id: str
    reason: str


@dataclass(frozen=True)
class VarianceFacts:
    count_id: str
    location_id: str
    item_id: str
    lot_id: str
    book_quantity: int
    counted_quantity: int


@dataclass(frozen=True)
class AttemptFacts:
    station_id: str
    attempts: int
    last_at: datetime
    last_detail: str


@dataclass(frozen=True)
class Picture:
    loops: list[LoopFacts]
    # Each loop's units in its supermarket and in process, as the stations service
    # counts them (a FULL card its quantity, an IN_PROCESS one a container); a loop
    # with none may be absent. Kept by the database as cards change: a site has many.
    wip: dict[str, int]
    # The cards old enough for a card rule (card_age_that_matters); younger ones
    # cannot meet any, and a site has many.
    cards: list[CardFacts]
    stock: list[StockFacts]
    holds: list[HoldFacts]
    variances: list[VarianceFacts]
    attempts: list[AttemptFacts]


@dataclass(frozen=True)
class Threshold:
    site_id: str
    rule: Rule
    scope: Scope
    # Empty for the site scope.
    scope_id: str
    value: float


class Thresholds:
    """The most specific threshold set for a subject, else the rule's default."""

    def __init__(self, thresholds: Iterable[Threshold]) -> None:
        self._values = {(t.rule, t.scope, t.scope_id): t.value for t in thresholds}

    def value(self, rule: Rule, **scopes: str) -> float:
        for scope in (Scope.LOOP, Scope.STATION, Scope.ITEM):
            key = (rule, scope, scopes.get(scope.value.lower(), ""))
            if key[2] and key in self._values:
                return self._values[key]
        return self._values.get((rule, Scope.SITE, ""), RULES[rule].default)


@dataclass(frozen=True)
class Condition:
    """A rule that holds for a subject now."""

    rule: Rule
    subject: str
    message: str
    value: float = 0.0
    threshold: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.rule.value}:{self.subject}"


def _above(wip: float, cap: float, share: float, was_open: bool) -> bool:
    """At or above the share of cap; an open alert holds until WIP falls below the band."""
    line = cap * share * (1 - WIP_BAND) if was_open else cap * share
    return share > 0 and cap > 0 and wip >= line


def _card_limits(
    loops: Iterable[LoopFacts], thresholds: Thresholds
) -> dict[tuple[Rule, str], float]:
    """The limit of each card rule for each loop: a card's limits are its loop's, so a
    site of many cards looks them up once per loop, not once per card."""
    limits = {}
    for loop in loops:
        scopes = dict(loop=loop.loop_id, item=loop.item_id)
        # A full container waits at its consumer; an empty card, at its supplier.
        limits[Rule.FULL_CONTAINER_WAITING, loop.loop_id] = thresholds.value(
            Rule.FULL_CONTAINER_WAITING, station=loop.consumer_station_id, **scopes
        )
        for rule in (Rule.SIGNAL_NOT_STARTED, Rule.CARD_NOT_SEEN):
            limits[rule, loop.loop_id] = thresholds.value(
                rule, station=loop.supplier_station_id, **scopes
            )
    return limits


def card_age_that_matters(loops: Iterable[LoopFacts], thresholds: Thresholds) -> float | None:
    """The youngest age, in seconds, at which a card can meet a card rule: its loop's
    smallest limit that is on, across loops. None when every card rule is off."""
    return min((limit for limit in _card_limits(loops, thresholds).values() if limit), default=None)


def conditions(
    picture: Picture, thresholds: Thresholds, open_keys: set[str], now: datetime
) -> list[Condition]:
    """Every condition that holds in the picture now."""
    found: list[Condition] = []
    loops = {loop.loop_id: loop for loop in picture.loops}

    rule = Rule.WIP_ABOVE_THRESHOLD
    station_wip: dict[str, tuple[int, int]] = {}
    for loop in picture.loops:
        wip = picture.wip.get(loop.loop_id, 0)
        held, cap = station_wip.get(loop.consumer_station_id, (0, 0))
        station_wip[loop.consumer_station_id] = (held + wip, cap + loop.cap_units)
        share = thresholds.value(
            rule, loop=loop.loop_id, station=loop.consumer_station_id, item=loop.item_id
        )
        candidate = Condition(
            rule,
            f"loop/{loop.loop_id}",
            f"WIP of loop {loop.loop_id} is {wip} of its cap {loop.cap_units}",
            wip,
            loop.cap_units * share,
        )
        if _above(wip, loop.cap_units, share, candidate.key in open_keys):
            found.append(candidate)
    for station_id, (wip, cap) in sorted(station_wip.items()):
        # The station's own threshold, else the site's: loop thresholds are per loop.
        share = thresholds.value(rule, station=station_id) if station_id else 0.0
        candidate = Condition(
            rule,
            f"station/{station_id}",
            f"WIP waiting at station {station_id} is {wip} of its input cap {cap}",
            wip,
            cap * share,
        )
        if _above(wip, cap, share, candidate.key in open_keys):
            found.append(candidate)

    limits = _card_limits(picture.loops, thresholds)
    for card in picture.cards:
        card_loop = loops.get(card.loop_id)
        if card_loop is None:
            continue
        age = (now - card.since).total_seconds()
        if card.state == "FULL":
            limit = limits[Rule.FULL_CONTAINER_WAITING, card_loop.loop_id]
            if limit and age > limit:
                found.append(
                    Condition(
                        Rule.FULL_CONTAINER_WAITING,
                        f"card/{card.card_code}",
                        f"the FULL container card_loop card {card.card_code} has waited "
                        f"{_duration(age)} at {card_loop.consumer_station_id}'s supermarket",
                        age,
                        limit,
                    )
                )
        if card.state == "EMPTY":
            limit = limits[Rule.SIGNAL_NOT_STARTED, card_loop.loop_id]
            if limit and age > limit:
                found.append(
                    Condition(
                        Rule.SIGNAL_NOT_STARTED,
                        f"card/{card.card_code}",
                        f"card {card.card_code} has been EMPTY for {_duration(age)}: "
                        f"{card_loop.supplier_station_id} has not started it, "
                        f"{card_loop.consumer_station_id} will starve",
                        age,
                        limit,
                    )
                )
        limit = limits[Rule.CARD_NOT_SEEN, card_loop.loop_id]
        if limit and age > limit:
            found.append(
                Condition(
                    Rule.CARD_NOT_SEEN,
                    f"card/{card.card_code}",
                    f"card {card.card_code} ({card.state}) has not moved for "
                    f"{_duration(age)}: is it lost?",
                    age,
                    limit,
                )
            )

    for level in picture.stock:
        where = f"{level.item_id}@{level.location_id}" if level.location_id else level.item_id
        place = f" at {level.location_id}" if level.location_id else ""
        if level.state == "BELOW_SAFETY_STOCK":
            found.append(
                Condition(
                    Rule.STOCK_BELOW_SAFETY_STOCK,
                    f"stock/{where}",
                    f"{level.on_hand} {level.item_id}{place}, below the safety stock of "
                    f"{level.safety_stock}",
                    level.on_hand,
                    level.safety_stock,
                )
            )
        if level.state == "ABOVE_OVERSTOCK":
            found.append(
                Condition(
                    Rule.STOCK_ABOVE_OVERSTOCK,
                    f"stock/{where}",
                    f"{level.on_hand} {level.item_id}{place}, above the overstock line of "
                    f"{level.overstock}",
                    level.on_hand,
                    level.overstock,
                )
            )

    for attempt in picture.attempts:
        quiet = thresholds.value(Rule.OVERPRODUCTION_ATTEMPTED, station=attempt.station_id)
        since = (now - attempt.last_at).total_seconds()
        if quiet and since < quiet:
            found.append(
                Condition(
                    Rule.OVERPRODUCTION_ATTEMPTED,
                    f"station/{attempt.station_id}",
                    f"{attempt.station_id} tried to over-produce ({attempt.attempts} refused "
                    f"so far); last: {attempt.last_detail}",
                    attempt.attempts,
                )
            )

    for hold in picture.holds:
        found.append(
            Condition(
                Rule.LOT_QUARANTINED,
                f"lot/{hold.lot_id}",
                f"lot {hold.lot_id} of {hold.item_id} is quarantined: {hold.reason}",
            )
        )
    for variance in picture.variances:
        found.append(
            Condition(
                Rule.COUNT_VARIANCE,
                f"count/{variance.count_id}/{variance.item_id}/{variance.lot_id}",
                f"count {variance.count_id} at {variance.location_id} found "
                f"{variance.counted_quantity} of lot {variance.lot_id}, the books say "
                f"{variance.book_quantity}: waiting for approval",
                variance.counted_quantity - variance.book_quantity,
            )
        )
    return found


def _duration(seconds: float) -> str:
    if seconds >= DAY:
        return f"{seconds / DAY:.1f} days"
    if seconds >= HOUR:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class Alert:
    site_id: str
    alert_id: str
    rule: Rule
    severity: Severity
    state: AlertState
    subject: str
    message: str
    value: float
    threshold: float
    fired_at: datetime
    acknowledged_by: str
    acknowledge_comment: str
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    # Since when the condition has been clear, while the alert waits to resolve.
    clear_since: datetime | None
    sequence: int

    @property
    def key(self) -> str:
        return f"{self.rule.value}:{self.subject}"

    @classmethod
    def fire(cls, site_id: str, alert_id: str, condition: Condition, now: datetime) -> "Alert":
        return cls(
            site_id=site_id,
            alert_id=alert_id,
            rule=condition.rule,
            severity=RULES[condition.rule].severity,
            state=AlertState.FIRING,
            subject=condition.subject,
            message=condition.message,
            value=condition.value,
            threshold=condition.threshold,
            fired_at=now,
            acknowledged_by="",
            acknowledge_comment="",
            acknowledged_at=None,
            resolved_at=None,
            clear_since=None,
            sequence=0,
        )

    def acknowledge(self, actor: str, comment: str, now: datetime) -> "Alert":
        if self.state is AlertState.RESOLVED:
            raise FailedPrecondition(
                ALERT_RESOLVED,
                f"alert {self.alert_id} resolved at {self.resolved_at}: nothing to acknowledge",
                {"alert_id": self.alert_id},
            )
        return replace(
            self,
            state=AlertState.ACKNOWLEDGED,
            acknowledged_by=actor,
            acknowledge_comment=comment,
            acknowledged_at=now,
        )


@dataclass(frozen=True)
class Review:
    """What one evaluation changes: alerts to fire, to update quietly, to resolve."""

    fire: list[Condition]
    # Open alerts with fresh facts (value, message, clear_since); no state change.
    refresh: list[Alert]
    resolve: list[Alert]


def review(
    open_alerts: list[Alert], holding: list[Condition], now: datetime, clear_delay: timedelta
) -> Review:
    """Compares the open alerts with the conditions that hold now."""
    by_key = {c.key: c for c in holding}
    alerts = {a.key: a for a in open_alerts}
    fire = [c for key, c in by_key.items() if key not in alerts]
    refresh, resolve = [], []
    for key, alert in alerts.items():
        condition = by_key.get(key)
        if condition is not None:
            fresh = replace(
                alert,
                message=condition.message,
                value=condition.value,
                threshold=condition.threshold,
                clear_since=None,
            )
            if fresh != alert:
                refresh.append(fresh)
            continue
        clear_since = alert.clear_since or now
        if not RULES[alert.rule].hysteresis or now - clear_since >= clear_delay:
            resolve.append(replace(alert, state=AlertState.RESOLVED, resolved_at=now))
        elif alert.clear_since is None:
            refresh.append(replace(alert, clear_since=clear_since))
    return Review(fire, refresh, resolve)
