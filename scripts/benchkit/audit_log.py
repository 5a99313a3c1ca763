#!/usr/bin/env python3
"""Write a local cordon audit log of N `note` records, for benchmarks that need
a long log fast (cordon itself appends one durable record per fsync, which
takes minutes for 100,000). The records are exactly what `cordon log note`
writes: canonical JSON (fields in cordon's order, no whitespace), each hash the
SHA-256 of the record without its `hash` field, chained by `prev`. The bench
runs `cordon log verify` on the result before using it, so a record this
script got wrong fails the bench instead of skewing it.

  audit_log.py FILE N
"""
import datetime
import hashlib
import json
import os
import sys


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2])
    prev = "0" * 64
    t0 = datetime.datetime.now(datetime.timezone.utc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        for seq in range(1, n + 1):
            t = t0 + datetime.timedelta(milliseconds=seq)
            rec = {
                "seq": seq,
                "time": t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z",
                "kind": "note",
                "actor": {"name": "bench", "kind": "person", "verified": False},
                "message": f"bench note {seq}",
                "prev": prev,
            }
            body = json.dumps(rec, separators=(",", ":"), ensure_ascii=False)
            prev = hashlib.sha256(body.encode()).hexdigest()
            rec["hash"] = prev
            f.write(json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
