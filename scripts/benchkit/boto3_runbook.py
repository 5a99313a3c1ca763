#!/usr/bin/env python3
"""A sequential boto3 runbook: the calls cordon makes (runbook.py), one after another.

  boto3_runbook.py ENDPOINT SEED.json single|many EVIDENCE_DIR
Admin credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY. single: the first key of
the first user, with its secret (verify signs calls with it); many: every key of every
user, in phases like cordon's plan (identify all, disable each, quarantine each user,
verify by read-back). Prints {"calls": n, "contained": bool}; exits 1 unless contained."""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runbook as rb  # noqa: E402

endpoint, seed_file, mode, outdir = sys.argv[1:5]
seed = json.load(open(seed_file))
t0 = time.monotonic()
k = rb.Calls(endpoint)
evidence = []
# Seconds from start until each key was dead: single, a call signed with it refused (the
# point cordon reports); many, its disable call returned (this runbook verifies only at
# the end), which flatters boto3.
dead = []
if mode == "single":
    first = seed["users"][0]["keys"][0]
    ok = rb.contain_one(k, first["id"], first["secret"], evidence, dead, t0)
else:
    rb.own_account(k)
    keys = [x["id"] for u in seed["users"] for x in u["keys"]]
    owner = {kid: rb.identify(k, kid) for kid in keys}
    for kid in keys:
        evidence.append(rb.snapshot(k, owner[kid]))
        rb.disable(k, owner[kid], kid)
        dead.append(time.monotonic() - t0)
    users = list(dict.fromkeys(owner.values()))
    for u in users:
        evidence.append(rb.snapshot(k, u))
        rb.quarantine(k, u)
    ok = all(rb.key_dead(rb.snapshot(k, owner[kid]), kid) for kid in keys)
    ok = all([rb.user_quarantined(rb.snapshot(k, u)) for u in users]) and ok
with open(os.path.join(outdir, "boto3-evidence.json"), "w") as f:
    json.dump(evidence, f, default=str)
res = {"calls": k.n, "contained": ok}
if dead:
    res.update(dead_first_s=min(dead), dead_last_s=max(dead))
print(json.dumps(res))
sys.exit(0 if ok else 1)
