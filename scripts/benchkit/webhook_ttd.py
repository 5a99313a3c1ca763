#!/usr/bin/env python3
"""Time from a GitHub secret-scanning alert webhook to the leaked token verified refused
(issue 19's goal: <= 2 s behind 50 ms), measured by `cordon agent` itself: each event's
summary in agent/done/ carries time_to_dead from the delivery's receipt. Run by
scripts/bench-webhook (which starts the GitHub peer and a 50 ms proxy in front of it).

Env: CORDON (binary), GH_API (Prism, or the proxy in front of it), GH_REGISTRY,
REPS [5]. Prints one JSON line per delivery and a summary."""
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from github_tokens import classic_token  # noqa: E402

E = os.environ
CORDON, API, REG = E["CORDON"], E["GH_API"], E["GH_REGISTRY"]
REPS = int(E.get("REPS", "5"))
HOOK = "webhook-secret-for-the-bench"


def post(url, body, headers=None):
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req) as r:
        return r.status, r.read()


def main():
    tag = f"whbench-{os.getpid()}"
    cordon_tok = classic_token("ghp_", f"{tag}-cordon")
    home = tempfile.mkdtemp(prefix="cordon-webhook-")
    env = {k: v for k, v in E.items() if not k.startswith("CORDON_") and k not in ("CI", "GITHUB_TOKEN")}
    env.update(CORDON_HOME=os.path.join(home, "home"), CORDON_DEMO="1", CORDON_WEBHOOK_SECRET=HOOK,
               CORDON_AGENT_SECRET="cordon-example-agent-secret-replace-me", GITHUB_TOKEN=cordon_tok,
               CORDON_GITHUB_API_URL=API)
    subprocess.run([CORDON, "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    post(f"{REG}/tokens", json.dumps({"tag": tag, "login": "cordon-bot", "scopes": ["repo"], "token": cordon_tok}).encode())
    agent = subprocess.Popen([CORDON, "agent", "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        addr = agent.stdout.readline().strip().removeprefix("listening on ")
        results = []
        for i in range(REPS):
            leaked = classic_token("ghp_", f"{tag}-leaked-{i}")
            post(f"{REG}/tokens", json.dumps({"tag": tag, "login": "octo-bot", "scopes": ["repo"], "token": leaked}).encode())
            _, out = post(f"{REG}/secret-scanning-alerts", json.dumps({
                "tag": tag, "owner": tag, "repo": "app", "secret": leaked,
                "secret_type": "github_personal_access_token",
                "locations": [{"path": "ci/deploy.yml", "start_line": 12,
                               "commit_sha": "6f1c0ffee6f1c0ffee6f1c0ffee6f1c0ffee6f1c"}]}).encode())
            number = json.loads(out)["number"]
            body = json.dumps({"action": "created",
                               "alert": {"number": number, "secret_type": "github_personal_access_token",
                                         "html_url": f"https://github.com/{tag}/app/security/secret-scanning/{number}"},
                               "repository": {"full_name": f"{tag}/app", "name": "app", "owner": {"login": tag}}}).encode()
            sig = "sha256=" + hmac.new(HOOK.encode(), body, hashlib.sha256).hexdigest()
            done_dir = os.path.join(env["CORDON_HOME"], "agent", "done")
            before = set(os.listdir(done_dir)) if os.path.isdir(done_dir) else set()
            t0 = time.perf_counter()
            code, _ = post(f"http://{addr}/github", body, {"X-GitHub-Event": "secret_scanning_alert",
                                                             "X-GitHub-Delivery": f"{tag}-{i}", "X-Hub-Signature-256": sig})
            assert code == 202, code
            while True:
                new = (set(os.listdir(done_dir)) if os.path.isdir(done_dir) else set()) - before
                if new:
                    break
                if time.perf_counter() - t0 > 120:
                    raise SystemExit("no event summary after 120 s")
                time.sleep(0.02)
            seen = time.perf_counter() - t0
            d = json.load(open(os.path.join(done_dir, new.pop())))
            t = (d.get("result") or {}).get("time_to_dead") or {}
            rec = {"delivery": i, "dead_after_receipt_ms": t.get("last_ms"), "dead": t.get("dead"),
                   "credentials": t.get("credentials"), "summary_seen_s": round(seen, 3)}
            print(json.dumps(rec), flush=True)
            if t.get("dead") != t.get("credentials") or not t.get("dead"):
                raise SystemExit(f"not verified dead: {d}")
            results.append(t["last_ms"])
        print(json.dumps({"reps": REPS, "median_ms": statistics.median(results), "min_ms": min(results),
                          "max_ms": max(results)}))
    finally:
        agent.terminate()
        agent.wait()


main()
