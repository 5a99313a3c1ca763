//! The respond pipeline as a library: a scanner report (or a webhook event
//! turned into one) in, a typed [`Summary`] out. classify → identify → one
//! plan for every finding → gate → apply what is allowed → leave the rest
//! pending approval → verify → one row per finding.
//!
//! `cordon respond` (read the report, call [`respond`], print the summary)
//! and `cordon agent` (one call per accepted event, as `agent`) are front
//! ends over it; neither plans or runs anything itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub mod aws_activity;
pub mod github_activity;
pub mod tasks;

use cordon_connector::{Outcome, PlanStep, Verification};
use serde::Serialize;

use crate::audit::payload::{FindingEntry, FindingPayload};
use crate::audit::{Kind, RecordDraft};
use crate::engine::{ApplyReport, SecretBag, StepReport};
use crate::error::{Error, Exit};
use crate::gate::{Decision, Principal};
use crate::intake::classify::GithubKind;
use crate::intake::private_key::PrivateKeyInfo;
use crate::intake::report::{
    self, Credential, Finding, Format, NotContainable, ParseOptions, Provenance, Report,
};
use crate::plan::{
    add_steps, github_token_step, identify_keys, sha256_hex, Plan, PlanMeta, PrincipalKind, Source,
};
use crate::workspace::{attachable, RunOptions, Workspace};

/// A report, read and parsed, with what identifies it in the audit log.
pub struct Intake {
    pub report: Report,
    /// The format's name: `gitleaks`, ..., `github-webhook`, `eventbridge`.
    pub format: &'static str,
    /// Where it came from: a path, `stdin`, `webhook <delivery>`.
    pub origin: String,
    pub sha256: String,
    pub bytes: usize,
    /// The role of a session key, when the source named it (key id → role).
    pub role_hints: BTreeMap<String, String>,
}

/// How one finding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Every step done and the credential proven dead (or nothing left to prove).
    Contained,
    /// Done, but verification did not prove it dead.
    Unverified,
    AwaitingApproval,
    /// Allowed by the rules but held back by a stop condition (a limit of
    /// the automation principal, or the halt switch): waits for a person.
    Stopped,
    Denied,
    Failed,
    NotContainable,
    /// Planned but not run (`--dry-run`).
    Planned,
}

impl Status {
    /// How the summary says it.
    pub fn label(self) -> &'static str {
        match self {
            Status::Contained => "contained, verified",
            Status::Unverified => "done, NOT verified dead",
            Status::AwaitingApproval => "awaiting approval",
            Status::Stopped => "stopped: waits for a person",
            Status::Denied => "denied",
            Status::Failed => "failed",
            Status::NotContainable => "not containable",
            Status::Planned => "planned (dry run)",
        }
    }

    /// Worst first: a credential is only as contained as its worst step.
    fn rank(self) -> u8 {
        match self {
            Status::Failed => 0,
            Status::Denied => 1,
            Status::Stopped => 2,
            Status::AwaitingApproval => 3,
            Status::Unverified => 4,
            Status::Planned => 5,
            Status::Contained => 6,
            Status::NotContainable => 7,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingRow {
    /// 1-based, in report order.
    pub finding: usize,
    pub provenance: Provenance,
    /// What credential (safe to print): `aws access key AKIA...`, `github classic-pat sha256:...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// The credential's fingerprint or key id, as in plan targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    pub status: Status,
    /// The plan steps that contain it.
    pub steps: Vec<String>,
    /// The earlier finding holding the same credential, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_as: Option<usize>,
    pub detail: String,
    /// Milliseconds from the start of the run (the agent: the webhook's
    /// receipt) until every credential-ending step of this finding was
    /// verified refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_after_ms: Option<u64>,
    /// What the finding's credential did, looked up after the kill, or why
    /// that was not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
}

/// A finding's credential is one kind, so its activity is one of these: what
/// CloudTrail says an AWS key did (`aws_activity.rs`), or what each searched
/// organisation's audit log says a GitHub token did (`github_activity.rs`).
/// Either way `activity` in JSON: an object for a key, a list for a token.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Activity {
    Aws(aws_activity::Activity),
    Github(Vec<github_activity::ActivityCheck>),
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub format: &'static str,
    pub origin: String,
    pub report_sha256: String,
    pub plan: Option<String>,
    pub requester: String,
    pub requester_verified: bool,
    pub findings: Vec<FindingRow>,
    /// How long the credentials stayed usable during the run (`None`: no run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_dead: Option<crate::engine::TimeToDead>,
    #[serde(skip)]
    pub exit: Exit,
    /// What the run wants shown beside the summary (a policy that failed to
    /// load, signatures or an automation secret that do not count, a
    /// checkpoint not written): on stderr, and in `--json` as `notes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// For `--dry-run`: the plan and what the gate would decide per step.
    #[serde(skip)]
    pub dry_run: Option<DryRun>,
}

/// A plan written but not run, with the gate's would-be decisions.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub plan: Plan,
    pub decisions: Vec<(String, Decision)>,
}

