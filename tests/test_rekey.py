"""Password rotation's pure parts: the key index, the passes, and the shell that edits
authkeys and reports its keys (run here with sh on a temporary file). The rotation itself is
tested on the lab (tests/e2e/test_4_rotation.py)."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from hbdeploy import rekey
from hbdeploy.errors import HbdeployError
from hbdeploy.facts import parse
from hbdeploy.model import Cluster, Node
from hbdeploy.secret import Secret

NEW = "n3w-Secret-value-0123456789abcdef"
OLD = "0ld-Secret-value-0123456789abcdef"


def cluster(index: int = 1) -> Cluster:
    return Cluster(nodes=(Node("a", "10.0.0.1", "eth0"), Node("b", "10.0.0.2", "eth0")), groups=(),
                   password=Secret(NEW), auth_index=index)


def ring(using: str, **keys: str) -> rekey.KeyRing:
    """keys: index=secret (sha1)."""
    return rekey.KeyRing(using, {i.lstrip("k"): ("sha1", rekey.fingerprint(v))
                                 for i, v in keys.items()})


def test_the_new_key_takes_the_other_index_and_keeps_it() -> None:
    assert rekey.choose_index(cluster(), []) == 1  # a new cluster: auth_index
    assert rekey.choose_index(cluster(), [ring("1", k1=OLD)]) == 2
    assert rekey.choose_index(cluster(3), [ring("1", k1=OLD)]) == 3
    assert rekey.choose_index(cluster(), [ring("2", k2=OLD)]) == 1
    # under way or done: where the new key is, the signing one first
    assert rekey.choose_index(cluster(), [ring("1", k1=OLD, k2=NEW)]) == 2
    assert rekey.choose_index(cluster(), [ring("2", k2=NEW)]) == 2
    assert rekey.choose_index(cluster(), [ring("3", k3=NEW), ring("1", k1=OLD, k4=NEW)]) == 3


def test_no_free_index_is_an_error() -> None:
    full = rekey.KeyRing("1", {str(i): ("sha1", str(i)) for i in range(1, 16)})
    with pytest.raises(HbdeployError, match="every key index"):
        rekey.choose_index(cluster(), [full])


def test_passes_resume_where_the_nodes_are() -> None:
    c = cluster()
    names = [[p.name for p in rekey.passes(c, 2, rings)] for rings in (
        {"a": ring("1", k1=OLD), "b": ring("1", k1=OLD)},
        {"a": ring("1", k1=OLD, k2=NEW), "b": ring("1", k1=OLD)},  # add half done
        {"a": ring("2", k1=OLD, k2=NEW), "b": ring("1", k1=OLD, k2=NEW)},
        {"a": ring("2", k2=NEW), "b": ring("2", k1=OLD, k2=NEW)},
        {"a": ring("2", k2=NEW), "b": ring("2", k2=NEW)},
    )]
    assert names == [["add", "sign", "drop"], ["add", "sign", "drop"], ["sign", "drop"],
                     ["drop"], []]
    half = rekey.passes(c, 2, {"a": ring("1", k1=OLD, k2=NEW), "b": ring("1", k1=OLD)})
    assert half[0].nodes == ("b",)  # only the node that lacks the new key
    assert half[1].nodes == ("a", "b")


def test_a_changed_method_is_a_rotation_too() -> None:
    c = replace(cluster(), auth_method="md5")
    same_secret = {"a": ring("1", k1=NEW), "b": ring("1", k1=NEW)}
    index = rekey.choose_index(c, same_secret.values())
    assert index == 2
    assert [p.name for p in rekey.passes(c, index, same_secret)] == ["add", "sign", "drop"]


def sh(script: str, folder: Path) -> str:
    return subprocess.run(["sh", "-c", script], cwd=folder, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize(("name", "before", "given", "after"), [
    ("add", f"# a comment\nauth 1\n1 sha1 {OLD}\n", f"2 sha1 {NEW}\n",
     f"# a comment\nauth 1\n1 sha1 {OLD}\n2 sha1 {NEW}\n"),
    ("add", f"auth 1\n1 sha1 {OLD}\n2 md5 stale\n", f"2 sha1 {NEW}\n",  # index 2 replaced
     f"auth 1\n1 sha1 {OLD}\n2 sha1 {NEW}\n"),
    ("sign", f"auth 1\n1 sha1 {OLD}\n2 sha1 {NEW}\n", None,
     f"auth 2\n1 sha1 {OLD}\n2 sha1 {NEW}\n"),
    ("drop", f"auth 2\n1 sha1 {OLD}\n2 sha1 {NEW}\n", f"auth 2\n2 sha1 {NEW}\n",
     f"auth 2\n2 sha1 {NEW}\n"),
], ids=["add", "add-over-a-stale-key", "sign", "drop"])
def test_each_pass_edits_authkeys(tmp_path: Path, name: str, before: str, given: str | None,
                                  after: str) -> None:
    (tmp_path / "authkeys").write_text(before)
    (tmp_path / "in").write_text(given or "")
    edit = rekey._EDITS[name].replace("__INDEX__", "2")
    assert sh(f'f=authkeys; in=in; {edit}', tmp_path) == after


def probe_authkeys(text: str, folder: Path) -> str:
    """What rekey.PROBE (with facts' p() helper) reports of an authkeys holding ``text``."""
    (folder / "authkeys").write_text(text)
    script = "p() { printf '%s\\t%s\\n' \"$1\" \"$2\"; }\n" + rekey.PROBE.replace(
        "/etc/ha.d/authkeys", str(folder / "authkeys"))
    return sh(script, folder)


def test_the_probe_reports_salted_digests_only(tmp_path: Path) -> None:
    out = probe_authkeys(f"# keys\nauth 2\n1 sha1 {OLD}\n\n2  md5   {NEW}\n", tmp_path)
    assert OLD not in out and NEW not in out
    assert parse(out).keyring == rekey.KeyRing("2", {"1": ("sha1", rekey.fingerprint(OLD)),
                                                     "2": ("md5", rekey.fingerprint(NEW))})


def test_the_pass_command_carries_no_key() -> None:
    for name in ("add", "sign", "drop"):
        script = rekey.pass_script(name, 2, "20261201T120000")
        assert NEW not in script and "__" not in script
    assert rekey.pass_input("sign", cluster(), 2, "final") is None
    assert rekey.pass_input("add", cluster(), 2, "final") == f"2 sha1 {NEW}\n"
