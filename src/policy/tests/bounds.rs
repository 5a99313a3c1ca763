//! Stop conditions and the halt switch at the gate (`policy::bounds`).

use chrono::Duration;
use cordon_connector::{Action, PlanStep, Provider};

use super::*;
use crate::gate::Gate;
use crate::policy::{Bounds, PolicyGate};

fn key_step(i: usize, account: &str) -> PlanStep {
    let mut t = target(
        Provider::Aws,
        "access-key",
        &format!("AKIAEXAMPLE{i:06}"),
        None,
    );
    t.account = Some(account.into());
    PlanStep {
        id: format!("s{i}"),
        action: Action::AwsDisableAccessKey,
        target: t,
        secret: None,
        params: Default::default(),
    }
}

fn ci_plan(n: usize, accounts: usize) -> Plan {
    let mut p = plan(
        "ci",
        PrincipalKind::Automation,
        Source::Ci,
        Severity::High,
        Action::AwsDisableAccessKey,
        target(Provider::Aws, "access-key", "AKIA", None),
    );
    p.steps = (0..n)
        .map(|i| key_step(i, &format!("{:012}", 100 + i % accounts)))
        .collect();
    p
}

/// A policy directory whose roster sets `limits` for ci.
fn with_ci_limits(limits: &str) -> (tempfile::TempDir, Policy) {
    let d = copy_shipped();
    let roster = std::fs::read_to_string(d.path().join("roster.toml")).unwrap();
    let start = roster.find("[limits.ci]").unwrap();
    let end = roster.find("[limits.agent]").unwrap();
    let roster = format!(
        "{}[limits.ci]\n{limits}\n\n{}",
        &roster[..start],
        &roster[end..]
    );
    std::fs::write(d.path().join("roster.toml"), roster).unwrap();
    let p = load_dir(d.path()).unwrap();
    (d, p)
}

fn decide_all(
    gate: &PolicyGate,
    plan: &Plan,
    who: &Principal,
    approvers: &[&str],
    minutes: i64,
) -> Vec<Decision> {
    let approvals = approvals(approvers);
    plan.steps
        .iter()
        .map(|s| {
            gate.decide(&GateInput {
                plan_id: "0123456789abcdef",
                plan,
                step: s,
                requester: who,
                approvals: &approvals,
                break_glass: None,
                now: t0() + Duration::minutes(minutes),
            })
        })
        .collect()
}

#[test]
fn ci_past_its_window_limit_is_stopped_and_the_rest_wait_for_a_person() {
    let (d, p) = with_ci_limits("max_credentials_per_window = 20\nwindow_minutes = 60");
    let state = tempfile::tempdir().unwrap();
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(state.path(), &[], None));
    let plan = ci_plan(50, 1);
    let ci = principal("ci", PrincipalKind::Automation, true);
    let ds = decide_all(&gate, &plan, &ci, &[], 0);
    assert_eq!(ds.iter().filter(|d| d.is_allow()).count(), 20);
    let stopped: Vec<&Decision> = ds.iter().filter(|d| !d.is_allow()).collect();
    assert_eq!(stopped.len(), 30);
    for s in stopped {
        let why = s.stopped.as_deref().unwrap();
        assert!(
            why.starts_with("stopped by limit `max_credentials_per_window` of `ci`"),
            "{why}"
        );
        assert!(why.contains("at most 20 credentials per 60 min"), "{why}");
        assert!(s.missing[0].contains("approval"), "{:?}", s.missing);
        // The rules allowed it: the permit is still named.
        assert_eq!(s.policies, vec!["ci-contains-leaked-credentials"]);
    }
    // Deciding an already counted target again does not count twice.
    let again = decide_all(&gate, &ci_plan(20, 1), &ci, &[], 1);
    assert!(again.iter().all(Decision::is_allow));
    // After the window, the budget is back.
    let later = decide_all(&gate, &plan, &ci, &[], 61);
    assert_eq!(later.iter().filter(|d| d.is_allow()).count(), 20);
    drop(d);
}

#[test]
fn the_window_counts_allows_already_in_the_audit_log() {
    let (_d, p) = with_ci_limits("max_credentials_per_window = 3");
    let state = tempfile::tempdir().unwrap();
    let log = crate::audit::AuditLog::new(state.path().join("audit.log"), state.path().join("t"));
    let ci = principal("ci", PrincipalKind::Automation, true);
    let earlier = ci_plan(2, 1);
    for s in &earlier.steps {
        let mut r = crate::audit::RecordDraft::new(crate::audit::Kind::Decision, ci.clone());
        r.time = t0();
        r.action = Some(s.action.id().into());
        r.target = Some(s.target.clone());
        r.decision = Some(Decision {
            effect: crate::gate::Effect::Allow,
            policies: vec!["ci-contains-leaked-credentials".into()],
            policy_hash: "x".into(),
            errors: vec![],
            missing: vec![],
            break_glass: false,
            stopped: None,
            reasons: vec![],
        });
        log.append(r).unwrap();
    }
    let records = log.read_all().unwrap();
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(state.path(), &records, None));
    let mut plan = ci_plan(5, 1);
    // Fresh targets, not the two already acted on.
    for (i, s) in plan.steps.iter_mut().enumerate() {
        s.target.id = format!("AKIANEW{i:010}");
    }
    let ds = decide_all(&gate, &plan, &ci, &[], 5);
    assert_eq!(
        ds.iter().filter(|d| d.is_allow()).count(),
        1,
        "3 - 2 earlier"
    );
}

