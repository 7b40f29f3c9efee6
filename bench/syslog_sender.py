#!/usr/bin/env python3
"""Sends N RFC 5424 syslog lines over TCP (LF framing) as fast as the receiver reads them.

Usage: syslog_sender.py HOST PORT COUNT [CONNECTIONS]
Lines look like a busy sshd/web mix (about 150 bytes), with a sequence number in the message.
"""
import socket
import sys
import threading

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
conns = int(sys.argv[4]) if len(sys.argv) > 4 else 2

TEMPLATES = [
    "<38>1 2026-11-27T10:00:00.000Z web-{h:02d} sshd {pid} - - Failed password for invalid user admin from 203.0.113.{o} port {p} ssh2 seq={n}",
    "<86>1 2026-11-27T10:00:00.000Z mail-{h:02d} sshd {pid} - - Accepted publickey for ops from 10.20.1.{o} port {p} ssh2 seq={n}",
    "<134>1 2026-11-27T10:00:00.000Z fw-{h:02d} kernel - - - IN=eth0 OUT= SRC=198.51.100.{o} DST=10.20.0.5 LEN=60 PROTO=TCP SPT={p} DPT=443 SYN seq={n}",
]


def send(start, end):
    s = socket.create_connection((host, port))
    buf = []
    size = 0
    for n in range(start, end):
        line = TEMPLATES[n % 3].format(h=n % 50, pid=1000 + n % 5000, o=n % 250, p=1024 + n % 60000, n=n) + "\n"
        buf.append(line)
        size += len(line)
        if size > 256 * 1024:
            s.sendall("".join(buf).encode())
            buf, size = [], 0
    if buf:
        s.sendall("".join(buf).encode())
    s.shutdown(socket.SHUT_WR)
    s.recv(1)
    s.close()


per = count // conns
threads = [threading.Thread(target=send, args=(i * per, count if i == conns - 1 else (i + 1) * per)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
