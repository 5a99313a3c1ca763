#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};

use super::events::parse_due;
use super::replay::normalise_id;

#[test]
fn due_times_are_rfc3339_or_a_delay_and_anything_else_is_refused_by_name() {
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    assert_eq!(
        parse_due("45m", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 45, 0).unwrap()
    );
    assert_eq!(
        parse_due("2h", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    );
    assert_eq!(
        parse_due("2026-11-23T08:00:00Z", now).unwrap(),
        Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
    );
    for bad in ["soon", "2w", "h", "", "99999999999999999999d"] {
        let e = parse_due(bad, now).unwrap_err();
        assert!(e.contains(&format!("`{bad}`")), "{e}");
    }
}

#[test]
fn incident_ids_accept_lowercase_and_bare_numbers() {
    assert_eq!(normalise_id("inc-3"), "INC-3");
    assert_eq!(normalise_id("3"), "INC-3");
    assert_eq!(normalise_id("INC-12"), "INC-12");
    assert_eq!(normalise_id("nope"), "nope");
}

// ---------------------------------------------------------------- replay

use std::collections::{BTreeMap, HashMap};

use chrono::Duration;
use cordon_connector::{Action, Outcome, PlanStep, Provider, Target, Verification};

use super::events::{IncidentEvent, Role, TaskEvent};
use super::render::{render_html, render_markdown, render_status};
use super::replay::{
    build_report, name_role_holders, replay, status_of, IncidentState, Item, Objects, TaskStatus,
};
use crate::audit::{Kind, Record, RecordDraft, VerifyReport, VerifyStatus, GENESIS};
use crate::gate::{Decision, Effect, Principal};
use crate::plan::{Plan, PrincipalKind, Requester, Severity, Source, PLAN_VERSION};

#[derive(Default)]
struct Fake {
    plans: HashMap<String, Plan>,
    bad_evidence: Vec<String>,
}

impl Objects for Fake {
    fn plan(&self, id: &str) -> Result<Plan, String> {
        self.plans
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no plan `{id}`"))
    }
    fn evidence(&self, hash: &str) -> Result<(), String> {
        if self.bad_evidence.iter().any(|h| h == hash) {
            Err("MODIFIED: the stored bytes no longer hash to this value".into())
        } else {
            Ok(())
        }
    }
}

/// Builds a chained log with a clock that moves one second per record.
struct Log {
    records: Vec<Record>,
    t0: chrono::DateTime<Utc>,
}

fn who(name: &str) -> Principal {
    Principal {
        name: name.into(),
        kind: PrincipalKind::Person,
        verified: false,
        proof: None,
    }
}

impl Log {
    fn new() -> Log {
        Log {
            records: vec![],
            t0: Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
        }
    }
    fn push(&mut self, mut d: RecordDraft) {
        d.time = self.t0 + Duration::seconds(self.records.len() as i64);
        let prev = self
            .records
            .last()
            .map(|r| r.hash.clone())
            .unwrap_or_else(|| GENESIS.into());
        let r = d.seal(self.records.len() as u64 + 1, &prev);
        self.records.push(r);
    }
    fn incident(&mut self, inc: &str, ev: IncidentEvent) {
        let mut d = RecordDraft::new(Kind::Incident, who("amara"));
        d.incident = Some(inc.into());
        d.data = Some(serde_json::to_value(ev).unwrap());
        self.push(d);
    }
    fn task(&mut self, inc: &str, ev: TaskEvent) {
        let mut d = RecordDraft::new(Kind::Task, who("amara"));
        d.incident = Some(inc.into());
        d.data = Some(serde_json::to_value(ev).unwrap());
        self.push(d);
    }
    fn plan(&mut self, id: &str, inc: Option<&str>) {
        let mut d = RecordDraft::new(Kind::Plan, who("amara"));
        d.plan = Some(id.into());
        d.incident = inc.map(Into::into);
        self.push(d);
    }
    fn step(
        &mut self,
        plan: &str,
        step: &str,
        item: &str,
        kind: Kind,
        f: impl FnOnce(&mut RecordDraft),
    ) {
        let mut d = RecordDraft::new(kind, who("amara"));
        d.plan = Some(plan.into());
        d.step = Some(step.into());
        d.action = Some("test:contain".into());
        d.target = Some(Target::new(Provider::Test, "item", item));
        f(&mut d);
        self.push(d);
    }
}

fn plan_of(items: &[&str]) -> Plan {
    Plan {
        version: PLAN_VERSION,
        created_at: Utc.with_ymd_and_hms(2026, 11, 22, 3, 0, 0).unwrap(),
        requester: Requester {
            name: "amara".into(),
            kind: PrincipalKind::Person,
        },
        source: Source::Manual,
        severity: Severity::High,
        incident: Some("INC-1".into()),
        reason: None,
        steps: items
            .iter()
            .enumerate()
            .map(|(i, it)| PlanStep {
                id: format!("s{}", i + 1),
                action: Action::TestContain,
                target: Target::new(Provider::Test, "item", *it),
                secret: None,
                params: BTreeMap::new(),
            })
            .collect(),
    }
}

fn decision(allow: bool, missing: &[&str]) -> Decision {
    Decision {
        effect: if allow { Effect::Allow } else { Effect::Deny },
        policies: if allow { vec!["p".into()] } else { vec![] },
        policy_hash: "a".repeat(64),
        errors: vec![],
        missing: missing.iter().map(|m| m.to_string()).collect(),
        break_glass: false,
        stopped: None,
        reasons: vec![],
    }
}

/// Incident INC-1 with plan P (items `tok`, `key`): `tok` contained and
/// verified, `key` held for approval; another incident and an unattached
/// plan around it.
fn scenario() -> (Log, Fake) {
    let mut log = Log::new();
    let mut fake = Fake::default();
    fake.plans.insert("p1".into(), plan_of(&["tok", "key"]));
    fake.plans.insert("p2".into(), plan_of(&["other"]));
    log.incident(
        "INC-1",
        IncidentEvent::Open {
            title: "leak".into(),
            severity: Severity::Critical,
        },
    );
    log.incident(
        "INC-2",
        IncidentEvent::Open {
            title: "unrelated".into(),
            severity: Severity::Low,
        },
    );
    log.incident(
        "INC-1",
        IncidentEvent::Assign {
            role: Role::Commander,
            person: "amara".into(),
        },
    );
    log.plan("p1", Some("INC-1"));
    log.plan("p2", None);
    log.step("p1", "s1", "tok", Kind::Decision, |d| {
        d.decision = Some(decision(true, &[]))
    });
    log.step("p1", "s1", "tok", Kind::Evidence, |d| {
        d.evidence = Some("e1".into())
    });
    log.step("p1", "s1", "tok", Kind::Intent, |_| {});
    log.step("p1", "s1", "tok", Kind::Outcome, |d| {
        d.outcome = Some(Outcome::Done {
            detail: "done".into(),
        })
    });
    log.step("p1", "s1", "tok", Kind::Verify, |d| {
        d.verification = Some(Verification::Dead {
            detail: "refused".into(),
        })
    });
    log.step("p1", "s2", "key", Kind::Decision, |d| {
        d.decision = Some(decision(false, &["needs 1 approval from role `security`"]))
    });
    // p2 is not attached: its records must not show up.
    log.step("p2", "s1", "other", Kind::Decision, |d| {
        d.decision = Some(decision(true, &[]))
    });
    (log, fake)
}

#[test]
fn steps_of_attached_plans_are_tasks_with_the_status_the_engine_records_give_them() {
    let (log, fake) = scenario();
    let ledger = replay(&log.records, &fake);
    assert_eq!(ledger.incidents.len(), 2);
    let inc = ledger.get("inc-1").unwrap();
    assert_eq!(inc.role(Role::Commander), Some("amara"));
    let ids: Vec<&str> = inc.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["p1:s1", "p1:s2"]);
    assert_eq!(inc.tasks[0].status, TaskStatus::Verified);
    assert_eq!(inc.tasks[1].status, TaskStatus::AwaitingApproval);
    assert!(inc.timeline.iter().all(|e| e.plan.as_deref() != Some("p2")));
    assert_eq!(ledger.get("INC-2").unwrap().tasks.len(), 0);
    // Time to contain: the verified token has every milestone, one second per record.
    let tok = &inc.credentials[0];
    assert_eq!(tok.target, "test:item/tok");
    assert_eq!(tok.planned.as_ref().unwrap().after_detected_ms, 0);
    assert_eq!(tok.approved.as_ref().unwrap().after_detected_ms, 2_000);
    assert_eq!(tok.contained.as_ref().unwrap().after_detected_ms, 5_000);
    assert_eq!(tok.verified.as_ref().unwrap().after_detected_ms, 6_000);
    let key = &inc.credentials[1];
    assert!(key.approved.is_none() && key.contained.is_none());
    // Status: verified counts as contained; the held step waits for `security`.
    let st = status_of(inc, log.t0);
    assert_eq!((st.contained.len(), st.verified.len()), (1, 1));
    let mut waiting = st.waiting.clone();
    name_role_holders(&mut waiting, &|r: &str| {
        if r == "security" {
            vec!["amara".into(), "bruno".into()]
        } else {
            vec![]
        }
    });
    assert!(waiting[0]
        .detail
        .ends_with("needs 1 approval from role `security` [who: security: amara, bruno]"));
    // Four unassigned roles wait too.
    assert_eq!(waiting.len(), 1 + 4);
}

