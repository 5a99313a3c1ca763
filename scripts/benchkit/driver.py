#!/usr/bin/env python3
"""Measures scripts/bench's contenders side by side (run by scripts/bench, not by hand).

Settings (BENCH_SETTINGS, comma-separated, default "bare,wan,throttle"):
  bare      moto alone: peer-bound. cordon's requests/s is compared with moto's ceiling,
            measured in the same run by moto_ceiling.py (the same calls, a thread pool).
  wan       moto behind peers/faultproxy adding BENCH_DELAY_MS (default 50) per request:
            what a laptop sees of real IAM. The 10x case.
  throttle  as wan, and the proxy answers a fraction BENCH_THROTTLE_RATE (default 0.02)
            of requests with HTTP 429 `Throttling` and `Retry-After: 1`: cordon must back
            off and still finish every step, done and verified.
Every many-key run gets a fresh moto of its own (seeded for it alone, warmed up with a
small untimed load first), so no run pays for the users earlier runs left behind (moto
scans every user on some calls). Single-key runs share one moto per setting. Contenders
run in a rotating order; each run is checked afterwards with admin reads (leaked keys
Inactive, the spare key untouched in the single-key case, deny-all in place, console
password gone): a run that does not fully contain aborts the bench.

Environment (defaults in brackets): BENCH_SINGLE_REPS [5], BENCH_USERS [100] and
BENCH_MANY_REPS [3] (bare), BENCH_WAN_USERS [500] and BENCH_WAN_REPS [1],
BENCH_WAN_BOTO3_REPS [BENCH_WAN_REPS] (fewer sequential-boto3 runs in the wan setting),
BENCH_THROTTLE_USERS [100] and BENCH_THROTTLE_REPS [1], BENCH_CONCURRENCY [32] and
BENCH_RATE [adaptive] (cordon's flags), BENCH_THREADS [16] (ceiling pool),
BENCH_WAN_CONTENDERS [cordon,boto3] (also: cordon-s3, cordon with its state on S3 in the
run's moto, behind the same delay), BENCH_WAN_CEILING [0] (1: also run the ceiling in
the wan setting), BENCH_SINGLE_REPS=0 skips the single-key runs, BENCH_WAN_REPS=0 the
wan setting's many-key runs, BENCH_LAG_USERS [100], BENCH_LAG_REPS [1] and BENCH_LAG_MS
[2000] (the lag setting: wan + every UpdateAccessKey acknowledged at once and applied
BENCH_LAG_MS later, IAM's propagation delay; cordon only), BENCH_GITHUB_TOKENS
[1500] (0: skip the GitHub run), BENCH_CLI_MANY_USERS [0] (users in an AWS CLI loop over
many keys; one `aws` process per call makes it long). Set by scripts/bench: ROOT, OUT,
CORDON, MOTO_PY."""
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import http.client
import urllib.parse
import urllib.request
import uuid

import boto3

E = os.environ
ROOT, CORDON, OUT, MOTO_PY = E["ROOT"], E["CORDON"], E["OUT"], E["MOTO_PY"]
KIT = os.path.join(ROOT, "scripts", "benchkit")
PY = sys.executable
BIN = os.path.dirname(PY)


def knob(name, default, kind=int):
    return kind(E.get(name, default))


