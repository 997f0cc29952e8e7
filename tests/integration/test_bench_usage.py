"""The benchmark splits PostgreSQL's time by client, from the backends of our
connections (tools/bench/usage.py)."""

from tools.bench import usage


async def test_our_connections_backends_are_found_and_named_by_client(stack, database_url):
    clients = await usage.postgres_clients(database_url)
    assert {"stations", "stations-relay", "stock", "alerts"} <= set(clients.values())
    measured = usage.Usage({}, None, clients)
    before = measured.client_cpu()
    assert set(before) == set(clients)  # each backend is a process of this machine
    split = measured.by_client(before, measured.client_cpu(), postgres=None)
    assert {"pg stations", "pg stations-relay"} <= set(split)
    assert all(seconds >= 0 for seconds in split.values())
