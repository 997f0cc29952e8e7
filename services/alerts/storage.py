"""SQL for the alerts service: the site's picture of the line, thresholds, alerts."""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from services.alerts.domain import (
    Alert,
    AlertState,
    AttemptFacts,
    CardFacts,
    HoldFacts,
    LoopFacts,
    Picture,
    Rule,
    Scope,
    Severity,
    StockFacts,
    Threshold,
    VarianceFacts,
)
from services.core.errors import NotFound

# WatchAlerts listeners wait on this channel, keyed by site.
ALERTS_CHANNEL = "kanban_alerts"
# The evaluator wakes on this channel when an event changed a site's picture.
PICTURE_CHANNEL = "kanban_alerts_picture"
# How many alerts one read of WatchAlerts's feed returns at most.
FEED_PAGE = 500

# The picture


async def define_loop(conn: asyncpg.Connection, site_id: str, loop: LoopFacts) -> None:
    await conn.execute(
        """INSERT INTO loops (site_id, loop_id, item_id, supplier_station_id,
                              consumer_station_id, cap_units, container_quantity)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        site_id,
        loop.loop_id,
        loop.item_id,
        loop.supplier_station_id,
        loop.consumer_station_id,
        loop.cap_units,
        loop.container_quantity,
    )


async def set_loop_cap(
    conn: asyncpg.Connection, site_id: str, loop_id: str, cap_units: int
) -> None:
    await conn.execute(
        "UPDATE loops SET cap_units = $3 WHERE site_id = $1 AND loop_id = $2",
        site_id,
        loop_id,
        cap_units,
    )


def _units(card: str) -> str:
    """What a card adds to its loop's WIP (loops l), as the stations service counts:
    a FULL container its quantity, one in process a whole container."""
    return f"""CASE {card}.state WHEN 'FULL' THEN {card}.quantity
                                WHEN 'IN_PROCESS' THEN l.container_quantity ELSE 0 END"""


async def delete_card(conn: asyncpg.Connection, site_id: str, card_code: str) -> None:
    """A retired card is no longer followed: nothing waits on it."""
    await conn.execute(
        f"""WITH gone AS (
                DELETE FROM cards WHERE site_id = $1 AND card_code = $2
                RETURNING loop_id, state, quantity)
            UPDATE loops l SET wip_units = l.wip_units - {_units("gone")}
            FROM gone WHERE l.site_id = $1 AND l.loop_id = gone.loop_id""",
        site_id,
        card_code,
    )


async def set_card(conn: asyncpg.Connection, site_id: str, card: CardFacts) -> None:
    """Records the card's state, unless what is stored is newer (events of one card come
    in order, but a redelivery after a newer event must not turn the clock back), and
    moves its loop's WIP by the difference, in one statement."""
    await conn.execute(
        # `before` reads the statement's snapshot, the card as it was. No lock needed:
        # a card's events come from one relay, one batch at a time, in order.
        f"""WITH before AS (
                SELECT state, quantity FROM cards WHERE site_id = $1 AND card_code = $2),
            saved AS (
                INSERT INTO cards (site_id, card_code, loop_id, state, quantity, since)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (site_id, card_code) DO UPDATE
                SET state = $4, quantity = $5, since = $6 WHERE cards.since <= $6
                RETURNING state, quantity)
            UPDATE loops l
            SET wip_units = l.wip_units + (SELECT {_units("saved")} FROM saved)
                            - coalesce((SELECT {_units("before")} FROM before), 0)
            WHERE l.site_id = $1 AND l.loop_id = $3 AND EXISTS (SELECT 1 FROM saved)""",
        site_id,
        card.card_code,
        card.loop_id,
        card.state,
        card.quantity,
        card.since,
    )


async def card_loop(conn: asyncpg.Connection, site_id: str, card_code: str) -> str | None:
    value: str | None = await conn.fetchval(
        "SELECT loop_id FROM cards WHERE site_id = $1 AND card_code = $2", site_id, card_code
    )
    return value


