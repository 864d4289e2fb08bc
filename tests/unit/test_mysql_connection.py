"""Logging in to MySQL 8 with its default authentication, caching_sha2_password.

Debian has no MySQL server (its MariaDB does not speak caching_sha2_password), so a small server
on 127.0.0.1 plays MySQL 8's side of the handshake, byte for byte, for a user whose password is
not in the server's cache: fast authentication fails, PyMySQL asks for the server's RSA key and
sends the password encrypted with it. That is the step that needs `cryptography`. The real
Connector and the real PyMySQL run against it.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pymysql._auth
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from lifeboat.contract import ExitCode
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.mysql.connection import Connector
from lifeboat.worker.errors import AuthenticationFailed

PASSWORD = "s3cret-pässword"
SALT = b"0123456789abcdefghij"  # 20 bytes, as MySQL sends
CAPABILITIES = (
    0x00000001  # LONG_PASSWORD
    | 0x00000008  # CONNECT_WITH_DB
    | 0x00000200  # PROTOCOL_41
    | 0x00002000  # TRANSACTIONS
    | 0x00008000  # SECURE_CONNECTION
    | 0x00020000  # MULTI_RESULTS
    | 0x00080000  # PLUGIN_AUTH
)
AUTOCOMMIT = 0x0002
OK = b"\x00\x00\x00" + struct.pack("<HH", AUTOCOMMIT, 0)


def packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([sequence]) + payload


def read_packet(conn: socket.socket) -> tuple[int, bytes]:
    header = conn.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        raise ConnectionError("client went away")
    length = int.from_bytes(header[:3], "little")
    return header[3], conn.recv(length, socket.MSG_WAITALL) if length else b""


@dataclass
class Mysql8:
    """One connection of MySQL 8.0's caching_sha2_password full authentication."""

    port: int = 0
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    received_password: str | None = None
    error: BaseException | None = None

    def handshake(self) -> bytes:
        return (
            b"\x0a8.0.36\x00"
            + struct.pack("<I", 7)
            + SALT[:8]
            + b"\x00"
            + struct.pack("<H", CAPABILITIES & 0xFFFF)
            + bytes([45])  # utf8mb4_general_ci
            + struct.pack("<H", AUTOCOMMIT)
            + struct.pack("<H", CAPABILITIES >> 16)
            + bytes([len(SALT) + 1])
            + b"\x00" * 10
            + SALT[8:]
            + b"\x00"
            + b"caching_sha2_password\x00"
        )

    def serve(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(packet(0, self.handshake()))
                read_packet(conn)  # the handshake response, with the fast-auth scramble
                conn.sendall(packet(2, b"\x01\x04"))  # not cached: perform full authentication
                sequence, request = read_packet(conn)
                assert request == b"\x02", request  # the client asks for the RSA public key
                public = self.key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                conn.sendall(packet(sequence + 1, b"\x01" + public))
                sequence, encrypted = read_packet(conn)
                oaep = padding.OAEP(
                    mgf=padding.MGF1(algorithm=hashes.SHA1()),  # noqa: S303 - MySQL's choice
                    algorithm=hashes.SHA1(),  # noqa: S303
                    label=None,
                )
                xored = self.key.decrypt(encrypted, oaep)
                plain = bytes(b ^ SALT[i % len(SALT)] for i, b in enumerate(xored))
                self.received_password = plain.rstrip(b"\x00").decode()
                conn.sendall(packet(sequence + 1, OK))
                while True:  # SET NAMES and the like: OK; COM_QUIT: done
                    sequence, command = read_packet(conn)
                    if command[:1] == b"\x01":
                        return
                    conn.sendall(packet(sequence + 1, OK))
        except ConnectionError:
            return
        except BaseException as exc:
            self.error = exc


@contextmanager
def mysql8() -> Iterator[Mysql8]:
    server = Mysql8()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        server.port = listener.getsockname()[1]
        thread = threading.Thread(target=server.serve, args=(listener,), daemon=True)
        thread.start()
        yield server
        thread.join(timeout=30)
    if server.error is not None:
        raise server.error


def connector(port: int) -> Connector:
    url = parse_database_url(
        f"mysql://app@127.0.0.1:{port}/shop", environ={"LIFEBOAT_DB_PASSWORD": PASSWORD}
    )
    return Connector(url, "MySQL")


def test_mysql8_default_authentication_logs_in_with_the_shipped_cryptography() -> None:
    assert pymysql._auth._have_cryptography, "cryptography must be installed beside PyMySQL"
    with mysql8() as server:
        conn = connector(server.port).connect("shop")
        conn.close()
    assert server.received_password == PASSWORD


def test_without_cryptography_the_login_fails_with_a_clear_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pymysql._auth, "_have_cryptography", False)
    with mysql8() as server, pytest.raises(AuthenticationFailed) as failure:
        connector(server.port).connect("shop")
    message = str(failure.value)
    assert message.startswith(
        f"MySQL at 127.0.0.1:{server.port} asks user 'app' to log in with sha256_password or "
        "caching_sha2_password"
    )
    assert "needs the Python package 'cryptography'" in message
    assert "the password was not checked" in message
    assert PASSWORD not in message
    assert failure.value.reason == "AuthenticationFailed"
    assert failure.value.exit_code == ExitCode.REFUSED
    assert server.received_password is None


def test_other_runtime_errors_are_not_mistaken_for_a_missing_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object) -> bytes:
        raise RuntimeError("something else entirely")

    monkeypatch.setattr(pymysql._auth, "sha2_rsa_encrypt", broken)
    with mysql8() as server, pytest.raises(RuntimeError, match="something else entirely"):
        connector(server.port).connect("shop")