#[test]
fn an_approval_then_a_failure_replaces_the_wait_and_a_blocker_shows_only_while_not_finished() {
    let (mut log, fake) = scenario();
    log.task(
        "INC-1",
        TaskEvent::Block {
            task: "p1:s2".into(),
            reason: "approver asleep".into(),
        },
    );
    let ledger = replay(&log.records, &fake);
    let inc = ledger.get("INC-1").unwrap();
    assert_eq!(inc.task("p1:s2").unwrap().status, TaskStatus::Blocked);
    assert_eq!(inc.task("p:s2").unwrap().id, "p1:s2", "plan prefix");
    log.step("p1", "s2", "key", Kind::Decision, |d| {
        d.decision = Some(decision(true, &[]))
    });
    log.step("p1", "s2", "key", Kind::Outcome, |d| {
        d.outcome = Some(Outcome::Failed {
            retryable: false,
            error: "refused".into(),
        })
    });
    let ledger = replay(&log.records, &fake);
    let inc = ledger.get("INC-1").unwrap();
    let t = inc.task("p1:s2").unwrap();
    assert_eq!(
        t.status,
        TaskStatus::Failed,
        "a failure is the more useful news"
    );
    assert!(t.waiting_for.is_empty());
    assert_eq!(inc.credentials[1].status, TaskStatus::Failed);
    assert!(inc.credentials[1].approved.is_some());
}