async def set_stock_state(conn: asyncpg.Connection, site_id: str, level: StockFacts) -> None:
    await conn.execute(
        """INSERT INTO stock_states (site_id, item_id, location_id, state, on_hand,
                                     safety_stock, overstock)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (site_id, item_id, location_id) DO UPDATE
           SET state = $4, on_hand = $5, safety_stock = $6, overstock = $7""",
        site_id,
        level.item_id,
        level.location_id,
        level.state,
        level.on_hand,
        level.safety_stock,
        level.overstock,
    )


async def hold_lot(conn: asyncpg.Connection, site_id: str, hold: HoldFacts) -> None:
    await conn.execute(
        """INSERT INTO lot_holds (site_id, lot_id, item_id, reason) VALUES ($1, $2, $3, $4)
           ON CONFLICT (site_id, lot_id) DO UPDATE SET reason = $4""",
        site_id,
        hold.lot_id,
        hold.item_id,
        hold.reason,
    )


async def lift_hold(conn: asyncpg.Connection, site_id: str, lot_id: str) -> None:
    await conn.execute("DELETE FROM lot_holds WHERE site_id = $1 AND lot_id = $2", site_id, lot_id)


async def add_variance(conn: asyncpg.Connection, site_id: str, variance: VarianceFacts) -> None:
    await conn.execute(
        """INSERT INTO count_variances (site_id, count_id, location_id, item_id, lot_id,
                                        book_quantity, counted_quantity)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING""",
        site_id,
        variance.count_id,
        variance.location_id,
        variance.item_id,
        variance.lot_id,
        variance.book_quantity,
        variance.counted_quantity,
    )


async def close_count(conn: asyncpg.Connection, site_id: str, count_id: str) -> None:
    await conn.execute(
        "DELETE FROM count_variances WHERE site_id = $1 AND count_id = $2", site_id, count_id
    )


async def add_attempt(
    conn: asyncpg.Connection, site_id: str, station_id: str, at: datetime, detail: str
) -> None:
    await conn.execute(
        """INSERT INTO overproduction_attempts (site_id, station_id, attempts, last_at,
                                                last_detail)
           VALUES ($1, $2, 1, $3, $4)
           ON CONFLICT (site_id, station_id) DO UPDATE
           SET attempts = overproduction_attempts.attempts + 1,
               last_at = greatest(overproduction_attempts.last_at, $3), last_detail = $4""",
        site_id,
        station_id,
        at,
        detail,
    )


async def mark_changed(conn: asyncpg.Connection, site_id: str) -> None:
    """Queues the site for the evaluator, and wakes it once this transaction commits."""
    await conn.execute(
        """WITH queued AS (
               INSERT INTO changed_sites (site_id) VALUES ($1) ON CONFLICT DO NOTHING)
           SELECT pg_notify($2, '')""",
        site_id,
        PICTURE_CHANNEL,
    )


async def take_changed_sites(conn: asyncpg.Connection) -> list[str]:
    """The sites queued since the last look; each replica takes its own."""
    rows = await conn.fetch("DELETE FROM changed_sites RETURNING site_id")
    return sorted(r["site_id"] for r in rows)


