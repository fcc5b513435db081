"""A host reached over SSH with its host key verified, and the few things we do on it.

Fabric's Connection accepts any host key by default (AutoAddPolicy); hbdeploy does not:
:func:`verify_host_keys` loads the known_hosts files (the ssh_config's UserKnownHostsFile,
else ~/.ssh/known_hosts and the system's) and rejects unknown or changed keys.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko
from fabric import Config, Connection
from fabric.runners import Remote as FabricRunner
from fabric.runners import Result
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from .errors import HbdeployError

DEFAULT_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
KEEPALIVE = 5  # seconds between SSH keepalives
DEAD_PEER = 20  # seconds without an acknowledgement before a connection counts as dead
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux
LOST_WAIT = 1.0  # seconds paramiko may take to mark a lost connection inactive
TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux

# paramiko logs a failed handshake from its transport thread, traceback included, at ERROR;
# with no logging configured Python printed it on stderr (logging's last resort) above
# hbdeploy's own one-line reason. A handler of paramiko's logger stops that; where logging
# is configured the records still reach it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once (TCP_QUICKACK, set again
    before every read: Linux clears it by itself). sshd sends small messages with Nagle's
    algorithm on: one sent right after another waits for our acknowledgement of the first,
    which Linux otherwise delays by 40 ms when we have nothing to send back. That happened
    on every new connection, whose first session waited behind sshd's unanswered
    "hostkeys-00@openssh.com" message: 59 ms for a command that takes 17."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self.setsockopt(socket.IPPROTO_TCP, TCP_QUICKACK, 1)
        return super().recv(bufsize, flags)


def tcp_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected TCP socket to ``host`` with Nagle's algorithm off (TCP_NODELAY, as
    OpenSSH's client sets) and, on Linux, quick acknowledgements (:class:`_QuickAckSocket`).
    With Nagle on, a message sent right after another (channel open, then exec, in every
    command) waits about 40 ms for the host's delayed ACK."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if TCP_QUICKACK is None:
            return sock
        quick = _QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.fileno())
        sock.detach()
        quick.settimeout(timeout)
        return quick
    except BaseException:
        sock.close()
        raise


class PromptRunner(FabricRunner):
    """Fabric's runner, woken the moment the command's exit status arrives (paramiko sets
    an event) instead of looking every 10 ms (invoke's ``input_sleep``): in the lab a
    command that does nothing took 11.3 ms with invoke's, 3.3 ms with this one. Remote
    sets it on its connection's config where that names Fabric's own runner."""

    def wait(self) -> None:
        while not (self.process_is_finished or self.has_dead_threads):
            self.channel.status_event.wait(0.05)  # the timeout: a dead IO thread

    def start(self, command: str, shell: str, env: dict, timeout: float | None = None) -> None:
        """Fabric's start; a failure to open the session, before anything of the command
        was sent (Fabric's first step), raises SessionNotOpened: safe to run again."""
        try:
            super().start(command, shell, env, timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if getattr(self, "channel", None) is None:
                raise SessionNotOpened(exc) from exc
            raise


class SessionNotOpened(Exception):
    """The SSH session for a command could not be opened: the command was not sent."""


class ConnectionLost(Exception):
    """The connection closed while a command ran: whether it ran is unknown."""


class RemoteError(HbdeployError):
    """A command or transfer on a host failed."""


def verify_host_keys(connection: Connection) -> Connection:
    """Make ``connection`` refuse unknown and changed host keys (before it opens)."""
    client = connection.client
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    files = connection.ssh_config.get("userknownhostsfile")
    if files:
        paths = [Path(os.path.expanduser(p)) for p in str(files).split() if p != "/dev/null"]
    else:
        paths = [Path(os.path.expanduser(p)) for p in DEFAULT_KNOWN_HOSTS]
        with contextlib.suppress(OSError):
            client.load_system_host_keys()
    for path in paths:
        if path.is_file():
            client.get_host_keys().load(str(path))
    return connection


def connections(hosts: list[str], ssh_config: str | os.PathLike[str] | None = None
                ) -> list[Connection]:
    """Fabric connections to ``hosts`` outside Fabric's CLI, with an optional ssh_config."""
    config = Config(runtime_ssh_path=str(ssh_config) if ssh_config else None)
    config.load_ssh_config()
    return [Connection(host, config=config) for host in hosts]


@dataclass
class Remote:
    """One host: runs commands (as root, through sudo when needed) and writes files."""

    connection: Connection
    label: str
    commands: int = 0  # round trips so far: commands run and files written
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.connection.config.runners.remote is FabricRunner:
            self.connection.config.runners.remote = PromptRunner

    @property
    def is_root(self) -> bool:
        return self.connection.user == "root"

    def _connect(self) -> None:
        """Open the connection (Fabric reopens one a dropped session closed) over
        :func:`tcp_socket`: in the lab a command that does nothing took 45 ms over Fabric's
        own socket and 12 ms over this one. Through a gateway (ProxyJump) Fabric makes the
        socket, and it is left as it is."""
        connection = self.connection
        if connection.is_connected:
            return
        if connection.gateway or "sock" in connection.connect_kwargs:
            connection.open()
            return
        sock = tcp_socket(connection.host, connection.port, connection.connect_timeout or None)
        try:
            connection.connect_kwargs["sock"] = sock
            connection.open()
        except BaseException:
            sock.close()
            raise
        finally:
            connection.connect_kwargs.pop("sock", None)

    def _notice_a_dead_peer(self) -> None:
        """Open the connection (:meth:`_connect`) and make a dead host show as an error
        within DEAD_PEER seconds instead of TCP's quarter of an hour: SSH keepalives keep
        data in flight, and TCP_USER_TIMEOUT aborts the connection when the host
        acknowledges none of it for that long (a live host always does)."""
        self._connect()
        transport = self.connection.client.get_transport()
        if transport is None or getattr(transport, "_hbdeploy_hardened", False):
            return
        transport.set_keepalive(KEEPALIVE)
        with contextlib.suppress(OSError, AttributeError):
            transport.sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, DEAD_PEER * 1000)
        transport._hbdeploy_hardened = True  # type: ignore[attr-defined]

    def open(self) -> None:
        """Connect now (``run`` connects by itself); RemoteError when the host cannot be
        reached or refuses the connection."""
        try:
            self._notice_a_dead_peer()
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(f"{self.label}: {describe_ssh_error(exc)}") from None

    def run(self, command: str, *, check: bool = True, stdin: str | None = None,
            timeout: float | None = 300, idempotent: bool = False) -> tuple[int, str, str]:
        """Run ``command`` as root; (exit code, stdout, stderr). RemoteError when it fails.

        A connection found gone before the command was sent (sshd restarted, a session
        killed, and Fabric had not noticed yet) is opened again and the command run once
        more. A connection lost while the command ran leaves unknown whether it did: an
        ``idempotent`` command (one that reads, or checks before it acts) is run once more
        on a new connection; any other is a RemoteError that says so."""
        command = f"sh -c {shlex.quote(command)}"  # one shell, as root, for sudo too
        first = command.strip().splitlines()[0][:80]
        self.commands += 1
        try:
            try:
                result = self._run_once(command, stdin, timeout)
            except (SessionNotOpened, ConnectionLost) as exc:
                if isinstance(exc, ConnectionLost) and not idempotent:
                    raise
                self.connection.close()
                self.commands += 1
                result = self._run_once(command, stdin, timeout)
        except SessionNotOpened as exc:
            raise RemoteError(f"{self.label}: {describe_ssh_error(exc.__cause__ or exc)}"
                              ) from None
        except ConnectionLost:
            raise RemoteError(
                f"{self.label}: the connection closed while `{first}` ran, "
                + ("and again when it was run once more on a new connection" if idempotent
                   else "so whether it ran is unknown (not run again: it is not safe to)")
            ) from None
        except UnexpectedExit as exc:  # only with warn=False; kept for safety
            result = exc.result
        except CommandTimedOut:
            raise RemoteError(f"{self.label}: `{first}` did not finish within {timeout:.0f} s"
                              ) from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise RemoteError(f"{self.label}: {describe_ssh_error(exc)}") from None
        if check and result.exited != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise RemoteError(f"{self.label}: `{first}` exited {result.exited}: "
                              + " | ".join(detail))
        return result.exited, result.stdout, result.stderr

    def _run_once(self, command: str, stdin: str | None, timeout: float | None) -> Result:
        """One attempt; SessionNotOpened or ConnectionLost when the connection was gone."""
        self._notice_a_dead_peer()
        kwargs = {"hide": True, "warn": True, "timeout": timeout,
                  "in_stream": io.StringIO(stdin) if stdin is not None else False}
        runner = self.connection.run if self.is_root else self.connection.sudo
        try:
            result = runner(command, **kwargs)
        except SessionNotOpened:
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if self._dropped():
                raise ConnectionLost() from exc
            raise
        # A channel the connection's end closed has no exit status (-1, as a command
        # killed by a signal has: told apart by the transport).
        if result.exited == -1 and self._dropped():
            raise ConnectionLost()
        return result

    def _dropped(self) -> bool:
        """Whether the connection is gone. paramiko closes the channels of a lost
        connection a moment before it marks the connection inactive, so this looks for up
        to LOST_WAIT seconds."""
        transport = self.connection.transport
        deadline = time.monotonic() + LOST_WAIT
        while transport is not None and transport.active:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def write_file(self, path: str, content: str, mode: int) -> None:
        """Write ``content`` to ``path`` atomically (temporary file, then rename), owner root."""
        tmp = self.stage_file(path, content, mode)
        self.run(f"chown root:root {shlex.quote(tmp)} && sync {shlex.quote(tmp)} "
                 f"&& mv -f {shlex.quote(tmp)} {shlex.quote(path)} "
                 f"|| {{ rm -f {shlex.quote(tmp)}; exit 1; }}")

    @staticmethod
    def staged_path(path: str) -> str:
        """Where :meth:`stage_file` puts the content of ``path`` (same folder: a rename)."""
        folder, name = os.path.split(path)
        return f"{folder}/.{name}.hbdeploy-new"

    def stage_file(self, path: str, content: str, mode: int) -> str:
        """Write ``content`` beside ``path`` (:meth:`staged_path`, with ``mode``); ``path``
        itself is untouched. On failure (a full disk) nothing is left behind: RemoteError."""
        tmp = self.staged_path(path)
        self.commands += 1  # the transfer
        try:
            try:
                staged = self._transfer(path, tmp, content, mode)
            except (OSError, paramiko.SSHException, EOFError):
                if not self._dropped():
                    raise
                # The connection was gone (sshd restarted, its session killed, a reset):
                # the transfer only writes the staged file, so it is made again on a new
                # connection, once.
                self.connection.close()
                self.commands += 1
                staged = self._transfer(path, tmp, content, mode)
            if staged is None:
                return tmp
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._discard(tmp)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            reason = reason or type(exc).__name__
            free = self._free_kib(os.path.dirname(path))
            if free is not None and free < 64:  # SFTP reports a full disk as "Failure"
                reason = f"{reason}: no space left there, {free} KiB free"
            raise RemoteError(f"{self.label}: writing {path} failed ({reason}); the file on "
                              "the host is unchanged") from None
        self.commands += 1
        home = self.connection.run("pwd", hide=True).stdout.strip()
        src = shlex.quote(f"{home}/{staged}")
        self.run(f"install -o root -g root -m {mode:04o} {src} {shlex.quote(tmp)} "
                 f"|| {{ rm -f {src} {shlex.quote(tmp)}; exit 1; }}; rm -f {src}")
        return tmp

    def _transfer(self, path: str, tmp: str, content: str, mode: int) -> str | None:
        """One SFTP transfer of ``content``: to ``tmp`` as root (None), else to a file in
        the login's home, whose name it returns (for sudo's ``install``)."""
        self._notice_a_dead_peer()
        sftp = self.connection.sftp()
        if self.is_root:
            with sftp.open(tmp, "w") as handle:
                handle.chmod(mode)  # before any byte is written: authkeys never readable
                handle.write(content.encode())
                handle.flush()
            return None
        staged = f".hbdeploy-{os.path.basename(path)}.{os.getpid()}"
        with sftp.open(staged, "w") as handle:
            handle.chmod(0o600)
            handle.write(content.encode())
        return staged

    def _free_kib(self, folder: str) -> int | None:
        """Free space where ``folder`` lives, in KiB (None when it cannot be told)."""
        try:
            _, out, _ = self.run(f"df -Pk {shlex.quote(folder)} | awk 'NR == 2 {{print $4}}'",
                                 check=False, timeout=30)
        except RemoteError:
            return None
        return int(out.strip()) if out.strip().isdigit() else None

    def _discard(self, tmp: str) -> None:
        """Remove a temporary file a failed transfer left (best effort)."""
        with contextlib.suppress(RemoteError):
            self.run(f"rm -f {shlex.quote(tmp)}", check=False, timeout=30)

    def close(self) -> None:
        self.connection.close()


def describe_ssh_error(exc: BaseException) -> str:
    """A one-line reason for an SSH failure, with the fix for a host key problem."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return ("the host key does not match known_hosts (possible man-in-the-middle, or a "
                "reinstalled server): check it, then update known_hosts")
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return ("unknown host key: add the host to known_hosts (ssh-keyscan, after checking "
                "its fingerprint) or give -S with an ssh_config naming a UserKnownHostsFile")
    if isinstance(exc, paramiko.AuthenticationException):
        return f"authentication failed ({exc}); give a key with -i or check the user"
    if isinstance(exc, TimeoutError | OSError):
        return f"unreachable: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
    return f"ssh error: {str(exc) or f'the connection closed ({type(exc).__name__})'}"
