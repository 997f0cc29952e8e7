"""The alerts service layer.

Events from the other services update each site's picture of the line, in the
inbox transaction, and wake the evaluator; the evaluator compares the
conditions that hold with the open alerts and fires, refreshes or resolves
them. It also runs on a timer, for the rules that are about time passing.
"""

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from services.alerts import commands, storage
from services.alerts import metrics as m
from services.alerts.domain import (
    TUNABLE,
    Alert,
    AlertState,
    CardFacts,
    HoldFacts,
    LoopFacts,
    Rule,
    StockFacts,
    Threshold,
    Thresholds,
    VarianceFacts,
    card_age_that_matters,
    conditions,
    review,
)
from services.core import audit, codec
from services.core.config import Settings
from services.core.db import Database
from services.core.errors import InvalidArgument
from services.core.events import (
    CardEmptied,
    CardFilled,
    CardRetired,
    CardStarted,
    CountClosed,
    CountVarianceFlagged,
    LoopDefined,
    LoopResized,
    LotQuarantined,
    LotReleased,
    LotWrittenOff,
    OverproductionBlocked,
    StockThresholdCrossed,
)
from services.core.feeds import Heartbeat, follow
from services.core.idempotency import run_once
from services.core.inbox import ReceivedEvent
from services.core.notify import Notifications
from services.core.paging import Page, decode_position, decode_token, page_of
from services.core.validation import page_size, require_id

log = structlog.get_logger()

# At most two rounds a second on a busy line: an alert is for people, to whom half a
# second is at once.
COALESCE_SECONDS = 0.5
# A round reads the picture of each changed site (its loops' WIP, and only the
# cards old enough to matter one by one); on a busy line the pause after it grows
# with its cost, so that evaluating takes at most about a fifth of the service's
# time (pause = 4 x round), whatever the size of the site.
PAUSE_PER_ROUND_SECOND = 4.0


def _now() -> datetime:
    return datetime.now(UTC)


# Events: the picture of the line


async def apply_event(conn: asyncpg.Connection, event: ReceivedEvent) -> None:
    """Runs inside the inbox transaction that records the event as applied."""
    site, at = event.site_id, event.occurred_at
    match event.payload:
        case LoopDefined() as loop:
            await _define_loop(conn, site, loop, at)
        case LoopResized() as resized:
            await storage.set_loop_cap(conn, site, resized.loop_id, resized.cap_units)
            for code in resized.added_card_codes:
                await storage.set_card(conn, site, CardFacts(code, resized.loop_id, "EMPTY", 0, at))
            for code in resized.retired_card_codes:
                await storage.delete_card(conn, site, code)
        case CardRetired() as card:
            await storage.set_loop_cap(conn, site, card.loop_id, card.cap_units)
            await storage.delete_card(conn, site, card.card_code)
        case CardEmptied() as card:
            await storage.set_card(
                conn, site, CardFacts(card.card_code, card.loop_id, "EMPTY", 0, at)
            )
        case CardStarted() as card:
            await storage.set_card(
                conn, site, CardFacts(card.card_code, card.loop_id, "IN_PROCESS", 0, at)
            )
        case CardFilled() as card:
            await storage.set_card(
                conn, site, CardFacts(card.card_code, card.loop_id, "FULL", card.quantity, at)
            )
        case OverproductionBlocked() as attempt:
            await storage.add_attempt(conn, site, attempt.station_id, at, attempt.detail)
        case StockThresholdCrossed() as level:
            await storage.set_stock_state(
                conn,
                site,
                StockFacts(
                    level.item_id,
                    level.location_id,
                    level.state,
                    level.on_hand,
                    level.safety_stock,
                    level.overstock,
                ),
            )
        case LotQuarantined() as lot:
            await storage.hold_lot(conn, site, HoldFacts(lot.lot_id, lot.item_id, lot.reason))
        case LotReleased() | LotWrittenOff() as lot:
            await storage.lift_hold(conn, site, lot.lot_id)
        case CountVarianceFlagged() as v:
            await storage.add_variance(
                conn,
                site,
                VarianceFacts(
                    v.count_id,
                    v.location_id,
                    v.item_id,
                    v.lot_id,
                    v.book_quantity,
                    v.counted_quantity,
                ),
            )
        case CountClosed() as count:
            await storage.close_count(conn, site, count.count_id)
        case _:
            return
    await storage.mark_changed(conn, site)


