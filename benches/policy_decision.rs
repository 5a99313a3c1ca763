//! Decision latency of the authority gate: one `Policy::decide` per step,
//! building the Cedar entities and context included, for the shipped policy
//! and for a generated 200-rule policy.
//!
//! Each case is decided as the steps of one plan ask it, each about another
//! target of the same kind (10,000 distinct keys or roles), four ways
//! interleaved so that all see the same load (see [`run`]): with the
//! decision memo ("in a plan"), without it ("first of its kind": every
//! decision evaluated by Cedar), the reference way before issue 19
//! (`Policy::rebuilding_entities_per_request`: every entity, the schema's
//! actions included, built and validated per request, every request checked
//! against the schema, every policy asked), and two controls: SHA-256 of a
//! fixed buffer sized to take about as long as the decision, timed in the
//! same loop, whose p99 is what the machine's own noise makes of a fixed
//! piece of work that long. Every decision is checked against the reference
//! way before the timing starts.
//!
//! Run: `cargo bench --bench policy_decision` (N=10000 by default; set
//! `POLICY_BENCH_N` to change it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use cordon::gate::{GateInput, Principal, VerifiedApproval};
use cordon::plan::{Plan, PrincipalKind, Requester, Severity, Source, PLAN_VERSION};
use cordon::policy::{load, Policy, FILES};
use cordon_connector::{Action, PlanStep, Provider, Target};

struct Case {
    name: &'static str,
    plan: Plan,
    requester: Principal,
    approvals: Vec<VerifiedApproval>,
    expect_allow: bool,
}

fn plan(
    requester: &str,
    kind: PrincipalKind,
    source: Source,
    action: Action,
    target: Target,
) -> Plan {
    Plan {
        version: PLAN_VERSION,
        created_at: Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
        requester: Requester {
            name: requester.into(),
            kind,
        },
        source,
        severity: Severity::High,
        incident: Some("INC-1".into()),
        reason: None,
        steps: vec![PlanStep {
            id: "s1".into(),
            action,
            target,
            secret: None,
            params: Default::default(),
        }],
    }
}

fn person(name: &str) -> Principal {
    Principal {
        name: name.into(),
        kind: PrincipalKind::Person,
        verified: true,
        proof: None,
    }
}

fn approval(name: &str) -> VerifiedApproval {
    VerifiedApproval {
        signer: name.into(),
        key_fingerprint: "SHA256:bench".into(),
        signed_at: Utc.with_ymd_and_hms(2026, 11, 22, 3, 1, 0).unwrap(),
    }
}

fn cases() -> Vec<Case> {
    let mut role = Target::new(Provider::Aws, "role", "deploy-prod");
    role.environment = Some("production".into());
    role.tags.insert("team".into(), "payments".into());
    let mut key = Target::new(Provider::Aws, "access-key", "AKIAEXAMPLE000000001");
    key.environment = Some("production".into());
    vec![
        Case {
            name: "allow: responder disables a key",
            plan: plan(
                "bruno",
                PrincipalKind::Person,
                Source::Manual,
                Action::AwsDisableAccessKey,
                key.clone(),
            ),
            requester: person("bruno"),
            approvals: vec![],
            expect_allow: true,
        },
        Case {
            name: "allow: quarantine role, 1 approval",
            plan: plan(
                "bruno",
                PrincipalKind::Person,
                Source::Manual,
                Action::AwsQuarantineRole,
                role.clone(),
            ),
            requester: person("bruno"),
            approvals: vec![approval("amara")],
            expect_allow: true,
        },
        Case {
            name: "deny + missing: quarantine role",
            plan: plan(
                "bruno",
                PrincipalKind::Person,
                Source::Manual,
                Action::AwsQuarantineRole,
                role,
            ),
            requester: person("bruno"),
            approvals: vec![],
            expect_allow: false,
        },
    ]
}

/// 200 rules: per (role, action) permits with context conditions, plus
/// forbids on tags and environments; the shipped rules' shape, many times.
fn generated_policy(dir: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for f in FILES {
        std::fs::copy(shipped.join(f), dir.join(f)).unwrap();
    }
    let roles = [
        "security",
        "sre",
        "platform",
        "incident-commander",
        "comms",
        "legal",
    ];
    let kinds = ["access-key", "token", "user", "role", "deploy-key"];
    let mut text = String::new();
    let mut n = 0;
    'outer: for (i, a) in Action::ALL.iter().enumerate() {
        for (j, r) in roles.iter().enumerate() {
            for (k, kind) in kinds.iter().enumerate() {
                if n == 173 {
                    break 'outer;
                }
                let sev = 1 + (i + j + k) % 4;
                let _ = writeln!(
                    text,
                    "@id(\"gen-{n}\")\npermit (principal is Person in Role::\"{r}\", action == Action::\"{}\", resource is Target)\nwhen {{ resource.kind == \"{kind}\" && context.severity_level >= {sev} && context.approvals.owner >= {} && (resource has environment && resource.environment == \"env-{n}\") }};\n",
                    a.id(),
                    (i + k) % 3
                );
                n += 1;
            }
        }
    }
    for m in 0..10 {
        let _ = writeln!(
            text,
            "@id(\"gen-forbid-{m}\")\nforbid (principal, action, resource is Target)\nwhen {{ resource.hasTag(\"team\") && resource.getTag(\"team\") == \"frozen-{m}\" && !context.break_glass }};\n"
        );
    }
    // keep the shipped rules too, so the same cases allow
    let shipped_rules = std::fs::read_to_string(shipped.join("authority.cedar")).unwrap();
    std::fs::write(
        dir.join("authority.cedar"),
        format!("{shipped_rules}\n{text}"),
    )
    .unwrap();
}

