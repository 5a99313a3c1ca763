//! `cordon apply PLAN`: authenticate, gate, execute, verify; re-run to resume.

use std::io::Read;

use clap::Args;
use cordon_connector::{Outcome, Secret};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::engine::{ApplyReport, SecretBag};
use crate::intake::classify::{classify, Found};
use crate::plan::Plan;
use crate::workspace::RunOptions;

#[derive(Args, Debug, Clone, Default)]
pub struct RunOpts {
    /// Act as this principal (default: the plan's requester).
    #[arg(long = "as", value_name = "NAME", value_parser = crate::text::free_text)]
    pub requester: Option<String>,
    /// Break-glass: act where the policy allows it only in an emergency.
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Why break-glass is needed (recorded; required with --break-glass).
    #[arg(long, value_parser = crate::text::free_text)]
    pub reason: Option<String>,
    /// Read the leaked secrets a plan refers to from this environment variable (repeatable).
    #[arg(long = "secret-env", value_name = "VAR")]
    pub secret_env: Vec<String>,
    /// Read leaked secrets from stdin (any text; credentials are recognised in it).
    #[arg(long)]
    pub secrets_stdin: bool,
    /// Steps in flight at once.
    #[arg(long, default_value_t = 32, value_parser = super::args::concurrency)]
    pub concurrency: usize,
    /// Cap on operations per second per account (a snapshot, a change or a
    /// check). Without it the rate adapts: it starts at 10 (safe for real IAM),
    /// rises while the provider answers and halves when it throttles, up to 500.
    #[arg(long, value_parser = super::args::rate)]
    pub rate: Option<f64>,
}

impl RunOpts {
    /// What the library needs to run a plan (the secrets are read here).
    pub fn options(&self) -> RunOptions {
        RunOptions {
            requester: self.requester.clone(),
            break_glass: self.break_glass,
            reason: self.reason.clone(),
            concurrency: self.concurrency,
            rate: self.rate,
            // From the process start, not the plan's: identifying and planning count.
            since: Some(super::started()),
            progress: None,
        }
    }
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    pub plan: String,
    #[command(flatten)]
    pub run: RunOpts,
}

pub fn collect_secrets(opts: &RunOpts, bag: &mut SecretBag) -> Result<(), CommandError> {
    for var in &opts.secret_env {
        let v = std::env::var(var)
            .map_err(|_| CommandError::usage(format!("environment variable `{var}` is not set")))?;
        add_from_text(Secret::new(v), bag);
    }
    if opts.secrets_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CommandError::failed(format!("cannot read stdin: {e}")))?;
        add_from_text(Secret::new(s), bag);
    }
    Ok(())
}

/// Put every credential recognised in `text` into the bag; a bare value that
/// is not recognised is kept as is (an AWS secret access key on its own).
fn add_from_text(text: Secret, bag: &mut SecretBag) {
    let found = classify(text.expose());
    let mut any = false;
    for f in found {
        match f {
            Found::GithubToken { secret, .. }
            | Found::AwsSecretUnpaired { secret, .. }
            | Found::PrivateKey { secret, .. } => {
                bag.insert(secret);
                any = true;
            }
            Found::AwsKey {
                secret: Some(secret),
                ..
            } => {
                bag.insert(secret);
                any = true;
            }
            _ => {}
        }
    }
    if !any {
        let trimmed = Secret::new(text.expose().trim().to_owned());
        if !trimmed.is_empty() {
            bag.insert(trimmed);
        }
    }
}

/// Run a stored plan and print the report; shared by apply, revoke,
/// quarantine and restore.
pub async fn run_plan(
    ctx: &Context,
    out: &Out,
    id: &str,
    bytes: &[u8],
    plan: &Plan,
    opts: &RunOpts,
    secrets: &SecretBag,
) -> CmdResult {
    let (report, principal, notes) = execute_plan(ctx, out, id, bytes, plan, opts, secrets).await?;
    // After the kill: what each contained AWS key did (a read; never fails the run).
    let activity =
        crate::respond::aws_activity::after_containment(ctx, plan, &report, &principal).await;
    print_report(
        out,
        &report,
        &principal.name,
        principal.verified,
        &notes,
        &activity,
    );
    Ok(ctx.refusal_exit(exit_for(&report)))
}

/// Run a stored plan (`Workspace::execute`) with a spinner on a terminal;
/// prints its notes (rejected signatures, a policy that failed to load, a
/// checkpoint not written) on stderr, `--json` or not, and hands them back
/// for the `--json` document.
pub async fn execute_plan(
    ctx: &Context,
    out: &Out,
    id: &str,
    bytes: &[u8],
    plan: &Plan,
    opts: &RunOpts,
    secrets: &SecretBag,
) -> Result<(ApplyReport, crate::gate::Principal, Vec<String>), CommandError> {
    // A spinner only on a terminal; scripts and CI get plain lines.
    let spinner = (!out.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("applying {} steps of plan {id}", plan.steps.len()));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let run = ctx.execute(id, bytes, plan, &opts.options(), secrets).await;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    let run = run?;
    // Diagnostics for the person at the terminal: on stderr, with `--json`
    // too (stdout holds the one JSON document).
    for n in &run.notes {
        super::output::diag(n);
    }
    Ok((run.report, run.principal, run.notes))
}

