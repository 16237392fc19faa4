"""Relay stand-in for the NAT lab (``python -m aura_core.netlab.udp_relay HOST PORT`` in ``pub``):
a tiny UDP forwarder for the punch agents.

Datagram: ``from_id (16) || to_id (16) || payload``.  Every datagram registers ``from_id`` at its
source address; if ``to_id`` is registered the datagram is forwarded unchanged to it.  A
``to_id`` of 16 zero bytes is a registration only.  (The product's relay is a WebSocket relay
owned elsewhere; this only gives the lab a path that always works.)
"""

import socket
import sys


def main() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((sys.argv[1], int(sys.argv[2])))
    where: dict[bytes, tuple[str, int]] = {}
    while True:
        data, addr = s.recvfrom(65535)
        if len(data) < 32:
            continue
        where[data[:16]] = addr
        dest = where.get(data[16:32])
        if dest is not None:
            s.sendto(data, dest)


if __name__ == "__main__":
    main()