/// Counters a progress bar on a terminal reads while [`respond`] runs
/// (issue 21: 100,000 findings showed nothing for minutes). Only counted;
/// nothing here is printed by the library.
#[derive(Debug, Default)]
pub struct Progress {
    /// Findings in the report (alerts fetched included), once known.
    pub findings: AtomicUsize,
    /// Findings written to the audit log's `finding` records so far.
    pub recorded: AtomicUsize,
    /// Steps in the plan, once it is written (0: no plan yet, or none).
    pub steps: AtomicUsize,
    /// Steps the engine has finished.
    pub steps_done: Arc<AtomicUsize>,
}

/// What to respond with: shared by the CLI and the agent.
pub struct RespondOpts {
    /// Who asks (`requester`: `ci`, `agent`, a person), severity, incident, reason, signing key.
    pub meta: PlanMeta,
    /// Write the plan and what the gate would decide; act on nothing.
    pub dry_run: bool,
    pub run: RunOptions,
    /// Also quarantine the IAM user of each leaked AWS key.
    pub quarantine_user: bool,
    /// The repository (`owner`, `repo`) whose deploy keys a leaked private key
    /// may open: a private key names no repository, so without this the
    /// finding says which command would delete it.
    pub github_repo: Option<(String, String)>,
    /// The GitHub App a leaked RSA private key may belong to: the JWT that
    /// identifies it must name the App (`iss`), which the key does not.
    pub github_app_id: Option<u64>,
    /// The organisations whose audit logs are searched, after the kill, for
    /// what each leaked GitHub token did (GitHub Enterprise Cloud).
    pub github_orgs: Vec<String>,
    /// Counted as the run goes, for a progress bar; `None`: not counted.
    pub progress: Option<Arc<Progress>>,
}

/// Parse a report already read (at most `MAX_REPORT_BYTES`): detect its
/// format unless one is given. A report that does not parse is a usage error
/// and nothing is recorded.
pub fn parse_intake(
    bytes: &[u8],
    format: Format,
    origin: String,
    opts: ParseOptions,
) -> Result<Intake, Error> {
    let detected = match format {
        Format::Auto => report::detect(bytes).map_err(|e| {
            Error::usage(format!("report `{origin}`: {e}"))
                .hint("pass --format (gitleaks, sarif, trufflehog, ggshield, detect-secrets, secretlint, github-alert, plain)")
        })?,
        f => f,
    };
    let report = report::parse(bytes, detected, &opts).map_err(|e| {
        Error::usage(format!("report `{origin}`: {e}"))
            .hint("nothing was done; fix or regenerate the report and run again")
    })?;
    Ok(Intake {
        report,
        format: detected.name(),
        origin,
        sha256: sha256_hex(bytes),
        bytes: bytes.len(),
        role_hints: BTreeMap::new(),
    })
}

/// A key to tell one credential from another across findings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CredKey {
    Aws(String),
    Github(String),
    /// A private key, by the fingerprint of its block.
    PrivateKey(String),
}