async def _define_loop(
    conn: asyncpg.Connection, site_id: str, loop: LoopDefined, at: datetime
) -> None:
    if not loop.card_codes:
        return  # sent by a stations service older than this one: nothing to follow
    await storage.define_loop(
        conn,
        site_id,
        LoopFacts(
            loop.loop_id,
            loop.item_id,
            loop.supplier_station_id,
            loop.consumer_station_id,
            loop.cap_units,
            loop.container_quantity,
        ),
    )
    full = loop.opening_units > 0
    for code in loop.card_codes:
        state, quantity = ("FULL", loop.container_quantity) if full else ("EMPTY", 0)
        await storage.set_card(conn, site_id, CardFacts(code, loop.loop_id, state, quantity, at))


# Evaluation


@dataclass(frozen=True)
class Evaluator:
    db: Database
    settings: Settings

    async def evaluate_sites(self, every_site: bool) -> None:
        """The sites whose picture changed, or every site (time passes for all)."""
        async with self.db.pool.acquire() as conn:
            changed = await storage.take_changed_sites(conn)
            sites = await storage.sites(conn) if every_site else changed
        for site_id in sites:
            await self.evaluate(site_id)

    async def evaluate(self, site_id: str, now: datetime | None = None) -> None:
        """Fires, refreshes and resolves the site's alerts from its picture now."""
        now = now or _now()
        async with self.db.transaction() as conn:
            await storage.lock_evaluation(conn, site_id)
            open_alerts = await storage.open_alerts(conn, site_id)
            thresholds = Thresholds(await storage.thresholds(conn, site_id))
            loops = await storage.loops(conn, site_id)
            age = card_age_that_matters(loops, thresholds)
            older_than = None if age is None else now - timedelta(seconds=age)
            holding = conditions(
                await storage.picture(conn, site_id, loops, older_than),
                thresholds,
                {a.key for a in open_alerts},
                now,
            )
            changes = review(
                open_alerts, holding, now, timedelta(seconds=self.settings.alert_clear_seconds)
            )
            for alert in changes.refresh:
                await storage.save_alert(conn, alert)
            for condition in changes.fire:
                sequence = await storage.next_sequence(conn, site_id)
                fired = Alert.fire(site_id, f"A{sequence}", condition, now)
                await self._changed(conn, replace(fired, sequence=sequence))
                m.RAISED.labels(site_id, condition.rule.value).inc()
            for alert in changes.resolve:
                sequence = await storage.next_sequence(conn, site_id)
                await self._changed(conn, replace(alert, sequence=sequence))
                m.RESOLVED.labels(site_id, alert.rule.value).inc()

    async def _changed(self, conn: asyncpg.Connection, alert: Alert) -> None:
        """A state change: saved, announced to watchers and to webhooks at commit."""
        await storage.save_alert(conn, alert)
        await storage.notify_site(conn, alert.site_id)
        if self.settings.alert_webhook_urls:
            await storage.enqueue_webhooks(
                conn, list(self.settings.alert_webhook_urls), codec.dumps(alert)
            )
        log.info(
            "alert_changed",
            site_id=alert.site_id,
            alert_id=alert.alert_id,
            rule=alert.rule.value,
            state=alert.state.value,
            subject=alert.subject,
        )

    async def run(self, woken: Notifications) -> None:
        """Evaluates the sites events changed as they change, and every site on a timer
        for the rules about time passing; a failed round is logged, and the next full
        round covers what it missed."""
        clock = asyncio.get_running_loop()
        last_full_round = -math.inf
        with woken.subscribe("") as changed:
            while True:
                changed.clear()
                every_site = clock.time() - last_full_round >= self.settings.alert_evaluate_seconds
                if every_site:
                    last_full_round = clock.time()
                started = clock.time()
                try:
                    await self.evaluate_sites(every_site)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("evaluation_failed", error=str(error))
                # A busy line changes the picture many times a second: at most one
                # round per pause covers them all; a quiet line is answered at once.
                cost = clock.time() - started
                await asyncio.sleep(max(COALESCE_SECONDS, PAUSE_PER_ROUND_SECOND * cost))
                next_full_round = last_full_round + self.settings.alert_evaluate_seconds
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), max(0, next_full_round - clock.time()))

    async def acknowledge(self, cmd: commands.AcknowledgeAlert) -> Alert:
        async def action(conn: asyncpg.Connection) -> Alert:
            # The evaluator's lock: it must not write back the state it read before this.
            await storage.lock_evaluation(conn, cmd.site_id)
            alert = await storage.get_alert(conn, cmd.site_id, cmd.alert_id, lock=True)
            audit.note_before(alert)
            acknowledged = alert.acknowledge(cmd.actor, cmd.comment, _now())
            sequence = await storage.next_sequence(conn, cmd.site_id)
            changed = replace(acknowledged, sequence=sequence)
            await self._changed(conn, changed)
            return changed

        return await run_once(self.db, cmd, Alert, action)


