"""ufw, when it is active: ufw rules of its own kind, tagged with the comment "hbdeploy".

ufw keeps them in /etc/ufw/user.rules (so they survive a reboot) and shows them in
``ufw status``. A rerun adds the missing rules first, then deletes the stale ones.
"""

from __future__ import annotations

from .allow import Allow

NAME = "ufw"
BOOT_UNIT = False  # ufw restores its own rules at boot


def rule(allow: Allow) -> str:
    """One rule as ``ufw show added`` prints it, without ``ufw`` and the comment."""
    parts = ["allow"]
    if allow.source:
        parts.append(f"from {allow.source}")
    parts.append(f"to {allow.dest or 'any'}")
    if allow.ports:
        low, high = allow.ports
        parts.append(f"port {low}" if low == high else f"port {low}:{high}")
    if allow.proto:
        parts.append(f"proto {allow.proto}")
    return " ".join(parts)


FUNCTIONS = r"""
ours() {  # hbdeploy's rules as ufw shows them, sorted
    ufw show added | sed -n "s/^ufw \(.*\) comment 'hbdeploy'\$/\1/p" | sort
}

apply() {
    set -f  # rules are split into words, never globbed
    current=$(ours)
    printf '%s\n' "$RULES" | while IFS= read -r r; do
        if ! printf '%s\n' "$current" | grep -qxF "$r"; then ufw $r comment hbdeploy >/dev/null; fi
    done
    printf '%s\n' "$current" | while IFS= read -r r; do
        if [ -n "$r" ] && ! printf '%s\n' "$RULES" | grep -qxF "$r"; then
            ufw delete $r comment hbdeploy >/dev/null
        fi
    done
}

check() { [ "$(ours)" = "$(printf '%s\n' "$RULES" | sort)" ]; }

remove() {
    set -f
    ours | while IFS= read -r r; do
        if [ -n "$r" ]; then ufw delete $r comment hbdeploy >/dev/null; fi
    done
}
"""
