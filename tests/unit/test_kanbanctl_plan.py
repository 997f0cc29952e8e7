"""kanbanctl apply's plan and report: what is missing, the same, or different."""

import re

import grpc
import pytest

from clients.kanbanctl import apply, current
from clients.kanbanctl.layout import LOOP, PRODUCT, STATION, Entity, entities
from clients.kanbanctl.plan import Difference, plan
from clients.kanbanctl.report import Outcome, Report, Status, differs

WELD = Entity(STATION, "WELD", {"name": "Welding"})
BRACKET = Entity(
    LOOP,
    "BRACKET",
    {
        "item_id": "BRACKET",
        "supplier_station_id": "STAMP",
        "consumer_station_id": "WELD",
        "supermarket_location_id": "SM-WELD-IN",
        "container_quantity": 500,
        "card_count": 4,
    },
)


def test_each_entity_is_missing_the_same_or_different():
    current: dict[tuple[str, str], dict[str, str | int]] = {
        ("station", "WELD"): {"name": "Welding"},
        ("loop", "BRACKET"): {**BRACKET.content, "card_count": 9, "container_quantity": 400},
    }
    stamp = Entity(STATION, "STAMP", {"name": "Stamping"})
    steps = plan([stamp, WELD, BRACKET], current)
    assert [(str(s.entity), s.exists, s.differences) for s in steps] == [
        ("station STAMP", False, ()),
        ("station WELD", True, ()),
        (
            "loop BRACKET",
            True,
            (Difference("container_quantity", 400, 500), Difference("card_count", 9, 4)),
        ),
    ]
    assert [str(d) for d in steps[2].differences] == [
        "container_quantity 400 -> 500",
        "card_count 9 -> 4",
    ]


def test_a_field_the_reading_did_not_see_is_no_difference():
    (step,) = plan([WELD], {("station", "WELD"): {}})
    assert step.exists and not step.differences


def test_an_entity_of_another_kind_with_the_same_id_is_not_the_same_entity():
    (step,) = plan([Entity(PRODUCT, "BRACKET", {})], {("loop", "BRACKET"): {}})
    assert not step.exists


def test_the_report_lists_every_entity_then_a_summary():
    report = Report(
        [
            Outcome(WELD, Status.UNCHANGED),
            Outcome(Entity(STATION, "PAINT", {"name": ""}), Status.CREATED),
            differs(BRACKET, "card_count 4 -> 9"),
        ]
    )
    assert not report.ok
    assert report.render().splitlines() == [
        "station   WELD     unchanged",
        "station   PAINT    created",
        "loop      BRACKET  differs: card_count 4 -> 9; cannot be changed in place (of an existing"
        " loop only card_count can change, by a resize)",
        "3 entities: 1 created, 1 unchanged, 1 differs",
        "Not everything is as the file says: see 'differs' and 'failed' above.",
    ]
    assert Report([Outcome(WELD, Status.CREATED)]).ok
    assert Report([]).render() == "0 entities: none"


def test_each_kind_says_why_it_cannot_be_changed():
    assert "no update for an existing station" in differs(WELD, "name").detail
    product = Entity(PRODUCT, "CHASSIS", {})
    assert "a product is fixed once defined" in differs(product, "x").detail


def test_request_ids_follow_the_content():
    assert apply.request_id(BRACKET) == apply.request_id(Entity(LOOP, "BRACKET", BRACKET.content))
    grown = Entity(LOOP, "BRACKET", {**BRACKET.content, "card_count": 5})
    assert apply.request_id(grown) != apply.request_id(BRACKET)
    # The services take ids of 1-64 letters, digits, '.', '_' or '-'.
    for entity in entities({"site": {"site_id": "S"}, "warehouses": [{"warehouse_id": "W"}]}):
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", apply.request_id(entity))


class Refusing:
    """A stations stub whose CreateStation fails as told."""

    def __init__(self, code: grpc.StatusCode) -> None:
        self.code = code

    async def CreateStation(self, request):
        raise grpc.aio.AioRpcError(
            self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="as told"
        )


async def test_a_create_refused_as_existing_differs_and_other_refusals_fail():
    def create(code):
        return apply._create({"stations": Refusing(code)}, "S", WELD)

    existing = await create(grpc.StatusCode.ALREADY_EXISTS)
    assert existing.status is Status.DIFFERS
    assert existing.detail.startswith("as told; cannot be changed in place")
    missing = await create(grpc.StatusCode.NOT_FOUND)
    assert (missing.status, missing.detail) == (Status.FAILED, "NOT_FOUND: as told")
    # Not about this entity: the command stops.
    with pytest.raises(grpc.aio.AioRpcError):
        await create(grpc.StatusCode.UNAVAILABLE)


def test_an_audit_summary_says_what_was_created_if_it_can_be_read():
    summary = '{"site_id": "S", "station_id": "WELD", "name": "Welding", "extra": 1}'
    assert current._stored(STATION, summary) == ("WELD", {"name": "Welding"})
    # A field missing or of another type is left out: not compared.
    assert current._stored(STATION, '{"station_id": "WELD", "name": 7}') == ("WELD", {})
    # Cut short (summaries have a limit) or not about a station: unknown.
    assert current._stored(STATION, '{"station_id": "WE') is None
    assert current._stored(STATION, '{"loop_id": "L"}') is None
    assert current._stored(STATION, "[]") is None
