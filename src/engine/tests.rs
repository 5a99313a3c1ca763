#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cordon_connector::{Action, PlanStep, Provider, Target};

use super::*;
use crate::audit::verify_file;
use crate::connectors::test::TestConnector;
use crate::gate::TestOnlyGate;
use crate::plan::{now_ms, PrincipalKind, Requester, Severity, Source, PLAN_VERSION};
use crate::state::Home;

struct Fixture {
    _dir: tempfile::TempDir,
    engine: Engine,
    conn: Arc<TestConnector>,
    log: Arc<AuditLog>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path().join("home")).unwrap();
    let log = Arc::new(AuditLog::new(home.audit_path(), home.torn_dir()));
    let conn = Arc::new(TestConnector::new(home.root().join("test-items.json")));
    let mut reg = Registry::new();
    reg.register(conn.clone());
    let config = EngineConfig {
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(50),
            max_attempts: 4,
        },
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        Arc::new(home),
        log.clone(),
        Arc::new(TestOnlyGate),
        reg,
        config,
    );
    Fixture {
        _dir: dir,
        engine,
        conn,
        log,
    }
}

fn plan(items: &[&str]) -> Plan {
    Plan {
        version: PLAN_VERSION,
        created_at: now_ms(),
        requester: Requester {
            name: "alice".into(),
            kind: PrincipalKind::Person,
        },
        source: Source::Manual,
        severity: Severity::High,
        incident: None,
        reason: None,
        steps: items
            .iter()
            .enumerate()
            .map(|(i, id)| PlanStep {
                id: format!("s{}", i + 1),
                action: if id.starts_with("aws") {
                    Action::AwsDisableAccessKey
                } else {
                    Action::TestContain
                },
                target: Target::new(
                    if id.starts_with("aws") {
                        Provider::Aws
                    } else {
                        Provider::Test
                    },
                    "item",
                    *id,
                ),
                secret: None,
                params: Default::default(),
            })
            .collect(),
    }
}

fn alice() -> Principal {
    Principal {
        name: "alice".into(),
        kind: PrincipalKind::Person,
        verified: true,
        proof: None,
    }
}

async fn apply(f: &Fixture, p: &Plan) -> ApplyReport {
    apply_counting(f, p, None).await
}

