"""A retry matches its first request by everything but the request id."""

import dataclasses

import pytest

from services.core.idempotency import fingerprint
from services.stations.commands import CompleteCard, CreateLoop
from services.stations.domain import CardState

COMPLETE = CompleteCard(
    request_id="req-1",
    site_id="PLANT-A",
    station_id="PRESS-1",
    card_code="L1-001",
    lot_id="LOT-1",
    quantity=10,
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

OTHER_VALUES = {
    "site_id": "PLANT-B",
    "station_id": "PRESS-2",
    "card_code": "L1-002",
    "lot_id": "LOT-2",
    "quantity": 9,
    "loop_id": "L2",
    "item_id": "BOLT",
    "supplier_station_id": "PRESS-2",
    "consumer_station_id": "ASSY-2",
    "supermarket_location_id": "SM-2",
    "container_quantity": 11,
    "card_count": 4,
    "initial_card_state": CardState.EMPTY,
}


@pytest.mark.parametrize("command", [COMPLETE, LOOP], ids=lambda c: type(c).__name__)
def test_fingerprint_ignores_the_request_id(command):
    retry = dataclasses.replace(command, request_id="req-2")

    assert fingerprint(retry) == fingerprint(command)


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (command, f.name)
        for command in (COMPLETE, LOOP)
        for f in dataclasses.fields(command)
        if f.name != "request_id"
    ],
    ids=str,
)
def test_fingerprint_differs_when_any_other_field_differs(command, field):
    changed = dataclasses.replace(command, **{field: OTHER_VALUES[field]})

    assert fingerprint(changed) != fingerprint(command)


def test_fingerprint_is_a_sha256_hex_digest():
    digest = fingerprint(COMPLETE)

    assert len(digest) == 64
    assert int(digest, 16) >= 0