/// Respond to a report: classify → identify → one plan for every finding →
/// gate → apply what is allowed → verify; one row per finding.
pub async fn respond(ws: &Workspace, intake: Intake, opts: &RespondOpts) -> Result<Summary, Error> {
    let Intake {
        report,
        format,
        origin,
        sha256,
        bytes,
        role_hints,
    } = intake;
    let mut findings: Vec<Finding> = report.findings;
    findings.extend(fetch_alerts(ws, &report.alerts).await);
    let progress = opts.progress.as_deref();
    if let Some(p) = progress {
        p.findings.store(findings.len(), Ordering::Relaxed);
    }

    let mut meta = opts.meta.clone();
    // Refuse an unknown or closed incident before anything is recorded.
    meta.incident = attachable(ws, meta.incident.as_deref())?;
    let requester = meta.requester_name();
    meta.requester = Some(requester.clone());
    if meta.source == Source::Manual {
        meta.source = match requester.as_str() {
            "ci" => Source::Ci,
            "agent" => Source::Agent,
            "assistant" => Source::Assistant,
            _ => Source::Manual,
        };
    }

    // One row per finding; secrets move into the bag, rows keep references.
    let mut rows: Vec<FindingRow> = Vec::new();
    let mut secrets = SecretBag::default();
    let mut first_of: BTreeMap<CredKey, usize> = BTreeMap::new();
    // The credential of each containable finding, by finding number.
    let mut keys: BTreeMap<usize, CredKey> = BTreeMap::new();
    let mut aws_keys: Vec<(String, Option<String>)> = Vec::new(); // key id, secret fingerprint
    let mut aws_key_at: std::collections::HashMap<String, usize> = Default::default();
    let mut github: Vec<(CredKey, PlanStep)> = Vec::new();
    let mut private_keys: Vec<(CredKey, PrivateKeyInfo, String)> = Vec::new();
    // The kind of each GitHub token finding: what else could contain it.
    let mut github_kind: BTreeMap<usize, GithubKind> = BTreeMap::new();
    for (i, f) in findings.into_iter().enumerate() {
        let mut row = FindingRow {
            finding: i + 1,
            provenance: f.provenance,
            credential: None,
            credential_id: None,
            status: Status::NotContainable,
            steps: vec![],
            same_as: None,
            detail: String::new(),
            dead_after_ms: None,
            activity: None,
        };
        let key = match f.item {
            Err(NotContainable {
                reason,
                fingerprint,
            }) => {
                row.detail = reason;
                if let Some(fp) = fingerprint {
                    row.credential_id = Some(format!("sha256:{fp}"));
                }
                rows.push(row);
                continue;
            }
            Ok(Credential::Github { kind, secret }) => {
                let fp = secret.fingerprint();
                row.credential = Some(format!(
                    "github {} sha256:{}",
                    kind.prefix().trim_end_matches('_'),
                    short(&fp)
                ));
                row.credential_id = Some(fp.clone());
                github_kind.insert(row.finding, kind);
                let key = CredKey::Github(fp.clone());
                if !first_of.contains_key(&key) {
                    github.push((
                        key.clone(),
                        github_token_step(
                            String::new(),
                            kind == GithubKind::Installation,
                            kind.prefix().trim_end_matches('_'),
                            fp,
                        ),
                    ));
                }
                secrets.insert(secret);
                key
            }
            Ok(Credential::PrivateKey { secret, info }) => {
                let fp = secret.fingerprint();
                row.credential = Some(format!(
                    "private key ({} {}){}",
                    info.format,
                    info.algorithm,
                    info.ssh_fingerprint
                        .as_deref()
                        .map(|f| format!(" {f}"))
                        .unwrap_or_default()
                ));
                row.credential_id = Some(format!("sha256:{fp}"));
                let key = CredKey::PrivateKey(fp.clone());
                if !first_of.contains_key(&key) {
                    private_keys.push((key.clone(), info.clone(), fp));
                }
                // Deleting a deploy key needs only the public half's
                // fingerprint; a GitHub App's key signs the JWT that
                // identifies the App and suspends its installations.
                if info.app_key_candidate && opts.github_app_id.is_some() {
                    secrets.insert(secret);
                } else {
                    drop(secret);
                }
                key
            }
            Ok(Credential::AwsKey {
                key_id,
                session: _,
                secret,
            }) => {
                row.credential = Some(format!("aws access key {key_id}"));
                row.credential_id = Some(key_id.clone());
                let key = CredKey::Aws(key_id.clone());
                let fp = secret.as_ref().map(|s| s.fingerprint());
                match aws_key_at.get(&key_id) {
                    // A later finding may carry the secret an earlier one lacked.
                    Some(&at) => {
                        if let Some((_, have)) = aws_keys.get_mut(at) {
                            if have.is_none() {
                                *have = fp;
                            }
                        }
                    }
                    None => {
                        aws_key_at.insert(key_id.clone(), aws_keys.len());
                        aws_keys.push((key_id, fp));
                    }
                }
                if let Some(s) = secret {
                    secrets.insert(s);
                }
                key
            }
        };
        match first_of.get(&key) {
            Some(first) => row.same_as = Some(*first),
            None => {
                first_of.insert(key.clone(), row.finding);
            }
        }
        keys.insert(row.finding, key);
        rows.push(row);
    }

    // Identify AWS keys (account, user) and plan their containment.
    let mut steps: Vec<PlanStep> = Vec::new();
    let mut steps_of: BTreeMap<CredKey, Vec<String>> = BTreeMap::new();
    let mut unplanned: BTreeMap<CredKey, String> = BTreeMap::new();
    if !aws_keys.is_empty() {
        match ws.aws().await {
            Err(e) => {
                for (k, _) in &aws_keys {
                    unplanned.insert(
                        CredKey::Aws(k.clone()),
                        format!("cannot reach AWS to identify it: {}", e.message),
                    );
                }
            }
            Ok(aws) => {
                let ids: Vec<String> = aws_keys.iter().map(|(k, _)| k.clone()).collect();
                let identities = identify_keys(&aws, &ids, opts.run.concurrency).await;
                for ((key_id, fp), identity) in aws_keys.iter().zip(identities) {
                    let key = CredKey::Aws(key_id.clone());
                    let planned = identity.and_then(|identity| {
                        cordon_aws::contain_steps_for_key(
                            &identity,
                            &cordon_aws::ContainOptions {
                                quarantine_user: opts.quarantine_user,
                                quarantine_mode: None,
                                role: role_hints.get(key_id).cloned(),
                                secret_fingerprint: fp.clone(),
                            },
                        )
                        .map_err(|e| e.message)
                    });
                    match planned {
                        Ok(mine) => {
                            let ids = add_steps(&mut steps, mine);
                            steps_of.insert(key, ids);
                        }
                        Err(reason) => {
                            unplanned.insert(key, reason);
                        }
                    }
                }
            }
        }
    }
    // A leaked private key may be a repository's deploy key: deleted there
    // when the repository is known, otherwise the finding names the command.
    for (key, info, fp) in private_keys {
        // An RSA key in PEM may be a GitHub App's: with the App's id, its
        // installations are suspended (the App's owner must delete the key).
        let app = match (info.app_key_candidate, opts.github_app_id) {
            (true, Some(app_id)) => Some(app_key_step(app_id, &info, &fp)),
            _ => None,
        };
        let app_hint = if info.app_key_candidate && opts.github_app_id.is_none() {
            "; if it is a GitHub App's private key (an RSA key in PEM is that format), `cordon \
             respond` again with `--github-app-id ID` identifies the App with it and suspends \
             the App's installations"
        } else {
            ""
        };
        match (&info.ssh_fingerprint, &opts.github_repo) {
            (Some(fingerprint), Some((owner, repo))) => {
                let mut mine = vec![deploy_key_step(owner, repo, fingerprint)];
                mine.extend(app);
                let ids = add_steps(&mut steps, mine);
                steps_of.insert(key, ids);
            }
            _ if app.is_some() => {
                let ids = add_steps(&mut steps, app.into_iter().collect());
                steps_of.insert(key, ids);
            }
            (Some(fingerprint), None) => {
                unplanned.insert(
                    key,
                    format!(
                        "not contained: a private key names no repository, so cordon cannot tell \
                         which repository lists it as a deploy key; run `cordon revoke \
                         github-deploy-key --repo OWNER/REPO --fingerprint {fingerprint}`, or \
                         `cordon respond` again with `--github-repo OWNER/REPO`; wherever else \
                         its public half is authorized (a user's SSH keys, servers' \
                         authorized_keys), remove it there{app_hint}"
                    ),
                );
            }
            (None, _) => {
                unplanned.insert(
                    key,
                    format!(
                        "not contained: the public half of this {} key could not be read, so \
                         cordon cannot find it among deploy keys; remove it wherever it is \
                         authorized",
                        info.algorithm
                    ),
                );
            }
        }
    }

    // One step per distinct token (deduplicated above, and never the same
    // target as an AWS step): appended directly, as `add_steps` looks for a
    // duplicate in every step so far (quadratic over 100,000 tokens).
    for (key, mut step) in github {
        step.id = format!("s{}", steps.len() + 1);
        steps_of.insert(key, vec![step.id.clone()]);
        steps.push(step);
    }

    // The finding record comes first: it is when cordon learned of the leak.
    // Its entries are made a record's worth at a time (not a copy of every
    // row at once: issue 21's 100,000 findings).
    let entry = |r: &FindingRow| FindingEntry {
        finding: r.finding,
        provenance: r.provenance.clone(),
        credential: r.credential_id.clone(),
        containable: r.status != Status::NotContainable || r.credential.is_some(),
        reason: r.credential.is_none().then(|| r.detail.clone()),
    };
    let kind = PrincipalKind::of_name(&requester);
    // At most FINDINGS_PER_RECORD findings a record: a 100,000-finding
    // report made one 29 MB audit line (issue 21), which every reader of the
    // log then had to hold whole.
    let total = rows.len();
    let parts = total.div_ceil(FINDINGS_PER_RECORD).max(1);
    let mut entries = rows.iter().map(entry);
    for part in 1..=parts {
        let chunk: Vec<FindingEntry> = entries.by_ref().take(FINDINGS_PER_RECORD).collect();
        let in_chunk = chunk.len();
        let mut d = RecordDraft::new(Kind::Finding, Principal::claim(&requester, kind));
        d.incident = meta.incident.clone();
        d.message = Some(if parts == 1 {
            format!("{format} report from {origin}: {total} findings")
        } else {
            let first = (part - 1) * FINDINGS_PER_RECORD + 1;
            format!(
                "{format} report from {origin}: {total} findings (part {part} of {parts}: findings {first} to {})",
                first + chunk.len() - 1
            )
        });
        d.data = Some(
            serde_json::to_value(FindingPayload {
                format: format.to_owned(),
                origin: origin.clone(),
                sha256: sha256.clone(),
                bytes,
                findings: chunk,
            })
            .map_err(|e| Error::failed(format!("cannot encode the finding record: {e}")))?,
        );
        ws.log.append(d)?;
        if let Some(p) = progress {
            p.recorded.fetch_add(in_chunk, Ordering::Relaxed);
        }
    }

    let mut summary = Summary {
        format,
        origin,
        report_sha256: sha256,
        plan: None,
        requester: requester.clone(),
        requester_verified: false,
        findings: vec![],
        time_to_dead: None,
        exit: Exit::NothingContainable,
        notes: vec![],
        dry_run: None,
    };
    if steps.is_empty() {
        for r in &mut rows {
            if let Some(reason) = keys.get(&r.finding).and_then(|k| unplanned.get(k)) {
                // A key cordon could not identify (no AWS credentials, AWS
                // unreachable) is a failure to act, not "nothing containable":
                // a CI job must not pass on a broken setup (issue 21).
                r.status = Status::Failed;
                r.detail = reason.clone();
            }
        }
        summary.exit = exit_for(&rows);
        summary.findings = rows;
        return Ok(summary);
    }

    let (id, plan_bytes, plan) = ws.write_plan(&meta, steps)?;
    summary.plan = Some(id.clone());
    if let Some(p) = progress {
        p.steps.store(plan.steps.len(), Ordering::Relaxed);
    }
    // Who ran the plan, and its incident: the searches after the kill
    // record their tasks there, as them.
    let mut ran_as: Option<(Principal, Option<String>)> = None;
    let mut aws_activity = BTreeMap::new();
    let report: Option<ApplyReport> = if opts.dry_run {
        summary.dry_run = Some(DryRun {
            decisions: ws.dry_run_decisions(&id, &plan),
            plan,
        });
        None
    } else {
        let run_opts = RunOptions {
            progress: progress
                .map(|p| p.steps_done.clone())
                .or_else(|| opts.run.progress.clone()),
            ..opts.run.clone()
        };
        let run = ws
            .execute(&id, &plan_bytes, &plan, &run_opts, &secrets)
            .await?;
        summary.requester = run.principal.name.clone();
        summary.requester_verified = run.principal.verified;
        summary.notes = run.notes;
        // A leaked App key whose installations are suspended still works
        // until its owner deletes it: that is a task of the incident.
        if let Some(incident) = &plan.incident {
            for s in run.report.steps.iter().filter(|s| {
                s.action == cordon_connector::Action::GithubSuspendAppInstallations.id()
            }) {
                app_owner_task(ws, incident, &run.principal, s)?;
            }
        }
        // After the kill: what each contained AWS key did (never fails the run).
        aws_activity =
            aws_activity::after_containment(ws, &plan, &run.report, &run.principal).await;
        summary.time_to_dead = Some(run.report.time_to_dead.clone());
        ran_as = Some((run.principal.clone(), plan.incident.clone()));
        Some(run.report)
    };

    // Each finding takes the state of the steps that contain its credential.
    let step_at: std::collections::HashMap<&str, &StepReport> = report
        .iter()
        .flat_map(|r| r.steps.iter())
        .map(|s| (s.step.as_str(), s))
        .collect();
    for r in &mut rows {
        if r.credential_id.is_none() || r.credential.is_none() {
            continue;
        }
        let Some(key) = keys.get(&r.finding).cloned() else {
            continue;
        };
        if let Some(reason) = unplanned.get(&key) {
            r.status = Status::Failed;
            r.detail = reason.clone();
            continue;
        }
        let ids = steps_of.get(&key).cloned().unwrap_or_default();
        r.steps = ids.clone();
        if report.is_none() {
            r.status = Status::Planned;
            continue;
        }
        let mine: Vec<&StepReport> = ids
            .iter()
            .filter_map(|id| step_at.get(id.as_str()).copied())
            .collect();
        let (status, detail) = mine
            .iter()
            .map(|s| step_status(s))
            .min_by_key(|(st, _)| st.rank())
            .unwrap_or((Status::Failed, "no step was planned for it".into()));
        r.status = status;
        r.detail = detail;
        r.activity = r
            .credential_id
            .as_ref()
            .and_then(|k| aws_activity.get(k))
            .cloned()
            .map(Activity::Aws);
        // The revocation API is the one call that kills these tokens; when it
        // did not, name the command that contains the token another way (the
        // finding gives neither an OAuth app's client id nor a grant's id).
        if matches!(r.status, Status::Failed | Status::Unverified) {
            if let Some(other) = github_kind
                .get(&r.finding)
                .and_then(|k| other_github_way(*k))
            {
                r.detail = format!("{}; {other}", r.detail);
            }
        }
        // Dead when the last of its killing steps was verified refused.
        let kills: Vec<&&StepReport> = mine.iter().filter(|s| s.ends_credential()).collect();
        if !kills.is_empty() && kills.iter().all(|s| s.dead_after_ms.is_some()) {
            r.dead_after_ms = kills.iter().filter_map(|s| s.dead_after_ms).max();
        }
        // An automation principal that did not prove itself (a missing or
        // wrong secret) is a broken setup, not a plan waiting for people:
        // what it asked for is refused (issue 21: CI passed on it as 5).
        if r.status == Status::AwaitingApproval
            && kind == PrincipalKind::Automation
            && !summary.requester_verified
        {
            r.status = Status::Denied;
            r.detail = crate::policy::Reason::AutomationUnproven {
                name: requester.clone(),
            }
            .to_string();
        }
    }
    // After the kill: what each leaked GitHub token did (never fails the run).
    if let Some((principal, incident)) = &ran_as {
        let tokens: Vec<github_activity::Searched> = rows
            .iter()
            .filter(|r| r.same_as.is_none() && github_kind.contains_key(&r.finding))
            .filter_map(|r| {
                Some(github_activity::Searched {
                    finding: r.finding,
                    fingerprint: r.credential_id.clone()?,
                    label: r.credential.clone()?,
                })
            })
            .collect();
        let mut found = github_activity::check(
            ws,
            &opts.github_orgs,
            &tokens,
            incident.as_deref(),
            principal,
        )
        .await;
        for r in &mut rows {
            if let Some(a) = found.remove(&r.finding) {
                r.activity = (!a.is_empty()).then_some(Activity::Github(a));
            }
        }
    }
    summary.findings = rows;
    summary.exit = match &summary.dry_run {
        Some(d) => dry_run_exit(&d.decisions).unwrap_or_else(|| exit_for(&summary.findings)),
        None => exit_for(&summary.findings),
    };
    Ok(summary)
}

