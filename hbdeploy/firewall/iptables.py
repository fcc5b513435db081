"""iptables: a chain of hbdeploy's own, replaced atomically, jumped to first from INPUT."""

from __future__ import annotations

from .allow import Allow

NAME = "iptables"
CHAIN = "HBDEPLOY"
BOOT_UNIT = True  # iptables keeps nothing across a reboot by itself


def rule(allow: Allow) -> str:
    """One ``-A HBDEPLOY …`` line, exactly as ``iptables -S`` prints it."""
    parts = [f"-A {CHAIN}"]
    if allow.source:
        parts.append(f"-s {allow.source}/32")
    if allow.dest:
        parts.append(f"-d {allow.dest}/32")
    if allow.proto:
        parts.append(f"-p {allow.proto} -m {allow.proto}")
    if allow.ports:
        low, high = allow.ports
        parts.append(f"--dport {low}" if low == high else f"--dport {low}:{high}")
    parts.append("-j ACCEPT")
    return " ".join(parts)


FUNCTIONS = f"""
apply() {{
    iptables -w -N {CHAIN} 2>/dev/null || true
    {{ echo '*filter'; echo ':{CHAIN} - [0:0]'; printf '%s\\n' "$RULES"; echo COMMIT; }} \\
        | iptables-restore -w --noflush
    iptables -w -C INPUT -j {CHAIN} 2>/dev/null || iptables -w -I INPUT 1 -j {CHAIN}
}}

# One listing of the filter table read by the shell (it was two iptables calls and a grep,
# on every deploy's facts probe): our chain's rules as they are, and INPUT's jump to it.
check() {{
    s=$(iptables -w -S 2>/dev/null) || return 1
    ours=; jump=no
    while IFS= read -r l; do
        case $l in
        "-A {CHAIN} "*) ours="$ours${{ours:+
}}$l" ;;
        "-A INPUT -j {CHAIN}") jump=yes ;;
        esac
    done <<EOF
$s
EOF
    [ "$ours" = "$RULES" ] && [ "$jump" = yes ]
}}

remove() {{
    while iptables -w -C INPUT -j {CHAIN} 2>/dev/null; do iptables -w -D INPUT -j {CHAIN}; done
    iptables -w -F {CHAIN} 2>/dev/null || true
    iptables -w -X {CHAIN} 2>/dev/null || true
}}
"""
