#!/usr/bin/env python3
"""A real DNS server (PyPI `dnslib`) on 127.0.0.1 for the /dnsaddr tests: serves the TXT and A
records given as JSON, answers NXDOMAIN for anything else, and never forwards a query.

Usage: server.py --zone JSON   where JSON is {"TXT": {"name.": ["text", …]}, "A": {"name.": ["1.2.3.4"]}}
Prints {"event":"ready","port":N} on stdout once bound; dies with its parent, or when stdin closes.
"""

import argparse
import ctypes
import json
import signal
import sys

from dnslib import QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

PR_SET_PDEATHSIG = 1


class ZoneResolver(BaseResolver):
    def __init__(self, zone):
        self.txt = {k.lower().rstrip(".") + ".": v for k, v in zone.get("TXT", {}).items()}
        self.a = {k.lower().rstrip(".") + ".": v for k, v in zone.get("A", {}).items()}
        self.queries = 0

    def resolve(self, request, handler):
        self.queries += 1
        reply = request.reply()
        name = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        if qtype == "TXT" and name in self.txt:
            for text in self.txt[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(text), ttl=60))
        elif qtype == "A" and name in self.a:
            for ip in self.a[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(ip), ttl=60))
        elif name not in self.txt and name not in self.a:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def main():
    libc = ctypes.CDLL("libc.so.6")
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zone", required=True)
    args = p.parse_args()
    resolver = ZoneResolver(json.loads(args.zone))
    # Queries are logged on stderr: stdout carries only the ready line.
    logger = DNSLogger(prefix=False, logf=lambda line: print(line, file=sys.stderr, flush=True))
    udp = DNSServer(resolver, address="127.0.0.1", port=0, logger=logger)
    port = udp.server.server_address[1]
    tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=logger)
    udp.start_thread()
    tcp.start_thread()
    print(json.dumps({"event": "ready", "port": port}), flush=True)
    sys.stdin.read()  # EOF: the parent is done
    udp.stop()
    tcp.stop()


if __name__ == "__main__":
    main()
