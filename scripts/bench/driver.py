#!/usr/bin/env python3
"""Measures scripts/bench-aws's contenders against one moto (run by scripts/bench-aws).

Every run gets fresh users seeded for it alone (identical state for every contender);
contenders run in a rotating order per repetition; each run is checked afterwards with
admin reads (leaked keys Inactive, spare key untouched in the single-key case, deny-all
in place, console password gone): a run that does not fully contain aborts the bench.
Environment: BENCH_ENDPOINT, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (moto's admin),
CORDON, ROOT, OUT, BENCH_USERS (many-key users, 2 keys each), BENCH_SINGLE_REPS,
BENCH_MANY_REPS, BENCH_CLI_MANY_USERS (users in the AWS CLI loop's many-key run),
BENCH_CLI_MANY_REPS, BENCH_THREADS (ceiling pool), BENCH_CONCURRENCY (cordon)."""
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import boto3

E = os.environ
EP = E["BENCH_ENDPOINT"]
ROOT, CORDON, OUT = E["ROOT"], E["CORDON"], E["OUT"]
BENCH = os.path.join(ROOT, "scripts", "bench")
PY = sys.executable
USERS = int(E.get("BENCH_USERS", "500"))
SINGLE_REPS = int(E.get("BENCH_SINGLE_REPS", "5"))
MANY_REPS = int(E.get("BENCH_MANY_REPS", "3"))
CLI_USERS = int(E.get("BENCH_CLI_MANY_USERS", "5"))
CLI_REPS = int(E.get("BENCH_CLI_MANY_REPS", "1"))
THREADS = int(E.get("BENCH_THREADS", "16"))
CONC = int(E.get("BENCH_CONCURRENCY", "16"))
BIN = os.path.dirname(PY)

