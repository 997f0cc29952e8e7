"""Each stations command checks its own fields and names the one at fault."""

import dataclasses
from typing import Any

import pytest

from services.core.errors import InvalidArgument
from services.stations.commands import (
    MAX_CONTAINER_QUANTITY,
    CompleteCard,
    CreateItem,
    CreateLoop,
    CreateSite,
    CreateStation,
    ScanCard,
    StartSignal,
)
from services.stations.domain import MAX_CARDS_PER_LOOP, CardState

SITE = CreateSite(request_id="req-1", site_id="PLANT-A", name="Plant A")
STATION = CreateStation(request_id="req-1", site_id="PLANT-A", station_id="PRESS-1", name="Press")
ITEM = CreateItem(
    request_id="req-1",
    site_id="PLANT-A",
    item_id="BRACKET",
    description="Steel bracket",
    unit_of_measure="EA",
)
LOOP = CreateLoop(
    request_id="req-1",
    site_id="PLANT-A",
    loop_id="L1",
    item_id="BRACKET",
    supplier_station_id="PRESS-1",
    consumer_station_id="ASSY-1",
    supermarket_location_id="SM-1",
    container_quantity=10,
    card_count=3,
    initial_card_state=CardState.FULL,
)
SCAN = ScanCard(request_id="req-1", site_id="PLANT-A", station_id="ASSY-1", card_code="L1-001")
START = StartSignal(request_id="req-1", site_id="PLANT-A", station_id="PRESS-1", card_code="")
COMPLETE = CompleteCard(
    request_id="req-1",
    site_id="PLANT-A",
    station_id="PRESS-1",
    card_code="L1-001",
    lot_id="LOT-1",
    quantity=10,
)
COMMANDS: list[Any] = [SITE, STATION, ITEM, LOOP, SCAN, START, COMPLETE]

ID_FIELDS = [
    (SITE, "site_id"),
    (STATION, "site_id"),
    (STATION, "station_id"),
    (ITEM, "site_id"),
    (ITEM, "item_id"),
    *[
        (LOOP, f)
        for f in (
            "site_id",
            "loop_id",
            "item_id",
            "supplier_station_id",
            "consumer_station_id",
            "supermarket_location_id",
        )
    ],
    (SCAN, "site_id"),
    (SCAN, "station_id"),
    (SCAN, "card_code"),
    (START, "site_id"),
    (START, "station_id"),
    (COMPLETE, "site_id"),
    (COMPLETE, "station_id"),
    (COMPLETE, "card_code"),
    (COMPLETE, "lot_id"),
]
BAD_IDS = ["", "has space", "-leading-dash", "x" * 65, "naïve", "a/b", "A1\n"]


def refused_field(command: Any, **changes: Any) -> str:
    with pytest.raises(InvalidArgument) as refused:
        dataclasses.replace(command, **changes)
    return refused.value.field


def name(command: Any) -> str:
    return type(command).__name__


@pytest.mark.parametrize("command", COMMANDS, ids=name)
def test_valid_commands_construct(command):
    assert dataclasses.replace(command) == command


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(("command", "field"), ID_FIELDS, ids=lambda v: str(v))
def test_malformed_ids_are_refused_on_their_field(command, field, bad):
    assert refused_field(command, **{field: bad}) == field


@pytest.mark.parametrize("command", COMMANDS, ids=name)
@pytest.mark.parametrize("bad", ["", "r" * 129, "line\nbreak", "tab\there"])
def test_bad_request_ids_are_refused(command, bad):
    assert refused_field(command, request_id=bad) == "request_id"


@pytest.mark.parametrize("command", COMMANDS, ids=name)
def test_request_id_may_be_any_printable_text_up_to_128(command):
    assert dataclasses.replace(command, request_id="é " + "r" * 126).request_id.startswith("é")


def test_ids_may_be_64_plain_characters():
    assert dataclasses.replace(SCAN, card_code="A" + "b.c_d-9" * 9).card_code.endswith("9")
    assert len(dataclasses.replace(SCAN, card_code="A" * 64).card_code) == 64


@pytest.mark.parametrize(
    ("command", "field", "bad"),
    [
        (SITE, "name", ""),
        (SITE, "name", "   "),
        (SITE, "name", "n" * 201),
        (STATION, "name", ""),
        (STATION, "name", "bell\a"),
        (ITEM, "unit_of_measure", ""),
        (ITEM, "description", "d" * 201),
    ],
)
def test_bad_text_is_refused_on_its_field(command, field, bad):
    assert refused_field(command, **{field: bad}) == field


def test_item_description_is_optional():
    assert dataclasses.replace(ITEM, description="").description == ""


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("container_quantity", 0),
        ("container_quantity", -5),
        ("container_quantity", MAX_CONTAINER_QUANTITY + 1),
        ("card_count", 0),
        ("card_count", -1),
        ("card_count", MAX_CARDS_PER_LOOP + 1),
    ],
)
def test_loop_sizes_must_be_positive_and_bounded(field, bad):
    assert refused_field(LOOP, **{field: bad}) == field


def test_loop_sizes_at_their_maximum_are_accepted():
    loop = dataclasses.replace(
        LOOP, container_quantity=MAX_CONTAINER_QUANTITY, card_count=MAX_CARDS_PER_LOOP
    )
    assert (loop.container_quantity, loop.card_count) == (1_000_000, 999)


def test_loop_supplier_and_consumer_must_differ():
    assert refused_field(LOOP, consumer_station_id="PRESS-1") == "consumer_station_id"


def test_loop_cards_cannot_start_in_process():
    assert refused_field(LOOP, initial_card_state=CardState.IN_PROCESS) == "initial_card_state"


def test_loop_cards_may_start_empty():
    assert dataclasses.replace(LOOP, initial_card_state=CardState.EMPTY).initial_card_state is (
        CardState.EMPTY
    )


def test_start_signal_card_code_is_optional_but_checked_when_given():
    assert dataclasses.replace(START, card_code="L1-002").card_code == "L1-002"
    assert refused_field(START, card_code="L1 002") == "card_code"


@pytest.mark.parametrize("bad", [0, -1])
def test_complete_quantity_must_be_positive(bad):
    assert refused_field(COMPLETE, quantity=bad) == "quantity"
