"""The SSH transport's socket and runner (a local TCP socket; no host is contacted)."""

from __future__ import annotations

import socket
import threading

from fabric import Connection

from hbdeploy.remote import PromptRunner, Remote, describe_ssh_error, tcp_socket


def test_the_ssh_socket_sends_at_once_and_acknowledges_at_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def answer() -> None:
            peer, _ = server.accept()
            with peer:
                peer.sendall(peer.recv(16).upper())

        thread = threading.Thread(target=answer)
        thread.start()
        sock = tcp_socket("127.0.0.1", port, timeout=5)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert sock.gettimeout() == 5
            sock.sendall(b"ping")
            assert sock.recv(16) == b"PING"  # through _QuickAckSocket.recv on Linux
            if hasattr(socket, "TCP_QUICKACK"):
                assert type(sock).__name__ == "_QuickAckSocket"
        thread.join(5)


def test_a_refused_connection_is_an_os_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    try:
        tcp_socket("127.0.0.1", port, timeout=5)
    except OSError as exc:
        assert isinstance(exc, ConnectionRefusedError)
    else:
        raise AssertionError("a closed port was connected to")


def test_commands_run_with_the_prompt_runner() -> None:
    remote = Remote(Connection("192.0.2.1"), "a host")  # never connected
    assert remote.connection.config.runners.remote is PromptRunner


def test_an_ssh_error_without_a_message_names_what_happened() -> None:
    # paramiko raises a bare EOFError when the connection closes under a command (CI)
    assert describe_ssh_error(EOFError()) == "ssh error: the connection closed (EOFError)"
    assert describe_ssh_error(EOFError("gone")) == "ssh error: gone"
