"""The lab, booted once per test session; the suite fails (not skips) when it cannot start.

The suite runs on two pytest-xdist workers (pyproject.toml), each with a lab of its own:
worker gw0 in this machine's network namespace, as `hbdeploy lab.up` does; every other
worker in a network namespace of its own, so that its lab has the same addresses
(10.213.0.0/24) without meeting gw0's, under its own names ($HBDEPLOY_LAB_PREFIX) and state
folder ($HBDEPLOY_LAB_DIR). The modules are split between the workers by xdist_group
(pytest_collection_modifyitems below); the unit tests go to either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
OWN_NETNS = WORKER != "gw0"
if OWN_NETNS:  # before hbdeploy.lab reads them
    os.environ["HBDEPLOY_LAB_PREFIX"] = f"hb{WORKER[2:]}"
    os.environ["HBDEPLOY_LAB_DIR"] = f"/var/lib/hbdeploy/lab-{WORKER}"

from hbdeploy.lab import Lab, rootfs  # noqa: E402

# The modules of each worker's lab, about 17-18 minutes each on 2026-12-07 (see --durations).
GROUPS = {"test_1_deploy": "lab-a", "test_1b_partitions": "lab-a", "test_1c_faults": "lab-a",
          "test_2_operations": "lab-b", "test_2b_members": "lab-a", "test_3_lab": "lab-b",
          "test_4_firewalls": "lab-b", "test_5_releases": "lab-b", "test_6_spares": "lab-a",
          "test_7_fenced": "lab-a"}
CLONE_NEWNET = 0x40000000
# This process's first network namespace (the machine's), for what must reach the Internet
# from a worker in a namespace of its own (the wheel test's pip): see host_network().
_FIRST_NETNS = os.open("/proc/self/ns/net", os.O_RDONLY)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = GROUPS.get(item.module.__name__.rsplit(".", 1)[-1])
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def host_network(argv: list[str]) -> list[str]:
    """``argv`` run in the machine's network namespace (where a mirror or PyPI is reached)."""
    return ["nsenter", f"--net=/proc/{os.getpid()}/fd/{_FIRST_NETNS}", *argv]


def _enter_own_netns() -> None:
    """Move this process (its main thread, which runs the tests and starts every subprocess)
    into a new network namespace with its loopback up."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

LAB_NODES = 3
# The other releases' node images (test_5_releases.py), built from the session's start in a
# process of the lowest priority while the bookworm tests run.
OTHER_RELEASES = [r for r in rootfs.RELEASES if r != rootfs.DEFAULT_RELEASE]
_builds: list[tuple[subprocess.Popen, Path]] = []


def report(message: str) -> None:
    print(f"lab: {message}", flush=True)


def _build_release_images(lab: Lab) -> None:
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    for release in OTHER_RELEASES:
        log = lab.state_dir / f"image-{release}.log"
        code = ("import sys; from pathlib import Path; from hbdeploy.lab import rootfs; "
                "rootfs.ensure_root(Path(sys.argv[1]), print, release=sys.argv[2])")
        with log.open("w") as out:
            _builds.append((subprocess.Popen(
                ["nice", "-n", "19", sys.executable, "-c", code, str(lab.cache_dir), release],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True), log))


def wait_for_release_images(deadline: float = 900) -> None:
    """Every background image build done; the test fails with its log if one failed."""
    while _builds:
        process, log = _builds.pop()
        code = process.wait(timeout=deadline)
        if code != 0:
            tail = " | ".join(log.read_text(errors="replace").splitlines()[-8:])
            pytest.fail(f"building a lab image failed (exit {code}): {tail}", pytrace=False)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    lab = Lab(report=report)
    try:
        # Built here, in the machine's namespace (debootstrap needs the mirror); the other
        # releases in the background, started from here too.
        rootfs.ensure_root(lab.cache_dir, report)
        _build_release_images(lab)
        if OWN_NETNS:
            _enter_own_netns()
        lab.down()  # whatever an earlier run left: every session starts from bare nodes
        lab.up(nodes=LAB_NODES)
    except Exception as exc:  # the reason must reach the test report
        pytest.fail(f"the lab could not start: {exc}", pytrace=False)
    yield lab
    for process, _ in _builds:  # a session that did not reach test_5: debootstrap too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    lab.down()
    left = lab.leftovers()
    assert not left, f"lab.down left behind: {left}"


# From the start of the failed phase (5 s before it), 400 lines at most: with 80 from the
# last 4 minutes, a CI failure's dump began after what went wrong (a three-node bootstrap:
# the peers' lines from the moment the new node started were cut off). Explicit matches
# joined by "+" (or): journalctl joins -u and -t by "and", which left out every resource
# script's line (their identifiers are "IPaddr(...)", "ResourceManager(default)").
JOURNAL = ("journalctl -q --no-pager -o short-precise --since @{since} "
           "_SYSTEMD_UNIT=heartbeat.service + UNIT=heartbeat.service + "
           "_SYSTEMD_UNIT=hbdeploy-guard.service + UNIT=hbdeploy-guard.service + "
           "SYSLOG_IDENTIFIER=heartbeat + SYSLOG_IDENTIFIER=ipfail "
           "| grep -v 'Pam\\|sshd\\|SIGCHLD\\|Auto failback delayed\\|: debug: ' | tail -n 400")


# What refused a connection: sshd's and PAM's lines, without the sessions opened and closed.
SSHD_JOURNAL = ("journalctl -q --no-pager -o short-precise --since -4min -u ssh -t sshd "
                "| grep -v 'session opened\\|session closed\\|Accepted publickey"
                "\\|Disconnected from\\|Received disconnect' | tail -n 30")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed lab test's report carries each running node's last heartbeat lines: on CI
    they are the only account of what heartbeat did."""
    outcome = yield
    rep = outcome.get_result()
    lab = getattr(item, "funcargs", {}).get("lab")
    if not rep.failed or not isinstance(lab, Lab):
        return
    for machine in lab.machines():
        try:
            got = ssh(lab, machine.name, JOURNAL.format(since=int(call.start) - 5),
                      check=False, timeout=20)
            text = got.stdout or f"(nothing: exit {got.returncode}, {got.stderr.strip()!r})"
        except (subprocess.SubprocessError, OSError) as exc:
            text = f"(no journal: {exc})"
        rep.sections.append((f"heartbeat journal {machine.name}", text))
        sshd = ssh(lab, machine.name, SSHD_JOURNAL, check=False, timeout=20).stdout
        rep.sections.append((f"sshd journal {machine.name}", sshd or "(nothing)"))


