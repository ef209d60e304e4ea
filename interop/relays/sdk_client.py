"""nostr-sdk (rust-nostr's Python package) as a third-party client of a relay, for tests.

    sdk_client.py publish URL EVENTS.jsonl            send each event, wait for OK
    sdk_client.py query URL FILTER_JSON               fetch events, print their ids
    sdk_client.py sync URL FILTER_JSON DIR {up,down,both} [--seed EVENTS.jsonl]
        NIP-77 Client.sync with an LMDB database in DIR (seeded with EVENTS for "up")

Prints one JSON object on stdout. The process dies with its parent (PR_SET_PDEATHSIG).
"""

import argparse
import asyncio
import json
import os
import sys
from datetime import timedelta

import nostr_sdk as n
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from child import die_with_parent  # noqa: E402


def read_events(path):
    with open(path) as f:
        return [n.Event.from_json(line) for line in f if line.strip()]


async def client_for(url, db=None):
    builder = n.ClientBuilder()
    if db is not None:
        builder = builder.database(db)
    client = builder.build()
    await client.add_relay(n.RelayUrl.parse(url))
    await client.connect()
    return client


async def publish(args):
    client = await client_for(args.url)
    accepted, refused = [], {}
    for event in read_events(args.events):
        out = await client.send_event(event)
        if out.success:
            accepted.append(event.id().to_hex())
        else:
            refused[event.id().to_hex()] = next(iter(out.failed.values()), "")
    await client.disconnect()
    return {"accepted": accepted, "refused": refused}


async def query(args):
    client = await client_for(args.url)
    events = await client.fetch_events(
        n.ReqTarget.auto([n.Filter.from_json(args.filter)]), timeout=timedelta(seconds=30)
    )
    await client.disconnect()
    return {"ids": [e.id().to_hex() for e in events.to_vec()] if hasattr(events, "to_vec") else [e.id().to_hex() for e in events]}


async def sync(args):
    # LMDB keeps the seeded events for "up"; "down" uses the default database, because
    # LMDB's Python callbacks crash when the sync calls them from a Rust thread.
    db = None
    if args.seed:
        db = await n.NostrLmdb.open(args.dir)
        for event in read_events(args.seed):
            await db.save_event(event)
    client = await client_for(args.url, db)
    direction = {"up": n.SyncDirection.UP, "down": n.SyncDirection.DOWN, "both": n.SyncDirection.BOTH}[args.direction]
    out = await client.sync(n.Filter.from_json(args.filter), opts=n.SyncOptions().direction(direction))
    local = await db.query(n.Filter()) if db is not None else []
    local = local.to_vec() if hasattr(local, "to_vec") else local
    report = out.report
    await client.disconnect()
    return {
        "failed": {str(k): v for k, v in out.failed.items()},
        "sent": sorted(e.to_hex() for e in report.sent.keys()),
        "received": sorted(e.to_hex() for e in report.received.keys()),
        "local": sorted(e.id().to_hex() for e in local),
    }


def main():
    die_with_parent()
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish")
    p.add_argument("url")
    p.add_argument("events")
    q = sub.add_parser("query")
    q.add_argument("url")
    q.add_argument("filter")
    s = sub.add_parser("sync")
    s.add_argument("url")
    s.add_argument("filter")
    s.add_argument("dir")
    s.add_argument("direction", choices=["up", "down", "both"])
    s.add_argument("--seed")
    args = parser.parse_args()
    result = asyncio.run({"publish": publish, "query": query, "sync": sync}[args.command](args))
    json.dump(result, sys.stdout)
    print(flush=True)


if __name__ == "__main__":
    main()
