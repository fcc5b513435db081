"""``nonlocal_bind``: services on every node (haproxy, nginx) may bind the floating IP
before the node holds it, so a spare's service is already listening when heartbeat moves
the IP to it (no restart on failover).

hbdeploy owns one sysctl.d file that sets ``net.ipv4.ip_nonlocal_bind = 1``: written and
applied at once by a deploy with ``nonlocal_bind: true``, removed with hbdeploy's other
traces (decommission, or ``nonlocal_bind: false``), when the value goes back to the
kernel's default 0 unless another sysctl file sets it.
"""

from __future__ import annotations

from .render import HEADER

KEY = "net.ipv4.ip_nonlocal_bind"
PATH = "/etc/sysctl.d/60-hbdeploy-nonlocal-bind.conf"
PROC = "/proc/sys/net/ipv4/ip_nonlocal_bind"

CONTENT = f"""# {HEADER}
# nonlocal_bind: true — services may bind the floating IP on a node that does not hold it.
{KEY} = 1
"""

# For the facts probe (inside its p() helper): the value in force, and hbdeploy's file.
PROBE = f'v=; read -r v 2>/dev/null <{PROC}; p nonlocal_bind "$v"'  # PATH: facts' sha256sum

# After the file is in place: in force now, not only at the next boot.
APPLY = f"sysctl -q -p {PATH} && [ \"$(cat {PROC})\" = 1 ]"

# The file away; the kernel's default back unless another sysctl file sets the key.
REMOVE = (f"if [ -f {PATH} ]; then rm -f {PATH}; "
          f"grep -rqs '^[[:space:]]*{KEY}' /etc/sysctl.conf /etc/sysctl.d /run/sysctl.d "
          f"/usr/lib/sysctl.d /usr/local/lib/sysctl.d || sysctl -q -w {KEY}=0; fi")


def describe(value: str) -> str:
    """What a node's value means, for pre-flight's report."""
    return {"1": "on", "0": "off"}.get(value, f"unknown ({value or 'not readable'})")