#[test]
fn an_owner_approval_lifts_the_limits_for_the_plan_but_an_automation_approval_does_not() {
    let (_d, p) = with_ci_limits("max_credentials_per_window = 2\nmax_accounts_per_plan = 1");
    let state = tempfile::tempdir().unwrap();
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(state.path(), &[], None));
    let plan = ci_plan(6, 3);
    let ci = principal("ci", PrincipalKind::Automation, true);
    let ds = decide_all(&gate, &plan, &ci, &["agent"], 0);
    assert_eq!(ds.iter().filter(|d| d.is_allow()).count(), 2);
    // Steps in the second and third account stop on the account limit.
    assert!(ds[1]
        .stopped
        .as_deref()
        .unwrap()
        .contains("max_accounts_per_plan"));
    // bruno holds `security`, the contain owner role.
    let ds = decide_all(&gate, &plan, &ci, &["bruno"], 0);
    assert!(ds.iter().all(Decision::is_allow), "{ds:#?}");
}

#[test]
fn severity_and_environment_gates() {
    let (_d, p) = with_ci_limits("min_severity = \"critical\"\nenvironments = [\"staging\"]");
    let state = tempfile::tempdir().unwrap();
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(state.path(), &[], None));
    let ci = principal("ci", PrincipalKind::Automation, true);
    let plan = ci_plan(1, 1);
    let d = &decide_all(&gate, &plan, &ci, &[], 0)[0];
    assert!(
        d.stopped.as_deref().unwrap().contains("min_severity"),
        "{d:?}"
    );
    let mut plan = ci_plan(1, 1);
    plan.severity = Severity::Critical;
    let d = &decide_all(&gate, &plan, &ci, &[], 0)[0];
    assert!(
        d.stopped.as_deref().unwrap().contains("`environments`"),
        "{d:?}"
    );
    plan.steps[0].target.environment = Some("staging".into());
    assert!(decide_all(&gate, &plan, &ci, &[], 0)[0].is_allow());
}

#[test]
fn the_halt_switch_stops_every_automation_principal_but_not_people() {
    let p = shipped();
    let state = tempfile::tempdir().unwrap();
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(state.path(), &[], None));
    let ci = principal("ci", PrincipalKind::Automation, true);
    let plan = ci_plan(1, 1);
    assert!(decide_all(&gate, &plan, &ci, &[], 0)[0].is_allow());
    let h = crate::halt::Halt {
        statement: crate::halt::Statement::new("halt", "poisoned scanner feed", t0()),
        by: "amara".into(),
        key_fingerprint: "SHA256:x".into(),
        signature: "sig".into(),
    };
    std::fs::write(
        crate::halt::path(state.path()),
        serde_json::to_vec(&h).unwrap(),
    )
    .unwrap();
    let d = &decide_all(&gate, &plan, &ci, &["bruno"], 0)[0];
    assert!(!d.is_allow());
    let why = d.stopped.as_deref().unwrap();
    assert!(why.starts_with("halted by `amara`"), "{why}");
    assert!(why.contains("poisoned scanner feed"), "{why}");
    // A person still acts.
    let mut pplan = ci_plan(1, 1);
    pplan.requester = Requester {
        name: "bruno".into(),
        kind: PrincipalKind::Person,
    };
    pplan.source = Source::Manual;
    let bruno = principal("bruno", PrincipalKind::Person, true);
    assert!(decide_all(&gate, &pplan, &bruno, &[], 0)[0].is_allow());
    // An unreadable switch halts too (fail closed).
    std::fs::write(crate::halt::path(state.path()), b"{not json").unwrap();
    let d = &decide_all(&gate, &plan, &ci, &[], 0)[0];
    assert!(
        d.stopped.as_deref().unwrap().contains("cannot be read"),
        "{d:?}"
    );
    std::fs::remove_file(crate::halt::path(state.path())).unwrap();
    assert!(decide_all(&gate, &plan, &ci, &[], 0)[0].is_allow());
}

#[test]
fn without_state_an_automation_principal_with_limits_is_stopped() {
    let gate = PolicyGate::from(shipped());
    let ci = principal("ci", PrincipalKind::Automation, true);
    let d = &decide_all(&gate, &ci_plan(1, 1), &ci, &[], 0)[0];
    assert!(d.stopped.is_some(), "{d:?}");
}