/// A dry run's exit when the gate would deny a step outright (nothing a
/// person can do allows it: no rule, a forbid no approval lifts, a policy
/// that does not load): 3, as the run would be (issue 21: it exited 0).
/// Steps that would wait for approval or a person leave the exit to the
/// findings (0: the plan is written; approve it, then apply).
pub fn dry_run_exit(decisions: &[(String, Decision)]) -> Option<Exit> {
    decisions
        .iter()
        .any(|(_, d)| !d.is_allow() && !d.awaits_people())
        .then_some(Exit::Denied)
}

/// What else contains a GitHub token of this kind when the revocation API
/// did not, as the exact command (the finding gives none of its arguments).
fn other_github_way(kind: GithubKind) -> Option<&'static str> {
    match kind {
        GithubKind::Oauth | GithubKind::AppUser => Some(
            "revoke it through its OAuth app instead: `cordon revoke github-oauth-token \
             --client-id CLIENT_ID --env VAR` (the app's client id; cordon needs the app's \
             client secret), with `--grant` to end the user's whole authorization",
        ),
        GithubKind::FineGrainedPat => Some(
            "remove its access to an organisation instead: `cordon revoke github-org-pat --org \
             ORG --pat-id ID` (ID from `GET /orgs/ORG/personal-access-tokens`; partial: the \
             token stays valid elsewhere)",
        ),
        _ => None,
    }
}

