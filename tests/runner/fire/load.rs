//! `cordon agent` under load: many distinct signed deliveries from many
//! threads on loopback, with duplicates of some delivery ids racing their
//! originals. Every distinct event is accepted exactly once (202), every
//! duplicate refused (409), each accepted event processed exactly once (one
//! `done/` record, one `finding` audit record), and after a graceful stop
//! and a restart that drains what was left, nothing stays in the inbox.
//!
//! The events are GitHub secret scanning alerts that this agent cannot fetch
//! (no GitHub credential): each becomes a not-containable finding without a
//! network call, so the test measures the agent, not the peers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{seed, Rng};
use crate::agent::{alert_payload, http, sign, Agent};
use crate::support::Env;

fn count(env: &Env, dir: &str, suffix: &str) -> usize {
    std::fs::read_dir(env.home.join(dir))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn fire_load_agent_keeps_every_event_once_under_concurrent_deliveries() {
    let distinct: usize = std::env::var("CORDON_FIRE_LOAD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dups = distinct / 5;
    let threads = 16;
    let env = Env::new();
    let agent = Agent::start(&env, &[]);
    // The deliveries: every id once, the first `dups` ids twice, shuffled.
    let mut rng = Rng(seed("fire_load"));
    let mut jobs: Vec<usize> = (0..distinct).chain(0..dups).collect();
    for i in (1..jobs.len()).rev() {
        jobs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let jobs = Arc::new(Mutex::new(jobs));
    let results: Arc<Mutex<HashMap<usize, Vec<u16>>>> = Arc::default();
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (jobs, results, addr) = (jobs.clone(), results.clone(), agent.addr.clone());
            std::thread::spawn(move || loop {
                let Some(i) = jobs.lock().unwrap().pop() else {
                    return;
                };
                let payload = alert_payload("load-org", "app", i as u64 + 1);
                let id = format!("load-{i}");
                let (code, body) = http(
                    &addr,
                    "POST",
                    "/github",
                    &[
                        ("X-GitHub-Event", "secret_scanning_alert"),
                        ("X-GitHub-Delivery", &id),
                        ("X-Hub-Signature-256", &sign(&payload)),
                    ],
                    &payload,
                );
                assert!(code == 202 || code == 409, "{id}: {code} {body}");
                results.lock().unwrap().entry(i).or_default().push(code);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let sent = t.elapsed();
    let results = results.lock().unwrap();
    for i in 0..distinct {
        let mut codes = results[&i].clone();
        codes.sort_unstable();
        let want: &[u16] = if i < dups { &[202, 409] } else { &[202] };
        assert_eq!(codes, want, "delivery load-{i}");
    }
    // Stop at once: what was not processed yet stays in the inbox ...
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    let left_line = out
        .lines()
        .find(|l| l.contains("events processed"))
        .unwrap_or_else(|| panic!("{out}\n{err}"))
        .to_owned();
    let inbox_left = count(&env, "agent/inbox", ".json");
    assert!(
        left_line.contains(&format!("{inbox_left} left")),
        "{left_line}: {inbox_left} in the inbox"
    );
    // ... and a restart drains it.
    let agent = Agent::start(&env, &[]);
    let t2 = Instant::now();
    while count(&env, "agent/done", ".json") < distinct {
        assert!(
            t2.elapsed() < Duration::from_secs(300),
            "only {} of {distinct} done",
            count(&env, "agent/done", ".json")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, out, err) = agent.stop();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("0 left"), "{out}");
    let drained = t.elapsed();
    assert_eq!(count(&env, "agent/done", ".json"), distinct);
    assert_eq!(count(&env, "agent/inbox", ".json"), 0, "inbox not empty");
    // Each event processed once: one finding record per delivery.
    let recs = env.records();
    let mut origins: HashMap<String, usize> = HashMap::new();
    for r in recs.iter().filter(|r| r["kind"] == "finding") {
        let o = r["data"]["origin"]
            .as_str()
            .or_else(|| r["data"]["report"]["origin"].as_str())
            .unwrap_or_else(|| panic!("finding without origin: {r:#}"))
            .to_owned();
        *origins.entry(o).or_default() += 1;
    }
    assert_eq!(origins.len(), distinct, "{origins:?}");
    assert!(origins.values().all(|&n| n == 1), "{origins:?}");
    assert!(env.run(&["log", "verify"]).status.success());
    eprintln!(
        "fire_load: {} deliveries ({distinct} distinct, {dups} duplicates) from {threads} threads in {sent:?}; all processed after {drained:?}; {inbox_left} left at the first stop",
        distinct + dups
    );
}

/// Regression: `cordon agent` printed `listening on ...` before it watched
/// SIGTERM/SIGINT (the handlers were only installed when the server first
/// polled its shutdown future), so a supervisor stopping it right after it
/// announced itself killed it outright (default signal action) instead of
/// stopping it gracefully. Found by the load test above, whose restarted
/// agent had nothing left to do and was stopped at once.
#[test]
fn fire_agent_stopped_right_after_it_says_listening_stops_gracefully() {
    let env = Env::new();
    for i in 0..5 {
        let agent = Agent::start(&env, &[]);
        let (code, out, err) = agent.stop();
        assert_eq!(
            code,
            Some(0),
            "start {i}: not a graceful stop:\n{out}\n{err}"
        );
        assert!(
            out.contains("stopped: 0 events processed"),
            "start {i}: {out}"
        );
    }
}
