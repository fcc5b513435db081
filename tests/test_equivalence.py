"""What counts as "only comments changed" (no reload), and the host-side digest of authkeys."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_day2_logic import PROBE_OUTPUT, cluster
from test_rekey import probe_authkeys

from hbdeploy import equivalence, rekey
from hbdeploy.facts import parse
from hbdeploy.plan import plan_host, sha256
from hbdeploy.render import render_node

HACF = """# hand-written
logfacility local0
keepalive 1
deadtime 5
udpport 694
ucast eth0 10.0.0.2
node a
node b
"""


def test_hacf_comments_spacing_and_free_order_are_alike() -> None:
    shuffled = "node b\n\n  keepalive   1\n# x\ndeadtime 5\nlogfacility local0\n" \
               "udpport 694\nucast eth0 10.0.0.2\nnode a\n"
    assert equivalence.same("ha.cf", HACF, shuffled)
    assert not equivalence.same("ha.cf", HACF, HACF.replace("deadtime 5", "deadtime 6"))
    assert equivalence.same("ha.cf", HACF, HACF + "crm off\n")  # heartbeat's default
    assert not equivalence.same("ha.cf", HACF, HACF + "crm respawn\n")
    # udpport after the media lines applies to none of them: not the same
    late = HACF.replace("udpport 694\n", "") + "udpport 694\n"
    assert not equivalence.same("ha.cf", HACF, late)
    # a repeated single-valued directive: its order decides, so order is kept
    twice = HACF + "deadtime 7\n"
    assert not equivalence.same("ha.cf", twice, HACF.replace("deadtime 5", "deadtime 7")
                                + "deadtime 5\n")
    # an inline comment is not taken for one
    assert not equivalence.same("ha.cf", HACF, HACF.replace("deadtime 5", "deadtime 5 # s"))


def test_haresources_continuations_and_order() -> None:
    assert equivalence.same("haresources", "# c\na  IPaddr::10.0.0.9 \\\n   haproxy\n",
                            "a IPaddr::10.0.0.9 haproxy\n")
    assert not equivalence.same("haresources", "a x\nb y\n", "b y\na x\n")


@pytest.mark.parametrize("text", ["# managed\nauth 1\n\n1   sha1 s3cret#x\n",
                                  "\t1 sha1\ts3cret#x  \n  # 2 md5 old\nauth 1"])
def test_the_hosts_authkeys_digest_matches(tmp_path: Path, text: str) -> None:
    """The probe's digest, read by the shell (last line without a newline, tabs, indented
    comments), is the one authkeys_digest makes of the same file, whatever its order."""
    facts = parse(probe_authkeys(text, tmp_path))
    got = facts.norm_authkeys
    assert got == equivalence.authkeys_digest(text) == equivalence.authkeys_digest(
        "1 sha1 s3cret#x\nauth 1\n")
    assert got != equivalence.authkeys_digest("auth 1\n1 sha1 s3cret\n")
    assert facts.keyring == rekey.KeyRing("1", {"1": ("sha1", rekey.fingerprint("s3cret#x"))})


def test_plan_writes_a_comment_change_without_a_reload() -> None:
    c = cluster()
    node = c.node("n1")
    files = render_node(c, "n1")
    facts = parse(PROBE_OUTPUT)
    facts.checksums = {n: "other" for n in files}
    facts.modes = {n: f"{f.mode:o} root" for n, f in files.items()}
    facts.texts = {n: "# by hand\n" + files[n].content.replace(" ", "  ")
                   for n in ("ha.cf", "haresources")}
    facts.norm_authkeys = equivalence.authkeys_digest(files["authkeys"].content)
    plan = plan_host("h", node, facts, c)
    assert plan.cosmetic_files == ["ha.cf", "haresources", "authkeys"]
    assert plan.changed_files == [] and not plan.restart and plan.changes_anything
    facts.texts["haresources"] = "n2 10.9.0.100\n"
    plan = plan_host("h", node, facts, c)
    assert plan.changed_files == ["haresources"] and plan.restart
    assert sha256(files["ha.cf"].content) != "other"


@pytest.mark.parametrize(("old", "new", "hears"), [
    ("udpport 694\nucast eth0 10.0.0.2\n", "udpport 694\nucast eth0 10.0.0.2\n"
     "ucast eth0 10.0.0.3\n", True),  # a new peer: the old medium stays
    ("udpport 694\nucast eth0 10.0.0.2\n", "udpport 695\nucast eth0 10.0.0.2\n", False),
    ("ucast eth0 10.0.0.2\n", "udpport 694\nucast eth0 10.0.0.2\n", False),  # said, not known
    ("udpport 694\nucast eth0 10.0.0.2\n", "udpport 694\nucast eth1 10.0.0.2\n", False),
    ("udpport 694\nucast eth0 10.0.0.2\n", "udpport 694\nmcast eth0 225.0.0.1 694 1 0\n",
     False),
    ("udpport 694\nmcast eth0 225.0.0.1 694 1 0\n",
     "udpport 695\nmcast eth0 225.0.0.1 694 1 0\n", True),  # mcast carries its own port
    ("# a comment\nudpport  694\nucast eth0 10.0.0.2\n", "udpport 694\nucast eth0 10.0.0.2\n",
     True),
])
def test_whether_nodes_on_old_and_new_media_hear_each_other(old: str, new: str,
                                                           hears: bool) -> None:
    assert equivalence.hears_across(old, new) is hears
