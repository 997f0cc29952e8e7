"""The station terminal: what an operator with a barcode scanner sees and does.

Top to bottom: the station and the connection; a banner that confirms or refuses
the last scan in a few words; the scan input (a scanner types the code and
Enter); then the work to do, the input buffers, what is in process and the
containers to set aside.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc
from kanban.stations.v1 import stations_pb2 as pb
from textual.app import App, ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from clients.terminal import actions
from clients.terminal.actions import Action
from clients.terminal.client import RETRYABLE, Refused, StationClient
from clients.terminal.i18n import Catalogue
from clients.terminal.work import StationWork

# Other stations change the buffers too; what this terminal does refreshes at once.
BOARD_REFRESH_SECONDS = 5.0
RECONNECT_FIRST_PAUSE_SECONDS = 0.5
RECONNECT_LONGEST_PAUSE_SECONDS = 5.0
REPEAT_WINDOW_SECONDS = 2.0

# Makes one change and returns its confirmation; kept and sent again as it was
# (same request id) when the operator scans the card again after no answer.
Attempt = Callable[[], Awaitable[str]]


class TerminalApp(App[None]):
    TITLE = "kanban-terminal"
    CSS = """
    #top { height: 1; }
    #title { width: 1fr; text-style: bold; }
    #connection { width: auto; }
    #connection.online { color: $success; }
    #connection.offline { color: $error; text-style: bold; }
    #banner { width: 100%; height: 5; content-align: center middle; text-style: bold;
              background: $boost; }
    #banner.done { background: $success; color: $text; }
    #banner.refused { background: $error; color: $text; }
    #scan { margin: 1 0; }
    .panel { height: auto; border: round $primary; padding: 0 1; }
    #holds { border: heavy $error; color: $error; text-style: bold; }
    """

    _client: StationClient

    def __init__(
        self,
        *,
        station_id: str,
        site_id: str,
        address: str,
        token: str,
        language: str,
        repeat_window: float = REPEAT_WINDOW_SECONDS,
    ) -> None:
        super().__init__()
        self._station = station_id
        self._site = site_id
        self._address = address
        self._token = token
        self.t = Catalogue(language)
        self.work = StationWork()
        self._repeats = actions.RepeatGuard(repeat_window)
        self._unanswered: dict[str, Attempt] = {}
        self._cards_in_process: list[tuple[Any, Any]] = []  # (card, its loop)
        self._board_wanted = asyncio.Event()
        self._acting = asyncio.Lock()

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            title = self.t("title", station=self._station, site=self._site)
            yield Static(title, id="title", markup=False)
            yield Static(self.t("conn_connecting"), id="connection", markup=False)
        yield Static(self.t("ready"), id="banner", markup=False)
        yield Input(placeholder=self.t("scan_placeholder"), id="scan")
        with Horizontal():
            with Vertical():
                yield Static(id="queue", classes="panel", markup=False)
                yield Static(id="holds", classes="panel", markup=False)
            with Vertical():
                yield Static(id="loops", classes="panel", markup=False)
                yield Static(id="in-process", classes="panel", markup=False)

    def on_mount(self) -> None:
        for panel, title in (
            ("#queue", "queue_title"),
            ("#holds", "holds_title"),
            ("#loops", "loops_title"),
            ("#in-process", "process_title"),
        ):
            self.query_one(panel).border_title = self.t(title)
        # The channel belongs to the event loop the app runs in.
        self._client = StationClient(
            self._address, self._token, self._site, self._station, self._retrying
        )
        self._show_work()
        self._show_loops([])
        self._board_wanted.set()
        self.query_one("#scan", Input).focus()
        self.run_worker(self._follow_signals(), name="signals")
        self.run_worker(self._follow_board(), name="board")

    async def on_unmount(self) -> None:
        await self._client.close()

    # The stream and the board

    async def _follow_signals(self) -> None:
        """Follows the station's stream for as long as the terminal runs,
        reconnecting from the cursor whenever it ends or breaks."""
        pause = RECONNECT_FIRST_PAUSE_SECONDS
        while True:
            try:
                async for message in self._client.watch(self.work.cursor):
                    self._show_connection(online=True, text=self.t("conn_online"))
                    pause = RECONNECT_FIRST_PAUSE_SECONDS
                    if self.work.apply(message):
                        self._show_work()
                        self._board_wanted.set()
            except Refused as refusal:
                text = self.t("conn_offline")
                if refusal.code not in RETRYABLE:
                    text = self.t("conn_refused", reason=self._refusal_text(refusal))
                self._show_connection(online=False, text=text)
            else:  # the service closed the stream: it is shutting down
                self._show_connection(online=False, text=self.t("conn_offline"))
            await asyncio.sleep(pause)
            pause = min(pause * 2, RECONNECT_LONGEST_PAUSE_SECONDS)

    async def _follow_board(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._board_wanted.wait(), BOARD_REFRESH_SECONDS)
            self._board_wanted.clear()
            # While the service is away the connection line says so and the last
            # board stays on screen.
            with contextlib.suppress(Refused):
                await self._refresh_board()

    async def _refresh_board(self) -> None:
        as_of = self.work.cursor
        board = await self._client.board()
        inputs = [s for s in board.loops if s.loop.consumer_station_id == self._station]
        supplied = [s.loop for s in board.loops if s.loop.supplier_station_id == self._station]
        card_states: dict[str, int] = {}
        in_process = []
        for loop in supplied:
            for card in (await self._client.loop(loop.loop_id)).cards:
                card_states[card.card_code] = card.state
                if card.state == pb.CARD_STATE_IN_PROCESS:
                    in_process.append((card, loop))
        self.work.forget_started_elsewhere(card_states, as_of)
        self._cards_in_process = in_process
        self._show_loops(inputs)
        self._show_work()

    # Scans

    def on_input_submitted(self, event: Input.Submitted) -> None:
        code = event.value.strip()
        event.input.clear()
        if code and not self._repeats.is_repeat(code, time.monotonic()):
            self.run_worker(self._act(code), group="scans")

    async def _act(self, code: str) -> None:
        # One scan at a time, in the order they were read.
        async with self._acting:
            self._show_banner("working", self.t("working", code=code))
            # A change that got no answer may have been made: it is sent again
            # with its request id, never decided afresh (a started card would
            # now look ready to complete).
            attempt = self._unanswered.pop(code, None)
            try:
                if attempt is None:
                    attempt = await self._plan(code)
                self._show_banner("done", await attempt())
            except Refused as refusal:
                if attempt is not None and refusal.code in RETRYABLE:
                    self._unanswered[code] = attempt
                self._show_banner("refused", f"{code}\n{self._refusal_text(refusal)}")
            self._show_work()
            self._board_wanted.set()

    async def _plan(self, code: str) -> Attempt:
        """What the scanned code asks for, with a fresh request id."""
        request_id = actions.request_id(self._station)
        instruction = self.work.instruction(code)
        if instruction is not None:
            if actions.for_instruction(instruction.state) is Action.START_INSTRUCTION:
                return partial(self._start_instruction, instruction, request_id)
            lot_id = actions.lot_id(code, datetime.now(UTC))
            return partial(self._complete_instruction, instruction, lot_id, request_id)
        card = await self._client.card(code)
        loop = (await self._client.loop(card.loop_id)).loop
        action = actions.for_card(
            self._station, card.state, loop.supplier_station_id, loop.consumer_station_id
        )
        if action is Action.SCAN:
            return partial(self._scan, code, loop, request_id)
        if action is Action.START:
            return partial(self._start, code, loop, request_id)
        if action is Action.COMPLETE:
            lot_id = actions.lot_id(code, datetime.now(UTC))
            return partial(self._complete, code, loop, lot_id, request_id)
        raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "WRONG_STATION", "")

    async def _scan(self, code: str, loop: Any, request_id: str) -> str:
        scanned = await self._client.scan(code, request_id)
        if scanned.card.state == pb.CARD_STATE_RETIRED:
            return self.t("done_scan_retired", card=code)
        return self.t("done_scan", card=code, supplier=loop.supplier_station_id)

    async def _start(self, code: str, loop: Any, request_id: str) -> str:
        await self._client.start_signal(code, request_id)
        self.work.signal_started(code)
        return self.t("done_start", card=code, quantity=loop.container_quantity, item=loop.item_id)

    async def _complete(self, code: str, loop: Any, lot_id: str, request_id: str) -> str:
        await self._client.complete_card(code, lot_id, loop.container_quantity, request_id)
        return self.t(
            "done_complete",
            card=code,
            quantity=loop.container_quantity,
            item=loop.item_id,
            lot=lot_id,
        )

    async def _start_instruction(self, instruction: Any, request_id: str) -> str:
        started = await self._client.start_instruction(instruction.instruction_id, request_id)
        self.work.instruction_started(started)
        return self.t(
            "done_start_instruction",
            order=started.erp_order_id,
            quantity=started.quantity,
            item=started.item_id,
        )

    async def _complete_instruction(self, instruction: Any, lot_id: str, request_id: str) -> str:
        done = await self._client.complete_instruction(
            instruction.instruction_id, lot_id, instruction.quantity, request_id
        )
        self.work.instruction_completed(done.instruction_id)
        return self.t(
            "done_complete_instruction",
            order=done.erp_order_id,
            quantity=done.quantity,
            item=done.item_id,
            lot=lot_id,
        )

    def _retrying(self) -> None:
        # Only a scan in progress is the operator's business; the board retries quietly.
        if self._acting.locked():
            self._show_banner("working", self.t("conn_offline"))

    def _refusal_text(self, refusal: Refused) -> str:
        return self.t(actions.refusal_message(refusal.code, refusal.reason), detail=refusal.message)

    # What is on screen

    def _show_connection(self, *, online: bool, text: str) -> None:
        widget = self.query_one("#connection", Static)
        widget.set_class(online, "online")
        widget.set_class(not online, "offline")
        widget.update(text)

    def _show_banner(self, kind: str, text: str) -> None:
        banner = self.query_one("#banner", Static)
        for name in ("working", "done", "refused"):
            banner.set_class(name == kind, name)
        banner.update(text)

    def _show_work(self) -> None:
        t = self.t
        self._show_lines("#queue", map(self._work_line, self.work.queue()), t("queue_empty"))
        holds = self.work.holds()
        self.query_one("#holds").display = bool(holds)
        hold_lines = (
            t("hold_line", cards=", ".join(h.card_codes), lot=h.lot_id, reason=h.reason)
            for h in holds
        )
        self._show_lines("#holds", hold_lines, "")
        cards = (
            t("process_card", card=c.card_code, quantity=lp.container_quantity, item=lp.item_id)
            for c, lp in self._cards_in_process
        )
        orders = (
            t(
                "process_instruction",
                order=i.erp_order_id,
                quantity=i.quantity,
                item=i.item_id,
                instruction=i.instruction_id,
            )
            for i in self.work.started_instructions()
        )
        self._show_lines("#in-process", [*cards, *orders], t("process_none"))

    def _work_line(self, item: Any) -> str:
        if isinstance(item, pb.Signal):
            return self.t(
                "queue_signal",
                quantity=item.quantity,
                item=item.item_id,
                card=item.card_code,
                time=_local(item.raised_at, "%H:%M"),
            )
        return self.t(
            "queue_instruction",
            order=item.erp_order_id,
            quantity=item.quantity,
            item=item.item_id,
            due=_local(item.due_time, "%Y-%m-%d %H:%M"),
            priority=item.priority,
            instruction=item.instruction_id,
        )

    def _show_loops(self, statuses: list[Any]) -> None:
        lines = []
        for status in statuses:
            loop = status.loop
            line = self.t(
                "loop_line",
                loop=loop.loop_id,
                item=loop.item_id,
                supplier=loop.supplier_station_id,
                wip=status.wip_units,
                cap=loop.cap_units,
                full=status.full_cards,
                empty=status.empty_cards,
                in_process=status.in_process_cards,
            )
            if status.quarantined_cards:
                line += self.t("loop_set_aside", count=status.quarantined_cards)
            lines.append(line)
        self._show_lines("#loops", lines, self.t("loops_none"))

    def _show_lines(self, widget_id: str, lines: Iterable[str], empty: str) -> None:
        self.query_one(widget_id, Static).update("\n".join(lines) or empty)


def _local(stamp: Any, pattern: str) -> str:
    """A protobuf timestamp in the terminal's local time."""
    return str(stamp.ToDatetime(tzinfo=UTC).astimezone().strftime(pattern))