async fn apply_counting(
    f: &Fixture,
    p: &Plan,
    steps_done: Option<&std::sync::atomic::AtomicUsize>,
) -> ApplyReport {
    let secrets = SecretBag::default();
    let ev = HashMap::new();
    let who = alice();
    let bytes = p.to_canonical_bytes().unwrap();
    let id = crate::plan::plan_id(&bytes);
    f.engine
        .apply(&ApplyRequest {
            plan_id: &id,
            plan: p,
            requester: &who,
            approvals: &[],
            break_glass: None,
            secrets: &secrets,
            restore_evidence: &ev,
            now: now_ms(),
            since: None,
            steps_done,
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn five_steps_contained_verified_and_chained() {
    let f = fixture();
    let p = plan(&["a", "b", "c", "d", "e"]);
    let r = apply(&f, &p).await;
    assert!(r.all_succeeded(), "{r:#?}");
    for s in &r.steps {
        assert_eq!(s.outcome.as_ref().unwrap().label(), "done");
        assert_eq!(s.verification.as_ref().unwrap().label(), "dead");
        assert!(s.evidence.is_some());
    }
    let items = f.conn.items().unwrap();
    assert!(items.values().all(|i| i.changes == 1 && i.contained));
    assert_eq!(
        verify_file(f.log.path()).unwrap().status,
        crate::audit::VerifyStatus::Intact
    );
    // Every intent precedes its outcome, and there is one of each per step.
    let recs = f.log.read_all().unwrap();
    for s in ["s1", "s2", "s3", "s4", "s5"] {
        let kinds: Vec<Kind> = recs
            .iter()
            .filter(|r| r.step.as_deref() == Some(s))
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Decision,
                Kind::Evidence,
                Kind::Intent,
                Kind::Outcome,
                Kind::Verify
            ],
            "{s}"
        );
    }
}

#[tokio::test]
async fn second_apply_does_nothing_again() {
    let f = fixture();
    let p = plan(&["a", "b"]);
    apply(&f, &p).await;
    let before = f.log.read_all().unwrap().len();
    let r = apply(&f, &p).await;
    assert!(r.steps.iter().all(|s| s.from_earlier_run));
    assert_eq!(f.log.read_all().unwrap().len(), before);
    assert!(f
        .conn
        .items()
        .unwrap()
        .values()
        .all(|i| i.changes == 1 && i.calls == 1));
}

#[tokio::test]
async fn retryable_errors_are_retried_and_permanent_ones_are_not() {
    let f = fixture();
    let p = plan(&["flaky-2-x", "fail-permanent-y"]);
    let r = apply(&f, &p).await;
    let flaky = &r.steps[0];
    assert_eq!(flaky.outcome.as_ref().unwrap().label(), "done");
    assert_eq!(f.conn.items().unwrap()["flaky-2-x"].calls, 3);
    assert_eq!((flaky.reads, flaky.attempts), (1, 3));
    let perm = &r.steps[1];
    assert!(matches!(
        perm.outcome,
        Some(Outcome::Failed {
            retryable: false,
            ..
        })
    ));
    // Its read fails permanently: not retried. The change then goes ahead
    // without evidence (issue 16 item 7: the test gate allows it, as the
    // shipped policy does), fails permanently too, and is not retried either.
    assert_eq!(
        (perm.reads, perm.attempts),
        (1, 1),
        "a permanent error must not be retried"
    );
}

#[tokio::test]
async fn retries_stop_at_the_budget() {
    let f = fixture();
    let p = plan(&["flaky-9-z"]);
    let r = apply(&f, &p).await;
    assert!(matches!(
        r.steps[0].outcome,
        Some(Outcome::Failed {
            retryable: true,
            ..
        })
    ));
    assert_eq!(f.conn.items().unwrap()["flaky-9-z"].calls, 4);
}

#[tokio::test]
async fn ambiguous_response_is_resolved_by_reading_state_not_by_a_second_change() {
    let f = fixture();
    let r = apply(&f, &plan(&["ambiguous-q"])).await;
    let o = r.steps[0].outcome.as_ref().unwrap();
    assert_eq!(o.label(), "done", "{o:?}");
    assert!(o.detail().contains("re-reading"));
    let item = &f.conn.items().unwrap()["ambiguous-q"];
    assert_eq!((item.changes, item.calls), (1, 1));
}

#[tokio::test]
async fn denied_steps_get_a_decision_record_and_nothing_else() {
    let f = fixture();
    let r = apply(&f, &plan(&["aws-key", "ok"])).await;
    assert!(r.steps[0].denied());
    assert!(r.steps[1].outcome.as_ref().unwrap().is_success());
    let recs = f.log.read_all().unwrap();
    let s1: Vec<Kind> = recs
        .iter()
        .filter(|r| r.step.as_deref() == Some("s1"))
        .map(|r| r.kind)
        .collect();
    assert_eq!(s1, vec![Kind::Decision]);
}

#[tokio::test]
async fn resume_after_intent_without_outcome_reconciles_by_reading_state() {
    let f = fixture();
    let p = plan(&["done-before-crash", "not-done-before-crash"]);
    let id = crate::plan::plan_id(&p.to_canonical_bytes().unwrap());
    // Simulate a run killed after the intents: the first change had reached
    // the target, the second had not.
    for (sid, step) in [("s1", &p.steps[0]), ("s2", &p.steps[1])] {
        let mut d = RecordDraft::new(Kind::Intent, alice());
        d.plan = Some(id.clone());
        d.step = Some(sid.into());
        d.target = Some(step.target.clone());
        f.log.append(d).unwrap();
    }
    f.conn
        .execute(&StepContext {
            plan_id: &id,
            step: &p.steps[0],
            secret: None,
            evidence: None,
            observed: None,
        })
        .await
        .unwrap();
    let r = apply(&f, &p).await;
    assert!(r.steps.iter().all(|s| s.resumed));
    assert_eq!(
        r.steps[0].outcome.as_ref().unwrap().label(),
        "already-contained"
    );
    assert_eq!(r.steps[1].outcome.as_ref().unwrap().label(), "done");
    let items = f.conn.items().unwrap();
    assert_eq!(items["done-before-crash"].changes, 1);
    assert_eq!(items["not-done-before-crash"].changes, 1);
    let j = Journal::for_plan(&f.log.read_all().unwrap(), &id);
    assert_eq!(j.step("s1").unwrap().outcomes, 1);
    assert_eq!(j.step("s2").unwrap().outcomes, 1);
}

#[tokio::test]
async fn audit_failure_stops_before_any_side_effect() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::open(dir.path().join("home")).unwrap();
    // Every write to /dev/full fails with ENOSPC.
    let log = Arc::new(AuditLog::new("/dev/full", home.torn_dir()));
    let conn = Arc::new(TestConnector::new(home.root().join("test-items.json")));
    let mut reg = Registry::new();
    reg.register(conn.clone());
    let engine = Engine::new(
        Arc::new(home),
        log,
        Arc::new(TestOnlyGate),
        reg,
        EngineConfig::default(),
    );
    let p = plan(&["x"]);
    let id = crate::plan::plan_id(&p.to_canonical_bytes().unwrap());
    let secrets = SecretBag::default();
    let ev = HashMap::new();
    let who = alice();
    let err = engine
        .apply(&ApplyRequest {
            plan_id: &id,
            plan: &p,
            requester: &who,
            approvals: &[],
            break_glass: None,
            secrets: &secrets,
            restore_evidence: &ev,
            now: now_ms(),
            since: None,
            steps_done: None,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit log"), "{err}");
    assert!(conn.items().unwrap().get("x").is_none_or(|i| i.calls == 0));
}

/// The test connector, taking up to ten `test:contain` steps per
/// `execute_batch` (the trait's default, one `execute` each): enough to send
/// steps down the batched path of the engine.
struct Batching(Arc<TestConnector>);

#[async_trait::async_trait]
impl Connector for Batching {
    fn provider(&self) -> Provider {
        Provider::Test
    }
    fn batch_limit(&self, action: Action) -> usize {
        if action == Action::TestContain {
            10
        } else {
            1
        }
    }
    async fn describe(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<cordon_connector::TargetState, ConnectorError> {
        self.0.describe(ctx).await
    }
    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        self.0.execute(ctx).await
    }
    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        self.0.verify(ctx).await
    }
}

/// The same fixture with the batching connector in place of the plain one.
fn batching_fixture() -> Fixture {
    let mut f = fixture();
    let mut reg = Registry::new();
    reg.register(Arc::new(Batching(f.conn.clone())));
    let engine = Engine::new(
        f.engine.store.clone(),
        f.log.clone(),
        Arc::new(TestOnlyGate),
        reg,
        f.engine.config.clone(),
    );
    f.engine = engine;
    f
}

/// The fixture's engine again, with `conn` as its only connector and
/// `config` (the test gate, the same store and log).
fn with_connector(f: &mut Fixture, conn: Arc<dyn Connector>, config: EngineConfig) {
    let mut reg = Registry::new();
    reg.register(conn);
    f.engine = Engine::new(
        f.engine.store.clone(),
        f.log.clone(),
        Arc::new(TestOnlyGate),
        reg,
        config,
    );
}

/// The steps of the records of `kind`, in log order.
fn steps_recorded(f: &Fixture, kind: Kind) -> Vec<String> {
    f.log
        .read_all()
        .unwrap()
        .iter()
        .filter(|r| r.kind == kind)
        .filter_map(|r| r.step.clone())
        .collect()
}

fn kinds_of(f: &Fixture, step: &str) -> Vec<Kind> {
    f.log
        .read_all()
        .unwrap()
        .iter()
        .filter(|r| r.step.as_deref() == Some(step))
        .map(|r| r.kind)
        .collect()
}

/// Simulate a run killed after the intents: evidence stored and recorded,
/// intent recorded, no outcome. Returns the evidence hash.
fn interrupted_after_intent(f: &Fixture, p: &Plan) -> String {
    let id = crate::plan::plan_id(&p.to_canonical_bytes().unwrap());
    let evidence = serde_json::json!({"taken": "by the interrupted run"});
    let bytes = canonical_json(&evidence).unwrap();
    let hash = sha256_hex(&bytes);
    f.engine
        .store
        .put_new(ObjectKind::Evidence, &format!("{hash}.json"), &bytes)
        .unwrap();
    for step in &p.steps {
        for kind in [Kind::Evidence, Kind::Intent] {
            let mut d = RecordDraft::new(kind, alice());
            d.plan = Some(id.clone());
            d.step = Some(step.id.clone());
            d.target = Some(step.target.clone());
            d.evidence = Some(hash.clone());
            f.log.append(d).unwrap();
        }
    }
    hash
}

#[tokio::test]
async fn batched_steps_go_through_the_same_records_as_single_ones() {
    let f = batching_fixture();
    let r = apply(&f, &plan(&["a", "b", "c"])).await;
    assert!(r.all_succeeded(), "{r:#?}");
    for s in ["s1", "s2", "s3"] {
        assert_eq!(
            kinds_of(&f, s),
            vec![
                Kind::Decision,
                Kind::Evidence,
                Kind::Intent,
                Kind::Outcome,
                Kind::Verify
            ],
            "{s}"
        );
    }
    // The intents say the steps were batched.
    let recs = f.log.read_all().unwrap();
    let intent = recs.iter().find(|r| r.kind == Kind::Intent).unwrap();
    assert_eq!(intent.message.as_deref(), Some("batched with 3 steps"));
}

/// The progress counter a terminal's bar reads (issue 21): every finished
/// step counts once, single or batched, and a second apply that finds every
/// step done counts them again as finished, not as new work left.
#[tokio::test]
async fn finished_steps_are_counted_for_the_progress_bar() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let f = fixture();
    let n = AtomicUsize::new(0);
    let r = apply_counting(&f, &plan(&["a", "b", "c", "d"]), Some(&n)).await;
    assert!(r.all_succeeded(), "{r:#?}");
    assert_eq!(n.load(Ordering::Relaxed), 4);

    let f = batching_fixture();
    let n = AtomicUsize::new(0);
    let r = apply_counting(&f, &plan(&["a", "b", "c"]), Some(&n)).await;
    assert!(r.all_succeeded(), "{r:#?}");
    assert_eq!(
        n.load(Ordering::Relaxed),
        3,
        "a batch of three is three steps"
    );
    let m = AtomicUsize::new(0);
    apply_counting(&f, &plan(&["a", "b", "c"]), Some(&m)).await;
    assert_eq!(m.load(Ordering::Relaxed), 3);
}