# Thresholds


async def set_threshold(db: Database, cmd: commands.SetAlertThreshold) -> Threshold:
    async def action(conn: asyncpg.Connection) -> Threshold:
        threshold = Threshold(cmd.site_id, cmd.rule, cmd.scope, cmd.scope_id, cmd.value)
        await storage.set_threshold(conn, threshold)
        await storage.mark_changed(conn, cmd.site_id)
        return threshold

    if cmd.rule not in TUNABLE:
        raise InvalidArgument(
            "rule", f"{cmd.rule.value} follows lines set elsewhere (stock, quality, counts)"
        )
    return await run_once(db, cmd, Threshold, action)


async def list_thresholds(db: Database, site_id: str, size: int, token: str) -> Page[Threshold]:
    require_id("site_id", site_id)
    limit = page_size(size)
    after = decode_token(token, 3)
    async with db.pool.acquire() as conn:
        rows = await storage.thresholds(conn, site_id, after, limit + 1)
    return page_of(rows, limit, lambda t: [t.rule.value, t.scope.value, t.scope_id])


# Queries


async def list_alerts(
    db: Database,
    site_id: str,
    state: AlertState | None,
    rule: Rule | None,
    open_only: bool,
    size: int,
    token: str,
) -> Page[Alert]:
    require_id("site_id", site_id)
    limit = page_size(size)
    after = decode_position(token)
    async with db.pool.acquire() as conn:
        rows = await storage.list_alerts(conn, site_id, state, rule, open_only, after, limit + 1)
    return page_of(rows, limit, lambda a: [str(a.sequence)])


async def get_alert(db: Database, site_id: str, alert_id: str) -> Alert:
    require_id("site_id", site_id)
    require_id("alert_id", alert_id)
    async with db.pool.acquire() as conn:
        return await storage.get_alert(conn, site_id, alert_id)


def watch_alerts(
    db: Database,
    notifications: Notifications,
    site_id: str,
    after_sequence: int,
    heartbeat_seconds: float,
) -> AsyncIterator[Alert | Heartbeat]:
    """The site's alerts changed after the cursor (in their latest state), then changes
    as they commit."""
    require_id("site_id", site_id)
    return follow(
        db,
        notifications,
        site_id,
        after_sequence,
        heartbeat_seconds,
        read_after=lambda conn, cursor: storage.alerts_after(conn, site_id, cursor),
        read_last=lambda conn: storage.last_sequence(conn, site_id),
        page_size=storage.FEED_PAGE,
    )
