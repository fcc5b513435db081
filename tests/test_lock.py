"""The run lock's shell script and owner lines, run locally against a temporary folder (the
lab tests in tests/e2e/test_5_faults.py run it on the nodes)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from hbdeploy import lock


def run(tmp_path: Path, action: str, line: str, breaking: bool = False) -> tuple[int, str]:
    script = (lock.SCRIPT.replace(lock.OWNER, str(tmp_path / "owner"))
              .replace(lock.MUTEX, str(tmp_path / "mutex")).replace("mkdir -p /run/lock; ", ""))
    result = subprocess.run(["sh", "-c", script, "lock", action, line,
                             "break" if breaking else "-"], capture_output=True, text=True,
                            check=False)
    return result.returncode, result.stdout


def line(token: str, user: str = "alice") -> str:
    return "\t".join([token, user, "laptop2", "4242", "deploy", str(int(time.time())), "0"])


def test_acquire_refuse_renew_release(tmp_path: Path) -> None:
    mine, theirs = line("a" * 32, "bob"), line("b" * 32)
    assert run(tmp_path, "acquire", theirs) == (0, "acquired\n")
    code, out = run(tmp_path, "acquire", mine)
    assert code == 3 and out.startswith("held\t" + "b" * 32 + "\talice\tlaptop2\t4242")
    owner = lock.Owner.parse(out.split("\t", 1)[1].rpartition("\t")[0])
    assert owner is not None and owner.user == "alice" and owner.pid == "4242"
    assert owner.expires - int(time.time()) in range(lock.LEASE - 5, lock.LEASE + 1)
    assert run(tmp_path, "renew", mine)[0] == 3  # not ours: "lost"
    assert run(tmp_path, "release", mine) == (0, "not ours\n")
    assert (tmp_path / "owner").exists()
    assert run(tmp_path, "acquire", theirs)[0] == 0  # reentrant for the same token
    assert run(tmp_path, "renew", theirs) == (0, "renewed\n")
    assert run(tmp_path, "release", theirs) == (0, "released\n")
    assert not (tmp_path / "owner").exists()


def test_an_expired_lock_is_taken_over_and_a_live_one_broken_on_request(tmp_path: Path) -> None:
    now = int(time.time())
    (tmp_path / "owner").write_text("\t".join(["c" * 32, "carol", "h", "1", "drill",
                                               str(now - 500), str(now - 1)]) + "\n")
    code, out = run(tmp_path, "acquire", line("d" * 32))
    assert code == 0 and out.startswith("expired\t" + "c" * 32)
    code, out = run(tmp_path, "acquire", line("e" * 32), breaking=True)
    assert code == 0 and out.startswith("broke\t" + "d" * 32)
    assert (tmp_path / "owner").read_text().startswith("e" * 32)


def test_the_facts_probe_line_judges_only_other_live_runs() -> None:
    now = int(time.time())
    other = "\t".join(["f" * 32, "alice", "laptop2", "4242", "deploy", str(now), str(now + 60)])
    owner = lock.held_by_other(other, now)
    assert owner is not None
    message = lock.refusal("haproxy2", owner, now)
    assert message.startswith("haproxy2: locked by another hbdeploy run: alice@laptop2 (PID "
                              "4242, hbdeploy deploy) since ")
    assert "expires in 60 s" in message and "--break-lock" in message
    assert lock.held_by_other(other.replace(str(now + 60), str(now - 1)), now) is None
    assert lock.held_by_other(other.replace("f" * 32, lock.TOKEN), now) is None  # ours
    assert lock.held_by_other("garbage", now) is None