/// Regression (issue 15): a resumed single step reused the evidence its
/// interrupted run had recorded, but a resumed batch took and recorded a
/// fresh snapshot, so the evidence of a batched step showed the state after
/// a change the crash may already have made.
#[tokio::test]
async fn a_resumed_batch_reuses_its_evidence_like_a_resumed_single_step() {
    for (path, f) in [("single", fixture()), ("batched", batching_fixture())] {
        let p = plan(&["r1", "r2"]);
        let hash = interrupted_after_intent(&f, &p);
        let r = apply(&f, &p).await;
        for s in &r.steps {
            assert!(s.resumed, "{path}: {s:?}");
            assert_eq!(s.evidence.as_deref(), Some(hash.as_str()), "{path}: {s:?}");
            assert_eq!(s.outcome.as_ref().unwrap().label(), "done", "{path}");
        }
        for s in ["s1", "s2"] {
            // Nothing recorded as evidence beyond the interrupted run's.
            assert_eq!(
                kinds_of(&f, s),
                vec![
                    Kind::Evidence,
                    Kind::Intent,
                    Kind::Decision,
                    Kind::Intent,
                    Kind::Outcome,
                    Kind::Verify
                ],
                "{path} {s}"
            );
        }
    }
}

/// Regression (issue 15, then issue 16 item 7): a snapshot that could not
/// be taken stopped a single step but not a batched one. Both now follow the
/// one evidence rule: the policy is asked, and here (the test gate answers as
/// for the step itself, like the shipped policy) the change goes ahead, its
/// records saying `no-evidence` and why. A target that refuses the change too
/// fails on the change, not on the snapshot.
#[tokio::test]
async fn a_failed_snapshot_is_decided_the_same_for_a_batched_step_as_for_a_single_one() {
    for (path, f) in [("single", fixture()), ("batched", batching_fixture())] {
        let r = apply(&f, &plan(&["unreadable-a", "fail-permanent-b", "fine-c"])).await;
        let blind = &r.steps[0];
        assert_eq!(
            blind.outcome.as_ref().unwrap().label(),
            "done",
            "{path}: {blind:?}"
        );
        assert_eq!(
            blind.verification.as_ref().unwrap().label(),
            "dead",
            "{path}"
        );
        assert_eq!(blind.evidence, None, "{path}");
        let why = blind.no_evidence.as_deref().unwrap_or_default();
        assert!(why.contains("refuses reads"), "{path}: {why}");
        assert_eq!(
            kinds_of(&f, "s1"),
            vec![
                Kind::Decision,
                Kind::Decision,
                Kind::Intent,
                Kind::Outcome,
                Kind::Verify
            ],
            "{path}: the without-evidence decision is recorded, then the change"
        );
        let recs = f.log.read_all().unwrap();
        let of = |k: Kind| {
            recs.iter()
                .find(|x| x.step.as_deref() == Some("s1") && x.kind == k)
                .and_then(|x| x.message.clone())
                .unwrap_or_default()
        };
        for k in [Kind::Intent, Kind::Outcome] {
            assert!(of(k).contains("no-evidence: the evidence snapshot could not be taken: test item `unreadable-a` refuses reads"), "{path} {k:?}: {}", of(k));
        }
        assert_eq!(f.conn.items().unwrap()["unreadable-a"].changes, 1, "{path}");

        // Refused both ways: the change was tried once and failed on its own error.
        let bad = &r.steps[1];
        assert!(
            matches!(
                bad.outcome,
                Some(Outcome::Failed {
                    retryable: false,
                    ..
                })
            ),
            "{path}: {bad:?}"
        );
        assert!(bad
            .outcome
            .as_ref()
            .unwrap()
            .detail()
            .contains("refuses every call"));
        assert_eq!(bad.verification, None, "{path}");

        // The other step of the unit is not held back by either.
        assert_eq!(
            r.steps[2].outcome.as_ref().unwrap().label(),
            "done",
            "{path}"
        );
        assert_eq!(r.steps[2].no_evidence, None, "{path}");
        assert!(r.steps[2].evidence.is_some(), "{path}");
    }
}

