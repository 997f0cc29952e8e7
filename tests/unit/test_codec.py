"""Plain-data round trips, page tokens and the shared field checks."""

import base64
import enum
import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from services.core import codec
from services.core.errors import InvalidArgument
from services.core.events import PAYLOAD_TYPES, CardEmptied, CardFilled, LoopDefined
from services.core.paging import decode_token, encode_token
from services.core.validation import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    optional_id,
    page_size,
    require_id,
    require_positive,
    require_request_id,
    require_text,
)
from services.stations.domain import Card, CardState, Signal, SignalState

# codec


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Leaf:
    colour: Colour
    at: datetime | None
    note: str | None = None


@dataclass(frozen=True)
class Tree:
    name: str
    leaves: list[Leaf]
    sizes: tuple[int, ...]
    best: Leaf | None
    colours: list[Colour] | None


TREE = Tree(
    name="oak",
    leaves=[
        Leaf(Colour.RED, datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))),
        Leaf(Colour.BLUE, None, note="fallen"),
    ],
    sizes=(3, 1, 4),
    best=Leaf(Colour.BLUE, datetime(2024, 1, 1, 12, 0)),
    colours=[Colour.RED, Colour.BLUE],
)


def round_trip(cls: type[Any], value: Any) -> Any:
    return codec.from_plain(cls, json.loads(codec.dumps(value)))


def test_to_plain_gives_json_ready_values():
    plain = codec.to_plain(TREE)

    assert plain["leaves"][0] == {
        "colour": "red",
        "at": "2024-01-02T03:04:05.000006+02:00",
        "note": None,
    }
    assert plain["sizes"] == [3, 1, 4]
    assert plain["colours"] == ["red", "blue"]


def test_nested_dataclasses_round_trip():
    back = round_trip(Tree, TREE)

    assert back == TREE
    assert type(back.sizes) is tuple
    assert type(back.leaves[0].colour) is Colour
    assert back.leaves[0].at.utcoffset() == timedelta(hours=2)
    assert back.best.at.tzinfo is None


def test_missing_optionals_round_trip_as_none():
    bare = Tree(name="", leaves=[], sizes=(), best=None, colours=None)

    assert round_trip(Tree, bare) == bare


@dataclass(frozen=True)
class Shift:
    length: timedelta
    pause: timedelta | None


def test_durations_round_trip_as_seconds():
    shift = Shift(timedelta(hours=8, milliseconds=5), None)

    assert codec.to_plain(shift) == {"length": 28800.005, "pause": None}
    assert round_trip(Shift, shift) == shift


def test_dumps_is_compact_and_sorted():
    assert codec.dumps(Leaf(Colour.RED, None)) == '{"at":null,"colour":"red","note":null}'


def test_domain_cards_and_signals_round_trip():
    now = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    card = Card("PLANT-A", "L1-001", "L1", CardState.EMPTY, "", 0, now, now)
    signal = Signal("PLANT-A", "PRESS-1", 3, "L1", "L1-001", "BRACKET", 10, SignalState.OPEN, now)

    assert round_trip(Card, card) == card
    assert round_trip(Signal, signal) == signal


@pytest.mark.parametrize(
    "event",
    [
        LoopDefined("L1", "BRACKET", "SM-1", 30, "L1-OPENING", 30),
        CardEmptied("L1", "L1-001", "BRACKET", "SM-1", "LOT-1", 10, "ASSY-1"),
        CardFilled("L1", "L1-001", "BRACKET", "SM-1", "LOT-2", 7, "PRESS-1"),
    ],
)
def test_events_round_trip_by_their_type_name(event):
    assert round_trip(PAYLOAD_TYPES[type(event).__name__], event) == event


# paging


@pytest.mark.parametrize(
    "key", [["L1"], ["SM-1", "BRACKET", "LOT-1"], ["ä/ö?+", "7", ""], ["~~~>>>???"]]
)
def test_page_tokens_round_trip(key):
    token = encode_token(key)

    assert decode_token(token, len(key)) == key
    assert set(token) <= set(string.ascii_letters + string.digits + "-_=")


def test_no_token_means_the_first_page():
    assert decode_token("", 3) is None


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "abc",
        "é",
        b64(b"not json"),
        b64(b"\xff\xfe\x00"),
        b64(b'{"key": "L1"}'),
        b64(b'"L1"'),
        b64(b"null"),
        encode_token(["L1", "L2"]),
        encode_token([]),
    ],
)
def test_malformed_page_tokens_are_refused(token):
    with pytest.raises(InvalidArgument) as refused:
        decode_token(token, 1)

    assert refused.value.field == "page_token"


def test_deeply_nested_page_token_is_refused():
    with pytest.raises(InvalidArgument):
        decode_token(b64(b"[" * 5000), 1)


def test_a_token_of_the_wrong_types_is_refused():
    with pytest.raises(InvalidArgument):
        decode_token(encode_token([123]), 1)  # type: ignore[list-item]


# validation


@pytest.mark.parametrize("value", ["A", "a1", "L1-001", "lot_7.b", "9" * 64])
def test_require_id_returns_plain_ids(value):
    assert require_id("card_code", value) == value


@pytest.mark.parametrize("value", ["", " ", "_a", ".a", "a b", "a" * 65, "ü", "a\n"])
def test_require_id_refuses_on_the_named_field(value):
    with pytest.raises(InvalidArgument) as refused:
        require_id("card_code", value)

    assert refused.value.field == "card_code"


def test_optional_id_allows_empty_but_checks_the_rest():
    assert optional_id("lot_id", "") == ""
    assert optional_id("lot_id", "LOT-1") == "LOT-1"
    with pytest.raises(InvalidArgument, match="lot_id"):
        optional_id("lot_id", "LOT 1")


def test_require_request_id():
    assert require_request_id("x" * 128) == "x" * 128
    for bad in ["", "x" * 129, "a\x00b"]:
        with pytest.raises(InvalidArgument) as refused:
            require_request_id(bad)
        assert refused.value.field == "request_id"


def test_require_text():
    assert require_text("name", "Press 1") == "Press 1"
    assert require_text("name", "", required=False) == ""
    for bad in ["", "  ", "t" * 201, "a\tb"]:
        with pytest.raises(InvalidArgument) as refused:
            require_text("name", bad)
        assert refused.value.field == "name"


def test_require_positive():
    assert require_positive("quantity", 1, maximum=5) == 1
    assert require_positive("quantity", 5, maximum=5) == 5
    for bad in [0, -1, 6]:
        with pytest.raises(InvalidArgument) as refused:
            require_positive("quantity", bad, maximum=5)
        assert refused.value.field == "quantity"


def test_page_size_defaults_zero_and_bounds_the_rest():
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(1) == 1
    assert page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE
    for bad in [-1, MAX_PAGE_SIZE + 1]:
        with pytest.raises(InvalidArgument) as refused:
            page_size(bad)
        assert refused.value.field == "page_size"
