#!/usr/bin/env python3
"""Checks a strata seal receipt and an inclusion proof offline, from
docs/seal-format.md alone: Python's hashlib for SHA-256 and the
`cryptography` package for Ed25519. No strata code is used.

usage: seal_offline.py RECEIPT.json PROOF.json PUBLIC_KEY_FILE
Exit 0 when both check, 1 (with the reason) when not.
"""
import hashlib
import json
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

NULL, INT8, TEXT, JSONB, INET, TIMESTAMP, BYTES = range(7)
COLUMNS = [
    ("id", INT8), ("user_id", INT8), ("action", TEXT), ("resource_type", TEXT),
    ("resource_id", INT8), ("details", JSONB), ("ip_address", INET),
    ("user_agent", TEXT), ("status", TEXT), ("severity", TEXT),
    ("created_at", TIMESTAMP),
]


def field(tag, value):
    if value is None:
        return bytes([NULL])
    return bytes([tag]) + struct.pack(">I", len(value)) + value


def int_field(tag, n):
    return field(tag, None if n is None else struct.pack(">q", n))


def row_encoding(row):
    out = b""
    for name, tag in COLUMNS:
        v = row[name]
        if v is None:
            out += field(tag, None)
        elif tag in (INT8, TIMESTAMP):
            out += int_field(tag, int(v))
        else:
            out += field(tag, v.encode("utf-8"))
    return out


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not (fn & 1) and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def seal_hash(rc):
    rec = field(TEXT, rc["format"].encode())
    rec += field(TEXT, rc["table"].encode())
    rec += int_field(TIMESTAMP, rc["period_start_us"])
    rec += int_field(TIMESTAMP, rc["period_end_us"])
    rec += int_field(INT8, rc["row_count"])
    rec += field(BYTES, bytes.fromhex(rc["root"]))
    prev = rc["prev_hash"]
    rec += field(BYTES, None if prev is None else bytes.fromhex(prev))
    rec += int_field(TIMESTAMP, rc["sealed_at_us"])
    return hashlib.sha256(rec).digest()


def fail(why):
    print("FAILED: " + why)
    sys.exit(1)


def main(receipt_path, proof_path, key_path):
    receipt = json.load(open(receipt_path))
    proof = json.load(open(proof_path))
    kind, key_hex = open(key_path).read().split()
    if kind != "ed25519-public":
        fail("not a public key file")
    public = bytes.fromhex(key_hex)

    if receipt["format"] != "strata-seal-v1":
        fail("unknown format " + receipt["format"])
    h = seal_hash(receipt)
    if h.hex() != receipt["seal_hash"]:
        fail("the receipt's fields do not hash to its seal hash")
    if receipt["key_id"] != hashlib.sha256(public).digest()[:8].hex():
        fail("signed by key %s, not by this public key" % receipt["key_id"])
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(bytes.fromhex(receipt["signature"]), h)
    except InvalidSignature:
        fail("the signature does not verify")

    if proof["receipt"]["seal_hash"] != receipt["seal_hash"]:
        fail("the proof is for another seal")
    leaf = hashlib.sha256(b"\x00" + row_encoding(proof["row"])).digest()
    if leaf.hex() != proof["leaf_hash"]:
        fail("the row does not hash to the proof's leaf hash")
    if proof["tree_size"] != receipt["row_count"]:
        fail("the proof's tree size is not the sealed row count")
    path = [bytes.fromhex(p) for p in proof["path"]]
    if not verify_inclusion(leaf, proof["leaf_index"], proof["tree_size"], path, bytes.fromhex(receipt["root"])):
        fail("the inclusion path does not lead to the sealed root")
    print("OK: row %s is leaf %d of %d under root %s, sealed by key %s"
          % (proof["row"]["id"], proof["leaf_index"], proof["tree_size"], receipt["root"][:16], receipt["key_id"]))


if __name__ == "__main__":
    main(*sys.argv[1:4])
