"""Listening: TLS on the command port (certificates from trustme), both loopbacks, the connection limit."""

from __future__ import annotations

import json
import socket
import ssl

import trustme

from helpers.rawclient import RawClient, ReplyError


def _tls_client(port: int, ca: trustme.CA) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_tls_when_both_pem_files_are_present(server_factory) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server = server_factory(start=False)
    cert.private_key_pem.write_to_path(str(server.conf_dir / "private.key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(server.conf_dir / "public.cert.pem"))
    server.start()
    with _tls_client(server.port, ca) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.recv(64) == b'+HI {"v":2}\r\n'
        tls.sendall(b'HELLO {"v":2}\r\nPUSH {"jid":"tls-job-0001","jobtype":"T","args":[1]}\r\nFETCH default\r\n')
        data = b""
        while data.count(b"\r\n") < 4:
            data += tls.recv(4096)
        ok1, ok2, length, body = data.split(b"\r\n")[:4]
        assert (ok1, ok2) == (b"+OK", b"+OK")
        assert json.loads(body)["jid"] == "tls-job-0001"
        assert length == b"$%d" % len(body)
    # A plain-text client gets no greeting it could mistake for Faktory's.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as plain:
        plain.sendall(b'HELLO {"v":2}\r\n')
        assert not plain.recv(64).startswith(b"+HI")


def test_connection_limit(server_factory) -> None:
    server = server_factory(args=("--max-connections", "3"))
    clients = [server.client() for _ in range(3)]
    for c in clients:
        assert c.handshake() == b"OK"
    extra = server.client()
    extra.reply()  # +HI
    extra.send(b'HELLO {"v":2}\r\n')
    assert extra.reply() == b"OK"
    try:
        extra.reply()
        raise AssertionError("expected the connection limit error")
    except ReplyError as exc:
        assert str(exc) == "ERR too many connections: 4"
    assert extra.closed_by_peer()
    # Those already connected keep working, and a slot frees up when one leaves.
    assert clients[0].command("INFO")
    clients[1].close()
    with RawClient(server.port) as again:
        assert again.handshake() == b"OK"
        assert json.loads(again.command("INFO"))["server"]["connections"] >= 1
    for c in clients:
        c.close()
    extra.close()


def test_localhost_binds_both_loopbacks(server_factory) -> None:
    server = server_factory(start=False)
    server.args = ("-b", f"localhost:{server.port}")
    server.start()
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as s:
            s.settimeout(5)
            try:
                s.connect((host, server.port))
            except OSError as exc:  # a machine without IPv6 loopback
                assert family == socket.AF_INET6, exc
                continue
            assert s.recv(64) == b'+HI {"v":2}\r\n'
