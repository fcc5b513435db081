"""`hbdeploy init`: an ops folder's files, from flags or from config/moonshine.yml."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

from test_cli import CUSTOM, fab, hbdeploy, run

FLAGS = ("--node", "haproxy1=10.0.0.11", "--node", "haproxy2=10.0.0.12",
         "--floating-ip", "10.0.0.100/24", "--service", "haproxy", "--ping", "10.0.0.1")


def test_init_from_flags_writes_files_that_pass_check_and_fab(tmp_path: Path) -> None:
    result = run(hbdeploy(), "init", *FLAGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    key = tmp_path / "config" / "heartbeat.key"
    password = key.read_text().strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(password) == 40
    assert password not in result.stdout + result.stderr
    text = (tmp_path / "config" / "heartbeat.yml").read_text()
    assert "password_file: heartbeat.key" in text and "# deadtime: 5" in text
    assert "- IPaddr::10.0.0.100/24\n  - haproxy" in text
    check = run(hbdeploy(), "check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    assert "haproxy1: IPaddr::10.0.0.100/24 haproxy" in check.stdout
    assert "ping (ipfail): 10.0.0.1" in check.stdout and "warning" not in check.stdout
    listed = run(fab(), "--list", cwd=tmp_path)
    assert listed.returncode == 0 and "deploy" in listed.stdout, listed.stderr
    rendered = run(hbdeploy(), "render", "--node", "haproxy2", cwd=tmp_path)
    assert "ucast eth0 10.0.0.11" in rendered.stdout and password not in rendered.stdout


def test_init_overwrites_nothing_without_force_and_keeps_the_password(tmp_path: Path) -> None:
    assert run(hbdeploy(), "init", *FLAGS, cwd=tmp_path).returncode == 0
    key = (tmp_path / "config" / "heartbeat.key").read_text()
    (tmp_path / "fabfile.py").write_text("# mine\n")
    again = run(hbdeploy(), "init", *FLAGS, cwd=tmp_path)
    assert again.returncode == 2 and "config/heartbeat.yml, fabfile.py exist" in again.stderr
    assert (tmp_path / "fabfile.py").read_text() == "# mine\n"
    forced = run(hbdeploy(), "init", *FLAGS, "--force", "--interface", "eth1", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "config" / "heartbeat.key").read_text() == key
    assert "interface: eth1" in (tmp_path / "config" / "heartbeat.yml").read_text()
    assert "hbdeploy.fabfile import ns" in (tmp_path / "fabfile.py").read_text()


def test_init_lists_every_bad_flag_and_writes_nothing(tmp_path: Path) -> None:
    result = run(hbdeploy(), "init", "--node", "haproxy1", "--node", "b=10.0.0.300",
                 cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--node: 'haproxy1' is not NAME=IP" in result.stderr
    assert "--floating-ip: missing" in result.stderr
    bad_ip = run(hbdeploy(), "init", "--node", "a=10.0.0.1", "--node", "b=10.0.0.300",
                 "--floating-ip", "10.0.0.100", cwd=tmp_path)
    assert bad_ip.returncode == 2 and "nodes.b" in bad_ip.stderr, bad_ip.stderr
    assert not any(tmp_path.iterdir())


def test_init_from_moonshine_renders_the_same_files(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(CUSTOM, tmp_path / "config" / "moonshine.yml")
    old = {node: run(hbdeploy(), "render", "--node", node, cwd=tmp_path).stdout
           for node in ("haproxy1", "haproxy2")}
    result = run(hbdeploy(), "init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "sekret" not in result.stdout + result.stderr and "password is weak" in result.stdout
    assert (tmp_path / "config" / "heartbeat.key").read_text() == "sekret\n"
    assert "auto_failback: 'off'" in (tmp_path / "config" / "heartbeat.yml").read_text()
    for node, before in old.items():
        after = run(hbdeploy(), "render", "--node", node, cwd=tmp_path)
        assert "config/heartbeat.yml" in run(hbdeploy(), "check", cwd=tmp_path).stdout
        assert after.stdout == before, node
