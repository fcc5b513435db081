"""Whether two versions of a heartbeat file mean the same to heartbeat.

A file that differs only in comments, blank lines or spacing (or, in ha.cf, in the order of
directives where order does not matter) is rewritten by a deploy without reloading or
restarting heartbeat: adopting a hand-built cluster (``hbdeploy import``) must not move its
resources for a comment. Everything here errs on the side of "different": only whole-line
comments are comments, and a repeated single-valued ha.cf directive keeps its order.
"""

from __future__ import annotations

import hashlib

# ha.cf directives that may appear more than once, each line adding something.
MULTI = frozenset({"node", "ucast", "mcast", "bcast", "serial", "ping", "ping_group",
                   "respawn", "apiauth", "stonith_host", "hbaping", "ppp"})
MEDIA = frozenset({"ucast", "mcast", "bcast", "serial", "ppp"})
# Directives heartbeat applies to the media lines after them only.
BEFORE_MEDIA = frozenset({"udpport", "baud"})


def lines(text: str) -> list[str]:
    """Non-blank lines that are not whole-line comments, with spacing collapsed."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            out.append(" ".join(words))
    return out


# Lines that say what heartbeat does without them (3.0.6 logs "Pacemaker support: false"
# for an ha.cf with no crm line, seen in the lab).
DEFAULT_LINES = frozenset(f"{key} {value}" for key in ("crm", "pacemaker")
                          for value in ("off", "no", "false"))


def hacf_key(text: str) -> tuple:
    """What heartbeat makes of an ha.cf, as a comparable value."""
    found = [line for line in lines(text) if line not in DEFAULT_LINES]
    names = [line.split(" ", 1)[0] for line in found]
    repeated = {n for n in names if n not in MULTI and names.count(n) > 1}
    if repeated:
        return ("ordered", tuple(found))
    first_media = next((i for i, n in enumerate(names) if n in MEDIA), len(names))
    before = tuple(sorted(n for n in names[:first_media] if n in BEFORE_MEDIA))
    return ("set", tuple(sorted(found)), before)


def hears_across(old: str, new: str) -> bool:
    """Whether a node on ha.cf ``new`` and its peers still on ``old`` share a medium: a
    media line both have, carrying its own port (mcast, serial) or with ``udpport`` the
    same (ucast and bcast take it, and the first of them fixes it for all: ucast.c). Not
    so for a new udpport, mode, interface or multicast group: one node at a time, the new
    one would not hear the old ones, and after deadtime each takes the other's resources."""
    def media(text: str) -> tuple[str, set[str]]:
        found = lines(text)
        port = next((line.split(" ", 1)[1] for line in found
                     if line.startswith("udpport ")), "")
        return port, {line for line in found if line.split(" ", 1)[0] in MEDIA}

    (old_port, old_media), (new_port, new_media) = media(old), media(new)
    return any(line.split(" ", 1)[0] in ("mcast", "serial") or old_port == new_port
               for line in old_media & new_media)


def haresources_key(text: str) -> tuple[str, ...]:
    """The resource groups, one per line (continuations joined), in order."""
    joined, pending = [], ""
    for raw in text.splitlines():
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        joined.append(pending + raw)
        pending = ""
    if pending:
        joined.append(pending)
    return tuple(lines("\n".join(joined)))


# The host's side of authkeys_digest: a shell pipeline reading the file's lines, already
# as lines() makes them and each ending in a newline, on stdin (rekey.PROBE); the digest is
# the first word of what it prints (sha256sum's line).
AUTHKEYS_DIGEST_SH = "LC_ALL=C sort | sha256sum"


def authkeys_digest(text: str) -> str:
    """sha256 of authkeys' sorted lines; facts.py computes the same on the host (sort in the
    C locale, each line ending in a newline), so the key itself never travels."""
    body = "".join(line + "\n" for line in sorted(lines(text)))
    return hashlib.sha256(body.encode()).hexdigest()


def same(name: str, on_host: str, wanted: str) -> bool:
    """Whether heartbeat would see ``on_host`` and ``wanted`` (file ``name``) alike."""
    if name == "ha.cf":
        return hacf_key(on_host) == hacf_key(wanted)
    if name == "haresources":
        return haresources_key(on_host) == haresources_key(wanted)
    raise ValueError(name)