/// `github:suspend-app-installations` for a leaked RSA key of App `app_id`;
/// the key (by fingerprint `fp`) is supplied at apply time to sign the JWT.
fn app_key_step(app_id: u64, info: &PrivateKeyInfo, fp: &str) -> PlanStep {
    let id = info
        .ssh_fingerprint
        .clone()
        .unwrap_or_else(|| format!("sha256:{fp}"));
    let mut target =
        cordon_connector::Target::new(cordon_connector::Provider::Github, "app-key", id);
    target.account = Some(app_id.to_string());
    PlanStep {
        id: String::new(),
        action: cordon_connector::Action::GithubSuspendAppInstallations,
        target,
        secret: Some(fp.to_owned()),
        params: BTreeMap::from([("app_id".to_owned(), serde_json::json!(app_id))]),
    }
}

/// The task an App's owner gets when its key still works after the
/// installations were suspended: the verification's exact instruction.
/// Recorded only when the plan is attached to an open incident.
fn app_owner_task(
    ws: &Workspace,
    incident: &str,
    requester: &Principal,
    s: &StepReport,
) -> Result<(), Error> {
    let Some(Verification::Partial { detail }) = &s.verification else {
        return Ok(());
    };
    let title = format!("delete the leaked private key of {}: {detail}", s.target);
    tasks::add_task(ws, incident, requester, &title, None)?;
    Ok(())
}

