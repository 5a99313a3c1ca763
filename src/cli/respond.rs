//! `cordon respond --report FILE|-`: from a scanner's findings to contained
//! credentials in one run. classify → identify → one plan for every finding →
//! gate (principal from `--as`, or `ci` in CI) → apply what is allowed → leave
//! the rest pending approval → verify → one summary line per finding.
//!
//! The same path serves `cordon agent` (webhooks), with principal `agent`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use cordon_connector::{Outcome, PlanStep, Verification};
use serde::Serialize;

use super::apply::{execute_plan, RunOpts};
use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use super::plan::write_plan;
use super::revoke::{add_steps, dry_run, github_token_step, identify_keys, OneShot};
use crate::audit::{Kind, RecordDraft};
use crate::engine::{ApplyReport, SecretBag, StepReport};
use crate::intake::report::{
    self, Credential, Finding, Format, NotContainable, ParseOptions, Provenance, Report,
    MAX_REPORT_BYTES,
};
use crate::plan::{sha256_hex, PrincipalKind, Source};

#[derive(Args, Debug)]
pub struct RespondArgs {
    /// The scanner report: a file, or `-` for stdin.
    #[arg(long, value_name = "FILE|-")]
    pub report: String,
    /// The report's format; `auto` tells gitleaks, SARIF, trufflehog,
    /// ggshield, detect-secrets, secretlint, GitHub alerts and plain text apart.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Directory the report's relative paths refer to (detect-secrets keeps
    /// only a hash: the file is re-read there). Default: the current directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Also quarantine the IAM user of each leaked AWS key (deny-all, console
    /// password removed).
    #[arg(long)]
    pub quarantine_user: bool,
    #[command(flatten)]
    pub one: OneShot,
}

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
    fn label(self) -> &'static str {
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
    #[serde(skip)]
    pub exit: Exit,
}

/// What to respond with: shared by the CLI and the agent.
pub struct RespondOpts {
    pub one: OneShot,
    pub quarantine_user: bool,
}

/// Read a report from a file or stdin, refusing anything over the size limit
/// before parsing it.
pub fn read_report(
    arg: &str,
    format: Format,
    root: Option<PathBuf>,
) -> Result<Intake, CommandError> {
    let (bytes, origin) = if arg == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .take(MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| CommandError::failed(format!("cannot read the report from stdin: {e}")))?;
        (b, "stdin".to_owned())
    } else {
        let f = std::fs::File::open(arg).map_err(|e| {
            CommandError::usage(format!("cannot read the report `{arg}`: {e}"))
                .hint("give a report file written by a scanner, or `-` for stdin")
        })?;
        let mut b = Vec::new();
        f.take(MAX_REPORT_BYTES as u64 + 1)
            .read_to_end(&mut b)
            .map_err(|e| CommandError::failed(format!("cannot read the report `{arg}`: {e}")))?;
        (b, arg.to_owned())
    };
    let root = root.or_else(|| {
        // Relative paths in a report usually refer to where the scanner ran:
        // the current directory.
        std::env::current_dir().ok()
    });
    parse_intake(&bytes, format, origin, ParseOptions { root })
}

pub fn parse_intake(
    bytes: &[u8],
    format: Format,
    origin: String,
    opts: ParseOptions,
) -> Result<Intake, CommandError> {
    let detected = match format {
        Format::Auto => report::detect(bytes).map_err(|e| {
            CommandError::usage(format!("report `{origin}`: {e}"))
                .hint("pass --format (gitleaks, sarif, trufflehog, ggshield, detect-secrets, secretlint, github-alert, plain)")
        })?,
        f => f,
    };
    let report = report::parse(bytes, detected, &opts).map_err(|e| {
        CommandError::usage(format!("report `{origin}`: {e}"))
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

pub async fn cmd_respond(ctx: &Context, out: &Out, a: RespondArgs) -> CmdResult {
    let intake = read_report(&a.report, a.format, a.root.clone())?;
    let opts = RespondOpts {
        one: a.one,
        quarantine_user: a.quarantine_user,
    };
    let summary = respond(ctx, out, intake, &opts).await?;
    print_summary(out, &summary);
    Ok(summary.exit)
}

/// The requester when `--as` is not given: `ci` inside a CI job (the `CI`
/// variable every major CI system sets), otherwise the login name, as a claim.
fn default_requester(meta: &super::plan::PlanMeta) -> String {
    if meta.requester.is_none()
        && std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
    {
        return "ci".into();
    }
    meta.requester_name()
}

/// A key to tell one credential from another across findings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CredKey {
    Aws(String),
    Github(String),
}

pub async fn respond(
    ctx: &Context,
    out: &Out,
    intake: Intake,
    opts: &RespondOpts,
) -> Result<Summary, CommandError> {
    let Intake {
        report,
        format,
        origin,
        sha256,
        bytes,
        role_hints,
    } = intake;
    let mut findings: Vec<Finding> = report.findings;
    findings.extend(fetch_alerts(ctx, &report.alerts).await);

    let mut one = opts.one.clone();
    // Refuse an unknown or closed incident before anything is recorded.
    one.meta.incident = super::incident::attachable(ctx, one.meta.incident.as_deref())?;
    let requester = default_requester(&one.meta);
    one.meta.requester = Some(requester.clone());
    if one.meta.source == Source::Manual {
        one.meta.source = match requester.as_str() {
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
    let mut aws_keys: Vec<(String, Option<String>)> = Vec::new(); // key id, secret fingerprint
    let mut github: Vec<(CredKey, PlanStep)> = Vec::new();
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
                let key = CredKey::Github(fp.clone());
                if !first_of.contains_key(&key) {
                    github.push((key.clone(), github_token_step(String::new(), kind, fp)));
                }
                secrets.insert(secret);
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
                match aws_keys.iter_mut().find(|(k, _)| *k == key_id) {
                    // A later finding may carry the secret an earlier one lacked.
                    Some((_, have)) => {
                        if have.is_none() {
                            *have = fp;
                        }
                    }
                    None => aws_keys.push((key_id, fp)),
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
                first_of.insert(key, row.finding);
            }
        }
        rows.push(row);
    }

    // Identify AWS keys (account, user) and plan their containment.
    let mut steps: Vec<PlanStep> = Vec::new();
    let mut steps_of: BTreeMap<CredKey, Vec<String>> = BTreeMap::new();
    let mut unplanned: BTreeMap<CredKey, String> = BTreeMap::new();
    if !aws_keys.is_empty() {
        match ctx.aws().await {
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
                let identities = identify_keys(&aws, &ids, one.concurrency).await;
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
    for (key, step) in github {
        let ids = add_steps(&mut steps, vec![step]);
        steps_of.insert(key, ids);
    }

    // The finding record comes first: it is when cordon learned of the leak.
    let summary_findings: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "finding": r.finding,
                "provenance": r.provenance,
                "credential": r.credential_id,
                "containable": r.status != Status::NotContainable || r.credential.is_some(),
                "reason": if r.credential.is_none() { Some(&r.detail) } else { None },
            })
        })
        .collect();
    let kind = if matches!(requester.as_str(), "ci" | "agent" | "assistant") {
        PrincipalKind::Automation
    } else {
        PrincipalKind::Person
    };
    let mut d = RecordDraft::new(
        Kind::Finding,
        super::plan::principal_claim(&requester, kind),
    );
    d.incident = one.meta.incident.clone();
    d.message = Some(format!(
        "{} report from {origin}: {} findings",
        format,
        rows.len()
    ));
    d.data = Some(serde_json::json!({
        "format": format,
        "origin": origin,
        "sha256": sha256,
        "bytes": bytes,
        "findings": summary_findings,
    }));
    ctx.log.append(d)?;

    let mut summary = Summary {
        format,
        origin,
        report_sha256: sha256,
        plan: None,
        requester: requester.clone(),
        requester_verified: false,
        findings: vec![],
        exit: Exit::NothingContainable,
    };
    if steps.is_empty() {
        for r in &mut rows {
            if let Some(reason) = r.credential_id.as_ref().and_then(|_| {
                unplanned.iter().find_map(|(k, v)| match k {
                    CredKey::Aws(id) if Some(id) == r.credential_id.as_ref() => Some(v),
                    _ => None,
                })
            }) {
                r.detail = reason.clone();
            }
        }
        summary.findings = rows;
        return Ok(summary);
    }

    let (id, plan_bytes, plan) = write_plan(ctx, &one.meta, steps)?;
    summary.plan = Some(id.clone());
    let report: Option<ApplyReport> = if one.dry_run {
        if !out.json {
            dry_run(ctx, out, &id, &plan)?;
        }
        None
    } else {
        let run_opts: RunOpts = one.run_opts();
        let (report, principal) =
            execute_plan(ctx, out, &id, &plan_bytes, &plan, &run_opts, &secrets).await?;
        summary.requester = principal.name;
        summary.requester_verified = principal.verified;
        Some(report)
    };

    // Each finding takes the state of the steps that contain its credential.
    for r in &mut rows {
        let Some(cid) = r.credential_id.clone() else {
            continue;
        };
        if r.credential.is_none() {
            continue;
        }
        let key = if r
            .credential
            .as_deref()
            .is_some_and(|c| c.starts_with("aws"))
        {
            CredKey::Aws(cid)
        } else {
            CredKey::Github(cid)
        };
        if let Some(reason) = unplanned.get(&key) {
            r.status = Status::Failed;
            r.detail = reason.clone();
            continue;
        }
        let ids = steps_of.get(&key).cloned().unwrap_or_default();
        r.steps = ids.clone();
        let Some(report) = &report else {
            r.status = Status::Planned;
            continue;
        };
        let mine: Vec<&StepReport> = report
            .steps
            .iter()
            .filter(|s| ids.contains(&s.step))
            .collect();
        let (status, detail) = mine
            .iter()
            .map(|s| step_status(s))
            .min_by_key(|(st, _)| st.rank())
            .unwrap_or((Status::Failed, "no step was planned for it".into()));
        r.status = status;
        r.detail = detail;
    }
    summary.findings = rows;
    summary.exit = exit_for(&summary.findings);
    Ok(summary)
}

