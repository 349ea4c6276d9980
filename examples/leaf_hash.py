"""Recomputes every leaf hash of a Tollbook log, with nothing but Python's standard library.

    tollbook log --format jsonl > log.jsonl
    python3 leaf_hash.py log.jsonl        # or: tollbook log | python3 leaf_hash.py -

The leaf is the event's canonical JSON (keys sorted, no spaces, UTF-8); its hash is
SHA-256(0x00 ‖ leaf), printed in base64 (README: "The leaf recipe"). Exit 0 if every leaf
matches and positions run 1, 2, 3, … without a gap; else 1, naming the first bad position.
"""
import base64
import hashlib
import json
import sys

lines = open(sys.argv[1], encoding="utf-8") if sys.argv[1:] != ["-"] else sys.stdin
count = 0
for count, line in enumerate(lines, 1):
    entry = json.loads(line)
    leaf = json.dumps(entry["event"], sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if entry["position"] != count:
        sys.exit(f"position {count}: missing (the log goes on at {entry['position']})")
    if base64.b64encode(hashlib.sha256(b"\x00" + leaf).digest()).decode() != entry["leaf_hash"]:
        sys.exit(f"position {count}: the event does not hash to its leaf_hash")
print(f"{count} leaves recomputed, all match")