fn sha256(buf: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(buf).into()
}

/// A buffer whose SHA-256 takes about as long as the median of `work`.
fn calibrate(mut work: impl FnMut()) -> Vec<u8> {
    let median = |f: &mut dyn FnMut()| {
        let mut v: Vec<Duration> = (0..201)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        v.sort_unstable();
        v[100]
    };
    let target = median(&mut work);
    let mut len = 1024;
    loop {
        let buf = vec![0x5a_u8; len];
        if median(&mut || {
            std::hint::black_box(sha256(std::hint::black_box(&buf)));
        }) >= target
            || len > 1 << 26
        {
            return buf;
        }
        len += len / 8;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

/// The case's plan with its target renamed for the `i`th step of a plan of
/// many (`AKIA…{i}`, `deploy-prod-{i}`): what a plan of 1,000 leaked keys
/// asks, one target after another.
fn nth(plan: &Plan, i: usize) -> Plan {
    let mut p = plan.clone();
    let t = &mut p.steps[0].target;
    t.id = match t.kind.as_str() {
        "access-key" => format!("AKIAEXAMPLE{i:09}"),
        _ => format!("{}-{i}", t.id),
    };
    p
}

/// Each case, `n` decisions each way, interleaved so that all see the same
/// load:
/// - "in a plan": `policy` with its decision memo, each decision about the
///   next of `n` distinct targets (the case's target renamed, [`nth`]), as
///   the steps of one plan ask; the first is evaluated by Cedar, the others
///   are answered from the memo when no policy reads what differs;
/// - "first of its kind": `cold`, the same policy without the memo, the same
///   targets: what a decision Cedar evaluates costs;
/// - "rebuilt": every entity and every policy per request, no memo (the
///   way before issue 19);
/// - two controls: SHA-256 of fixed buffers sized to take as long as the
///   median "in a plan" and "first of its kind" decisions.
fn run(
    label: &str,
    policy: &Policy,
    cold: &Policy,
    rebuilt: &Policy,
    n: usize,
    out: &mut Vec<String>,
) {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 3, 5, 0).unwrap();
    for c in cases() {
        let plans: Vec<Plan> = (0..n).map(|i| nth(&c.plan, i)).collect();
        fn gate_input<'a>(p: &'a Plan, c: &'a Case, now: DateTime<Utc>) -> GateInput<'a> {
            GateInput {
                plan_id: "bench",
                plan: p,
                step: &p.steps[0],
                requester: &c.requester,
                approvals: &c.approvals,
                break_glass: None,
                now,
            }
        }
        let input = |p| gate_input(p, &c, now);
        // Every decision of the run, checked against the reference way
        // before anything is timed.
        for p in &plans {
            let d = policy.decide(&input(p));
            assert_eq!(d.is_allow(), c.expect_allow, "{label} / {}: {d:?}", c.name);
            assert!(d.errors.is_empty(), "{d:?}");
            assert_eq!(d, rebuilt.decide(&input(p)), "{label} / {}", c.name);
            assert_eq!(d, cold.decide(&input(p)), "{label} / {}", c.name);
        }
        // The timed plan starts afresh: a policy loaded again, its memo
        // empty, so its first decision is evaluated by Cedar.
        let policy = load(policy.dir()).unwrap();
        let hits_before = policy.decision_memo_hits();
        // The controls: fixed work (SHA-256 of a buffer sized so that it
        // takes about as long as the decision), timed in the same loop. Its
        // work never varies, so its tail above its median is what the
        // machine adds (other processes, interrupts, frequency): the floor
        // under any p99 of work this long here.
        let warm = load(policy.dir()).unwrap();
        let mut k = 0;
        let control_plan = calibrate(|| {
            k += 1;
            std::hint::black_box(warm.decide(&input(&plans[k % n])));
        });
        let control_cold = calibrate(|| {
            k += 1;
            std::hint::black_box(cold.decide(&input(&plans[k % n])));
        });
        let mut times = Vec::with_capacity(n);
        let mut first = Vec::with_capacity(n);
        let mut before = Vec::with_capacity(n);
        let mut fixed_plan = Vec::with_capacity(n);
        let mut fixed_cold = Vec::with_capacity(n);
        for p in &plans {
            let i = input(p);
            let t = Instant::now();
            std::hint::black_box(policy.decide(std::hint::black_box(&i)));
            times.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(cold.decide(std::hint::black_box(&i)));
            first.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(rebuilt.decide(std::hint::black_box(&i)));
            before.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(sha256(std::hint::black_box(&control_plan)));
            fixed_plan.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(sha256(std::hint::black_box(&control_cold)));
            fixed_cold.push(t.elapsed());
        }
        let hits = policy.decision_memo_hits() - hits_before;
        let worst = times.iter().max().copied().unwrap_or_default();
        for v in [
            &mut times,
            &mut first,
            &mut before,
            &mut fixed_plan,
            &mut fixed_cold,
        ] {
            v.sort_unstable();
        }
        let us = |v: &[Duration], p: f64| percentile(v, p).as_secs_f64() * 1e6;
        out.push(format!(
            "| {label:<22} | {:<34} | {n:>6} | {:>7.1} | {:>7.1} | {:>7.1} | {hits:>6} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
            c.name,
            us(&times, 0.5),
            us(&times, 0.99),
            worst.as_secs_f64() * 1e6,
            us(&first, 0.5),
            us(&first, 0.99),
            us(&before, 0.5),
            us(&before, 0.99),
            us(&fixed_plan, 0.5),
            us(&fixed_plan, 0.99),
            us(&fixed_cold, 0.5),
            us(&fixed_cold, 0.99),
        ));
    }
}

fn main() {
    let n: usize = std::env::var("POLICY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let shipped_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    // Loading (parsing, validating, and the sets and stores built once) is
    // paid by every command: shown so that a shortcut bought with load time
    // shows.
    let t = Instant::now();
    let shipped = load(&shipped_dir).unwrap();
    let load_shipped = t.elapsed();
    let shipped_cold = load(&shipped_dir).unwrap().without_decision_memo();
    let shipped_rebuilt = load(&shipped_dir)
        .unwrap()
        .rebuilding_entities_per_request();
    let dir = tempfile::tempdir().unwrap();
    generated_policy(dir.path());
    let t = Instant::now();
    let generated = load(dir.path()).unwrap();
    let load_generated = t.elapsed();
    let generated_cold = load(dir.path()).unwrap().without_decision_memo();
    let generated_rebuilt = load(dir.path()).unwrap().rebuilding_entities_per_request();
    let mut rows = vec![
        "| policy                 | case                               |      n | in a plan: median µs | p99 | max | memo hits | first of its kind: median µs | p99 | rebuilt: median µs | p99 | control (plan): median µs | p99 | control (first): median µs | p99 |".to_string(),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_string(),
    ];
    run(
        &format!("shipped ({} rules)", shipped.policies().len()),
        &shipped,
        &shipped_cold,
        &shipped_rebuilt,
        n,
        &mut rows,
    );
    run(
        &format!("generated ({} rules)", generated.policies().len()),
        &generated,
        &generated_cold,
        &generated_rebuilt,
        n,
        &mut rows,
    );
    println!("{}", rows.join("\n"));
    // The first decision of a loaded policy builds what it builds lazily
    // (the member's policy sets; with the memo, what the policies read).
    let c = &cases()[0];
    let input = GateInput {
        plan_id: "bench",
        plan: &c.plan,
        step: &c.plan.steps[0],
        requester: &c.requester,
        approvals: &c.approvals,
        break_glass: None,
        now: Utc.with_ymd_and_hms(2026, 11, 22, 3, 5, 0).unwrap(),
    };
    for (name, d) in [
        ("shipped", shipped_dir.as_path()),
        ("generated", dir.path()),
    ] {
        let mut line = format!("first decision after load, {name}:");
        for memo in [true, false] {
            let mut v: Vec<Duration> = (0..7)
                .map(|_| {
                    let p = load(d).unwrap();
                    let p = if memo { p } else { p.without_decision_memo() };
                    let t = Instant::now();
                    std::hint::black_box(p.decide(&input));
                    t.elapsed()
                })
                .collect();
            v.sort_unstable();
            let _ = write!(
                line,
                " {} {:.2} ms (median of 7);",
                if memo { "with the memo" } else { "without" },
                v[3].as_secs_f64() * 1e3
            );
        }
        println!("{line}");
    }
    println!(
        "load: shipped {:.1} ms, generated {:.1} ms",
        load_shipped.as_secs_f64() * 1e3,
        load_generated.as_secs_f64() * 1e3
    );
}