fn short(fp: &str) -> &str {
    fp.get(..12).unwrap_or(fp)
}

/// One step's state, with what to say about it.
fn step_status(s: &StepReport) -> (Status, String) {
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
        (None, Some(d)) if d.is_stopped() => (Status::Stopped, d.missing.join("; ")),
        (None, Some(d)) if !d.is_allow() && !d.missing.is_empty() => {
            (Status::AwaitingApproval, d.missing.join("; "))
        }
        (None, Some(d)) if !d.is_allow() => {
            let mut why = d.errors.clone();
            if why.is_empty() {
                why.push("no policy permits this".into());
            }
            (Status::Denied, why.join("; "))
        }
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
async fn fetch_alerts(ctx: &Context, alerts: &[report::AlertRef]) -> Vec<Finding> {
    let mut out = Vec::new();
    if alerts.is_empty() {
        return out;
    }
    let gh = match ctx.github(false) {
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
        },
        item: Err(NotContainable {
            reason,
            fingerprint: None,
        }),
    }
}

fn where_found(p: &Provenance) -> String {
    let mut s = match (&p.file, p.line) {
        (Some(f), Some(l)) => format!("{f}:{l}"),
        (Some(f), None) => f.clone(),
        (None, Some(l)) => format!("line {l}"),
        (None, None) => p.url.clone().unwrap_or_else(|| "-".into()),
    };
    if let Some(c) = &p.commit {
        s.push_str(&format!(" @{}", c.get(..8).unwrap_or(c)));
    }
    s
}

pub fn print_summary(out: &Out, s: &Summary) {
    if out.json {
        out.json(&serde_json::json!({
            "report": {"format": s.format, "origin": s.origin, "sha256": s.report_sha256},
            "plan": s.plan,
            "requester": s.requester,
            "requester_verified": s.requester_verified,
            "findings": s.findings,
            "exit": s.exit.code(),
        }));
        return;
    }
    out.line(format!(
        "report {} ({}, {} findings)",
        s.origin,
        s.format,
        s.findings.len()
    ));
    if let Some(p) = &s.plan {
        out.line(format!(
            "plan {p}  as {} ({})",
            s.requester,
            if s.requester_verified {
                "verified"
            } else {
                "unverified claim"
            }
        ));
    }
    if s.findings.is_empty() {
        out.line("the report holds no findings: nothing to contain");
        return;
    }
    let rows: Vec<Vec<String>> = s
        .findings
        .iter()
        .map(|r| {
            let rule = r.provenance.rule.clone().unwrap_or_default();
            vec![
                r.finding.to_string(),
                format!("{} {}", r.provenance.scanner, rule)
                    .trim()
                    .to_owned(),
                where_found(&r.provenance),
                r.credential.clone().unwrap_or_else(|| "-".into()),
                r.status.label().to_owned(),
                match r.same_as {
                    Some(n) => format!("same credential as finding {n}"),
                    None => r.detail.clone(),
                },
            ]
        })
        .collect();
    out.table(
        &["#", "SCANNER", "FOUND IN", "CREDENTIAL", "RESULT", "DETAIL"],
        &rows,
    );
    let Some(p) = &s.plan else {
        out.line("nothing containable in the report: no credential cordon can act on");
        return;
    };
    match s.exit {
        Exit::Stopped => out.line(format!(
            "stopped by a limit or the halt switch: the rest waits for a person; see `cordon pending`, then an approver runs `cordon approve {p} --key ~/.ssh/id_ed25519` and `cordon apply {p}` continues"
        )),
        Exit::AwaitingApproval => out.line(format!(
            "awaiting approval: see `cordon pending`; approvers run `cordon approve {p} --key ~/.ssh/id_ed25519`, then `cordon apply {p}` continues where this stopped"
        )),
        Exit::Partial | Exit::Failed | Exit::Denied => out.line(format!(
            "not everything was contained: fix what the detail says, then `cordon apply {p}` (done steps are not repeated)"
        )),
        _ => {}
    }
}
