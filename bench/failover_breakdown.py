"""Failover breakdown (not a test): cut the holder haproxy1 of a deployed 2-node lab
(examples/lab.yml) RUNS times; in seconds after the cut: the last heartbeat packet from
haproxy1 that reached haproxy2's link (bench/sniff.py in its namespace), heartbeat's verdict
and the takeover's steps from haproxy2's journal, the first gratuitous ARP for the floating
IP on the link, and the first answer from haproxy2 to an HTTP probe of the floating IP sent
every 20 ms, each probe in a thread of its own (the resolution: 20 ms). "verdict lag" is
the verdict's time after the last heartbeat heard plus deadtime: heartbeat's own delay.

    .venv/bin/hbdeploy lab.up && .venv/bin/hbdeploy -S /var/lib/hbdeploy/lab/ssh_config \\
        -H haproxy1,haproxy2 deploy --cluster examples/lab.yml
    .venv/bin/python bench/failover_breakdown.py [RUNS [CLUSTER_FILE]]

CLUSTER_FILE (examples/lab.yml by default) is the file deployed, for its deadtime.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hbdeploy import config
from hbdeploy.lab import Lab
from hbdeploy.lab.outage import HttpProbe, heartbeat_whole, wait_for

IP = "10.213.0.100"
RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
CLUSTER = sys.argv[2] if len(sys.argv) > 2 else "examples/lab.yml"  # the one deployed
DEADTIME = config.load_cluster(CLUSTER).timings.deadtime.ms / 1000
SNIFF = Path(__file__).with_name("sniff.py")
EVENTS = {  # what haproxy2's journal says, in the order it happens
    "verdict": r"is dead",
    "takeover": r"Taking over resource group|Resources being acquired|mach_down",
    "ip configured": r"IPaddr.*(Success|Adding inet)|inet .*10\.213\.0\.100",
    "takeover done": r"takeover complete|acquisition completed",
}


def event_times(journal: str, since: float) -> dict[str, float | None]:
    found: dict[str, float | None] = dict.fromkeys(EVENTS)
    for line in journal.splitlines():
        at = float(line.split()[0]) - since
        for name, pattern in EVENTS.items():
            if found[name] is None and at >= 0 and re.search(pattern, line):
                found[name] = at
    return found


def link_events(output: str, cut_wall: float) -> dict[str, float | None]:
    """The last heartbeat from haproxy1 before the cut, the first ARP for the IP after it."""
    last_hb = first_arp = None
    for line in output.splitlines():
        at, kind, *_ = line.split()
        rel = float(at) - cut_wall
        if kind == "hb" and rel <= 0.05:
            last_hb = rel
        elif kind == "arp" and rel > 0 and first_arp is None:
            first_arp = rel
    return {"last heartbeat": last_hb, "first ARP": first_arp}


def one_cut(lab: Lab) -> dict[str, float | None]:
    sniffer = subprocess.Popen(
        ["ip", "netns", "exec", "hbl-haproxy2", sys.executable, "-u", str(SNIFF),
         "10.213.0.11", IP], stdout=subprocess.PIPE, text=True)
    with HttpProbe(IP, interval=0.02, timeout=0.2, overlap=True) as probe:
        time.sleep(1.5)
        cut_wall, cut_at = time.time(), time.monotonic()
        lab.cut("haproxy1")
        wait_for(lambda: probe.first_answer_after(cut_at, "haproxy1") is not None, 15, 0.02)
        time.sleep(0.3)
    sniffer.terminate()
    sniffed, _ = sniffer.communicate(timeout=5)
    journal = subprocess.run(
        lab.ssh_command("haproxy2", f"journalctl -o short-unix --no-pager "
                                    f"--since=@{int(cut_wall) - 1}"),
        capture_output=True, text=True, check=False).stdout
    row = link_events(sniffed, cut_wall) | event_times(journal, cut_wall)
    row["first answer"] = probe.first_answer_after(cut_at, "haproxy1")
    if row["verdict"] is not None and row["last heartbeat"] is not None:
        row["verdict lag"] = row["verdict"] - row["last heartbeat"] - DEADTIME
    lab.heal("haproxy1")
    wait_for(lambda: heartbeat_whole(lab, ["haproxy1", "haproxy2"]), 90, 0.3)
    home = f"ip -4 -o addr | grep -q {IP}"
    wait_for(lambda: subprocess.run(lab.ssh_command("haproxy1", home),
                                    check=False).returncode == 0, 60, 0.3)
    time.sleep(8)  # the failback settles before the next cut
    return row


def main() -> None:
    lab = Lab(report=lambda _: None)
    rows = []
    for run in range(RUNS):
        rows.append(one_cut(lab))
        print(run + 1, {k: None if v is None else round(v, 2) for k, v in rows[-1].items()},
              flush=True)
    for name in dict.fromkeys(k for r in rows for k in r):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            print(f"{name}: {statistics.median(values):.2f} / {max(values):.2f} s "
                  f"(median / max of {len(values)})")


if __name__ == "__main__":
    main()
