"""The terminal's command line and its words in both languages."""

import string

import pytest

from clients.terminal.__main__ import parse
from clients.terminal.i18n import MESSAGES, Catalogue, language_from_locale


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def test_both_languages_say_everything_with_the_same_placeholders():
    english, chinese = MESSAGES["en"], MESSAGES["zh"]
    assert english.keys() == chinese.keys()
    for key, text in english.items():
        assert placeholders(text) == placeholders(chinese[key]), key


def test_a_catalogue_fills_in_the_facts():
    assert Catalogue("zh")("refused_overproduction").startswith("缓冲区已满")
    assert Catalogue("en")("done_scan", card="P-001", supplier="STAMP") == (
        "TAKEN: P-001 — STAMP will make a new one"
    )


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({}, "en"),
        ({"LANG": "zh_CN.UTF-8"}, "zh"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({"LANG": "zh_CN.UTF-8", "LC_ALL": "C.UTF-8"}, "en"),
        ({"LANG": "en_US.UTF-8", "LC_ALL": "zh_TW.UTF-8"}, "zh"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "zh_CN.UTF-8"}, "zh"),
    ],
)
def test_the_language_follows_the_locale(environ, language):
    assert language_from_locale(environ) == language


def test_defaults():
    args = parse(["--station", "WELD"], {})
    assert (args.station, args.site, args.stations_addr, args.token, args.lang) == (
        "WELD",
        "PLANT1",
        "localhost:50051",
        "",
        "en",
    )


def test_options_override_the_environment():
    environ = {"KANBAN_WELD_TOKEN": "weld", "LANG": "zh_CN.UTF-8"}
    args = parse(["--station", "WELD", "--token", "mine", "--lang", "en"], environ)
    assert (args.token, args.lang) == ("mine", "en")


def test_the_station_token_comes_before_the_general_one():
    # dev-tokens.env sets both; only the station's may scan there.
    both = {"KANBAN_TOKEN": "planner", "KANBAN_WELD_TOKEN": "weld"}
    assert parse(["--station", "WELD"], both).token == "weld"
    assert parse(["--station", "WELD"], {"KANBAN_TOKEN": "planner"}).token == "planner"


def test_the_language_from_the_locale():
    assert parse(["--station", "WELD"], {"LANG": "zh_CN.UTF-8"}).lang == "zh"


def test_a_station_is_required():
    with pytest.raises(SystemExit):
        parse([], {})
