"""`gradprom search --address` that reaches no cluster ends in one line and exit 2, quickly, before anything else
(no experiment folder, no Ray runtime). Loopback only: every address here is 127.0.0.1 or is refused unread; a
guard fails the test if the search looks up or connects to any other host."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gradprom.cli import main

LOOPBACK = ("127.0.0.1", "127.000.000.001", "::1")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch, no_ray_session: None) -> None:
    """Name lookups and connections of this process may only go to loopback (and no Ray runtime of an earlier
    test is up in it: a search reuses one its caller started, and these must reach for the address)."""
    lookup, connect = socket.getaddrinfo, socket.socket.connect

    def guarded_lookup(host: object, *args: object, **kwargs: object) -> object:
        assert host in LOOPBACK, f"the search looked up {host!r}"
        return lookup(host, *args, **kwargs)

    def guarded_connect(sock: socket.socket, address: object) -> object:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] in ("127.0.0.1", "::1"), f"the search connected to {address!r}"  # type: ignore[index]
        return connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_lookup)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


def children() -> set[int]:
    """Pids of this process's live children (from /proc: Linux)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def closed_port() -> int:
    """A loopback port nothing listens on: bound to get a free one, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A loopback TCP server that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def search(capsys: pytest.CaptureFixture, tmp_path: Path, address: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code = main(["search", "--address", address, "--out", str(tmp_path), "--name", "x", "--trials", "1"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()  # checked before the experiment folder is made
    return code, " ".join(err.split()), time.monotonic() - started


@pytest.mark.parametrize("client", [False, True], ids=["gcs", "ray-client"])
def test_closed_port_is_one_line_quickly(capsys: pytest.CaptureFixture, tmp_path: Path, client: bool) -> None:
    port = closed_port()
    address = f"{'ray://' if client else ''}127.0.0.1:{port}"
    code, err, took = search(capsys, tmp_path, address)
    assert code == 2
    assert f"tried host 127.0.0.1, port {port} ({'Ray Client' if client else 'GCS'})" in err, err
    assert "connection refused" in err and "HEAD:6379" in err and "gradprom cluster submit" in err, err
    assert took < 20, took


@pytest.mark.parametrize(("address", "reason"), [
    ("nosuchport:abc", "the port 'abc' is not a number from 1 to 65535"),
    (":::", "more than one ':'"),
    ("999.1.1.1:1", "'999.1.1.1' is not an IPv4 address"),  # the address: refused, never looked up
    ("127.0.0.1", "no port"),
    ("127.0.0.1:0", "the port '0' is not a number from 1 to 65535"),
    ("[::1:6379", "an IPv6 host goes in brackets"),
    ("http://127.0.0.1:8265", "http:// is the Jobs API"),
])
def test_malformed_address_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path, address: str,
                                       reason: str) -> None:
    code, err, took = search(capsys, tmp_path, address)
    assert code == 2 and f"--address {address!r} is not a Ray address: {reason}" in err, err
    assert took < 20, took


def test_port_that_accepts_but_says_nothing_is_one_line_in_bounded_time(
        capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, silent_port: int) -> None:
    """TCP connects, so only Ray's handshake can tell; it runs in a child process killed at the deadline."""
    monkeypatch.setenv("GRADPROM_CONNECT_TIMEOUT_S", "6")
    before = children()
    code, err, took = search(capsys, tmp_path, f"127.000.000.001:{silent_port}")
    assert code == 2, err
    assert f"tried host 127.000.000.001, port {silent_port} (GCS)" in err, err
    assert "accepts connections but no Ray cluster answered within 6 s" in err, err
    assert 6 <= took < 40, took
    assert children() <= before  # the probe is gone


def test_bad_connect_timeout_setting_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch, silent_port: int) -> None:
    monkeypatch.setenv("GRADPROM_CONNECT_TIMEOUT_S", "soon")
    code, err, _ = search(capsys, tmp_path, f"127.0.0.1:{silent_port}")
    assert code == 2 and "GRADPROM_CONNECT_TIMEOUT_S must be a number of seconds, got 'soon'" in err, err


def test_credentials_in_the_address_are_not_echoed(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    port = closed_port()
    code, err, _ = search(capsys, tmp_path, f"ray://alice:s3cret@127.0.0.1:{port}")
    assert code == 2 and f"--address ray://***@127.0.0.1:{port}: tried host 127.0.0.1, port {port}" in err, err
    assert "s3cret" not in err