/// `github:delete-deploy-key` for the key with this SSH fingerprint on
/// `owner/repo` (as `cordon revoke github-deploy-key` plans it).
fn deploy_key_step(owner: &str, repo: &str, fingerprint: &str) -> PlanStep {
    let mut target = cordon_connector::Target::new(
        cordon_connector::Provider::Github,
        "deploy-key",
        fingerprint.to_owned(),
    );
    target.account = Some(owner.to_owned());
    PlanStep {
        id: String::new(),
        action: cordon_connector::Action::GithubDeleteDeployKey,
        target,
        secret: None,
        params: BTreeMap::from([
            ("owner".to_owned(), serde_json::json!(owner)),
            ("repo".to_owned(), serde_json::json!(repo)),
            ("fingerprint".to_owned(), serde_json::json!(fingerprint)),
        ]),
    }
}

/// Findings per `finding` audit record.
const FINDINGS_PER_RECORD: usize = 1000;

fn short(fp: &str) -> &str {
    fp.get(..12).unwrap_or(fp)
}

/// One step's state, with what to say about it.
fn step_status(s: &StepReport) -> (Status, String) {
    let (status, detail) = step_status_only(s);
    match &s.no_evidence {
        Some(why) if s.outcome.is_some() => (status, format!("{detail} (no-evidence: {why})")),
        _ => (status, detail),
    }
}

fn step_status_only(s: &StepReport) -> (Status, String) {
    match (&s.outcome, &s.decision) {
        (Some(o), _) if o.is_success() => match &s.verification {
            Some(Verification::Dead { .. }) | None => (Status::Contained, o.detail().to_owned()),
            Some(v) => (Status::Unverified, format!("{}: {}", v.label(), o.detail())),
        },
        (Some(Outcome::Failed { .. } | Outcome::Unknown { .. }), _) | (Some(_), _) => (
            Status::Failed,
            s.outcome
                .as_ref()
                .map(|o| o.detail().to_owned())
                .unwrap_or_default(),
        ),
        (None, Some(d)) if d.is_stopped() => (Status::Stopped, d.why()),
        (None, Some(d)) if d.awaits_people() => (Status::AwaitingApproval, d.why()),
        (None, Some(d)) if !d.is_allow() => (Status::Denied, d.why()),
        _ => (Status::Failed, "not run".into()),
    }
}

/// Exit code for a respond run, from its findings:
/// nothing containable 6; every containable credential contained and verified 0;
/// something failed, denied or unverified: 4 when anything was contained,
/// otherwise 1; else something held back by a stop condition (a limit or the
/// halt switch): 10; else something awaits approval: 5.
pub fn exit_for(rows: &[FindingRow]) -> Exit {
    let live: Vec<&FindingRow> = rows
        .iter()
        .filter(|r| r.status != Status::NotContainable)
        .collect();
    if live.is_empty() {
        return Exit::NothingContainable;
    }
    let any = |s: &[Status]| live.iter().any(|r| s.contains(&r.status));
    let bad = any(&[Status::Failed, Status::Denied, Status::Unverified]);
    if bad {
        if any(&[Status::Contained, Status::Unverified]) {
            return Exit::Partial;
        }
        if live.iter().all(|r| r.status == Status::Denied) {
            return Exit::Denied;
        }
        return Exit::Failed;
    }
    if any(&[Status::Stopped]) {
        return Exit::Stopped;
    }
    if any(&[Status::AwaitingApproval]) {
        return Exit::AwaitingApproval;
    }
    Exit::Ok
}