def ssh(lab: Lab, node: str, command: str, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab node through the lab's ssh_config."""
    result = subprocess.run(lab.ssh_command(node, command), capture_output=True, text=True,
                            timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{node}: {command!r} failed: {result.stderr.strip()}")
    return result


ROOT = Path(__file__).resolve().parents[2]
LAB_CLUSTER = ROOT / "examples" / "lab.yml"
FLOATING_IP = "10.213.0.100"
# A resource script that never starts, for the rollback tests (resource.d exists only once
# heartbeat is installed, hence the mkdir).
FAILING_RESOURCE = """mkdir -p /etc/ha.d/resource.d
cat > /etc/ha.d/resource.d/hbdeploy-failing <<'EOF'
#!/bin/sh
case "$1" in start) exit 1 ;; status) echo stopped ;; esac
exit 0
EOF
chmod 755 /etc/ha.d/resource.d/hbdeploy-failing"""


# An INPUT policy that drops what no rule accepts, as on a locked-down server: SSH and the
# replies to the node's own traffic let in, and what hbdeploy's rules let in; and undone.
LOCKDOWN = ("iptables -A INPUT -i lo -j ACCEPT && iptables -A INPUT -p tcp --dport 22 -j ACCEPT"
            " && iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
            " && iptables -P INPUT DROP")
UNLOCK = ("iptables -P INPUT ACCEPT && iptables -D INPUT -i lo -j ACCEPT && "
          "iptables -D INPUT -p tcp --dport 22 -j ACCEPT && iptables -D INPUT "
          "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT")


def variant(tmp_path: Path, name: str, *changes: tuple[str, str]) -> Path:
    """examples/lab.yml with each (old, new) replaced, written to ``tmp_path / name``."""
    text = LAB_CLUSTER.read_text()
    for old, new in changes:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def flipped(lab: Lab, tmp_path: Path, key: str = "warntime", lab_value: str = "3",
            other: str = "4") -> tuple[Path, str]:
    """The cluster file whose ``key`` is the value the nodes do not have (examples/lab.yml's
    ``lab_value`` or ``other``), and that value: consecutive tests change ha.cf in turn
    (warntime by default: a change that rolls out by reloads) without a deploy back to
    examples/lab.yml in between (each rollout costs ~8 s)."""
    if f"{key} {other}" in ssh(lab, "haproxy1", "cat /etc/ha.d/ha.cf").stdout:
        return LAB_CLUSTER, lab_value
    return variant(tmp_path, f"{key}-{other}.yml",
                   (f"{key}: {lab_value}", f"{key}: {other}")), other


def cli(lab: Lab, *args: str, tool: str = "hbdeploy", hosts: str | None = "haproxy1,haproxy2",
        cluster: Path = LAB_CLUSTER, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `hbdeploy` or `fab` (from the repository, so fab finds fabfile.py) on the lab."""
    exe = str(Path(sys.executable).parent / tool)
    argv = [exe, "-S", str(lab.ssh_config_path)]
    if hosts:
        argv += ["-H", hosts]
    argv += list(args)
    if args and args[0] in ("deploy", "firewall.remove") and "--cluster" not in args:
        argv += ["--cluster", str(cluster)]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def poll(test: Callable[[], object], deadline: float, interval: float = 0.1) -> float:
    """Seconds until ``test()`` is truthy; AssertionError after ``deadline`` seconds."""
    start = time.monotonic()
    while not test():
        if time.monotonic() - start > deadline:
            raise AssertionError(f"not within {deadline}s")
        time.sleep(interval)
    return time.monotonic() - start


def observe(test: Callable[[], object], seconds: float, interval: float = 0.2) -> int:
    """Check ``test()`` again and again for ``seconds``: it must hold every time."""
    end, checks = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        assert test(), f"stopped holding after {checks} checks"
        checks += 1
        time.sleep(interval)
    return checks


def hb_links_up(lab: Lab, node: str, peer: str) -> bool:
    """Whether heartbeat on ``node`` hears ``peer``."""
    return ssh(lab, node, f"cl_status nodestatus {peer}", check=False).stdout.strip() == "active"
