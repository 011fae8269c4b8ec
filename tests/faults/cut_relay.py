#!/usr/bin/env python3
"""A TCP relay on loopback whose links can be cut (for the post-copy recovery test).

usage: cut_relay.py UPSTREAM_PORT PORT_FILE

Listens on 127.0.0.1 (a free port, written to PORT_FILE), forwards every
connection to 127.0.0.1:UPSTREAM_PORT. SIGUSR1 resets every connection open
at that moment (as a broken link would); connections made afterwards are
forwarded as before. SIGTERM ends it.
"""
import os
import select
import signal
import socket
import struct
import sys
import threading

upstream = int(sys.argv[1])
lock = threading.Lock()
pairs = []  # (client, server) sockets alive now


def reset(sock):
    # SO_LINGER 0: close() sends RST, so both ends see the link die at once.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def cut(_sig, _frame):
    with lock:
        doomed = list(pairs)
        pairs.clear()
    for a, b in doomed:
        reset(a)
        reset(b)
    print(f"cut_relay: cut {len(doomed)} connection(s)", flush=True)


def pump(a, b):
    try:
        while True:
            r, _, _ = select.select([a, b], [], [], 1.0)
            for s in r:
                data = s.recv(1 << 16)
                if not data:
                    raise OSError("closed")
                (b if s is a else a).sendall(data)
    except (OSError, ValueError):
        pass
    with lock:
        if (a, b) in pairs:
            pairs.remove((a, b))
    reset(a)
    reset(b)


def main():
    signal.signal(signal.SIGUSR1, cut)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(tmp, sys.argv[2])
    while True:
        try:
            c, _ = ls.accept()
        except InterruptedError:
            continue
        try:
            s = socket.create_connection(("127.0.0.1", upstream))
        except OSError:
            c.close()
            continue
        with lock:
            pairs.append((c, s))
        threading.Thread(target=pump, args=(c, s), daemon=True).start()


main()
