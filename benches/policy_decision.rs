//! Decision latency of the authority gate: one `Policy::decide` per step,
//! building the Cedar entities and context included, for the shipped policy
//! and for a generated 200-rule policy.
//!
//! Each case side by side with the same policy decided the reference way
//! (`Policy::rebuilding_entities_per_request`: every entity, the schema's
//! actions included, built and validated per request, every request checked
//! against the schema, every policy asked; how cordon decided before the
//! per-action entity stores, the per-shape schema checks and the narrowed
//! policy sets), alternating the two so both run under the same load, and
//! beside them a control: SHA-256 of a fixed buffer sized to take about as
//! long as the case's decision, timed in the same loop, whose p99 is what the
//! machine's own noise makes of a fixed piece of work that long.
//!
//! Run: `cargo bench --bench policy_decision` (N=10000 by default; set
//! `POLICY_BENCH_N` to change it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
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

/// Each case decided `n` times by `policy` (entities shared across requests)
/// and `n` times by the same policy rebuilding every entity per request (the
/// way before), alternating one and the other so both see the same load.
fn run(label: &str, policy: &Policy, rebuilt: &Policy, n: usize, out: &mut Vec<String>) {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 3, 5, 0).unwrap();
    for c in cases() {
        let input = GateInput {
            plan_id: "bench",
            plan: &c.plan,
            step: &c.plan.steps[0],
            requester: &c.requester,
            approvals: &c.approvals,
            break_glass: None,
            now,
        };
        let d = policy.decide(&input);
        assert_eq!(d.is_allow(), c.expect_allow, "{label} / {}: {d:?}", c.name);
        assert!(d.errors.is_empty(), "{d:?}");
        assert_eq!(d, rebuilt.decide(&input), "{label} / {}", c.name);
        // warm up
        for _ in 0..(n / 20).max(10) {
            std::hint::black_box(policy.decide(&input));
            std::hint::black_box(rebuilt.decide(&input));
        }
        // The control: a fixed piece of work (SHA-256 of a buffer sized so that
        // it takes about as long as this case's decision), timed in the same
        // loop. Its work never varies, so its tail above its median is what
        // the machine adds (other processes, interrupts, frequency): the
        // floor under any p99 of work this long here.
        let control = calibrate(|| {
            std::hint::black_box(policy.decide(std::hint::black_box(&input)));
        });
        let mut times = Vec::with_capacity(n);
        let mut before = Vec::with_capacity(n);
        let mut fixed = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            std::hint::black_box(policy.decide(std::hint::black_box(&input)));
            times.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(rebuilt.decide(std::hint::black_box(&input)));
            before.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(sha256(std::hint::black_box(&control)));
            fixed.push(t.elapsed());
        }
        times.sort_unstable();
        before.sort_unstable();
        fixed.sort_unstable();
        let us = |v: &[Duration], p: f64| percentile(v, p).as_secs_f64() * 1e6;
        out.push(format!(
            "| {label:<22} | {:<34} | {n:>6} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>5.1}x | {:>8.1} | {:>8.1} |",
            c.name,
            us(&times, 0.5),
            us(&times, 0.99),
            us(&before, 0.5),
            us(&before, 0.99),
            us(&before, 0.5) / us(&times, 0.5),
            us(&fixed, 0.5),
            us(&fixed, 0.99),
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
    let shipped_rebuilt = load(&shipped_dir)
        .unwrap()
        .rebuilding_entities_per_request();
    let dir = tempfile::tempdir().unwrap();
    generated_policy(dir.path());
    let t = Instant::now();
    let generated = load(dir.path()).unwrap();
    let load_generated = t.elapsed();
    let generated_rebuilt = load(dir.path()).unwrap().rebuilding_entities_per_request();
    let mut rows = vec![
        "| policy                 | case                               |      n | median µs | p99 µs   | rebuilt: median µs | p99 µs | median ratio | control: median µs | p99 µs |".to_string(),
        "|------------------------|------------------------------------|--------|----------|----------|----------|----------|--------|----------|----------|".to_string(),
    ];
    run(
        &format!("shipped ({} rules)", shipped.policies().len()),
        &shipped,
        &shipped_rebuilt,
        n,
        &mut rows,
    );
    run(
        &format!("generated ({} rules)", generated.policies().len()),
        &generated,
        &generated_rebuilt,
        n,
        &mut rows,
    );
    println!("{}", rows.join("\n"));
    println!(
        "load: shipped {:.1} ms, generated {:.1} ms",
        load_shipped.as_secs_f64() * 1e3,
        load_generated.as_secs_f64() * 1e3
    );
}
