"""The nats-server launcher: real process, readiness, clean stop, typed errors."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backend.messaging import NatsBroker, NatsConfig
from backend.messaging.subjects import CHANGESETS_STREAM, changeset_subject
from infra.nats.errors import (
    NatsServerNotFoundError,
    NatsServerStartError,
    NatsServerStateError,
)
from infra.nats.server import NatsServer, find_nats_server_binary


def _port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_info(host: str, port: int) -> dict[str, object]:
    with socket.create_connection((host, port), timeout=2) as sock:
        line = sock.makefile("rb").readline()
    assert line.startswith(b"INFO ")
    info: dict[str, object] = json.loads(line[5:])
    return info


def test_binary_is_found_in_the_venv() -> None:
    binary = find_nats_server_binary()
    assert binary.name == "nats-server"
    assert os.access(binary, os.X_OK)


def test_explicit_binary_env_var_that_is_missing_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NatsServerNotFoundError) as info:
        find_nats_server_binary({"CRMSYNC_NATS_SERVER_BIN": str(tmp_path / "nope")})
    assert info.value.code == "nats_server.binary_not_found"


def test_explicit_binary_argument_that_is_missing_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NatsServerNotFoundError):
        NatsServer(binary=tmp_path / "nope").start()


def test_start_is_ready_with_jetstream_and_stop_is_clean() -> None:
    server = NatsServer()
    with pytest.raises(NatsServerStateError):
        _ = server.url
    server.start()
    try:
        assert server.is_running
        assert server.url == f"nats://127.0.0.1:{server.port}"
        info = _read_info("127.0.0.1", server.port)
        assert info["jetstream"] is True
        store = server.store_dir
        assert store.is_dir()
    finally:
        port = server.port
        server.stop()
    assert not server.is_running
    assert server.pid is None
    assert not _port_accepts("127.0.0.1", port)
    assert not store.exists()  # private temp dir removed
    server.stop()  # idempotent


def test_monitoring_healthz_reports_jetstream_ok() -> None:
    with NatsServer(http_port=0) as server:
        assert server.monitoring_url is not None
        url = f"{server.monitoring_url}/healthz?js-enabled-only=true"
        with urllib.request.urlopen(url, timeout=2) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["status"] == "ok"


def test_two_servers_get_different_ports() -> None:
    with NatsServer() as a, NatsServer() as b:
        assert a.port != b.port
        assert _port_accepts("127.0.0.1", a.port)
        assert _port_accepts("127.0.0.1", b.port)


async def test_async_context_manager() -> None:
    async with NatsServer() as server:
        assert server.is_running
        pid = server.pid
        assert pid is not None
    assert not server.is_running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_bad_config_file_fails_with_the_log(tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("jetstream { this is not valid\n")
    with pytest.raises(NatsServerStartError) as info:
        NatsServer(config_file=config).start()
    assert info.value.code == "nats_server.start_failed"
    assert "exited with code" in str(info.value)


def test_missing_config_file_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(NatsServerStartError):
        NatsServer(config_file=tmp_path / "missing.conf")


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    server = NatsServer(stop_timeout=0.3).start()
    pid = server.pid
    assert pid is not None
    proc = server._proc
    assert proc is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started >= 0.3
    assert proc.returncode == -signal.SIGKILL


async def test_jetstream_data_survives_a_restart_on_the_same_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    server = NatsServer(store_dir=store)
    async with server, NatsBroker(NatsConfig(servers=(server.url,))) as broker:
        await broker.ensure_streams()
        await broker.publish(changeset_subject("dev1"), b"kept", msg_id="cs-1")
    assert store.is_dir()  # a given store dir is kept
    server = NatsServer(store_dir=store)
    async with server, NatsBroker(NatsConfig(servers=(server.url,))) as broker:
        state = await broker.stream_state(CHANGESETS_STREAM)
        assert state.messages == 1
        # The duplicate window survives the restart too.
        again = await broker.publish(changeset_subject("dev1"), b"kept", msg_id="cs-1")
        assert again.duplicate


def _self_signed_pem(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nats-1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_production_cluster_config_is_valid(tmp_path: Path) -> None:
    conf = Path(__file__).resolve().parents[3] / "infra" / "nats" / "cluster.conf"
    cert, key = _self_signed_pem(tmp_path)
    env = dict(
        os.environ,
        NATS_SERVER_NAME="nats-1",
        NATS_ROUTE_1="nats-route://nats-1:6222",
        NATS_ROUTE_2="nats-route://nats-2:6222",
        NATS_ROUTE_3="nats-route://nats-3:6222",
        NATS_ROUTE_PASSWORD="r",
        NATS_TLS_CERT=str(cert),
        NATS_TLS_KEY=str(key),
        NATS_TLS_CA=str(cert),
        NATS_GATEWAY_PASSWORD="g",
        NATS_APPLIER_PASSWORD="a",
        NATS_IMPORTER_PASSWORD="i",
        NATS_SYS_PASSWORD="s",
    )
    result = subprocess.run(
        [str(find_nats_server_binary()), "-t", "-c", str(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr
