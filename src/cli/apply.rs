//! `cordon apply PLAN`: authenticate, gate, execute, verify; re-run to resume.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use clap::Args;
use cordon_connector::{Outcome, Secret};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::engine::{ApplyReport, ApplyRequest, Engine, EngineConfig, SecretBag};
use crate::gate::BreakGlass;
use crate::intake::classify::{classify, Found};
use crate::plan::{now_ms, Plan};
use crate::policy::{AuthRequest, PolicyGate};
use crate::state::{ObjectKind, Store};

#[derive(Args, Debug, Clone, Default)]
pub struct RunOpts {
    /// Act as this principal (default: the plan's requester).
    #[arg(long = "as", value_name = "NAME")]
    pub requester: Option<String>,
    /// Break-glass: act where the policy allows it only in an emergency.
    #[arg(long, requires = "reason")]
    pub break_glass: bool,
    /// Why break-glass is needed (recorded; required with --break-glass).
    #[arg(long)]
    pub reason: Option<String>,
    /// Read the leaked secrets a plan refers to from this environment variable (repeatable).
    #[arg(long = "secret-env", value_name = "VAR")]
    pub secret_env: Vec<String>,
    /// Read leaked secrets from stdin (any text; credentials are recognised in it).
    #[arg(long)]
    pub secrets_stdin: bool,
    /// Steps in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Operations per second per account (a snapshot, a change or a check).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
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
            Found::GithubToken { secret, .. } | Found::AwsSecretUnpaired { secret, .. } => {
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

/// Who is asking for a stored plan and which approvals count: the requester
/// is proven by a signature or an automation secret, or stays a claim.
pub struct Authenticated {
    pub principal: crate::gate::Principal,
    pub approvals: Vec<crate::gate::VerifiedApproval>,
    /// Why signatures did not count (`code`, message): printed as notes.
    pub rejected: Vec<(String, String)>,
}

pub fn authenticate_plan(
    ctx: &Context,
    gate: &PolicyGate,
    id: &str,
    bytes: &[u8],
    plan: &Plan,
    claimed: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Authenticated, CommandError> {
    let signatures = super::approve::stored_signatures(ctx, id)?;
    Ok(match gate.policy() {
        Ok(policy) => {
            let auto_secret = policy
                .roster()
                .automation
                .get(claimed)
                .and_then(|a| a.secret_env.as_ref())
                .and_then(|var| std::env::var(var).ok())
                .map(Secret::new);
            let auth = policy.authenticate(&AuthRequest {
                plan,
                plan_bytes: bytes,
                claimed_requester: claimed,
                signatures: &signatures,
                automation_secret: auto_secret.as_ref(),
                now,
            });
            Authenticated {
                principal: auth.principal,
                approvals: auth.approvals,
                rejected: auth
                    .rejected
                    .into_iter()
                    .map(|r| (r.code.to_string(), r.message))
                    .collect(),
            }
        }
        // A policy that does not load denies every step; the requester stays a claim.
        Err(_) => Authenticated {
            principal: super::plan::principal_claim(claimed, plan.requester.kind),
            approvals: vec![],
            rejected: vec![],
        },
    })
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
    let (report, principal) = execute_plan(ctx, out, id, bytes, plan, opts, secrets).await?;
    print_report(out, &report, &principal.name, principal.verified);
    Ok(exit_for(&report))
}

/// Authenticate, gate and run a stored plan; prints only notes (rejected
/// signatures, a policy that failed to load) and the spinner.
pub async fn execute_plan(
    ctx: &Context,
    out: &Out,
    id: &str,
    bytes: &[u8],
    plan: &Plan,
    opts: &RunOpts,
    secrets: &SecretBag,
) -> Result<(ApplyReport, crate::gate::Principal), CommandError> {
    let gate = ctx.gate();
    let now = now_ms();
    let claimed = opts
        .requester
        .clone()
        .unwrap_or_else(|| plan.requester.name.clone());
    if let Err(e) = gate.policy() {
        if !out.json {
            out.line(format!("warning: {}", e.summary()));
        }
    }
    let Authenticated {
        principal,
        approvals,
        rejected,
    } = authenticate_plan(ctx, &gate, id, bytes, plan, &claimed, now)?;
    for (code, message) in &rejected {
        tracing::warn!(code = code.as_str(), "signature not counted: {message}");
        if !out.json {
            out.line(format!(
                "note: a signature does not count ({code}): {message}"
            ));
        }
    }
    let break_glass = if opts.break_glass {
        Some(BreakGlass {
            reason: opts.reason.clone().unwrap_or_default(),
        })
    } else {
        None
    };
    // Restore steps get the snapshot they undo.
    let mut restore_evidence = HashMap::new();
    for s in &plan.steps {
        if let Some(h) = s.param_str("evidence_hash") {
            let b = ctx
                .home
                .get(ObjectKind::Evidence, &format!("{h}.json"))?
                .ok_or_else(|| {
                    CommandError::failed(format!(
                        "evidence `{h}` for step `{}` is missing from the state dir",
                        s.id
                    ))
                })?;
            let v: serde_json::Value = serde_json::from_slice(&b)
                .map_err(|e| CommandError::failed(format!("evidence `{h}`: {e}")))?;
            restore_evidence.insert(s.id.clone(), v);
        }
    }
    // The halt switch and the automation principals' limits, for this run.
    let gate = gate.with_bounds(
        ctx.bounds(principal.kind == crate::plan::PrincipalKind::Automation)
            .await?,
    );
    let github_probe = probe_allowed(ctx, id, plan, &gate, &principal, &approvals, now)?;
    let registry = ctx.registry_for(plan, github_probe).await?;
    let config = EngineConfig {
        concurrency: opts.concurrency.max(1),
        rate_per_sec: opts.rate,
        burst: (opts.rate.ceil() as u32).max(1),
        ..EngineConfig::default()
    };
    let engine = Engine::new(
        ctx.store(),
        ctx.log.clone(),
        Arc::new(gate) as Arc<PolicyGate>,
        registry,
        config,
    );
    // A spinner only on a terminal; scripts and CI get plain lines.
    let spinner = (!out.json && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let pb = indicatif::ProgressBar::new_spinner();
        pb.set_message(format!("applying {} steps of plan {id}", plan.steps.len()));
        pb.enable_steady_tick(std::time::Duration::from_millis(120));
        pb
    });
    let report = engine
        .apply(&ApplyRequest {
            plan_id: id,
            plan,
            requester: &principal,
            approvals: &approvals,
            break_glass: break_glass.as_ref(),
            secrets,
            restore_evidence: &restore_evidence,
            now,
        })
        .await?;
    if let Some(pb) = spinner {
        pb.finish_and_clear();
    }
    // Every plan run ends with a signed checkpoint of the audit log. The
    // run's records are already durable, so a checkpoint that cannot be
    // written is reported, not turned into a failed run.
    if let Err(e) = crate::audit::checkpoint::write_latest(&ctx.home) {
        tracing::warn!("audit checkpoint not written: {e}");
        if !out.json {
            out.line(format!("warning: audit checkpoint not written: {e}"));
        }
    }
    Ok((report, principal))
}

/// Ask the policy whether cordon may identify leaked GitHub tokens with
/// `GET /user` (it shows in the owner's logs). The decision is recorded.
fn probe_allowed(
    ctx: &Context,
    id: &str,
    plan: &Plan,
    gate: &PolicyGate,
    principal: &crate::gate::Principal,
    approvals: &[crate::gate::VerifiedApproval],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, CommandError> {
    use crate::gate::{Gate, GateInput};
    let Some(step) = plan.steps.iter().find(|s| {
        matches!(
            s.action,
            cordon_connector::Action::GithubRevokeToken
                | cordon_connector::Action::GithubRevokeInstallationToken
        )
    }) else {
        return Ok(false);
    };
    let probe = cordon_connector::PlanStep {
        id: format!("{}-probe", step.id),
        action: cordon_connector::Action::GithubProbeToken,
        target: step.target.clone(),
        secret: step.secret.clone(),
        params: Default::default(),
    };
    let decision = gate.decide(&GateInput {
        plan_id: id,
        plan,
        step: &probe,
        requester: principal,
        approvals,
        break_glass: None,
        now,
    });
    let mut d = crate::audit::RecordDraft::new(crate::audit::Kind::Decision, principal.clone());
    d.plan = Some(id.to_owned());
    d.incident = plan.incident.clone();
    d.action = Some(probe.action.id().to_owned());
    d.target = Some(probe.target.clone());
    d.message = Some("may cordon identify leaked GitHub tokens with GET /user?".into());
    let allow = decision.is_allow();
    d.decision = Some(decision);
    ctx.log.append(d)?;
    Ok(allow)
}

pub fn exit_for(r: &ApplyReport) -> Exit {
    let ok = |s: &crate::engine::StepReport| {
        s.outcome.as_ref().is_some_and(Outcome::is_success)
            && !matches!(
                s.verification,
                Some(cordon_connector::Verification::Alive { .. })
                    | Some(cordon_connector::Verification::NotVerified { .. })
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
            .any(|s| s.decision.as_ref().is_some_and(|d| !d.missing.is_empty()))
        {
            return Exit::AwaitingApproval;
        }
        return Exit::Denied;
    }
    Exit::Failed
}

fn print_report(out: &Out, r: &ApplyReport, who: &str, verified: bool) {
    if out.json {
        out.json(&serde_json::json!({
            "plan": r.plan,
            "requester": who,
            "requester_verified": verified,
            "steps": r.steps,
            "exit": exit_for(r).code(),
        }));
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
                (Some(o), _) => o.detail().to_owned(),
                (None, Some(d)) => {
                    let mut parts = d.missing.clone();
                    parts.extend(d.errors.iter().cloned());
                    if parts.is_empty() {
                        format!(
                            "no policy permits this (policies: {})",
                            d.policies.join(", ")
                        )
                    } else {
                        parts.join("; ")
                    }
                }
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