#[test]
fn manual_tasks_and_closing_replay_in_order() {
    let (mut log, fake) = scenario();
    log.task(
        "INC-1",
        TaskEvent::Add {
            task: "t1".into(),
            title: "notify".into(),
            owner: Some("gwen".into()),
            due: Some(log.t0),
        },
    );
    log.task(
        "INC-1",
        TaskEvent::Block {
            task: "t1".into(),
            reason: "legal".into(),
        },
    );
    log.task("INC-1", TaskEvent::Unblock { task: "t1".into() });
    let inc = replay(&log.records, &fake).get("INC-1").cloned().unwrap();
    let t = inc.task("t1").unwrap();
    assert_eq!((t.status, t.blocker.is_none()), (TaskStatus::Open, true));
    assert!(t.overdue(log.t0 + Duration::seconds(1)));
    log.task("INC-1", TaskEvent::Done { task: "t1".into() });
    log.incident(
        "INC-1",
        IncidentEvent::Close {
            summary: "ok".into(),
        },
    );
    let ledger = replay(&log.records, &fake);
    let inc = ledger.get("INC-1").unwrap();
    assert_eq!(inc.state, IncidentState::Closed);
    assert_eq!(inc.summary.as_deref(), Some("ok"));
    assert_eq!(inc.task("t1").unwrap().status, TaskStatus::Done);
    assert_eq!(ledger.open().count(), 1);
    assert_eq!(ledger.next_id(), "INC-3");
}

