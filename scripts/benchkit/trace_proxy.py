#!/usr/bin/env python3
"""peers/faultproxy/proxy.py (--delay-ms only) that also counts requests per API action.

Used by scripts/bench to check that every contender makes the same calls, and to
count them: GET /__faultproxy/stats answers the proxy's counters plus
{"actions": {"iam:GetUser": n, ...}}; POST /__faultproxy/reset-actions clears them.
Same flags as proxy.py; binds 127.0.0.1; prints its port first."""
import collections
import os
import sys
import threading
import urllib.parse

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "peers", "faultproxy"))
import proxy  # noqa: E402

_lock = threading.Lock()
_actions: collections.Counter = collections.Counter()
_orig_handle = proxy.Handler._handle
_orig_forward = proxy.Handler._forward
_orig_stats = proxy.State.stats


def _forward(self, body, selected=False):
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    action = (form.get("Action") or ["?"])[0]
    auth = self.headers.get("Authorization", "")
    svc = "?"
    if "Credential=" in auth:
        parts = auth.split("Credential=", 1)[1].split(",")[0].split("/")
        if len(parts) >= 4:
            svc = parts[3]
    status, headers, data = _orig_forward(self, body, selected)
    with _lock:
        _actions[f"{svc}:{action}" + ("" if status < 400 else f"!{status}")] += 1
    return status, headers, data


def _handle(self):
    if self.path == "/__faultproxy/reset-actions":
        self._read_body()
        with _lock:
            _actions.clear()
        self._reply(200, [("Content-Type", "application/json")], b"{}")
        return
    return _orig_handle(self)


def _stats(self):
    s = _orig_stats(self)
    with _lock:
        s["actions"] = dict(sorted(_actions.items()))
    return s


proxy.Handler._forward = _forward
proxy.Handler._handle = _handle  # every do_* calls self._handle (through _serve)
proxy.State.stats = _stats

if __name__ == "__main__":
    sys.exit(proxy.main())
