"""TLS credentials from the settings: the gRPC port's, and the relay's when it delivers
events to peers. Files are read once, at start-up, so a bad path stops the start."""

from pathlib import Path

import grpc

from services.core.config import Settings


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """The gRPC port's TLS, mutual when a client CA is set; None: plaintext."""
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise SystemExit("TLS: set both KANBAN_TLS_CERT_FILE and KANBAN_TLS_KEY_FILE, or neither")
    if not settings.tls_cert_file:
        if settings.tls_client_ca_file:
            raise SystemExit(
                "TLS: KANBAN_TLS_CLIENT_CA_FILE needs KANBAN_TLS_CERT_FILE and KANBAN_TLS_KEY_FILE"
            )
        return None
    client_ca = _read(settings.tls_client_ca_file, "KANBAN_TLS_CLIENT_CA_FILE")
    key = _read(settings.tls_key_file, "KANBAN_TLS_KEY_FILE")
    certificate = _read(settings.tls_cert_file, "KANBAN_TLS_CERT_FILE")
    return grpc.ssl_server_credentials(
        [(key, certificate)], root_certificates=client_ca, require_client_auth=bool(client_ca)
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """How the relay reaches its peers; None: plaintext. It presents this service's own
    certificate when it has one, so peers that require mutual TLS accept it."""
    if not settings.tls_ca_file:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.tls_ca_file, "KANBAN_TLS_CA_FILE"),
        private_key=_read(settings.tls_key_file, "KANBAN_TLS_KEY_FILE"),
        certificate_chain=_read(settings.tls_cert_file, "KANBAN_TLS_CERT_FILE"),
    )


def _read(path: str, setting: str) -> bytes | None:
    """The file's bytes; None when the setting is unset."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SystemExit(f"TLS: cannot read {setting} ({path}): {error.strerror}") from error
