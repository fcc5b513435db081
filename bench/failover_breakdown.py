"""Failover breakdown (not a test): cut the holder haproxy1 of a deployed 2-node lab
(examples/lab.yml) 5 times; from haproxy2's journal, seconds after the cut of heartbeat's
verdict, the start of the takeover, the floating IP configured and the takeover done; from
an HTTP probe of the floating IP every 20 ms, the first answer from haproxy2.

    .venv/bin/hbdeploy lab.up && .venv/bin/hbdeploy -S /var/lib/hbdeploy/lab/ssh_config \\
        -H haproxy1,haproxy2 deploy --cluster examples/lab.yml
    .venv/bin/python bench/failover_breakdown.py
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time

from hbdeploy.lab import Lab
from hbdeploy.lab.outage import HttpProbe, heartbeat_whole, wait_for

IP = "10.213.0.100"
RUNS = 5
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


def one_cut(lab: Lab) -> dict[str, float | None]:
    with HttpProbe(IP, interval=0.02, timeout=0.1) as probe:
        time.sleep(0.5)
        cut_wall, cut_at = time.time(), time.monotonic()
        lab.cut("haproxy1")
        wait_for(lambda: probe.first_answer_after(cut_at, "haproxy1") is not None, 15, 0.05)
    journal = subprocess.run(
        lab.ssh_command("haproxy2", f"journalctl -o short-unix --no-pager "
                                    f"--since=@{int(cut_wall) - 1}"),
        capture_output=True, text=True, check=False).stdout
    row = event_times(journal, cut_wall)
    row["first answer"] = probe.first_answer_after(cut_at, "haproxy1")
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
    for name in rows[0]:
        values = [r[name] for r in rows if r[name] is not None]
        if values:
            print(f"{name}: {statistics.median(values):.2f} / {max(values):.2f} s "
                  f"(median / max of {len(values)})")


if __name__ == "__main__":
    main()
