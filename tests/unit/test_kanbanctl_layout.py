"""kanbanctl's layout files: what they hold, and what is refused before any call."""

from typing import Any

import pytest

from clients.kanbanctl.layout import LOCATION_KINDS, LayoutError, entities, load_layout
from tests.e2e.conftest import ROOT


def test_the_example_file_holds_its_entities_in_creation_order():
    found = entities(load_layout(ROOT / "examples" / "line.yaml"))
    assert [str(e) for e in found] == [
        "site PLANT1",
        "station STAMP",
        "station WELD",
        "station ASSY",
        "item BRACKET",
        "item FRAME",
        "item CHASSIS",
        "item STEEL",
        "loop BRACKET",
        "loop FRAME",
        "warehouse WH1",
        "location RAW-01",
        "location QA-01",
        "location FG-WAREHOUSE",
        "product CHASSIS",
    ]
    loop = found[8]
    assert loop.content == {
        "item_id": "BRACKET",
        "supplier_station_id": "STAMP",
        "consumer_station_id": "WELD",
        "supermarket_location_id": "SM-WELD-IN",
        "container_quantity": 500,
        "card_count": 4,
    }
    assert found[12].content == {"warehouse_id": "WH1", "kind": "QUARANTINE"}


def test_a_field_left_out_takes_the_value_the_create_rpc_would_give_it():
    (site, station, item) = entities(
        {"site": {"site_id": "S"}, "stations": [{"station_id": "A"}], "items": [{"item_id": "I"}]}
    )
    assert site.content == {"name": ""}
    assert station.content == {"name": ""}
    assert item.content == {"description": "", "unit_of_measure": ""}


def test_location_kinds_are_the_stock_services():
    assert set(LOCATION_KINDS) == {"WAREHOUSE_BIN", "SUPERMARKET", "LINE_SIDE", "QUARANTINE"}


SITE = {"site_id": "S", "name": "Plant"}


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"stations": []}, "site: required"),
        ({"site": SITE, "lines": []}, "unknown section(s): lines"),
        ({"site": SITE, "stations": {"station_id": "A"}}, "stations: must be a list"),
        ({"site": SITE, "stations": ["A"]}, "stations[0]: must be a mapping of fields"),
        ({"site": SITE, "stations": [{"name": "A"}]}, "stations[0]: station_id is required"),
        ({"site": SITE, "stations": [{"station_id": 7}]}, "station_id must be text (quote it)"),
        (
            {"site": SITE, "stations": [{"station_id": "A", "colour": "red"}]},
            "stations[0]: unknown field(s): colour",
        ),
        (
            {"site": SITE, "stations": [{"station_id": "A"}, {"station_id": "A"}]},
            "stations[1]: station_id A appears twice",
        ),
        ({"site": SITE, "items": [{"item_id": "I", "description": 5}]}, "description must be text"),
        (
            {"site": SITE, "loops": [{"loop_id": "L", "card_count": "4"}]},
            "card_count must be a number",
        ),
        (
            {"site": SITE, "loops": [{"loop_id": "L", "card_count": True}]},
            "card_count must be a number",
        ),
        (
            {"site": SITE, "locations": [{"location_id": "B", "kind": "SHELF"}]},
            "locations[0]: kind must be one of WAREHOUSE_BIN, SUPERMARKET, LINE_SIDE, QUARANTINE",
        ),
    ],
)
def test_a_malformed_layout_is_refused_saying_where(layout: dict[str, Any], message: str):
    with pytest.raises(LayoutError) as refused:
        entities(layout)
    assert message in str(refused.value)


def test_a_file_that_is_not_a_mapping_is_not_a_layout(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- site\n")
    with pytest.raises(LayoutError, match="not a layout"):
        load_layout(path)