async def sites(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT site_id FROM loops UNION SELECT site_id FROM stock_states
           UNION SELECT site_id FROM lot_holds UNION SELECT site_id FROM count_variances
           UNION SELECT site_id FROM overproduction_attempts
           UNION SELECT site_id FROM alerts WHERE state <> 'RESOLVED'"""
    )
    return [r["site_id"] for r in rows]


def _facts(cls: Any, rows: Iterable[asyncpg.Record]) -> list[Any]:
    return [cls(**{k: v for k, v in dict(r).items() if k != "site_id"}) for r in rows]


async def loops(conn: asyncpg.Connection, site_id: str) -> list[LoopFacts]:
    rows = await conn.fetch(
        """SELECT loop_id, item_id, supplier_station_id, consumer_station_id, cap_units,
                  container_quantity FROM loops WHERE site_id = $1""",
        site_id,
    )
    return [LoopFacts(**dict(r)) for r in rows]


async def picture(
    conn: asyncpg.Connection,
    site_id: str,
    loops: list[LoopFacts],
    cards_older_than: datetime | None,
) -> Picture:
    """The site's picture around its `loops`, with the cards that entered their state
    before `cards_older_than` (none if None)."""

    async def rows(table: str) -> list[asyncpg.Record]:
        result: list[asyncpg.Record] = await conn.fetch(
            f"SELECT * FROM {table} WHERE site_id = $1", site_id
        )
        return result

    wip = await conn.fetch(
        "SELECT loop_id, wip_units FROM loops WHERE site_id = $1 AND wip_units <> 0", site_id
    )
    old_cards = (
        await conn.fetch(
            "SELECT * FROM cards WHERE site_id = $1 AND since < $2", site_id, cards_older_than
        )
        if cards_older_than
        else []
    )
    return Picture(
        loops=loops,
        wip={r["loop_id"]: r["wip_units"] for r in wip},
        cards=_facts(CardFacts, old_cards),
        stock=_facts(StockFacts, await rows("stock_states")),
        holds=_facts(HoldFacts, await rows("lot_holds")),
        variances=_facts(VarianceFacts, await rows("count_variances")),
        attempts=_facts(AttemptFacts, await rows("overproduction_attempts")),
    )


# Thresholds


def _threshold(row: asyncpg.Record) -> Threshold:
    return Threshold(
        row["site_id"], Rule(row["rule"]), Scope(row["scope"]), row["scope_id"], row["value"]
    )


async def set_threshold(conn: asyncpg.Connection, threshold: Threshold) -> None:
    await conn.execute(
        """INSERT INTO thresholds (site_id, rule, scope, scope_id, value)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (site_id, rule, scope, scope_id) DO UPDATE SET value = $5""",
        threshold.site_id,
        threshold.rule.value,
        threshold.scope.value,
        threshold.scope_id,
        threshold.value,
    )


async def thresholds(
    conn: asyncpg.Connection, site_id: str, after: list[str] | None = None, limit: int = 10**6
) -> list[Threshold]:
    rows = await conn.fetch(
        """SELECT * FROM thresholds WHERE site_id = $1
             AND ($2::text[] IS NULL OR (rule, scope, scope_id) > ($2[1], $2[2], $2[3]))
           ORDER BY rule, scope, scope_id LIMIT $3""",
        site_id,
        after,
        limit,
    )
    return [_threshold(r) for r in rows]


# Alerts


def _alert(row: asyncpg.Record) -> Alert:
    values = dict(row)
    values["rule"] = Rule(values["rule"])
    values["severity"] = Severity(values["severity"])
    values["state"] = AlertState(values["state"])
    return Alert(**values)


async def lock_evaluation(conn: asyncpg.Connection, site_id: str) -> None:
    """One evaluation of a site at a time, across replicas, until commit."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alerts:' || $1))", site_id)


async def open_alerts(conn: asyncpg.Connection, site_id: str) -> list[Alert]:
    rows = await conn.fetch(
        "SELECT * FROM alerts WHERE site_id = $1 AND state <> 'RESOLVED'", site_id
    )
    return [_alert(r) for r in rows]


async def next_sequence(conn: asyncpg.Connection, site_id: str) -> int:
    value = await conn.fetchval(
        """INSERT INTO site_sequences (site_id, last_sequence) VALUES ($1, 1)
           ON CONFLICT (site_id) DO UPDATE SET last_sequence = site_sequences.last_sequence + 1
           RETURNING last_sequence""",
        site_id,
    )
    return int(value)


async def last_sequence(conn: asyncpg.Connection, site_id: str) -> int:
    value = await conn.fetchval(
        "SELECT last_sequence FROM site_sequences WHERE site_id = $1", site_id
    )
    return int(value or 0)


