"""The ports the launcher gives services: never the same twice in one process."""

from services.devstack.processes import free_port


def test_no_port_is_given_twice():
    # 300 draws from 12,768 ports collide about 97 % of the time if nothing prevents it.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= port < 32768 for port in ports)