/// A gate whose policy forbids changes without evidence (a `forbid` on
/// `context.without_evidence`): otherwise the test gate.
struct NoChangeWithoutEvidence;

impl Gate for NoChangeWithoutEvidence {
    fn decide(&self, input: &GateInput<'_>) -> Decision {
        TestOnlyGate.decide(input)
    }
    fn decide_without_evidence(&self, _input: &GateInput<'_>) -> Decision {
        let mut d = Decision::deny(
            "builtin:test-only",
            crate::policy::Reason::Forbidden {
                policy: "no-change-without-evidence".into(),
            },
        );
        d.policies = vec!["no-change-without-evidence".into()];
        d
    }
}

/// Issue 16 item 7: where the policy forbids acting without evidence, a step
/// whose snapshot fails stops before its intent, single or batched, and
/// nothing is changed; the refusal is recorded and says why.
#[tokio::test]
async fn where_the_policy_forbids_it_a_step_without_evidence_changes_nothing() {
    for (path, mut f) in [("single", fixture()), ("batched", batching_fixture())] {
        let reg = f.engine.registry.clone();
        f.engine = Engine::new(
            f.engine.store.clone(),
            f.log.clone(),
            Arc::new(NoChangeWithoutEvidence),
            reg,
            f.engine.config.clone(),
        );
        let r = apply(&f, &plan(&["unreadable-a", "fine-b"])).await;
        let bad = &r.steps[0];
        let detail = bad.outcome.as_ref().unwrap().detail().to_owned();
        assert_eq!(bad.outcome.as_ref().unwrap().label(), "failed", "{path}");
        assert!(
            detail.contains("refuses reads")
                && detail.contains("forbidden by `no-change-without-evidence`")
                && detail.contains("nothing was changed"),
            "{path}: {detail}"
        );
        assert_eq!((bad.attempts, bad.no_evidence.clone()), (0, None), "{path}");
        assert_eq!(
            kinds_of(&f, "s1"),
            vec![Kind::Decision, Kind::Decision, Kind::Outcome],
            "{path}: no intent, no change"
        );
        // The refusal is no plan waiting for approval: nothing is "missing".
        let recs = f.log.read_all().unwrap();
        let second = recs
            .iter()
            .filter(|x| x.step.as_deref() == Some("s1") && x.kind == Kind::Decision)
            .nth(1)
            .unwrap();
        assert!(
            second.decision.as_ref().unwrap().missing.is_empty(),
            "{path}"
        );
        assert!(
            second
                .message
                .as_deref()
                .unwrap_or_default()
                .contains("refused"),
            "{path}"
        );
        assert!(
            f.conn
                .items()
                .unwrap()
                .get("unreadable-a")
                .is_none_or(|i| i.calls == 0),
            "{path}: the change was attempted"
        );
        assert_eq!(
            r.steps[1].outcome.as_ref().unwrap().label(),
            "done",
            "{path}"
        );
    }
}