async def save_alert(conn: asyncpg.Connection, alert: Alert) -> None:
    await conn.execute(
        """INSERT INTO alerts (site_id, alert_id, rule, severity, state, subject, message,
                               value, threshold, fired_at, acknowledged_by,
                               acknowledge_comment, acknowledged_at, resolved_at, clear_since,
                               sequence)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           ON CONFLICT (site_id, alert_id) DO UPDATE
           SET state = $5, message = $7, value = $8, threshold = $9, acknowledged_by = $11,
               acknowledge_comment = $12, acknowledged_at = $13, resolved_at = $14,
               clear_since = $15, sequence = $16""",
        alert.site_id,
        alert.alert_id,
        alert.rule.value,
        alert.severity.value,
        alert.state.value,
        alert.subject,
        alert.message,
        alert.value,
        alert.threshold,
        alert.fired_at,
        alert.acknowledged_by,
        alert.acknowledge_comment,
        alert.acknowledged_at,
        alert.resolved_at,
        alert.clear_since,
        alert.sequence,
    )


async def notify_site(conn: asyncpg.Connection, site_id: str) -> None:
    await conn.execute("SELECT pg_notify($1, $2)", ALERTS_CHANNEL, site_id)


async def get_alert(
    conn: asyncpg.Connection, site_id: str, alert_id: str, *, lock: bool = False
) -> Alert:
    row = await conn.fetchrow(
        "SELECT * FROM alerts WHERE site_id = $1 AND alert_id = $2"
        + (" FOR UPDATE" if lock else ""),
        site_id,
        alert_id,
    )
    if row is None:
        raise NotFound("alert", alert_id)
    return _alert(row)


async def list_alerts(
    conn: asyncpg.Connection,
    site_id: str,
    state: AlertState | None,
    rule: Rule | None,
    open_only: bool,
    before_sequence: int | None,
    limit: int,
) -> list[Alert]:
    rows = await conn.fetch(
        """SELECT * FROM alerts
           WHERE site_id = $1 AND ($2::text IS NULL OR state = $2)
             AND ($3::text IS NULL OR rule = $3) AND (NOT $4 OR state <> 'RESOLVED')
             AND ($5::bigint IS NULL OR sequence < $5)
           ORDER BY sequence DESC LIMIT $6""",
        site_id,
        state.value if state else None,
        rule.value if rule else None,
        open_only,
        before_sequence,
        limit,
    )
    return [_alert(r) for r in rows]


async def alerts_after(conn: asyncpg.Connection, site_id: str, sequence: int) -> list[Alert]:
    rows = await conn.fetch(
        """SELECT * FROM alerts WHERE site_id = $1 AND sequence > $2
           ORDER BY sequence LIMIT $3""",
        site_id,
        sequence,
        FEED_PAGE,
    )
    return [_alert(r) for r in rows]


async def firing_counts(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT site_id, rule, severity, count(*) AS open FROM alerts
           WHERE state <> 'RESOLVED' GROUP BY 1, 2, 3"""
    )
    return rows


# Webhooks


async def enqueue_webhooks(conn: asyncpg.Connection, urls: list[str], body: str) -> None:
    await conn.executemany(
        "INSERT INTO webhook_deliveries (url, body) VALUES ($1, $2)", [(u, body) for u in urls]
    )


async def due_webhooks(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The oldest deliveries due, locked so replicas send each once."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, url, body::text AS body, attempts FROM webhook_deliveries
           WHERE delivered_at IS NULL AND next_attempt_at <= now()
           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
        limit,
    )
    return rows


async def webhook_delivered(conn: asyncpg.Connection, delivery_id: int) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET delivered_at = now(), attempts = attempts + 1
           WHERE id = $1""",
        delivery_id,
    )


async def webhook_failed(
    conn: asyncpg.Connection, delivery_id: int, error: str, retry_in_seconds: float
) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries
           SET attempts = attempts + 1, last_error = $2,
               next_attempt_at = now() + make_interval(secs => $3)
           WHERE id = $1""",
        delivery_id,
        error[:500],
        retry_in_seconds,
    )
