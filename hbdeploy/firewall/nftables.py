"""nftables without iptables: hbdeploy's rules go first in every IPv4 input chain.

A packet accepted in one nftables base chain still meets every other base chain on the same
hook, and a drop anywhere is final, so a table of hbdeploy's own could not open a port that
the host's own ``policy drop`` chain closes. hbdeploy's rules therefore sit at the top of
each ``ip``/``inet`` filter chain on the input hook, each tagged ``comment "hbdeploy"``; a
rerun deletes the tagged rules and inserts the new ones in one ``nft -f`` transaction.
"""

from __future__ import annotations

from .allow import Allow

NAME = "nftables"
TAG = 'comment "hbdeploy"'
BOOT_UNIT = True  # nftables.service loads /etc/nftables.conf, which knows nothing of these


def rule(allow: Allow) -> str:
    """One rule, exactly as ``nft list chain`` prints it."""
    parts = []
    if allow.source:
        parts.append(f"ip saddr {allow.source}")
    if allow.dest:
        parts.append(f"ip daddr {allow.dest}")
    if allow.proto and allow.ports:  # allows() gives a protocol only with ports
        low, high = allow.ports
        parts.append(f"{allow.proto} dport {low}" if low == high
                     else f"{allow.proto} dport {low}-{high}")
    parts.append(f"accept {TAG}")
    return " ".join(parts)


FUNCTIONS = r"""
chains() {  # "family table chain" of every IPv4 filter chain on the input hook
    nft list chains | awk '$1 == "table" { f = $2; t = $3 } $1 == "chain" { c = $2 }
        /type filter hook input / && (f == "ip" || f == "inet") { print f, t, c }'
}

handles() {  # the handles of hbdeploy's rules in chain "$1 $2 $3"
    nft -a list chain "$1" "$2" "$3" \
        | sed -n 's/^[[:space:]]*.* comment "hbdeploy" # handle \([0-9][0-9]*\)$/\1/p'
}

transaction() {  # $1 = insert | remove: the nft commands that get there, on stdout
    chains | while read -r f t c; do
        for h in $(handles "$f" "$t" "$c"); do echo "delete rule $f $t $c handle $h"; done
        if [ "$1" = insert ]; then
            printf '%s\n' "$RULES" \
                | awk '{ r[NR] = $0 } END { for (i = NR; i > 0; i--) print r[i] }' \
                | while IFS= read -r r; do echo "insert rule $f $t $c $r"; done
        fi
    done
}

run() {
    tx=$(mktemp)
    transaction "$1" > "$tx"
    if [ -s "$tx" ]; then nft -f "$tx" || { rm -f "$tx"; return 1; }; fi
    rm -f "$tx"
}

apply() { run insert; }

remove() { run remove; }

check() {
    chains | while read -r f t c; do
        ours=$(nft list chain "$f" "$t" "$c" \
            | sed -n 's/^[[:space:]]*\(.* comment "hbdeploy"\)$/\1/p')
        [ "$ours" = "$RULES" ] || exit 1
    done
}
"""
