from kanban.stations.v1 import stations_pb2 as pb


async def test_scan_start_complete(line):
    scanned = await line.scan("WELD", "P-001")
    assert scanned.card.state == pb.CARD_STATE_EMPTY
    assert scanned.signal.station_id == "STAMP"
    started = await line.start("STAMP")
    assert started.card.card_code == "P-001"
    done = await line.complete("STAMP", "P-001", "LOT-1", 500)
    assert done.card.state == pb.CARD_STATE_FULL