#[tokio::test]
async fn steps_that_end_a_credential_run_before_the_rest_and_their_time_to_dead_is_reported() {
    let mut f = fixture();
    // One step at a time, so the order of the records is the order of work.
    f.engine.config.concurrency = 1;
    let mut p = plan(&["aws-user", "a", "b"]);
    // The first step quarantines (it does not end a credential); it has no
    // connector in this fixture, which fails it after its decision.
    p.steps[0].action = Action::AwsQuarantineUser;
    let r = apply(&f, &p).await;
    let recs = f.log.read_all().unwrap();
    let mut first_seen: Vec<String> = Vec::new();
    for rec in &recs {
        if let Some(s) = &rec.step {
            if !first_seen.contains(s) {
                first_seen.push(s.clone());
            }
        }
    }
    assert_eq!(first_seen, ["s2", "s3", "s1"], "kills first, in plan order");
    // The report stays in plan order.
    let ids: Vec<&str> = r.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(ids, ["s1", "s2", "s3"]);
    let t = &r.time_to_dead;
    assert_eq!((t.credentials, t.dead), (2, 2), "{t:?}");
    let (first, last) = (t.first_ms.unwrap(), t.last_ms.unwrap());
    assert!(first <= last);
    assert_eq!(r.steps[0].dead_after_ms, None);
    assert_eq!(r.steps[1].dead_after_ms, Some(first));
    assert_eq!(r.steps[2].dead_after_ms, Some(last));
    assert!(t
        .describe()
        .unwrap()
        .starts_with("time to dead: 2 of 2 credentials verified refused"));
    // A second run settles nothing new: no time to report.
    let again = apply(&f, &p).await;
    assert_eq!(again.time_to_dead.credentials, 0);
    assert_eq!(again.time_to_dead.describe(), None);
}