#[test]
fn an_unreadable_plan_or_a_modified_evidence_object_is_reported_not_hidden() {
    let (log, mut fake) = scenario();
    fake.bad_evidence.push("e1".into());
    fake.plans.remove("p1");
    let ledger = replay(&log.records, &fake);
    let inc = ledger.get("INC-1").unwrap();
    assert!(inc.problems[0].contains("plan `p1`"), "{:?}", inc.problems);
    assert!(inc.evidence[0].check.starts_with("MODIFIED"));
    let report = build_report(
        inc,
        VerifyReport {
            status: VerifyStatus::Tampered {
                seq: 4,
                reason: "hash mismatch".into(),
            },
            records: 3,
            head: "h".into(),
        },
        log.t0,
    );
    let md = render_markdown(&report);
    assert!(md.contains("TAMPERED at seq 4"), "{md}");
    assert!(md.contains("## Problems"));
    let html = render_html(&report);
    assert!(html.contains("class=\"verify bad\""));
    assert!(html.contains("id=\"problems\""));
}

#[test]
fn the_html_report_escapes_every_user_supplied_string() {
    let mut log = Log::new();
    log.incident(
        "INC-1",
        IncidentEvent::Open {
            title: "<script>alert(1)</script> & \"friends\"".into(),
            severity: Severity::High,
        },
    );
    log.task(
        "INC-1",
        TaskEvent::Add {
            task: "t1".into(),
            title: "<img src=x onerror=alert(2)>".into(),
            owner: None,
            due: None,
        },
    );
    let ledger = replay(&log.records, &Fake::default());
    let inc = ledger.get("INC-1").unwrap();
    let verify = VerifyReport {
        status: VerifyStatus::Intact,
        records: 2,
        head: "h".into(),
    };
    let html = render_html(&build_report(inc, verify, log.t0));
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;friends&quot;"));
    let text = render_status(&status_of(inc, log.t0), log.t0);
    assert!(text.contains("t1  open"), "{text}");
}

#[test]
fn role_holders_are_named_once_per_role_and_an_unheld_role_says_nobody() {
    let mut items = vec![Item {
        task: "x".into(),
        what: "w".into(),
        detail: "needs role `a` or role `b`; role `a` again".into(),
    }];
    name_role_holders(&mut items, &|r: &str| {
        if r == "a" {
            vec!["ann".into()]
        } else {
            vec![]
        }
    });
    assert!(
        items[0]
            .detail
            .ends_with("[who: a: ann; b: nobody in the roster]"),
        "{}",
        items[0].detail
    );
}

