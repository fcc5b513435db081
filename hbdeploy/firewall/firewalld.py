"""firewalld, when it is running: a policy of hbdeploy's own (ingress ANY, egress HOST).

The policy holds rich rules, both permanent (kept across reboots) and runtime. Creating
the policy needs one ``firewall-cmd --reload`` (firewalld cannot add a policy at runtime),
which also activates any permanent change an administrator left pending; later runs change
rich rules in place, without a reload. Policies need firewalld 0.9 or later.
"""

from __future__ import annotations

from .allow import Allow

NAME = "firewalld"
POLICY = "hbdeploy"
BOOT_UNIT = False  # firewalld loads its permanent configuration at boot
MIN_VERSION = (0, 9)


def rule(allow: Allow) -> str:
    """One rich rule, exactly as ``firewall-cmd --list-rich-rules`` prints it."""
    parts = ['rule family="ipv4"']
    if allow.source:
        parts.append(f'source address="{allow.source}"')
    if allow.dest:
        parts.append(f'destination address="{allow.dest}"')
    if allow.proto and allow.ports:  # allows() gives a protocol only with ports
        low, high = allow.ports
        port = str(low) if low == high else f"{low}-{high}"
        parts.append(f'port port="{port}" protocol="{allow.proto}"')
    parts.append("accept")
    return " ".join(parts)


FUNCTIONS = f"""
ours() {{  # $1: --permanent or --runtime; the policy's rich rules, sorted
    if [ "$1" = --permanent ]; then set -- --permanent; else set --; fi
    firewall-cmd "$@" --policy {POLICY} --list-rich-rules 2>/dev/null | sort
}}

sync_rules() {{  # $1: --permanent or --runtime; add the missing rules, then drop the stale ones
    current=$(ours "$1")
    if [ "$1" = --permanent ]; then set -- --permanent; else set --; fi
    printf '%s\\n' "$RULES" | while IFS= read -r r; do
        if ! printf '%s\\n' "$current" | grep -qxF "$r"; then
            firewall-cmd -q "$@" --policy {POLICY} --add-rich-rule "$r"
        fi
    done
    printf '%s\\n' "$current" | while IFS= read -r r; do
        if [ -n "$r" ] && ! printf '%s\\n' "$RULES" | grep -qxF "$r"; then
            firewall-cmd -q "$@" --policy {POLICY} --remove-rich-rule "$r"
        fi
    done
}}

apply() {{
    if ! firewall-cmd --permanent --info-policy {POLICY} >/dev/null 2>&1; then
        firewall-cmd -q --permanent --new-policy {POLICY}
        firewall-cmd -q --permanent --policy {POLICY} --add-ingress-zone ANY
        firewall-cmd -q --permanent --policy {POLICY} --add-egress-zone HOST
    fi
    sync_rules --permanent
    if firewall-cmd --info-policy {POLICY} >/dev/null 2>&1; then
        sync_rules --runtime
    else
        firewall-cmd -q --reload
    fi
}}

check() {{
    wanted=$(printf '%s\\n' "$RULES" | sort)
    [ "$(ours --runtime)" = "$wanted" ] && [ "$(ours --permanent)" = "$wanted" ]
}}

remove() {{
    if firewall-cmd --info-policy {POLICY} >/dev/null 2>&1; then
        ours --runtime | while IFS= read -r r; do
            firewall-cmd -q --policy {POLICY} --remove-rich-rule "$r"
        done
    fi
    if firewall-cmd --permanent --info-policy {POLICY} >/dev/null 2>&1; then
        firewall-cmd -q --permanent --delete-policy {POLICY}
    fi
}}
"""
