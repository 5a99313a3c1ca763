#!/usr/bin/env python3
"""The most moto serves for cordon's calls: the runbook's calls (runbook.py) for every
leaked key, one user's calls in sequence, THREADS users at a time (a thread pool, one
boto3 client pair per thread). Prints {"calls": n, "seconds": s, "rps": r, "contained"}.

  moto_ceiling.py ENDPOINT SEED.json THREADS"""
import concurrent.futures as cf
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runbook as rb  # noqa: E402

endpoint, seed_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
seed = json.load(open(seed_file))
local = threading.local()
clients = []
lock = threading.Lock()


def client():
    if not hasattr(local, "k"):
        local.k = rb.Calls(endpoint)
        with lock:
            clients.append(local.k)
    return local.k


def one(user):
    return rb.contain_user(client(), [x["id"] for x in user["keys"]], [])


# Clients are built before the clock starts (as cordon's are part of its start-up, not
# of moto's throughput): warm the pool with one no-op task per thread.
with cf.ThreadPoolExecutor(threads) as pool:
    barrier = threading.Barrier(threads)
    list(pool.map(lambda _: (client(), barrier.wait()), range(threads)))
    t0 = time.perf_counter()
    results = list(pool.map(one, seed["users"]))
    secs = time.perf_counter() - t0
calls = sum(k.n for k in clients)
print(json.dumps({"calls": calls, "seconds": secs, "rps": calls / secs, "contained": all(results)}))
sys.exit(0 if all(results) else 1)
