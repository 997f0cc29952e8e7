"""kanbanctl's command line: its options, and the token command it hands on."""

import pytest

from clients.kanbanctl import cli


def test_addresses_default_to_make_run_and_the_token_to_the_environment(monkeypatch):
    monkeypatch.setenv("KANBAN_TOKEN", "kbn_from_env")
    args = cli.parse(["board", "PLANT1"])
    assert (args.stations_addr, args.stock_addr, args.orders_addr) == (
        "localhost:50051",
        "localhost:50052",
        "localhost:50053",
    )
    assert args.token == "kbn_from_env"
    assert cli.parse(["--token", "kbn_given", "board", "PLANT1"]).token == "kbn_given"


@pytest.mark.parametrize(
    "argv, handed_on",
    [
        (["token", "--help"], ["--help"]),
        (["token", "list"], ["list"]),
        (
            ["token", "issue", "--name", "terminal-weld-1", "--role", "operator", "--site", "P"],
            ["issue", "--name", "terminal-weld-1", "--role", "operator", "--site", "P"],
        ),
        (["token", "revoke", "--development"], ["revoke", "--development"]),
    ],
)
def test_the_token_command_gets_everything_after_token(argv, handed_on):
    args = cli.parse(argv)
    assert (args.command, args.arguments) == ("token", handed_on)


def test_other_commands_refuse_what_they_do_not_know(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.parse(["board", "PLANT1", "--colour"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --colour" in capsys.readouterr().err


def test_export_writes_to_stdout_unless_told_otherwise():
    assert cli.parse(["export", "wip", "PLANT1"]).output == "-"
    assert cli.parse(["export", "stock", "PLANT1", "-o", "s.csv"]).output == "s.csv"
