"""Packet timestamps on one lab node's link (run inside its namespace, not a test).

    ip netns exec hbl-haproxy2 python3 -u bench/sniff.py 10.213.0.11 10.213.0.100

Prints ``<unix time> hb`` for every heartbeat packet (UDP to port 694) from the first
address and ``<unix time> arp <sender MAC>`` for every ARP packet that announces the second
(the floating IP's gratuitous ARP). Reads only; stops on SIGTERM.
"""

from __future__ import annotations

import socket
import sys
import time

ETH_P_ALL = 0x0003


def main() -> None:
    peer, floating = (socket.inet_aton(a) for a in sys.argv[1:3])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    while True:
        frame = sock.recv(2048)
        at = time.time()
        kind = frame[12:14]
        if kind == b"\x08\x00" and frame[23] == 17 and frame[26:30] == peer:
            header = (frame[14] & 0x0F) * 4
            port = int.from_bytes(frame[14 + header + 2:14 + header + 4], "big")
            if port == 694:
                print(f"{at:.6f} hb", flush=True)
        elif kind == b"\x08\x06" and frame[28:32] == floating:
            print(f"{at:.6f} arp {frame[22:28].hex(':')}", flush=True)


if __name__ == "__main__":
    main()