SETTINGS = [s for s in E.get("BENCH_SETTINGS", "bare,wan,throttle").split(",") if s]
SINGLE_REPS = knob("BENCH_SINGLE_REPS", 5)
USERS = knob("BENCH_USERS", 100)
MANY_REPS = knob("BENCH_MANY_REPS", 3)
WAN_USERS = knob("BENCH_WAN_USERS", 500)
WAN_REPS = knob("BENCH_WAN_REPS", 1)
WAN_BOTO3_REPS = knob("BENCH_WAN_BOTO3_REPS", WAN_REPS)
THR_USERS = knob("BENCH_THROTTLE_USERS", 100)
THR_REPS = knob("BENCH_THROTTLE_REPS", 1)
THR_RATE = knob("BENCH_THROTTLE_RATE", 0.02, float)
LAG_USERS = knob("BENCH_LAG_USERS", 100)
LAG_REPS = knob("BENCH_LAG_REPS", 1)
LAG_MS = knob("BENCH_LAG_MS", 2000)
DELAY = knob("BENCH_DELAY_MS", 50)
CONC = knob("BENCH_CONCURRENCY", 32)
# cordon's --rate: "adaptive" (the default: no flag, the rate adapts from 10 up to 500 per
# second per account) or a number (a cap).
RATE = E.get("BENCH_RATE", "adaptive")
RATE_FLAG = [] if RATE == "adaptive" else ["--rate", str(RATE)]
THREADS = knob("BENCH_THREADS", 16)
WAN_CEILING = knob("BENCH_WAN_CEILING", 0)
GH_TOKENS = knob("BENCH_GITHUB_TOKENS", 1500)
CLI_USERS = knob("BENCH_CLI_MANY_USERS", 0)
for s in SETTINGS:
    if s not in ("bare", "wan", "throttle", "lag"):
        raise SystemExit(f"BENCH_SETTINGS: unknown setting `{s}` (bare, wan, throttle, lag)")

log = open(os.path.join(OUT, "runs.jsonl"), "a")
children = []


def say(*a):
    print(*a, file=sys.stderr, flush=True)