admin = boto3.client("iam", endpoint_url=EP, region_name="us-east-1")
log = open(os.path.join(OUT, "runs.jsonl"), "a")


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def seed(n_users, tag):
    """n_users users like scripts/seed_aws.py (production tag, ReadOnlyAccess, console
    password, two keys: both leaked in the many-key case)."""

    def one(i):
        u = f"bench-{tag}-{i:04d}"
        admin.create_user(UserName=u, Tags=[{"Key": "environment", "Value": "production"}])
        admin.attach_user_policy(UserName=u, PolicyArn="arn:aws:iam::aws:policy/ReadOnlyAccess")
        admin.create_login_profile(UserName=u, Password="Demo-password-1!", PasswordResetRequired=False)
        keys = [admin.create_access_key(UserName=u)["AccessKey"] for _ in range(2)]
        return {"user": u, "keys": [{"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]} for k in keys]}

    with cf.ThreadPoolExecutor(8) as pool:
        users = list(pool.map(one, range(n_users)))
    d = tempfile.mkdtemp(dir=OUT, prefix=f"{tag}-")
    s = {"users": users, "dir": d}
    json.dump(s, open(os.path.join(d, "seed.json"), "w"))
    with open(os.path.join(d, "seed.tsv"), "w") as f:
        for u in users:
            for k in u["keys"]:
                f.write(f"{u['user']}\t{k['id']}\t{k['secret']}\n")
    return s


def check(s, single):
    """Admin read-back after a run: raise unless fully contained (and nothing more)."""
    for i, u in enumerate(s["users"]):
        status = {k["AccessKeyId"]: k["Status"] for k in admin.list_access_keys(UserName=u["user"])["AccessKeyMetadata"]}
        want = ["Inactive", "Active"] if single else ["Inactive", "Inactive"]
        got = [status[k["id"]] for k in u["keys"]]
        assert got == want, f"{u['user']}: keys {got}, want {want}"
        assert "cordon-quarantine-deny-all" in admin.list_user_policies(UserName=u["user"])["PolicyNames"], u
        try:
            admin.get_login_profile(UserName=u["user"])
            raise AssertionError(f"{u['user']}: console password still there")
        except admin.exceptions.NoSuchEntityException:
            pass


def cordon_home():
    d = tempfile.mkdtemp(dir=OUT, prefix="cordon-home-")
    env = dict(E, CORDON_HOME=os.path.join(d, "home"), CORDON_AWS_ENDPOINT_URL=E["CORDON_EP"])
    subprocess.run([CORDON, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    key = os.path.join(d, "amara")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "amara", "-f", key], check=True)
    with open(os.path.join(env["CORDON_HOME"], "policy", "allowed_signers"), "a") as f:
        f.write(f'amara namespaces="cordon-plan" {open(key + ".pub").read()}')
    return env, key


def run(name, mode, s, endpoint=None):
    """One timed run of contender `name` on seed `s`; returns a record."""
    ep = endpoint or EP
    first = s["users"][0]["keys"][0]
    env = dict(E, PATH=BIN + os.pathsep + E["PATH"], CORDON_EP=ep)
    if name == "cordon":
        env, key = cordon_home() if endpoint is None else cordon_home_at(ep)
        base = [CORDON, "--json", "revoke", "aws-key"]
        tail = ["--quarantine-user", "--severity", "critical", "--as", "amara", "--key", key]
        if mode == "single":
            env["LEAKED_SECRET"] = first["secret"]
            cmd = base + [first["id"], "--secret-env", "LEAKED_SECRET"] + tail
        else:
            ids = [k["id"] for u in s["users"] for k in u["keys"]]
            cmd = base + ids + tail + ["--concurrency", str(CONC), "--rate", "1000"]
    elif name == "aws-cli":
        cmd = ["bash", os.path.join(BENCH, "aws_cli_runbook.sh"), ep, os.path.join(s["dir"], "seed.tsv"), mode, s["dir"]]
    elif name == "boto3":
        cmd = [PY, os.path.join(BENCH, "boto3_runbook.py"), ep, os.path.join(s["dir"], "seed.json"), mode, s["dir"]]
    elif name == "ceiling":
        cmd = [PY, os.path.join(BENCH, "moto_ceiling.py"), ep, os.path.join(s["dir"], "seed.json"), str(THREADS)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        say(p.stdout[-3000:], p.stderr[-3000:])
        raise SystemExit(f"{name} {mode}: exit {p.returncode}: not contained, not a time")
    rec = {"contender": name, "mode": mode, "users": len(s["users"]), "wall_s": wall}
    if name == "cordon":
        out = json.loads(p.stdout)
        bad = [(x["step"], x["outcome"]["status"], x["verification"]["status"]) for x in out["steps"]
               if x["outcome"]["status"] != "done" or x["verification"]["status"] != "dead"]
        if bad:
            raise SystemExit(f"cordon {mode}: steps not done/dead: {bad[:5]}")
        rec["steps"] = len(out["steps"])
        rec["attempts"] = sum(x.get("attempts", 1) for x in out["steps"])
    else:
        rec.update(json.loads(p.stdout.strip().splitlines()[-1]))
    check(s, mode == "single")
    log.write(json.dumps(rec) + "\n")
    log.flush()
    say(f"  {name:8} {mode:6} users={len(s['users']):4} {wall:8.3f} s  {rec}")
    return rec


def cordon_home_at(ep):
    old = E.get("CORDON_EP")
    E["CORDON_EP"] = ep
    try:
        return cordon_home()
    finally:
        if old is None:
            E.pop("CORDON_EP")
        else:
            E["CORDON_EP"] = old


def tally(name, mode, n_users):
    """Run once through the tracing proxy; return its per-action counts."""
    p = subprocess.Popen([PY, os.path.join(BENCH, "trace_proxy.py"), "--listen-port", "0", "--upstream", EP, "--quiet"],
                         stdout=subprocess.PIPE, text=True)
    try:
        port = p.stdout.readline().strip()
        ep = f"http://127.0.0.1:{port}"
        s = seed(n_users, f"count-{name}-{mode}-{uuid.uuid4().hex[:4]}")
        run(name, mode, s, endpoint=ep)
        import urllib.request
        st = json.load(urllib.request.urlopen(ep + "/__faultproxy/stats"))
        return {"requests": st["requests"], "actions": st["actions"]}
    finally:
        p.terminate()
        p.wait()


def summary(recs, key="wall_s"):
    v = sorted(r[key] for r in recs)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}


def main():
    E.setdefault("CORDON_EP", EP)
    results = {"endpoint": EP, "users": USERS, "threads": THREADS, "concurrency": CONC}
    say("== warm-up (untimed): one single-key run per contender, one small ceiling run")
    for name in ("cordon", "boto3", "aws-cli"):
        run(name, "single", seed(1, f"warm-{name}"))
    run("ceiling", "many", seed(20, "warm-ceiling"))

    say("== request tallies through the tracing proxy (untimed): are the calls the same?")
    counts = {}
    for name in ("cordon", "boto3", "aws-cli"):
        counts[f"{name}/single"] = tally(name, "single", 1)
        counts[f"{name}/many-1user"] = tally(name, "many", 1)
    counts["ceiling/many-1user"] = tally("ceiling", "many", 1)
    results["counts"] = counts
    for k, v in counts.items():
        say(f"  {k}: {v['requests']} requests")

    say(f"== single key: {SINGLE_REPS} repetitions, rotating order")
    single = {n: [] for n in ("cordon", "aws-cli", "boto3")}
    order = list(single)
    for r in range(SINGLE_REPS):
        for name in order[r % 3:] + order[: r % 3]:
            single[name].append(run(name, "single", seed(1, f"s{r}-{name}")))
    results["single"] = {n: summary(v) for n, v in single.items()}

    say(f"== many keys: {USERS} users x 2 keys, {MANY_REPS} repetitions, rotating order")
    many = {n: [] for n in ("cordon", "boto3", "ceiling")}
    order = list(many)
    for r in range(MANY_REPS):
        for name in order[r % 3:] + order[: r % 3]:
            many[name].append(run(name, "many", seed(USERS, f"m{r}-{name}")))
    results["many"] = {n: summary(v) for n, v in many.items()}
    results["many"]["ceiling_rps"] = summary(many["ceiling"], "rps")
    results["many"]["boto3_calls"] = many["boto3"][0]["calls"]
    results["many"]["ceiling_calls"] = many["ceiling"][0]["calls"]

    say("== cordon's requests for the many-key run, counted once through the tracing proxy (untimed)")
    results["counts"]["cordon/many-full"] = tally("cordon", "many", USERS)
    say(f"  {results['counts']['cordon/many-full']['requests']} requests")
    json.dump(results, open(os.path.join(OUT, "results.json"), "w"), indent=1)

    if CLI_REPS > 0:
        say(f"== AWS CLI loop, many keys: {CLI_USERS} users x 2 keys, {CLI_REPS} repetition(s)")
        cli = [run("aws-cli", "many", seed(CLI_USERS, f"c{r}-aws-cli")) for r in range(CLI_REPS)]
        results["many_cli"] = {"users": CLI_USERS, **summary(cli), "calls": cli[0]["calls"]}
    json.dump(results, open(os.path.join(OUT, "results.json"), "w"), indent=1)
    print(json.dumps(results, indent=1))


main()