#[tokio::test]
async fn time_to_dead_counts_from_the_given_start() {
    let f = fixture();
    let p = plan(&["a"]);
    let secrets = SecretBag::default();
    let ev = HashMap::new();
    let who = alice();
    let bytes = p.to_canonical_bytes().unwrap();
    let id = crate::plan::plan_id(&bytes);
    // A webhook received 5 s before the run started.
    let received = std::time::Instant::now() - Duration::from_secs(5);
    let r = f
        .engine
        .apply(&ApplyRequest {
            plan_id: &id,
            plan: &p,
            requester: &who,
            approvals: &[],
            break_glass: None,
            secrets: &secrets,
            restore_evidence: &ev,
            now: now_ms(),
            since: Some(received),
            steps_done: None,
        })
        .await
        .unwrap();
    assert!(
        r.time_to_dead.first_ms.unwrap() >= 5000,
        "{:?}",
        r.time_to_dead
    );
}

/// Records what `execute` was handed as `observed`, beside what `describe`
/// returned, for single and batched steps.
struct Observing {
    inner: Arc<TestConnector>,
    batch: usize,
    described: std::sync::Mutex<Vec<serde_json::Value>>,
    observed: std::sync::Mutex<Vec<Option<serde_json::Value>>>,
}

#[async_trait::async_trait]
impl Connector for Observing {
    fn provider(&self) -> Provider {
        Provider::Test
    }
    fn batch_limit(&self, _action: Action) -> usize {
        self.batch
    }
    async fn describe(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<cordon_connector::TargetState, ConnectorError> {
        let s = self.inner.describe(ctx).await?;
        self.described.lock().unwrap().push(s.evidence.clone());
        Ok(s)
    }
    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        self.observed.lock().unwrap().push(ctx.observed.cloned());
        self.inner.execute(ctx).await
    }
    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        self.inner.verify(ctx).await
    }
}

