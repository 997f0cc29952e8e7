from services.core.server import main
from services.stations.app import SPEC

main(SPEC)
