"""The two doors, `hbdeploy` and `fab`, run as real programs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CUSTOM = ROOT / "examples" / "custom.yml"


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HBDEPLOY_")}
    full_env.update(env or {})
    return subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=60, check=False)


def script(name: str) -> str:
    """A console script of the Python running the tests (a venv need not be on PATH)."""
    beside = Path(sys.executable).parent / name
    exe = str(beside) if beside.exists() else shutil.which(name)
    assert exe, f"{name} is installed (bash scripts/bootstrap)"
    return exe


def hbdeploy() -> str:
    return script("hbdeploy")


def fab() -> str:
    return script("fab")


def test_list_is_the_same_for_both_doors() -> None:
    mine = run(hbdeploy(), "--list", cwd=ROOT)
    theirs = run(fab(), "--list", cwd=ROOT)
    assert mine.returncode == 0 and theirs.returncode == 0, mine.stderr + theirs.stderr
    tasks = [ln.split()[0] for ln in mine.stdout.splitlines()[1:] if ln.startswith("  ")]
    assert {"check", "render"} <= set(tasks)
    # Only the heading differs: a program with a namespace says "Subcommands".
    assert mine.stdout.splitlines()[1:] == theirs.stdout.splitlines()[1:]


def test_discovery_order(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    shutil.copy(CUSTOM, tmp_path / "config" / "moonshine.yml")
    result = run(hbdeploy(), "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "config/moonshine.yml" in result.stdout and "eth1" in result.stdout
    (tmp_path / "config" / "heartbeat.yml").write_text("nodes: {}\n")
    result = run(hbdeploy(), "check", cwd=tmp_path)
    assert result.returncode == 2 and "nodes: 0 node(s)" in result.stderr
    result = run(hbdeploy(), "check", cwd=tmp_path, env={"HBDEPLOY_CONFIG": str(CUSTOM)})
    assert result.returncode == 0 and str(CUSTOM) in result.stdout
    result = run(fab(), "check", "--cluster", str(CUSTOM), cwd=ROOT)
    assert result.returncode == 0 and "deadtime 10s" in result.stdout


def test_render_out_writes_files_with_modes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(hbdeploy(), "render", "--node", "haproxy1", "--out", str(out),
                 "--cluster", str(CUSTOM), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((out / "authkeys").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "ha.cf").stat().st_mode) == 0o644
    assert (out / "authkeys").read_text().endswith("1 sha1 sekret\n")
    assert "sekret" not in result.stdout + result.stderr


def test_render_stdout_masks_the_password(tmp_path: Path) -> None:
    result = run(hbdeploy(), "render", "--node", "haproxy2", "--cluster", str(CUSTOM), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "==> /etc/ha.d/ha.cf <==" in result.stdout
    assert "ucast eth1 12.34.56.78" in result.stdout
    assert "sekret" not in result.stdout and "1 sha1 ********" in result.stdout


@pytest.mark.parametrize("args", [["render", "--node", "nosuch"], ["check"]])
def test_errors_are_one_line_no_traceback(tmp_path: Path, args: list[str]) -> None:
    cluster = tmp_path / "c.yml"
    cluster.write_text("nodes: {a: 10.0.0.1, b: 10.0.0.2}\nresources: {a: 10.0.0.9}\n")
    result = run(hbdeploy(), *args, "--cluster", str(cluster), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[0].split(":")[0] in ("config error", "error")


def test_a_missing_ssh_config_is_one_line(tmp_path: Path) -> None:
    """Fabric raises FileNotFoundError for a -S file that is not there: a traceback."""
    result = run(hbdeploy(), "-S", str(tmp_path / "nosuch"), "-H", "a", "deploy",
                 "--cluster", str(CUSTOM), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: the ssh config file {tmp_path / 'nosuch'} "
                                     "(-S/--ssh-config) does not exist")


def test_a_host_that_is_not_ssh_is_one_line_no_traceback(tmp_path: Path) -> None:
    """A port that accepts and hangs up (a local socket): paramiko's transport thread logged
    its traceback on stderr before hbdeploy's own line."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            while True:
                server.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host haproxy1\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
                      f"  UserKnownHostsFile {known}\n")
    try:
        result = run(hbdeploy(), "-S", str(config), "-H", "haproxy1", "deploy", "--cluster",
                     str(ROOT / "examples" / "lab.yml"), cwd=tmp_path)
    finally:
        server.close()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr, result.stderr
    assert "no host was changed" in result.stderr
    assert "haproxy1: ssh error: Error reading SSH protocol banner" in result.stderr


def test_templates_found_from_the_installed_package(tmp_path: Path) -> None:
    code = ("from hbdeploy.render import render_node; from hbdeploy.config import load_cluster;"
            f"print(render_node(load_cluster({str(CUSTOM)!r}), 'haproxy1')['ha.cf'].content)")
    result = run(sys.executable, "-c", code, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "udpport 6009" in result.stdout


def test_every_task_and_option_has_help() -> None:
    from hbdeploy.tasks import namespace

    for name in namespace.task_names:
        task = namespace[name]
        assert task.__doc__, f"{name} has no docstring"
        bare = [a.name for a in task.get_arguments() if not a.help]
        assert not bare, f"{name}: options without help: {bare}"
        shown = run(hbdeploy(), name, "--help", cwd=ROOT)
        assert shown.returncode == 0 and "Docstring:" in shown.stdout, (name, shown.stderr)
    # -h is --help everywhere: no task gives it to an option of its own (deploy's --check had it)
    deploy = run(hbdeploy(), "deploy", "--help", cwd=ROOT).stdout
    assert "-h," not in deploy and "--check" in deploy


def test_shell_completion_through_bash(tmp_path: Path) -> None:
    """The completion script invoke prints, sourced by a real bash, completes task names
    and a task's options (docs/deploy.md says how to enable it)."""
    for tool in ("hbdeploy", "fab"):
        exe = script(tool)
        completion = run(exe, "--print-completion-script", "bash", cwd=ROOT)
        assert completion.returncode == 0 and f"complete -F _complete_{tool}" in \
            completion.stdout, completion.stderr
        (tmp_path / f"{tool}.bash").write_text(completion.stdout)
        probe = (f"source {tmp_path / tool}.bash; "
                 f"COMP_WORDS=({tool} lab.); _complete_{tool} {tool} lab.; "
                 "echo ${COMPREPLY[@]}; "
                 f"COMP_WORDS=({tool} deploy --c); _complete_{tool} {tool} --c; "
                 "echo ${COMPREPLY[@]}")
        env = {"PATH": f"{Path(exe).parent}:{os.environ['PATH']}"}
        got = run("bash", "-c", probe, cwd=ROOT, env=env)
        tasks, options = got.stdout.splitlines()
        assert {"lab.up", "lab.down", "lab.cut"} <= set(tasks.split()), got
        assert set(options.split()) == {"--check", "--cluster"}, got
