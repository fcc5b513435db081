"""The password: file permissions, weak passwords, generation (no SSH involved)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hbdeploy import config, secret, validate
from hbdeploy.errors import ConfigError
from hbdeploy.source import Source

DOC = {"nodes": {"a": "10.0.0.1", "b": "10.0.0.2"}, "resources": {"a": "10.0.0.9"}}
STRONG = "a-password-of-enough-length"


def load(tmp_path: Path, **keys) -> object:
    return validate.load(Source(tmp_path / "x.yml", dict(DOC, **keys), ""), environ={})


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_password_file_open_to_others_is_refused_with_the_chmod(tmp_path: Path,
                                                                  mode: int) -> None:
    pw = tmp_path / "pw"
    pw.write_text(STRONG + "\n")
    pw.chmod(mode)
    with pytest.raises(ConfigError) as info:
        load(tmp_path, password_file="pw")
    message = str(info.value)
    assert f"mode {mode:04o}" in message and f"chmod 600 {pw}" in message
    assert STRONG not in message
    pw.chmod(0o600)
    assert load(tmp_path, password_file="pw").password.reveal() == STRONG


@pytest.mark.parametrize(("value", "why"), [
    ("insecure!", "well-known default"), ("1234", "well-known default"),
    ("Password", "well-known default"), ("short-one", "shorter than 16 characters (9)"),
])
def test_a_weak_password_warns_in_check_and_is_refused_for_deploy(tmp_path: Path, value: str,
                                                                  why: str) -> None:
    cluster = load(tmp_path, password=value)
    warned = "\n".join(config.warnings(cluster))
    assert why in warned and value not in warned
    with pytest.raises(ConfigError) as info:
        config.refuse_weak_password(cluster)
    assert "allow_weak_password: true" in str(info.value) and value not in str(info.value)
    allowed = load(tmp_path, password=value, allow_weak_password=True)
    config.refuse_weak_password(allowed)  # no error
    assert config.weak_password(load(tmp_path, password=STRONG)) is None


def test_allow_weak_password_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, password=STRONG, allow_weak_password="yes")
    assert "allow_weak_password: 'yes' is not valid; expected true or false" in str(info.value)


def test_password_generate_writes_a_new_0600_file_and_never_prints_it(tmp_path: Path) -> None:
    target = tmp_path / "pw"
    old_umask = os.umask(0)  # the most permissive umask: the file is 0600 anyway
    try:
        result = subprocess.run([sys.executable, "-m", "hbdeploy", "password.generate",
                                 str(target)], capture_output=True, text=True, check=False)
    finally:
        os.umask(old_umask)
    assert result.returncode == 0, result.stderr
    value = target.read_text().strip()
    assert len(value) >= 32 and value not in result.stdout + result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert load(tmp_path, password_file="pw").password.reveal() == value
    assert secret.weakness(secret.Secret(value)) is None
    again = subprocess.run([sys.executable, "-m", "hbdeploy", "password.generate", str(target)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "exists" in again.stderr
    assert target.read_text().strip() == value  # not overwritten
