from services.core.server import main
from services.stock.app import SPEC

main(SPEC)
