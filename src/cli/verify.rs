//! `cordon verify PLAN`: re-check, later, that what a plan contained is dead
//! (issue 16 item 6). IAM documents that changes take time to propagate, so
//! an apply can end with "not yet dead"; this command checks every contained
//! step again, polling a credential that still works until it is refused or
//! the deadline passes, and records each result in the audit log. It changes
//! nothing and executes no step.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use cordon_connector::{Provider, Verification};

use super::apply::{collect_secrets, RunOpts};
use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::connectors::Registry;
use crate::engine::{ApplyRequest, Engine, EngineConfig, Recheck, SecretBag};
use crate::plan::now_ms;
use crate::workspace::{authenticate_plan, Authenticated};

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The plan whose contained steps to check again (id or unique prefix).
    pub plan: String,
    /// Keep checking a credential that still works for up to this many seconds
    /// (1..=3600), then report it "not yet dead".
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub deadline: u64,
    /// Who is checking (default: the plan's requester). Using a leaked GitHub
    /// token to check it is decided by the policy (`github:probe-token`).
    #[arg(long = "as", value_name = "NAME", value_parser = crate::text::free_text)]
    pub requester: Option<String>,
    /// Read the leaked secrets from this environment variable (repeatable): a
    /// call signed with the leaked credential is the strongest proof.
    #[arg(long = "secret-env", value_name = "VAR")]
    pub secret_env: Vec<String>,
    /// Read leaked secrets from stdin.
    #[arg(long)]
    pub secrets_stdin: bool,
}

pub async fn cmd_verify(ctx: &Context, out: &Out, a: VerifyArgs) -> CmdResult {
    let (id, bytes, plan) = ctx.load_plan(&a.plan)?;
    let mut secrets = SecretBag::default();
    collect_secrets(
        &RunOpts {
            secret_env: a.secret_env.clone(),
            secrets_stdin: a.secrets_stdin,
            ..RunOpts::default()
        },
        &mut secrets,
    )?;
    let deadline = Duration::from_secs(a.deadline);
    let gate = ctx.gate();
    let now = now_ms();
    let claimed = a
        .requester
        .clone()
        .unwrap_or_else(|| plan.requester.name.clone());
    let Authenticated {
        principal,
        approvals,
        ..
    } = authenticate_plan(ctx, &gate, &id, &bytes, &plan, &claimed, now)?;

    // The connectors the plan needs; the AWS one polls within this deadline.
    let mut registry = Registry::new();
    let needs = |p: Provider| plan.steps.iter().any(|s| s.action.provider() == p);
    // Only in builds with the test connector (a release build's `test` step
    // finds no connector and is reported as skipped).
    #[cfg(feature = "test-connector")]
    if needs(Provider::Test) {
        registry.register(Arc::new(ctx.test_connector()?));
    }
    if needs(Provider::Aws) {
        let mut cfg = cordon_aws::AwsConfig::from_env().map_err(|e| {
            CommandError::failed(format!("aws configuration: {}", e.message))
                .hint("see `CORDON_AWS_*` and `AWS_*` in the README")
        })?;
        cfg.verify_deadline = deadline;
        let aws = cordon_aws::AwsConnector::new(cfg)
            .await
            .map_err(|e| CommandError::failed(format!("aws: {}", e.message)))?;
        registry.register(Arc::new(aws));
    }
    if needs(Provider::Github) {
        let probe = ctx.probe_allowed(&id, &plan, &gate, &principal, &approvals, now)?;
        registry.register(Arc::new(ctx.github(probe)?));
    }
    let engine = Engine::new(
        ctx.store(),
        ctx.log.clone(),
        Arc::new(gate),
        registry,
        EngineConfig::default(),
    );
    let restore_evidence = std::collections::HashMap::new();
    let checked = engine
        .reverify(
            &ApplyRequest {
                plan_id: &id,
                plan: &plan,
                requester: &principal,
                approvals: &approvals,
                break_glass: None,
                secrets: &secrets,
                restore_evidence: &restore_evidence,
                now,
                since: None,
                steps_done: None,
            },
            deadline,
        )
        .await?;
    if let Err(e) = crate::audit::checkpoint::write_for(&ctx.log, &ctx.home) {
        super::output::diag(&format!("warning: audit checkpoint not written: {e}"));
    }
    let exit = exit_for(&checked);
    if out.json {
        out.json(&serde_json::json!({
            "plan": id,
            "requester": principal.name,
            "requester_verified": principal.verified,
            "deadline_secs": a.deadline,
            "steps": checked,
            "exit": exit.code(),
        }));
        return Ok(exit);
    }
    out.line(format!(
        "plan {id}: re-checked as {} ({}), deadline {} s",
        principal.name,
        if principal.verified {
            "verified"
        } else {
            "unverified claim"
        },
        a.deadline
    ));
    let rows: Vec<Vec<String>> = checked
        .iter()
        .map(|c| {
            let label =
                |v: &Option<Verification>| v.as_ref().map_or("-", Verification::label).to_owned();
            let detail = match (&c.skipped, &c.step.verification) {
                (Some(why), _) => why.clone(),
                (None, Some(v)) => verification_detail(v).to_owned(),
                (None, None) => String::new(),
            };
            vec![
                c.step.step.clone(),
                c.step.action.clone(),
                c.step.target.clone(),
                label(&c.before),
                if c.skipped.is_some() {
                    "not checked".into()
                } else {
                    label(&c.step.verification)
                },
                detail,
            ]
        })
        .collect();
    out.table(
        &["STEP", "ACTION", "TARGET", "BEFORE", "NOW", "DETAIL"],
        &rows,
    );
    if exit != Exit::Ok {
        out.line(format!(
            "not everything is verified dead: what is not yet dead may still be propagating (run `cordon verify {id}` again later); what was not contained needs `cordon apply {id}`"
        ));
    }
    Ok(exit)
}

fn verification_detail(v: &Verification) -> &str {
    match v {
        Verification::Dead { detail }
        | Verification::Partial { detail }
        | Verification::Alive { detail }
        | Verification::NotVerified { detail } => detail,
    }
}

/// 0: every containment step of the plan is verified dead now; 4 (partial):
/// some are and some are not (not yet dead, unverifiable, partial, or never
/// contained); 1: none is.
pub fn exit_for(checked: &[Recheck]) -> Exit {
    let contain: Vec<&Recheck> = checked
        .iter()
        .filter(|c| {
            cordon_connector::Action::from_id(&c.step.action)
                .is_some_and(|a| a.class() == cordon_connector::DecisionClass::Contain)
        })
        .collect();
    let dead = |c: &&&Recheck| {
        c.skipped.is_none() && matches!(c.step.verification, Some(Verification::Dead { .. }))
    };
    let n = contain.iter().filter(dead).count();
    if !contain.is_empty() && n == contain.len() {
        Exit::Ok
    } else if n > 0 {
        Exit::Partial
    } else {
        Exit::Failed
    }
}
