#!/usr/bin/env python3
"""Memory of our daemon: VmRSS and RssAnon idle with 6 listeners, and with 100 open tunnels through one forward.

Owns issue 15's bound "memory per idle tunnel and per connection must not grow": run it on two
binaries (e.g. main's and a branch's) and compare. Loopback only; every process it starts is
stopped (daemons by SIGTERM, the echo server dies with us). Reuses tunnel.py's daemon and server.

Usage: interop/bench/tunnel_rss.py --bin main=bench-bin/constellation-main \\
                                   --bin new=target/release/constellation [--tunnels 100]
"""

import argparse
import contextlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tunnel  # noqa: E402

# Listeners of the idle daemon: a station publishes about six services (tunnel.py uses the same).
IDLE_LISTENERS = tunnel.IDLE_LISTENERS
# Settle time before each RSS reading, so start-up and connection work is over.
SETTLE_S = 2.0
# Bytes each tunnel echoes before it goes idle: more than one 64 KiB pipe read and one yamux frame
# each way, so every buffer a busy tunnel touches is touched once.
WARM_BYTES = 256 * 1024
# Rounds per binary (median reported): RSS moves by a few hundred KiB between runs.
ROUNDS = 3


def status_kib(pid, field):
    """One `kB` field of /proc/<pid>/status (VmRSS, RssAnon: the heap and stacks, without the
    binary's own pages, which move with code layout from one build to the next)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(node):
    return status_kib(node.pid, "VmRSS"), status_kib(node.pid, "RssAnon")


def idle_rss_kib(binary):
    """One daemon, six listeners, nothing connected: (VmRSS, RssAnon)."""
    node = tunnel.OursNode(binary)
    try:
        for i in range(IDLE_LISTENERS):
            node.listen(f"/x/svc{i}-{node.peer_id}", 10000 + i)
        time.sleep(SETTLE_S)
        return rss_kib(node)
    finally:
        node.stop()


def open_tunnel(port):
    """A client through the forward, in echo mode, after WARM_BYTES went there and back."""
    c = tunnel.connect(port)
    c.sendall(b"E")
    payload = os.urandom(WARM_BYTES)
    c.sendall(payload)
    if tunnel.recv_exact(c, len(payload)) != payload:
        raise ConnectionError("echo through the tunnel differs")
    return c


def tunnels_rss_kib(binary, server_port, count):
    """RSS of forwarder and listener connected with one forward, then with `count` open tunnels."""
    with contextlib.ExitStack() as stack:
        listener = tunnel.OursNode(binary)
        stack.callback(listener.stop)
        forwarder = tunnel.OursNode(binary)
        stack.callback(forwarder.stop)
        proto = f"/x/rss-{listener.peer_id}"
        listener.listen(proto, server_port)
        forwarder.connect(listener.addr)
        port = tunnel.free_port()
        forwarder.forward(proto, port, listener.peer_id)
        open_tunnel(port).close()
        time.sleep(SETTLE_S)
        before = (rss_kib(forwarder), rss_kib(listener))
        for _ in range(count):
            client = open_tunnel(port)
            stack.callback(client.close)
        time.sleep(SETTLE_S)
        after = (rss_kib(forwarder), rss_kib(listener))
        return before, after


def measure(binary, server_port, count):
    """Medians over ROUNDS, in MiB as (VmRSS, RssAnon) pairs; per tunnel in KiB of RssAnon."""
    rows = []
    for _ in range(ROUNDS):
        idle = idle_rss_kib(binary)
        (f0, l0), (f1, l1) = tunnels_rss_kib(binary, server_port, count)
        rows.append((idle, f0, l0, f1, l1))
    med = [tuple(statistics.median(r[i][k] for r in rows) / 1024 for k in (0, 1)) for i in range(5)]
    idle, fwd0, lis0, fwd, lis = med
    return {
        "idle": idle,
        "fwd0": fwd0,
        "lis0": lis0,
        "fwd": fwd,
        "lis": lis,
        "per_tunnel_kib": (fwd[1] - fwd0[1] + lis[1] - lis0[1]) * 1024 / count,
    }


def pair(mib):
    return f"{mib[0]:.1f} ({mib[1]:.1f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", action="append", required=True, help="name=path, repeatable")
    p.add_argument("--tunnels", type=int, default=100)
    args = p.parse_args()
    bins = [b.split("=", 1) if "=" in b else (b, b) for b in args.bin]
    server, server_port = tunnel.start_server()
    results = []
    try:
        for name, path in bins:
            print(f"… {name}", file=sys.stderr, flush=True)
            results.append((name, measure(path, server_port, args.tunnels)))
    finally:
        server.kill()
    n = args.tunnels
    print(f"| binary | idle, {IDLE_LISTENERS} listeners | forwarder, 0 → {n} tunnels |"
          f" listener, 0 → {n} tunnels | per tunnel, both nodes, RssAnon KiB |")
    print("|---|---|---|---|---|")
    for name, r in results:
        print(f"| {name} | {pair(r['idle'])} | {pair(r['fwd0'])} → {pair(r['fwd'])} |"
              f" {pair(r['lis0'])} → {pair(r['lis'])} | {r['per_tunnel_kib']:.0f} |")
    print("\nMiB as VmRSS (RssAnon). RssAnon leaves out the executable's own pages (RssFile), which")
    print("differ between two builds of the same code by a few MiB with the code layout.")
    print(f"\nMedians of {ROUNDS} rounds; each tunnel echoed {WARM_BYTES // 1024} KiB, then idled"
          f" {SETTLE_S:.0f} s. Machine: {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    main()
