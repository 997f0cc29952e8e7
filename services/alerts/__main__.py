from services.alerts.app import SPEC
from services.core.server import main

main(SPEC)