#[test]
fn the_assistant_never_acts_on_production_or_unlabelled_targets() {
    let p = shipped();
    let a = principal("assistant", PrincipalKind::Automation, true);
    for env in [None, Some("production")] {
        let pl = plan(
            "assistant",
            PrincipalKind::Automation,
            Source::Assistant,
            Severity::Critical,
            Action::AwsDisableAccessKey,
            target(Provider::Aws, "access-key", "AKIAEXAMPLE", env),
        );
        let d = decide(&p, &pl, &a, &["bruno", "amara"], 30, false);
        assert!(!d.is_allow(), "{env:?}: {d:?}");
        assert!(
            d.policies
                .contains(&"assistant-never-acts-on-production".to_owned()),
            "{d:?}"
        );
    }
    let pl = plan(
        "assistant",
        PrincipalKind::Automation,
        Source::Assistant,
        Severity::High,
        Action::GithubRevokeToken,
        target(Provider::Github, "token", "fp", Some("staging")),
    );
    let d = decide(&p, &pl, &a, &[], 0, false);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(
        d.policies,
        vec!["assistant-contains-nonproduction-credentials"]
    );
}

#[test]
fn limits_are_checked_by_policy_check() {
    let (d, _) = with_ci_limits("max_credentials_per_window = 20");
    let roster = std::fs::read_to_string(d.path().join("roster.toml")).unwrap();
    for (bad, says) in [
        ("[limits.ci]\nmax_credentials_per_window = 0", "is 0"),
        (
            "[limits.nobody]\nmax_accounts_per_plan = 2",
            "not an automation principal",
        ),
        (
            "[limits.ci]\nwindow_minutes = 10",
            "without max_credentials_per_window",
        ),
        ("[limits.ci]\nenvironments = []", "environments is empty"),
        ("[limits.ci]\nmax_per_hour = 3", "unknown field"),
    ] {
        let start = roster.find("[limits.ci]").unwrap();
        let end = roster.find("[limits.agent]").unwrap();
        let r = format!("{}{bad}\n\n{}", &roster[..start], &roster[end..]);
        std::fs::write(d.path().join("roster.toml"), r).unwrap();
        let findings = crate::policy::check(d.path(), true);
        assert!(
            findings.iter().any(|f| f.message.contains(says)),
            "{bad}: {findings:#?}"
        );
    }
    // An automation principal without limits is a warning.
    let start = roster.find("[limits.ci]").unwrap();
    let end = roster.find("[limits.agent]").unwrap();
    std::fs::write(
        d.path().join("roster.toml"),
        format!("{}{}", &roster[..start], &roster[end..]),
    )
    .unwrap();
    let findings = crate::policy::check(d.path(), true);
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("automation `ci` has no stop conditions")),
        "{findings:#?}"
    );
}

/// On a shared state the switch is the audit log's latest halt record (no
/// file on any machine): a halt recorded elsewhere stops automation here, and
/// a later resume record releases it.
#[test]
fn a_halt_recorded_in_the_shared_log_stops_automation_on_every_machine() {
    let p = shipped();
    let state = tempfile::tempdir().unwrap();
    let log = crate::audit::AuditLog::new(state.path().join("audit.log"), state.path().join("t"));
    let amara = principal("amara", PrincipalKind::Person, true);
    let record = |action: &str, reason: &str| {
        let mut r = crate::audit::RecordDraft::new(crate::audit::Kind::Halt, amara.clone());
        r.data = Some(serde_json::json!({
            "action": action,
            "statement": crate::halt::Statement::new(action, reason, t0()),
            "key_fingerprint": "SHA256:x",
            "signature": "sig",
        }));
        log.append(r).unwrap();
    };
    let ci = principal("ci", PrincipalKind::Automation, true);
    let plan = ci_plan(1, 1);
    record("halt", "poisoned scanner feed");
    // Another machine's state directory: no halt file there.
    let elsewhere = tempfile::tempdir().unwrap();
    assert!(!crate::halt::path(elsewhere.path()).exists());
    let gate = PolicyGate::from(shipped()).with_bounds(Bounds::new(
        elsewhere.path(),
        &log.read_all().unwrap(),
        None,
    ));
    let d = &decide_all(&gate, &plan, &ci, &[], 0)[0];
    assert!(!d.is_allow());
    let why = d.stopped.as_deref().unwrap();
    assert!(why.starts_with("halted by `amara`"), "{why}");
    assert!(why.contains("poisoned scanner feed"), "{why}");
    record("resume", "feed checked");
    let gate = PolicyGate::from(p).with_bounds(Bounds::new(
        elsewhere.path(),
        &log.read_all().unwrap(),
        None,
    ));
    assert!(decide_all(&gate, &plan, &ci, &[], 0)[0].is_allow());
}
