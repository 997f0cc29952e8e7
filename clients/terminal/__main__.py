"""kanban-terminal --station ID: the terminal of one station.

With the example line of `make run`, one terminal per station:

    source var/dev-tokens.env
    .venv/bin/kanban-terminal --station WELD
    .venv/bin/kanban-terminal --station STAMP --lang zh
"""

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from clients.terminal.app import TerminalApp
from clients.terminal.i18n import LANGUAGES, language_from_locale


def default_token(station_id: str, environ: Mapping[str, str]) -> str:
    """The station's own terminal token first: `source var/dev-tokens.env` also sets
    KANBAN_TOKEN, which holds every role but operator and so may not scan."""
    return environ.get(f"KANBAN_{station_id}_TOKEN") or environ.get("KANBAN_TOKEN", "")


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="kanban-terminal", description="The terminal of one station, for a barcode scanner."
    )
    parser.add_argument("--station", required=True, help="the station this terminal is at")
    parser.add_argument("--site", default="PLANT1")
    parser.add_argument(
        "--stations-addr", default="localhost:50051", help="the stations service (host:port)"
    )
    parser.add_argument(
        "--token",
        help="bearer token (default: $KANBAN_<STATION>_TOKEN, else $KANBAN_TOKEN)",
    )
    parser.add_argument(
        "--lang",
        choices=LANGUAGES,
        default=language_from_locale(environ),
        help="language of the screen (default: from LC_ALL / LC_MESSAGES / LANG)",
    )
    args = parser.parse_args(argv)
    if args.token is None:
        args.token = default_token(args.station, environ)
    return args


def main() -> None:
    args = parse(sys.argv[1:], os.environ)
    TerminalApp(
        station_id=args.station,
        site_id=args.site,
        address=args.stations_addr,
        token=args.token,
        language=args.lang,
    ).run()


if __name__ == "__main__":
    main()