// issue 19, kill first: the change is handed the snapshot its run just took
// (`StepContext::observed`), on the single and the batched path alike, so a
// connector need not read the same state again before a kill.
#[tokio::test]
async fn execute_is_handed_what_describe_just_read_on_both_paths() {
    for batch in [1, 10] {
        let mut f = fixture();
        let obs = Arc::new(Observing {
            inner: f.conn.clone(),
            batch,
            described: Default::default(),
            observed: Default::default(),
        });
        let config = f.engine.config.clone();
        with_connector(&mut f, obs.clone(), config);
        let r = apply(&f, &plan(&["a", "b"])).await;
        assert!(r.all_succeeded(), "{r:#?}");
        let described = obs.described.lock().unwrap().clone();
        let observed = obs.observed.lock().unwrap().clone();
        assert_eq!(observed.len(), 2, "batch {batch}");
        for o in &observed {
            let o = o.as_ref().expect("observed handed to execute");
            assert!(described.contains(o), "batch {batch}: {o}");
        }
    }
}

/// A connector that says the provider just answered `answers` for the plan's
/// account (as the AWS connector does after identification), once.
struct Answered {
    inner: Arc<TestConnector>,
    answers: std::sync::Mutex<Option<cordon_connector::Answers>>,
    asked: std::sync::Mutex<Vec<Option<String>>>,
}

#[async_trait::async_trait]
impl Connector for Answered {
    fn provider(&self) -> Provider {
        Provider::Test
    }
    fn take_answers(&self, account: Option<&str>) -> cordon_connector::Answers {
        self.asked.lock().unwrap().push(account.map(str::to_owned));
        self.answers.lock().unwrap().take().unwrap_or_default()
    }
    async fn describe(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<cordon_connector::TargetState, ConnectorError> {
        self.inner.describe(ctx).await
    }
    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        self.inner.execute(ctx).await
    }
    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        self.inner.verify(ctx).await
    }
}