#[test]
fn a_scanner_finding_sets_the_detected_milestone_before_the_plan() {
    let mut log = Log::new();
    let mut fake = Fake::default();
    fake.plans.insert("p1".into(), plan_of(&["AKIAEXAMPLE"]));
    log.incident(
        "INC-1",
        IncidentEvent::Open {
            title: "leak".into(),
            severity: Severity::High,
        },
    );
    let mut d = RecordDraft::new(Kind::Finding, who("ci"));
    d.incident = Some("INC-1".into());
    d.data = Some(serde_json::json!({
        "findings": [{"finding": 1, "credential": "AKIAEXAMPLE"}, {"finding": 2, "credential": null}]
    }));
    log.push(d);
    // A finding of another incident says nothing about this one.
    let mut d = RecordDraft::new(Kind::Finding, who("ci"));
    d.data = Some(serde_json::json!({"findings": [{"credential": "AKIAEXAMPLE"}]}));
    log.push(d);
    log.plan("p1", Some("INC-1"));
    log.step("p1", "s1", "AKIAEXAMPLE", Kind::Decision, |d| {
        d.decision = Some(decision(true, &[]))
    });
    let ledger = replay(&log.records, &fake);
    let c = &ledger.get("INC-1").unwrap().credentials[0];
    assert_eq!(
        c.detected.as_ref().unwrap().at,
        log.t0 + Duration::seconds(1)
    );
    assert_eq!(c.planned.as_ref().unwrap().after_detected_ms, 2_000);
    assert_eq!(c.approved.as_ref().unwrap().after_detected_ms, 3_000);
}

// ---------------------------------------------------------------- an old log

/// The objects of tests/fixtures/incident-log-v1, checked as the store
/// checks them (a plan against its id, evidence against its hash).
struct Fixture(std::path::PathBuf);

impl Objects for Fixture {
    fn plan(&self, id: &str) -> Result<Plan, String> {
        let bytes = std::fs::read(self.0.join("plans").join(format!("{id}.json")))
            .map_err(|e| e.to_string())?;
        Plan::from_bytes(&bytes, Some(id)).map_err(|e| e.to_string())
    }
    fn evidence(&self, hash: &str) -> Result<(), String> {
        let bytes = std::fs::read(self.0.join("evidence").join(format!("{hash}.json")))
            .map_err(|e| e.to_string())?;
        if crate::plan::sha256_hex(&bytes) == hash {
            Ok(())
        } else {
            Err("MODIFIED".into())
        }
    }
}

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/incident-log-v1")
}

/// A log written by an earlier cordon (tests/fixtures/incident-log-v1, see
/// its make.sh): the records' `data` is an on-disk contract, so replaying it
/// must give the incidents, and the report, that cordon gave then.
#[test]
fn an_old_log_replays_to_the_same_incidents() {
    let dir = fixture_dir();
    let log = dir.join("audit.log");
    assert_eq!(
        crate::audit::verify_file(&log).unwrap().status,
        VerifyStatus::Intact
    );
    let records = crate::audit::parse_lines(&std::fs::read(&log).unwrap(), "fixture").unwrap();
    let ledger = replay(&records, &Fixture(dir.clone()));

    assert_eq!(ledger.incidents.len(), 2);
    let inc = &ledger.incidents[0];
    assert_eq!(inc.id, "INC-1");
    assert_eq!(inc.title, "CI credentials leaked in a build log");
    assert_eq!(inc.severity, Severity::Critical);
    assert_eq!(inc.state, IncidentState::Open);
    assert_eq!(inc.role(Role::Commander), Some("amara"));
    assert_eq!(inc.role(Role::TechnicalLead), Some("bruno"));
    assert!(inc.problems.is_empty(), "{:?}", inc.problems);
    let task = |id: &str| inc.task(id).unwrap();
    assert_eq!(task("t1").status, TaskStatus::Blocked);
    assert_eq!(
        task("t1").blocker.as_ref().map(|b| b.reason.as_str()),
        Some("legal review of the wording")
    );
    assert_eq!(task("t1").owner.as_deref(), Some("gwen"));
    assert!(task("t1").due.is_some());
    assert_eq!(task("t2").status, TaskStatus::Done);
    assert_eq!(task("t2").owner.as_deref(), Some("chen"));
    assert_eq!(task("t3").status, TaskStatus::Open);
    assert!(task("t3").blocker.is_none());
    assert_eq!(task("40c8551c:s1").status, TaskStatus::Verified);
    assert_eq!(task("0e44df69:s1").status, TaskStatus::Failed);
    assert_eq!(task("0e44df69:s1").owner.as_deref(), Some("chen"));
    assert_eq!(task("45508459:s1").status, TaskStatus::AwaitingApproval);
    assert_eq!(inc.plans.len(), 3);
    assert_eq!(inc.evidence.len(), 1);
    assert_eq!(inc.evidence[0].check, "intact");
    assert!(inc.credentials[0].verified.is_some());
    let closed = &ledger.incidents[1];
    assert_eq!(closed.state, IncidentState::Closed);
    assert_eq!(
        closed.summary.as_deref(),
        Some("false positive: a test fixture")
    );

    // Everything else, as that cordon replayed it.
    let got = serde_json::to_string_pretty(&ledger.incidents).unwrap();
    let want = std::fs::read_to_string(dir.join("replayed.json")).unwrap();
    assert!(
        got.trim_end() == want.trim_end(),
        "the replayed incidents differ from replayed.json:\n{got}"
    );
    let now = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    let verify = VerifyReport {
        status: VerifyStatus::Intact,
        records: records.len() as u64,
        head: records.last().unwrap().hash.clone(),
    };
    let md = render_markdown(&build_report(inc, verify, now));
    let want = std::fs::read_to_string(dir.join("replayed.md")).unwrap();
    assert!(
        md.trim_end() == want.trim_end(),
        "the report differs from replayed.md:\n{md}"
    );
}

