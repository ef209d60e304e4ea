#!/usr/bin/env python3
"""Independent reference for the UMAP 0.00 key (test vectors for report::note::umap_keys).

Astroport's `tools/keygen -t nostr "${UPLANETNAME}0.00" "${UPLANETNAME}0.00"` derives it as
Duniter does: seed = scrypt(password, salt=user name, N=4096, r=16, p=1, 32 bytes), then the
secp256k1 secret key is SHA-256(seed). Written from that description with Python's own
hashlib.scrypt and coincurve (libsecp256k1), sharing no code with the Rust side.

Usage: umap_key.py NAME...   prints one JSON object per name: name, secret, pubkey (x-only hex).
"""
import hashlib
import json
import sys

import coincurve


def umap_key(uplanet_name: str) -> dict:
    credential = (uplanet_name + "0.00").encode("utf-8")
    seed = hashlib.scrypt(credential, salt=credential, n=4096, r=16, p=1, dklen=32)
    secret = hashlib.sha256(seed).digest()
    public = coincurve.PrivateKey(secret).public_key.format(compressed=True)
    return {"name": uplanet_name, "secret": secret.hex(), "pubkey": public[1:].hex()}


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(json.dumps(umap_key(name)))
