"""Who may call each RPC of the stations service."""

from services.core.auth import Role, allow, for_service

# Operators see the line they work on; the planner, the warehouse and quality too.
READ_LINE = allow(Role.OPERATOR, Role.PLANNER, Role.WAREHOUSE, Role.QUALITY, Role.ADMIN)
SET_UP_LINE = allow(Role.PLANNER, Role.ADMIN)
# Only an operator of the station named in the request.
AT_THE_STATION = allow(Role.OPERATOR, station_field="station_id")

PERMISSIONS = for_service(
    "kanban.stations.v1.StationsService",
    {
        "CreateSite": SET_UP_LINE,
        "CreateStation": SET_UP_LINE,
        "CreateItem": SET_UP_LINE,
        "CreateLoop": SET_UP_LINE,
        "ResizeLoop": SET_UP_LINE,
        "GetLoop": READ_LINE,
        "ListLoops": READ_LINE,
        "GetCard": READ_LINE,
        "GetBoard": READ_LINE,
        "AnalyzeLine": READ_LINE,
        "SetSizingPolicy": SET_UP_LINE,
        "ScanCard": AT_THE_STATION,
        "StartSignal": AT_THE_STATION,
        "CompleteCard": AT_THE_STATION,
        "StartInstruction": AT_THE_STATION,
        "CompleteInstruction": AT_THE_STATION,
        # A terminal watches its own station's signals; the planner any station's.
        "WatchSignals": allow(Role.OPERATOR, Role.PLANNER, station_field="station_id"),
    },
)
