"""`make soak`: the stack under a steady load for minutes, with many terminals connected.

run.py runs one soak: the services as processes (services/devstack/processes.py), the
line (line.py: what the soak believes, and the next operation), its clients
(clients.py), the load and the samples (load.py), the invariants at the end
(checks.py) and the verdict (verdict.py). tests/e2e/test_soak.py runs a short one.
"""
