from services.core.server import main
from services.orders.app import SPEC

main(SPEC)
