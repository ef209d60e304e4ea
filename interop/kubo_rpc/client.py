"""An independent Kubo RPC client (PyPI aioipfs) for the integration tests.

Usage: client.py API_MULTIADDR [--auth basic:USER:PASS|bearer:TOKEN] OP [ARGS...]
Prints the client's result as one JSON line; an API error prints {"error": ..., "status": ...}.
"""

import asyncio
import json
import sys

import aioipfs
from aioipfs.exceptions import APIError


def client(maddr, auth):
    credentials = None
    if auth and auth.startswith("basic:"):
        user, password = auth[len("basic:"):].split(":", 1)
        credentials = aioipfs.BasicAuth(user, password)
    elif auth and auth.startswith("bearer:"):
        credentials = aioipfs.BearerAuth(auth[len("bearer:"):])
    return aioipfs.AsyncIPFS(maddr=maddr, auth=credentials)


async def run(ipfs, op, args):
    if op == "id":
        return await ipfs.core.id()
    if op == "version":
        return await ipfs.core.version()
    if op == "swarm_peers":
        return await ipfs.swarm.peers(verbose=False)
    if op == "swarm_connect":
        return await ipfs.swarm.connect(args[0])
    if op == "swarm_addrs":
        return await ipfs.swarm.addrs()
    if op == "p2p_listen":
        return await ipfs.p2p.listener_open(args[0], args[1])
    if op == "p2p_forward":
        return await ipfs.p2p.stream_dial(args[0], args[1], args[2])
    if op == "p2p_ls":
        return await ipfs.p2p.listener_ls()
    if op == "p2p_close":
        return await ipfs.p2p.listener_close(args[0])
    if op == "stream_ls":
        return await ipfs.p2p.stream_ls()
    if op == "findpeer":
        return await ipfs.routing.findpeer(args[0])
    if op == "ping":
        return [line async for line in ipfs.core.ping(args[0], count=int(args[1]))]
    raise SystemExit(f"unknown op {op}")


async def main():
    argv = sys.argv[1:]
    maddr, argv = argv[0], argv[1:]
    auth = None
    if argv[0] == "--auth":
        auth, argv = argv[1], argv[2:]
    ipfs = client(maddr, auth)
    try:
        result = await run(ipfs, argv[0], argv[1:])
        print(json.dumps({"result": result}))
    except APIError as e:
        print(json.dumps({"error": e.message, "code": e.code, "status": e.http_status}))
    except Exception as e:  # aioipfs raises other types for a 404 or an unreadable answer
        print(json.dumps({"error": str(e), "kind": type(e).__name__}))
    finally:
        await ipfs.close()


asyncio.run(main())