// issue 19, adaptive rate: what the provider answered before the run
// (identification) starts the account's rate, asked once per account.
#[tokio::test]
async fn the_providers_earlier_answers_start_the_accounts_rate() {
    let mut f = fixture();
    let conn = Arc::new(Answered {
        inner: f.conn.clone(),
        answers: std::sync::Mutex::new(Some(cordon_connector::Answers {
            answered: 200,
            throttled: 0,
        })),
        asked: Default::default(),
    });
    let config = f.engine.config.clone();
    with_connector(&mut f, conn.clone(), config);
    let p = plan(&["a", "b", "c"]);
    let key = f.engine.limiter.key(&p.steps[0]);
    assert_eq!(
        f.engine.limiter.current_rate(&key).await,
        EngineConfig::START_RATE
    );
    let r = apply(&f, &p).await;
    assert!(r.all_succeeded(), "{r:#?}");
    // One question for the plan's one account; the 200 answers, then each
    // step's own operations (three each), each +2 in the slow start.
    assert_eq!(conn.asked.lock().unwrap().as_slice(), &[None]);
    let rate = f.engine.limiter.current_rate(&key).await;
    assert!(rate >= EngineConfig::START_RATE + 400.0, "{rate}");
    // Answers are handed over once: a second run starts from its own.
    let again = apply(&f, &plan(&["d"])).await;
    assert!(again.all_succeeded());
    assert_eq!(conn.asked.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn a_step_waiting_out_a_backoff_gives_its_place_to_another_meanwhile() {
    // One step in flight at a time. The first step's change is refused once
    // (retryable); while it waits to try again, the second step runs whole,
    // and the first takes the place back as soon as the second is done
    // (ahead of nothing else here). Holding the place through the wait would
    // record the first step's outcome before anything of the second.
    let mut f = fixture();
    let config = EngineConfig {
        concurrency: 1,
        ..f.engine.config.clone()
    };
    let conn = f.conn.clone();
    with_connector(&mut f, conn, config);
    let p = plan(&["flaky-1-a", "b"]);
    let r = apply(&f, &p).await;
    assert!(r.all_succeeded(), "{r:#?}");
    assert_eq!(r.steps[0].attempts, 2);
    assert_eq!(steps_recorded(&f, Kind::Outcome), ["s2", "s1"]);
    // Nothing was left holding a place: a second plan runs at once.
    let again = apply(&f, &plan(&["c"])).await;
    assert!(again.all_succeeded());
}

/// The test connector, whose first verification of step `s1` finds the
/// credential still answering and polls again after a pause (as the AWS and
/// GitHub connectors poll through propagation).
struct Propagating {
    inner: Arc<TestConnector>,
    paused: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Connector for Propagating {
    fn provider(&self) -> Provider {
        Provider::Test
    }
    async fn describe(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<cordon_connector::TargetState, ConnectorError> {
        self.inner.describe(ctx).await
    }
    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        self.inner.execute(ctx).await
    }
    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        if ctx.step.id == "s1" && !self.paused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            cordon_connector::pause(Duration::from_millis(300)).await;
        }
        self.inner.verify(ctx).await
    }
}

#[tokio::test]
async fn a_connectors_propagation_poll_gives_the_steps_place_to_another_meanwhile() {
    // One step in flight at a time. While the first step's verification
    // waits for the change to propagate, the second step runs whole.
    let mut f = fixture();
    let conn = Arc::new(Propagating {
        inner: f.conn.clone(),
        paused: Default::default(),
    });
    let config = EngineConfig {
        concurrency: 1,
        ..f.engine.config.clone()
    };
    with_connector(&mut f, conn, config);
    let r = apply(&f, &plan(&["a", "b"])).await;
    assert!(r.all_succeeded(), "{r:#?}");
    assert_eq!(steps_recorded(&f, Kind::Verify), ["s2", "s1"]);
}