class Peer:
    """A fresh moto (IAM auth enforced, request log off), optionally behind the fault
    proxy. `ep` is what contenders talk to; seeding and checks go to moto directly."""

    def __init__(self, delay_ms=0, throttle_rate=0.0, lag_ms=0):
        d = tempfile.mkdtemp(dir=OUT, prefix="moto-")
        envfile = os.path.join(d, "moto.env")
        self.procs = []
        moto = subprocess.Popen(
            [MOTO_PY, os.path.join(ROOT, "peers", "moto", "launcher.py"), "--env-file", envfile, "--no-request-log"],
            stdout=open(os.path.join(d, "moto.log"), "w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(moto)
        children.append(moto)
        for _ in range(600):
            if os.path.exists(envfile) and os.path.getsize(envfile) > 0:
                break
            if moto.poll() is not None:
                raise SystemExit(f"moto exited at start: see {d}/moto.log")
            time.sleep(0.1)
        env = dict(line.strip().split("=", 1) for line in open(envfile) if "=" in line)
        self.moto_ep = env["CORDON_TEST_AWS_ENDPOINT"]
        self.key, self.secret = env["CORDON_TEST_AWS_ACCESS_KEY_ID"], env["CORDON_TEST_AWS_SECRET_ACCESS_KEY"]
        self.ep = self.moto_ep
        self.proxy = None
        self.lag = bool(lag_ms)
        if delay_ms or throttle_rate or lag_ms:
            cmd = [PY, os.path.join(ROOT, "peers", "faultproxy", "proxy.py"), "--listen-port", "0",
                   "--upstream", self.moto_ep, "--delay-ms", str(delay_ms), "--quiet", "--seed", "9"]
            if throttle_rate:
                cmd += ["--mode", "throttle-429", "--rate", str(throttle_rate), "--retry-after", "1"]
            elif lag_ms:
                # IAM's propagation delay: every key disable is acknowledged at once and
                # applied lag_ms later, so reads meanwhile still show the key Active.
                cmd += ["--mode", "lag", "--lag-ms", str(lag_ms), "--rate", "1", "--match", "Action=UpdateAccessKey"]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
            children.append(p)
            self.ep = f"http://127.0.0.1:{p.stdout.readline().strip()}"
            self.proxy = self.ep
            self.round_trip_ms = round_trip_ms(self.ep)
            say(f"  proxy round trip: {self.round_trip_ms:.1f} ms median (--delay-ms {delay_ms})")
            if self.round_trip_ms > delay_ms + 25:
                say("  WARNING: the proxy adds more than the delay it was given: every WAN figure is too slow")
        self.admin = boto3.client("iam", endpoint_url=self.moto_ep, region_name="us-east-1",
                                  aws_access_key_id=self.key, aws_secret_access_key=self.secret)
        self.env = dict(E, AWS_ACCESS_KEY_ID=self.key, AWS_SECRET_ACCESS_KEY=self.secret)

    def stats(self):
        if not self.proxy:
            return None
        return json.load(urllib.request.urlopen(self.proxy + "/__faultproxy/stats"))

    def stop(self):
        for p in reversed(self.procs):
            p.terminate()
            p.wait()


def round_trip_ms(ep, n=20):
    """Median of n sequential requests on one kept-alive connection through the proxy (a
    POST to /moto-api/, which the launcher refuses before moto sees it): what one round
    trip costs a client beyond moto's own work, to show
    that the proxy adds the delay it was given and nothing more (a Nagle/delayed-ACK
    stall once made it ~90 ms behind --delay-ms 50; see BENCHMARKS.md)."""
    u = urllib.parse.urlsplit(ep)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    body = b"Action=GetCallerIdentity&Version=2011-06-15"  # a body, as every IAM call has
    t = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            conn.request("POST", "/moto-api/", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
            conn.getresponse().read()
            t.append((time.perf_counter() - t0) * 1000)
    finally:
        conn.close()
    return statistics.median(t)


def seed(peer, n_users, tag):
    """n_users users like scripts/seed_aws.py (production tag, ReadOnlyAccess, console
    password, two keys: both leaked in the many-key case), straight into moto."""
    admin = peer.admin

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


def check(peer, s, single):
    """Admin read-back after a run: raise unless fully contained (and nothing more)."""
    admin = peer.admin
    for u in s["users"]:
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


def cordon_home(env):
    d = tempfile.mkdtemp(dir=OUT, prefix="cordon-home-")
    env = dict(env, CORDON_HOME=os.path.join(d, "home"), CORDON_DEMO="1")
    subprocess.run([CORDON, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    key = os.path.join(d, "amara")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "amara", "-f", key], check=True)
    with open(os.path.join(env["CORDON_HOME"], "policy", "allowed_signers"), "a") as f:
        f.write(f'amara namespaces="cordon-plan" {open(key + ".pub").read()}')
    return env, key, d


def timed(cmd, env, stdin_data=None):
    """Run cmd; return (exit code, stdout, stderr, wall seconds, peak RSS in MiB of the
    process or its largest descendant, CPU seconds (user + system) of the process and its
    children; both from GNU time: forked from the small `time` process, not from this one,
    so the driver's own memory and CPU are not counted)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp, \
            tempfile.NamedTemporaryFile("r") as rss:
        if stdin_data is not None:
            inp.write(stdin_data.encode())
            inp.seek(0)
        t0 = time.perf_counter()
        p = subprocess.run(["/usr/bin/time", "-f", "%M %U %S", "-o", rss.name] + cmd, env=env, stdout=out, stderr=err, stdin=inp)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        last = [line.split() for line in rss.read().splitlines() if line.strip()[:1].isdigit()]
        rss = int(last[-1][0]) / 1024 if last else None
        cpu = float(last[-1][1]) + float(last[-1][2]) if last else None
        return p.returncode, out.read().decode(), err.read().decode(), wall, rss, cpu


def cpu_of(proc):
    """CPU seconds (user + system) a peer process has used so far, from /proc."""
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def s3_state_env(peer):
    """cordon's state on S3 (issue 18): a fresh bucket in the run's own moto, reached through
    the same endpoint as IAM (behind the proxy's delay in the wan setting: the state is as far
    away as the provider), with the run's credentials."""
    bucket = f"cordon-state-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=peer.moto_ep, region_name="us-east-1", aws_access_key_id=peer.key,
                 aws_secret_access_key=peer.secret).create_bucket(Bucket=bucket)
    return {"CORDON_STATE": f"s3://{bucket}/bench", "AWS_ENDPOINT_URL_S3": peer.ep, "AWS_REGION": "us-east-1"}


def cordon_cmd(peer, mode, s, state=None):
    env, key, d = cordon_home(dict(peer.env, CORDON_AWS_ENDPOINT_URL=peer.ep, **(state or {})))
    auth = ["--as", "amara", "--key", key]
    first = s["users"][0]["keys"][0]
    if mode == "single":
        # The single-key path as a user meets it: a scanner's finding in, verified-dead out.
        report = os.path.join(d, "leak.txt")
        with open(report, "w") as f:
            f.write(f"{first['id']} {first['secret']}\n")
        return env, [CORDON, "--json", "respond", "--report", report, "--quarantine-user", "--severity", "critical"] + auth
    ids = [k["id"] for u in s["users"] for k in u["keys"]]
    return env, [CORDON, "--json", "revoke", "aws-key"] + ids + ["--quarantine-user", "--severity", "critical"] + auth + [
        "--concurrency", str(CONC)] + RATE_FLAG


def cordon_result(mode, stdout):
    out = json.loads(stdout)
    if mode == "single":
        f = out["findings"]
        bad = [x for x in f if x.get("status") != "contained"]
        if bad or not f:
            raise SystemExit(f"cordon respond: findings not contained: {bad or f}")
        t = out.get("time_to_dead") or {}
        return {"findings": len(f), "dead_first_s": (t.get("first_ms") or 0) / 1000,
                "dead_last_s": (t.get("last_ms") or 0) / 1000}
    bad = [(x["step"], x["outcome"]["status"], (x.get("verification") or {}).get("status")) for x in out["steps"]
           if x["outcome"]["status"] != "done" or (x.get("verification") or {}).get("status") != "dead"]
    if bad:
        raise SystemExit(f"cordon {mode}: steps not done/dead: {bad[:5]}")
    # Time to dead: from cordon's start (its process; identification and planning
    # included) until each credential-ending step (key disable, session cut-off) was
    # verified refused.
    t = out.get("time_to_dead") or {}
    if t.get("dead") != t.get("credentials"):
        raise SystemExit(f"cordon {mode}: time_to_dead says not every credential is dead: {t}")
    # The last key refused and the last session cut-off, apart (keys go first).
    split = {}
    for action, name in (("aws:disable-access-key", "keys"), ("aws:revoke-user-sessions", "cutoffs")):
        d = [x.get("dead_after_ms") for x in out["steps"] if x["action"] == action]
        if d and None not in d:
            split[f"{name}_dead_last_s"] = max(d) / 1000
    return {"steps": len(out["steps"]), "failed_steps": 0, **split,
            "credentials": t.get("credentials"), "dead_first_s": t.get("first_ms", 0) / 1000,
            "dead_last_s": t.get("last_ms", 0) / 1000,
            "attempts": sum(x.get("attempts", 1) for x in out["steps"]),
            "reads": sum(x.get("reads", 0) for x in out["steps"])}


def run(peer, name, mode, s, setting, record=True):
    """One timed run of contender `name` on seed `s`; returns a record."""
    env = dict(peer.env, PATH=BIN + os.pathsep + E["PATH"])
    if name == "cordon":
        env, cmd = cordon_cmd(peer, mode, s)
    elif name == "cordon-s3":
        env, cmd = cordon_cmd(peer, mode, s, s3_state_env(peer))
    elif name == "aws-cli":
        cmd = ["bash", os.path.join(KIT, "aws_cli_runbook.sh"), peer.ep, os.path.join(s["dir"], "seed.tsv"), mode, s["dir"]]
    elif name == "boto3":
        cmd = [PY, os.path.join(KIT, "boto3_runbook.py"), peer.ep, os.path.join(s["dir"], "seed.json"), mode, s["dir"]]
    elif name == "ceiling":
        cmd = [PY, os.path.join(KIT, "moto_ceiling.py"), peer.ep, os.path.join(s["dir"], "seed.json"), str(THREADS)]
    before = peer.stats()
    cpu_before = [cpu_of(p) for p in getattr(peer, "procs", [])]
    code, stdout, stderr, wall, rss, cpu = timed(cmd, env)
    cpu_after = [cpu_of(p) for p in getattr(peer, "procs", [])]
    after = peer.stats()
    if code != 0:
        say(stdout[-3000:], stderr[-3000:])
        raise SystemExit(f"{setting} {name} {mode}: exit {code}: not contained, not a time")
    rec = {"setting": setting, "contender": name, "mode": mode, "users": len(s["users"]),
           "keys": sum(len(u["keys"]) for u in s["users"]), "wall_s": wall, "peak_rss_mib": rss}
    if name in ("cordon", "cordon-s3"):
        rec.update(cordon_result(mode, stdout))
    else:
        rec.update(json.loads(stdout.strip().splitlines()[-1]))
    # Where the machine's CPU went during the run (2 cores shared by all three): the
    # contender (with its children), moto, and the fault proxy when there is one.
    rec["cpu_contender_s"] = cpu
    for label, b, a in zip(("cpu_moto_s", "cpu_proxy_s"), cpu_before, cpu_after):
        if a is not None and b is not None:
            rec[label] = round(a - b, 2)
    if getattr(peer, "round_trip_ms", None) is not None:
        rec["round_trip_ms"] = round(peer.round_trip_ms, 1)
    if before is not None and getattr(peer, "lag", False):
        # The lag proxy counts only the requests it aims at (--match) in `requests`:
        # every request is in `forwarded` (a lagged one once applied).
        rec["requests"] = after["forwarded"] - before["forwarded"]
        rec["lagged"] = after["faults"] - before["faults"]
        rec["rps"] = rec["requests"] / wall
    elif before is not None:
        rec["requests"] = after["requests"] - before["requests"]
        rec["throttled"] = after["faults"] - before["faults"]
        rec["rps"] = rec["requests"] / wall
    check(peer, s, mode == "single")
    if record:
        log.write(json.dumps(rec) + "\n")
        log.flush()
    say(f"  {setting:8} {name:8} {mode:6} keys={rec['keys']:5} {wall:9.3f} s  "
        + " ".join(f"{k}={v}" for k, v in rec.items() if k not in ("setting", "contender", "mode", "users", "keys", "wall_s")))
    return rec


def tally(peer, name, mode, n_users):
    """Run once (untimed) through the tracing proxy; return its request counts."""
    p = subprocess.Popen([PY, os.path.join(KIT, "trace_proxy.py"), "--listen-port", "0", "--upstream", peer.ep, "--quiet"],
                         stdout=subprocess.PIPE, text=True)
    children.append(p)
    try:
        ep = f"http://127.0.0.1:{p.stdout.readline().strip()}"
        traced = Peer.__new__(Peer)
        traced.__dict__.update(peer.__dict__, ep=ep, proxy=None)
        s = seed(peer, n_users, f"count-{name}-{mode}-{uuid.uuid4().hex[:4]}")
        run(traced, name, mode, s, "tally", record=False)
        st = json.load(urllib.request.urlopen(ep + "/__faultproxy/stats"))
        return {"requests": st["requests"], "actions": st["actions"]}
    finally:
        p.terminate()
        p.wait()


def summary(recs, key="wall_s"):
    v = sorted(r[key] for r in recs)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}


def warm(peer):
    """Untimed: moto loads its IAM/STS models and managed policies on first use. Straight
    to moto: through the throttle setting's proxy a warm-up call could meet two 429s in a
    row and abort the bench before anything is timed."""
    direct = Peer.__new__(Peer)
    direct.__dict__.update(peer.__dict__, ep=peer.moto_ep, proxy=None, procs=[], round_trip_ms=None)
    run(direct, "ceiling", "many", seed(peer, 4, f"warm-{uuid.uuid4().hex[:4]}"), "warm", record=False)


def fresh_many(setting, name, n_users, delay=0, throttle=0.0, lag=0):
    peer = Peer(delay, throttle, lag)
    try:
        s = seed(peer, n_users, f"{setting}-{name}")
        warm(peer)
        return run(peer, name, "many", s, setting)
    finally:
        peer.stop()


def singles(peer, setting, results):
    if SINGLE_REPS <= 0:
        return
    say(f"== {setting}: single key, {SINGLE_REPS} repetitions, rotating order")
    for name in ("cordon", "boto3", "aws-cli"):
        run(peer, name, "single", seed(peer, 1, f"warm-{setting}-{name}"), setting, record=False)
    single = {n: [] for n in ("cordon", "aws-cli", "boto3")}
    order = list(single)
    for r in range(SINGLE_REPS):
        for name in order[r % 3:] + order[: r % 3]:
            single[name].append(run(peer, name, "single", seed(peer, 1, f"{setting}-s{r}-{name}"), setting))
    results["single"] = {n: summary(v) for n, v in single.items()}
    # Time to dead, the same point for each: a call signed with the leaked key refused.
    results["single_dead_s"] = {n: summary(v, "dead_last_s") for n, v in single.items()
                                if v and all("dead_last_s" in x for x in v)}
    results["single_rss_mib"] = {n: max(x["peak_rss_mib"] or 0 for x in v) for n, v in single.items()}
    if single["cordon"] and "requests" in single["cordon"][0]:
        results["single_requests"] = {n: v[0]["requests"] for n, v in single.items()}


def many(setting, names, n_users, reps, results, delay=0, throttle=0.0, caps=None, lag=0):
    """`caps` limits some contenders to fewer repetitions than `reps` (a sequential script
    over 1,000 keys behind 50 ms takes over an hour a run); they run in the first ones."""
    if not names or reps <= 0:
        return
    caps = caps or {}
    say(f"== {setting}: {n_users} users x 2 keys, {reps} repetition(s), rotating order, a fresh moto per run"
        + "".join(f"; {n}: {c}" for n, c in caps.items()))
    runs = {n: [] for n in names}
    for r in range(reps):
        for name in names[r % len(names):] + names[: r % len(names)]:
            if len(runs[name]) >= caps.get(name, reps):
                continue
            runs[name].append(fresh_many(setting, name, n_users, delay, throttle, lag))
    out = {n: summary(v) for n, v in runs.items()}
    out["runs"] = runs
    results["many"] = out


def startup(results):
    """Start-up, median of 20: cordon --version vs the runbooks' floors."""
    say("== start-up (median of 20)")
    cmds = {"cordon --version": [CORDON, "--version"],
            "python3 -c 'import boto3'": [PY, "-c", "import boto3"],
            "aws --version": [os.path.join(BIN, "aws"), "--version"]}
    out = {}
    for k, cmd in cmds.items():
        t = []
        for _ in range(20):
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
            t.append(time.perf_counter() - t0)
        out[k] = statistics.median(t)
        say(f"  {k}: {out[k] * 1000:.1f} ms")
    results["startup_s"] = out


def github(results):
    """Tokens revoked per request and total requests for GH_TOKENS tokens through Prism."""
    sys.path.insert(0, KIT)
    import github_tokens as gt  # noqa: E402

    say(f"== GitHub: {GH_TOKENS} leaked tokens, one `cordon revoke github-token --stdin` through Prism")
    gh = dict(line.split("=", 1) for line in E["GITHUB_PEER_ENV"].split())
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    toks = [gt.classic_token("ghp_", f"{tag}-{i}") for i in range(GH_TOKENS)]
    gt.plant(gh["CORDON_TEST_GITHUB_REGISTRY_URL"], tag, toks)
    env, key, _ = cordon_home(dict(E, CORDON_GITHUB_API_URL=gh["CORDON_TEST_GITHUB_URL"]))
    cmd = [CORDON, "--json", "revoke", "github-token", "--stdin", "--as", "amara", "--key", key,
           "--concurrency", str(CONC)] + RATE_FLAG
    code, stdout, stderr, wall, rss, _cpu = timed(cmd, env, "\n".join(toks) + "\n")
    if code != 0:
        say(stdout[-3000:], stderr[-3000:])
        raise SystemExit(f"github: exit {code}")
    out = json.loads(stdout)
    bad = [x["step"] for x in out["steps"] if x["outcome"]["status"] != "done"
           or (x.get("verification") or {}).get("status") != "dead"]
    if bad or len(out["steps"]) != GH_TOKENS:
        raise SystemExit(f"github: {len(out['steps'])} steps, not done/dead: {bad[:5]}")
    counts = json.load(urllib.request.urlopen(f"{gh['CORDON_TEST_GITHUB_REGISTRY_URL']}/counts?tag={tag}"))
    # Checked after the counts are read (these reads carry the tag too).
    dead = gt.still_live(gh["CORDON_TEST_GITHUB_URL"], toks)
    revoke_calls = counts.get("POST /credentials/revoke", 0)
    rec = {"tokens": GH_TOKENS, "wall_s": wall, "peak_rss_mib": rss, "requests_by_endpoint": counts,
           "requests": sum(counts.values()), "revoke_requests": revoke_calls,
           "tokens_per_revoke_request": GH_TOKENS / revoke_calls if revoke_calls else None,
           "live_after": dead}
    if dead:
        raise SystemExit(f"github: {dead} tokens still live at the registry")
    log.write(json.dumps(dict(rec, setting="github")) + "\n")
    say(f"  {json.dumps(rec)}")
    results["github"] = rec


def main():
    results = {"concurrency": CONC, "rate": RATE, "threads": THREADS, "delay_ms": DELAY,
               "throttle_rate": THR_RATE, "settings": SETTINGS}
    path = os.path.join(OUT, "results.json")

    def save():
        json.dump(results, open(path, "w"), indent=1)

    startup(results)
    save()
    if "bare" in SETTINGS:
        r = results["bare"] = {"users": USERS}
        peer = Peer()
        try:
            warm(peer)
            say("== bare: request tallies through the tracing proxy (untimed): are the calls the same?")
            counts = {}
            for name in ("cordon", "boto3", "aws-cli"):
                counts[f"{name}/single"] = tally(peer, name, "single", 1)
                counts[f"{name}/many-1user"] = tally(peer, name, "many", 1)
            counts["ceiling/many-1user"] = tally(peer, "ceiling", "many", 1)
            for k, v in counts.items():
                say(f"  {k}: {v['requests']} requests")
            r["counts"] = counts
            singles(peer, "bare", r)
            save()
            if CLI_USERS:
                r["aws_cli_many"] = run(peer, "aws-cli", "many", seed(peer, CLI_USERS, "bare-cli"), "bare")
        finally:
            peer.stop()
        many("bare", ["cordon", "boto3", "ceiling"], USERS, MANY_REPS, r)
        # cordon's requests for the same size, counted once through the tracing proxy
        # (untimed, a fresh moto), to turn its wall time into requests/s.
        peer = Peer()
        try:
            warm(peer)
            r["counts"]["cordon/many-full"] = tally(peer, "cordon", "many", USERS)
        finally:
            peer.stop()
        n = r["counts"]["cordon/many-full"]["requests"]
        r["cordon_rps"] = summary([{"v": n / x["wall_s"]} for x in r["many"]["runs"]["cordon"]], "v")
        r["ceiling_rps"] = summary(r["many"]["runs"]["ceiling"], "rps")
        save()
    if "wan" in SETTINGS:
        r = results["wan"] = {"users": WAN_USERS, "delay_ms": DELAY}
        peer = Peer(DELAY)
        try:
            warm(peer)
            singles(peer, "wan", r)
        finally:
            peer.stop()
        save()
        names = [n for n in E.get("BENCH_WAN_CONTENDERS", "cordon,boto3").split(",") if n]
        if WAN_REPS <= 0:
            names = []  # the single-key comparison only
        names += ["ceiling"] if WAN_CEILING else []
        caps = {n: WAN_BOTO3_REPS for n in ("boto3",) if WAN_BOTO3_REPS < WAN_REPS}
        many("wan", names, WAN_USERS, WAN_REPS, r, delay=DELAY, caps=caps)
        if "cordon" in names:
            r["cordon_rps"] = summary(r["many"]["runs"]["cordon"], "rps")
        save()
    if "throttle" in SETTINGS:
        r = results["throttle"] = {"users": THR_USERS, "delay_ms": DELAY, "rate": THR_RATE}
        # boto3's runbook has retries off (a failed call must show): under throttling it
        # would stop at the first 429. Only cordon runs here.
        many("throttle", ["cordon"], THR_USERS, THR_REPS, r, delay=DELAY, throttle=THR_RATE)
        save()
    if "lag" in SETTINGS:
        r = results["lag"] = {"users": LAG_USERS, "delay_ms": DELAY, "lag_ms": LAG_MS}
        # Only cordon: the runbooks verify once, at the end, and would not wait.
        many("lag", ["cordon"], LAG_USERS, LAG_REPS, r, delay=DELAY, lag=LAG_MS)
        save()
    if GH_TOKENS:
        github(results)
        save()
    print(json.dumps(results, indent=1))


try:
    main()
finally:
    for p in children:
        if p.poll() is None:
            p.terminate()