/// GitHub secret scanning webhooks carry no secret: fetch each alert (with
/// cordon's own GitHub credential). A failed fetch is a finding that could not
/// be contained, named by its alert: never silently dropped.
async fn fetch_alerts(ws: &Workspace, alerts: &[report::AlertRef]) -> Vec<Finding> {
    let mut out = Vec::new();
    if alerts.is_empty() {
        return out;
    }
    let gh = match ws.github(false) {
        Ok(g) => g,
        Err(e) => {
            for a in alerts {
                out.push(alert_failure(
                    a,
                    format!("cannot fetch the alert: {}", e.message),
                ));
            }
            return out;
        }
    };
    for a in alerts {
        match gh
            .fetch_secret_scanning_alert(&a.owner, &a.repo, a.number)
            .await
        {
            Ok(alert) => {
                let mut prov = Provenance {
                    scanner: "github-secret-scanning".into(),
                    rule: Some(alert.secret_type.clone()),
                    url: alert.html_url.clone(),
                    ..Provenance::default()
                };
                if let Some(loc) = alert.locations.iter().find(|l| l.path.is_some()) {
                    prov.file = loc.path.clone();
                    prov.line = loc.line;
                    prov.commit = loc.commit.clone();
                }
                out.extend(report::findings_from_text(
                    alert.secret.expose(),
                    &prov,
                    &format!("github alert {} ({})", a.number, alert.secret_type),
                ));
            }
            Err(e) => out.push(alert_failure(
                a,
                format!("cannot fetch the alert: {}", e.message),
            )),
        }
    }
    out
}

fn alert_failure(a: &report::AlertRef, reason: String) -> Finding {
    Finding {
        provenance: Provenance {
            scanner: "github-secret-scanning".into(),
            rule: None,
            file: None,
            line: None,
            commit: None,
            url: Some(format!(
                "https://github.com/{}/{}/security/secret-scanning/{}",
                a.owner, a.repo, a.number
            )),
            read_back: None,
        },
        item: Err(NotContainable {
            reason,
            fingerprint: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The counters a terminal's progress bar reads (issue 21): every finding
    /// of the report counts once it is in a `finding` record, across the
    /// records of 1,000; with nothing containable, no plan and no steps.
    #[tokio::test]
    async fn the_progress_counters_count_findings_as_they_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(Some(dir.path().join("home")), None).unwrap();
        let n = 2_345;
        let report: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({"RuleID": "slack-bot-token",
                    "Secret": format!("xoxb-progress-{i:06}-not-handled"),
                    "File": format!("f{}.env", i % 7), "StartLine": i + 1})
            })
            .collect();
        let bytes = serde_json::to_vec(&report).unwrap();
        let intake =
            parse_intake(&bytes, Format::Auto, "test".into(), ParseOptions::default()).unwrap();
        let progress = Arc::new(Progress::default());
        let opts = RespondOpts {
            meta: PlanMeta {
                requester: Some("alice".into()),
                severity: crate::plan::Severity::High,
                source: Source::Manual,
                incident: None,
                reason: None,
                key: None,
            },
            dry_run: false,
            run: RunOptions {
                requester: None,
                break_glass: false,
                reason: None,
                concurrency: 4,
                rate: None,
                since: None,
                progress: None,
            },
            quarantine_user: false,
            github_repo: None,
            github_app_id: None,
            github_orgs: vec![],
            progress: Some(progress.clone()),
        };
        let summary = respond(&ws, intake, &opts).await.unwrap();
        assert_eq!(summary.findings.len(), n);
        assert_eq!(summary.exit, Exit::NothingContainable);
        assert_eq!(progress.findings.load(Ordering::Relaxed), n);
        assert_eq!(progress.recorded.load(Ordering::Relaxed), n);
        assert_eq!(progress.steps.load(Ordering::Relaxed), 0);
        assert_eq!(progress.steps_done.load(Ordering::Relaxed), 0);
        let parts = ws
            .log
            .read_all()
            .unwrap()
            .iter()
            .filter(|r| r.kind == Kind::Finding)
            .count();
        assert_eq!(parts, 3);
    }
}