/// Each record's `data` is read as its kind's type: a payload that is not
/// that type is a named problem of the incident (never silently skipped), a
/// record without data keeps its message, and the task id `cordon task add`
/// prints comes from the typed event.
#[test]
fn payloads_are_read_by_kind_and_an_unreadable_one_is_a_problem() {
    use super::replay::Payload;
    let mut log = Log::new();
    log.incident(
        "INC-1",
        IncidentEvent::Open {
            title: "t".into(),
            severity: Severity::Low,
        },
    );
    log.task(
        "INC-1",
        TaskEvent::Add {
            task: "t1".into(),
            title: "rotate".into(),
            owner: None,
            due: None,
        },
    );
    assert_eq!(
        Payload::read(log.records.last().unwrap()),
        Payload::Task(TaskEvent::Add {
            task: "t1".into(),
            title: "rotate".into(),
            owner: None,
            due: None,
        })
    );
    // A task record carrying an incident event, and an incident record
    // carrying nonsense.
    let mut d = RecordDraft::new(Kind::Task, who("amara"));
    d.incident = Some("INC-1".into());
    d.data = Some(serde_json::json!({"event": "close", "summary": "x"}));
    log.push(d);
    let mut d = RecordDraft::new(Kind::Incident, who("amara"));
    d.incident = Some("INC-1".into());
    d.data = Some(serde_json::json!({"event": "reopen"}));
    log.push(d);
    let mut d = RecordDraft::new(Kind::Task, who("amara"));
    d.incident = Some("INC-1".into());
    d.message = Some("an old task record without data".into());
    log.push(d);
    assert!(matches!(
        Payload::read(&log.records[2]),
        Payload::Unreadable {
            what: "task event",
            ..
        }
    ));
    let ledger = replay(&log.records, &Fake::default());
    let inc = &ledger.incidents[0];
    assert_eq!(inc.problems.len(), 2, "{:?}", inc.problems);
    assert!(inc.problems[0].starts_with("record 3: unreadable task event: "));
    assert!(inc.problems[1].starts_with("record 4: unreadable incident event: "));
    assert_eq!(inc.state, IncidentState::Open);
    let whats: Vec<&str> = inc.timeline.iter().map(|e| e.what.as_str()).collect();
    assert_eq!(
        whats,
        [
            "opened `t` (severity low)",
            "task t1 added: rotate",
            "unreadable task event",
            "unreadable incident event",
            "an old task record without data",
        ]
    );
}
