//! `cordon policy check [DIR]` and `cordon policy explain`.

use std::path::PathBuf;

use clap::Subcommand;

use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::plan::{Severity, Source};
use crate::policy::{check, FindingSeverity, WhatIf};
use crate::state::Home;

#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Validate the policy against its schema and lint the roster and signers.
    Check { dir: Option<PathBuf> },
    /// Would this be allowed? Prints allow/deny, the deciding policies and what is missing.
    Explain {
        #[arg(long = "as", value_name = "WHO")]
        principal: String,
        /// Treat WHO as a bare claim (as `--as` without a signature is).
        #[arg(long)]
        unverified: bool,
        #[arg(long, value_name = "ACTION")]
        action: String,
        /// `provider:kind/id`, e.g. `aws:role/deploy-prod`.
        #[arg(long, value_name = "TARGET")]
        target: String,
        #[arg(long)]
        environment: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, value_enum, default_value = "high")]
        severity: Severity,
        #[arg(long, value_enum)]
        source: Option<Source>,
        /// Approvers (treated as verified), comma-separated.
        #[arg(long, value_delimiter = ',')]
        approvals: Vec<String>,
        /// Minutes since the plan was created.
        #[arg(long, default_value_t = 0)]
        elapsed: i64,
        #[arg(long)]
        break_glass: bool,
    },
}

fn resolve_dir(
    home: Option<PathBuf>,
    policy: Option<PathBuf>,
    dir: Option<PathBuf>,
) -> Result<PathBuf, CommandError> {
    if let Some(d) = dir.or(policy) {
        return Ok(d);
    }
    let root = match home {
        Some(h) => h,
        None => Home::default_path()?,
    };
    Ok(root.join("policy"))
}

pub fn cmd_policy(
    home: Option<PathBuf>,
    policy: Option<PathBuf>,
    out: &Out,
    cmd: PolicyCommand,
) -> CmdResult {
    match cmd {
        PolicyCommand::Check { dir } => {
            let dir = resolve_dir(home, policy, dir)?;
            let findings = check(&dir, super::context::demo_switch());
            let errors = findings
                .iter()
                .filter(|f| f.severity == FindingSeverity::Error)
                .count();
            if out.json {
                out.json(&serde_json::json!({"dir": dir, "ok": errors == 0, "findings": findings}));
            } else {
                for f in &findings {
                    out.line(format!(
                        "{}: {f}",
                        match f.severity {
                            FindingSeverity::Error => "error",
                            _ => "warning",
                        }
                    ));
                }
                out.line(format!(
                    "{}: {errors} errors, {} warnings",
                    dir.display(),
                    findings.len() - errors
                ));
            }
            Ok(if errors == 0 {
                Exit::Ok
            } else {
                Exit::PolicyInvalid
            })
        }
        PolicyCommand::Explain {
            principal,
            unverified,
            action,
            target,
            environment,
            account,
            severity,
            source,
            approvals,
            elapsed,
            break_glass,
        } => {
            let dir = resolve_dir(home, policy, None)?;
            let loaded =
                crate::policy::load_for_use(&dir, super::context::demo_switch()).map_err(|e| {
                    CommandError::new(Exit::PolicyInvalid, e.summary())
                        .hint("run `cordon policy check`")
                })?;
            let mut q = WhatIf::new(principal, action, target);
            q.verified = !unverified;
            q.environment = environment;
            q.account = account;
            q.severity = severity;
            q.source = source;
            q.approvers = approvals;
            q.elapsed_minutes = elapsed;
            q.break_glass = break_glass;
            let e = loaded
                .explain(&q)
                .map_err(|e| CommandError::usage(e.to_string()))?;
            let allow = e.decision.is_allow();
            if out.json {
                out.json(&e);
            } else {
                out.line(format!(
                    "{}  {} {} on {}",
                    if allow { "ALLOW" } else { "DENY" },
                    e.principal.name,
                    e.action,
                    e.target.display_name()
                ));
                if !e.decision.policies.is_empty() {
                    out.line(format!(
                        "deciding policies: {}",
                        e.decision.policies.join(", ")
                    ));
                }
                for m in &e.decision.missing {
                    out.line(format!("missing: {m}"));
                }
                for er in &e.decision.errors {
                    out.line(format!("error: {er}"));
                }
                for n in &e.notes {
                    out.line(format!("note: {n}"));
                }
                out.line(format!("policy hash: {}", e.decision.policy_hash));
            }
            Ok(if allow { Exit::Ok } else { Exit::Denied })
        }
    }
}
