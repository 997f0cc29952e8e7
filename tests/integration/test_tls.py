"""TLS on the gRPC ports, mutual TLS, the plaintext health port for probes, and events
relayed over mutual TLS; with certificates the openssl CLI makes for each run."""

import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kanban.stations.v1 import stations_pb2_grpc
from kanban.stock.v1 import stock_pb2_grpc

from services.alerts.app import SPEC as ALERTS
from services.core import client
from services.core.server import RunningService, start_service
from tests.conftest import (
    Line,
    eventually,
    fast_settings,
    fresh_database,
    new_id,
    refused,
    start_stack,
    stock_by_lot,
)

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA; a certificate for localhost, which every service presents to callers and
    to the peers it delivers events to; a client's; and an unrelated CA with a client."""
    directory = tmp_path_factory.mktemp("pki")
    make_ca(directory, "ca")
    make_ca(directory, "other-ca")
    issue(
        directory,
        "server",
        "ca",
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        # A service is a client too, of the peers it delivers events to.
        "extendedKeyUsage = serverAuth, clientAuth\n",
    )
    issue(directory, "client", "ca", "extendedKeyUsage = clientAuth\n")
    issue(directory, "intruder", "other-ca", "extendedKeyUsage = clientAuth\n")
    return directory


def openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        directory,
        *("req", "-x509", "-days", "1", "-subj", f"/CN={name}", "-nodes"),
        *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-keyout", f"{name}.key", "-out", f"{name}.pem"),
    )


def issue(directory: Path, name: str, ca: str, extensions: str) -> None:
    """A key and a certificate for `name`, signed by `ca`, with the given extensions."""
    (directory / f"{name}.ext").write_text(extensions)
    openssl(
        directory,
        *("req", "-new", "-subj", f"/CN={name}", "-nodes"),
        *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
        *("-keyout", f"{name}.key", "-out", f"{name}.csr"),
    )
    openssl(
        directory,
        *("x509", "-req", "-days", "1", "-in", f"{name}.csr", "-extfile", f"{name}.ext"),
        *("-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial", "-out", f"{name}.pem"),
    )


def tls_settings(pki: Path, *, mutual: bool = False) -> dict[str, object]:
    """A service's TLS settings: its certificate, the CA it trusts for its peers, and
    with `mutual`, the CA its callers' certificates must be signed by."""
    settings: dict[str, object] = dict(
        tls_cert_file=str(pki / "server.pem"),
        tls_key_file=str(pki / "server.key"),
        tls_ca_file=str(pki / "ca.pem"),
    )
    if mutual:
        settings["tls_client_ca_file"] = str(pki / "ca.pem")
    return settings


def trusting(pki: Path, ca: str = "ca", certificate: str = "") -> grpc.ChannelCredentials:
    """A client's credentials: the CA it trusts, and the certificate it presents, if any."""
    return grpc.ssl_channel_credentials(
        root_certificates=(pki / f"{ca}.pem").read_bytes(),
        private_key=(pki / f"{certificate}.key").read_bytes() if certificate else None,
        certificate_chain=(pki / f"{certificate}.pem").read_bytes() if certificate else None,
    )


@asynccontextmanager
async def serving(database_url: str, **settings: object) -> AsyncIterator[RunningService]:
    """Alerts on a port of its own: it sends no events, so it needs no peers."""
    service = await start_service(ALERTS, fast_settings(database_url, **settings))
    try:
        yield service
    finally:
        await service.stop(0)


async def health_check(address: str, credentials: grpc.ChannelCredentials | None = None):
    async with client.channel(address, credentials=credentials) as channel:
        return await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )


@pytest.fixture(scope="module")
async def tls_service(database_url: str, pki: Path) -> AsyncIterator[RunningService]:
    async with serving(database_url, **tls_settings(pki)) as service:
        yield service


@pytest.fixture(scope="module")
async def mutual_tls_service(database_url: str, pki: Path) -> AsyncIterator[RunningService]:
    async with serving(database_url, **tls_settings(pki, mutual=True)) as service:
        yield service


async def test_a_client_trusting_the_ca_is_served(tls_service, pki):
    reply = await health_check(tls_service.address, trusting(pki))
    assert reply.status == SERVING


async def test_a_plaintext_client_is_refused(tls_service):
    refusal = await refused(health_check(tls_service.address))
    assert refusal.code == grpc.StatusCode.UNAVAILABLE


async def test_a_client_trusting_another_ca_is_refused(tls_service, pki):
    refusal = await refused(health_check(tls_service.address, trusting(pki, "other-ca")))
    assert refusal.code == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_serves_only_clients_with_a_certificate_the_ca_signed(
    mutual_tls_service, pki
):
    address = mutual_tls_service.address
    assert (await health_check(address, trusting(pki, certificate="client"))).status == SERVING
    for credentials in (trusting(pki), trusting(pki, certificate="intruder")):
        refusal = await refused(health_check(address, credentials))
        assert refusal.code == grpc.StatusCode.UNAVAILABLE


async def test_probes_use_a_plaintext_port_that_serves_health_only(database_url, pki):
    async with serving(database_url, health_port=0, **tls_settings(pki, mutual=True)) as service:
        probe = f"localhost:{service.health_port}"
        assert (await health_check(probe)).status == SERVING
        async with client.channel(probe) as channel:
            reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
            )
            refusal = await refused(reflect.read())
        assert refusal.code == grpc.StatusCode.UNIMPLEMENTED
    # Stopping the service closes the health port too.
    refusal = await refused(health_check(probe))
    assert refusal.code == grpc.StatusCode.UNAVAILABLE


async def test_events_are_relayed_over_mutual_tls(database_url, pki):
    # A database of their own: no other replica's relay can deliver these events.
    url = await fresh_database(database_url)
    stack = await start_stack(url, **tls_settings(pki, mutual=True))
    try:
        credentials = trusting(pki, certificate="client")
        async with (
            client.channel(stack.peers["stations"], credentials=credentials) as stations,
            client.channel(stack.peers["stock"], credentials=credentials) as stock,
        ):
            line = await Line(
                stations_pb2_grpc.StationsServiceStub(stations), new_id("site")
            ).create()
            stub = stock_pb2_grpc.StockServiceStub(stock)
            held = await eventually(lambda: stock_by_lot(stub, line.site_id, "SM-W"))
        assert held == {"W-OPENING": 1500}
    finally:
        await stack.close()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(tls_cert_file="server.pem"), "set both"),
        (dict(tls_key_file="server.key"), "set both"),
        (dict(tls_client_ca_file="ca.pem"), "KANBAN_TLS_CLIENT_CA_FILE needs"),
        (dict(tls_cert_file="missing.pem", tls_key_file="server.key"), "cannot read"),
        (dict(tls_ca_file="missing.pem"), "cannot read KANBAN_TLS_CA_FILE"),
    ],
    ids=["cert-only", "key-only", "client-ca-only", "unreadable-cert", "unreadable-ca"],
)
async def test_a_service_refuses_to_start_with_tls_half_configured(
    database_url, pki, settings, message
):
    files = {name: str(pki / path) for name, path in settings.items()}
    with pytest.raises(SystemExit, match=message):
        await start_service(ALERTS, fast_settings(database_url, **files))
