"""TLS: server certificate, and client certificates when a client CA is configured."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from scheduler.drivers.service.client import CapClient, cap_interval
from scheduler.drivers.service.server import TlsFiles

from .conftest import local, start_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_with_client_certificates(small_config: Path, tmp_path: Path) -> None:
    server_cert, server_key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client")
    running = start_server(
        small_config,
        tmp_path / "caps.sqlite",
        tls=TlsFiles(server_cert, server_key, client_ca=client_cert),
    )
    target = f"127.0.0.1:{running.port}"
    try:
        with CapClient(target, tls_ca=server_cert, tls_client=(client_cert, client_key)) as ok:
            reply = ok.submit("tls-1", ["shantou"], [cap_interval(local("18:00"), 3600, 5.0)])
            assert reply.accepted
        for attempt in (
            CapClient(target, tls_ca=server_cert, timeout_s=2),  # no client certificate
            CapClient(target, timeout_s=2),  # plaintext
        ):
            with attempt, pytest.raises(grpc.RpcError) as error:
                attempt.list()
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(0)


def test_the_caps_cli_reaches_a_server_that_requires_client_certificates(
    small_config: Path, tmp_path: Path
) -> None:
    server_cert, server_key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client")
    running = start_server(
        small_config,
        tmp_path / "caps.sqlite",
        tls=TlsFiles(server_cert, server_key, client_ca=client_cert),
    )

    def caps_list(*tls: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "scheduler.drivers.service", "caps", "list"]
        command += ["--server", f"127.0.0.1:{running.port}", "--tls-ca", str(server_cert), *tls]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    try:
        ok = caps_list("--tls-cert", str(client_cert), "--tls-key", str(client_key))
        assert ok.returncode == 0 and ok.stdout == "no load caps\n", ok.stderr
        refused = caps_list()
        assert refused.returncode == 2 and refused.stderr.startswith("error: UNAVAILABLE")
        half = caps_list("--tls-cert", str(client_cert))
        assert half.returncode == 2 and "--tls-cert and --tls-key go together" in half.stderr
        missing = caps_list("--tls-cert", str(tmp_path / "none.pem"), "--tls-key", str(client_key))
        assert missing.returncode == 2 and "does not exist" in missing.stderr
        for result in (refused, half, missing):
            assert "Traceback" not in result.stderr
    finally:
        running.stop(0)