pub fn exit_for(r: &ApplyReport) -> Exit {
    let ok = |s: &crate::engine::StepReport| {
        s.outcome.as_ref().is_some_and(Outcome::is_success)
            && !matches!(
                s.verification,
                Some(cordon_connector::Verification::Alive { .. })
                    | Some(cordon_connector::Verification::NotVerified { .. })
                    | Some(cordon_connector::Verification::Partial { .. })
            )
    };
    if r.steps.iter().all(ok) {
        return Exit::Ok;
    }
    // Held back only by a stop condition (limit or halt): say so.
    let stopped = |s: &crate::engine::StepReport| {
        s.denied() && s.decision.as_ref().is_some_and(|d| d.is_stopped())
    };
    if r.steps.iter().any(stopped) && r.steps.iter().all(|s| ok(s) || stopped(s)) {
        return Exit::Stopped;
    }
    if r.steps
        .iter()
        .any(|s| s.outcome.as_ref().is_some_and(Outcome::is_success))
    {
        return Exit::Partial;
    }
    let denied: Vec<_> = r.steps.iter().filter(|s| s.denied()).collect();
    if !denied.is_empty() && denied.len() == r.steps.len() {
        if denied
            .iter()
            .any(|s| s.decision.as_ref().is_some_and(|d| d.awaits_people()))
        {
            return Exit::AwaitingApproval;
        }
        return Exit::Denied;
    }
    Exit::Failed
}

fn print_report(
    out: &Out,
    r: &ApplyReport,
    who: &str,
    verified: bool,
    notes: &[String],
    activity: &std::collections::BTreeMap<String, crate::respond::aws_activity::Activity>,
) {
    if out.json {
        let mut doc = serde_json::json!({
            "plan": r.plan,
            "requester": who,
            "requester_verified": verified,
            "steps": r.steps,
            "time_to_dead": r.time_to_dead,
            "notes": notes,
            "exit": exit_for(r).code(),
        });
        // By access key id: what CloudTrail says each contained key did.
        if let (false, Some(m)) = (activity.is_empty(), doc.as_object_mut()) {
            m.insert("activity".into(), serde_json::json!(activity));
        }
        out.json(&doc);
        return;
    }
    out.line(format!(
        "plan {}  as {who} ({})",
        r.plan,
        if verified {
            "verified"
        } else {
            "unverified claim"
        }
    ));
    let rows: Vec<Vec<String>> = r
        .steps
        .iter()
        .map(|s| {
            let decision = match &s.decision {
                Some(d) if d.is_allow() => {
                    format!("allow{}", if d.break_glass { " (break-glass)" } else { "" })
                }
                Some(_) => "deny".into(),
                None if s.from_earlier_run => "earlier run".into(),
                None => "-".into(),
            };
            let outcome = s.outcome.as_ref().map(|o| o.label()).unwrap_or("not run");
            let verify = s.verification.as_ref().map(|v| v.label()).unwrap_or("-");
            let detail = match (&s.outcome, &s.decision) {
                (Some(o), _) => match &s.no_evidence {
                    Some(why) => format!("{} (no-evidence: {why})", o.detail()),
                    None => o.detail().to_owned(),
                },
                (None, Some(d)) => d.why(),
                _ => String::new(),
            };
            vec![
                s.step.clone(),
                s.action.clone(),
                s.target.clone(),
                decision,
                outcome.into(),
                verify.into(),
                detail,
            ]
        })
        .collect();
    out.table(
        &[
            "STEP", "ACTION", "TARGET", "DECISION", "OUTCOME", "VERIFIED", "DETAIL",
        ],
        &rows,
    );
    if let Some(line) = r.time_to_dead.describe() {
        out.line(line);
    }
    for (key, a) in activity {
        out.line(a.describe(key));
    }
    match exit_for(r) {
        Exit::AwaitingApproval => out.line(format!("awaiting approval: `cordon approve {} --key ~/.ssh/id_ed25519`, then `cordon apply {}`", r.plan, r.plan)),
        Exit::Partial | Exit::Failed => out.line(format!("not every step succeeded: fix what the detail says, then re-run `cordon apply {}` (done steps are not repeated)", r.plan)),
        _ => {}
    }
}

pub async fn cmd_apply(ctx: &Context, out: &Out, a: ApplyArgs) -> CmdResult {
    let (id, bytes, plan) = ctx.load_plan(&a.plan)?;
    let mut bag = SecretBag::default();
    collect_secrets(&a.run, &mut bag)?;
    run_plan(ctx, out, &id, &bytes, &plan, &a.run, &bag).await
}
