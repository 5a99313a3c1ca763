//! `cordon state migrate`: move a local state directory's plans, approvals,
//! evidence and audit log into a shared S3 state, then prove nothing was
//! lost by reading everything back.

use std::sync::Arc;

use clap::Subcommand;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{AuditLog, VerifyStatus};
use crate::state::s3::{S3Location, S3State};
use crate::state::{ObjectKind, Store};

#[derive(Subcommand, Debug)]
pub enum StateCommand {
    /// Copy the local state (--home) into a shared S3 state and verify the
    /// copy: every object byte for byte, every record of the audit log in
    /// order, the chain intact. Safe to run again (what is there already and
    /// identical is kept); refuses a target whose log holds other records.
    Migrate {
        /// The shared state: s3://BUCKET/PREFIX.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        to: String,
    },
}

pub fn cmd_state(ctx: &Context, out: &Out, cmd: StateCommand) -> CmdResult {
    match cmd {
        StateCommand::Migrate { to } => migrate(ctx, out, &to),
    }
}

fn migrate(ctx: &Context, out: &Out, to: &str) -> CmdResult {
    if ctx.log.is_remote() {
        return Err(CommandError::usage(
            "`state migrate` copies the local state (--home) into --to: unset --state / CORDON_STATE",
        ));
    }
    let loc = S3Location::parse(to).map_err(|e| CommandError::usage(e.to_string()))?;
    // The local log must verify before it is copied: a tampered or torn log
    // would be made the team's record.
    let local = ctx.log.verify()?;
    match &local.status {
        VerifyStatus::Intact => {}
        VerifyStatus::TornTail { .. } => {
            return Err(CommandError::new(
                Exit::TornTail,
                format!(
                    "the local audit log `{}` ends in a torn tail",
                    ctx.log.describe()
                ),
            )
            .hint(
                "run any cordon command (e.g. `cordon status`) to recover it first, then migrate",
            ))
        }
        VerifyStatus::Tampered { seq, reason } => {
            return Err(CommandError::new(
                Exit::Tampered,
                format!(
                    "the local audit log is TAMPERED at seq {seq}: {reason}; nothing was copied"
                ),
            ))
        }
    }
    let s3 = S3State::open(loc.clone())?;
    let target: Arc<dyn Store> = Arc::new(s3.clone());
    let mut objects = 0u64;
    for kind in [ObjectKind::Plan, ObjectKind::Evidence, ObjectKind::Approval] {
        let names = match kind {
            ObjectKind::Approval => {
                let mut all = Vec::new();
                for plan in ctx.store.list(kind, "")? {
                    all.extend(ctx.store.list(kind, &plan)?);
                }
                all
            }
            _ => ctx.store.list(kind, "")?,
        };
        for name in names {
            let Some(bytes) = ctx.store.get(kind, &name)? else {
                continue;
            };
            // Write-once: identical bytes already there are kept, different
            // ones are a conflict (reported, nothing overwritten).
            target.put_new(kind, &name, &bytes)?;
            match target.get(kind, &name)? {
                Some(b) if b == bytes => objects += 1,
                _ => {
                    return Err(CommandError::failed(format!(
                        "{} `{name}` did not read back identical from {loc}",
                        kind.label()
                    )))
                }
            }
        }
    }
    // The log, record by record at the same sequence numbers: the chain is
    // unchanged, so the local checkpoint and exported ones still verify.
    let data = ctx.log.read_bytes()?;
    let remote = s3.log();
    let records = remote.import_lines(&data)?;
    let shared = AuditLog::remote(Box::new(s3.log()));
    let back = shared.read_bytes()?;
    if !back.starts_with(&data) {
        return Err(CommandError::failed(format!(
            "the audit log read back from {loc} differs from the local one"
        )));
    }
    let report = shared.verify()?;
    if report.status != VerifyStatus::Intact {
        return Err(CommandError::new(
            Exit::Tampered,
            format!("the shared log at {loc} does not verify after the copy: {report:?}"),
        ));
    }
    if out.json {
        out.json(&serde_json::json!({
            "to": loc.to_string(),
            "objects": objects,
            "records": records,
            "shared_records": report.records,
            "head": report.head,
        }));
    } else {
        out.line(format!(
            "migrated to {loc}: {objects} objects and {records} audit records, read back identical; the shared log verifies ({} records, head {})",
            report.records, report.head
        ));
        out.line(format!(
            "use it with `--state {loc}` or CORDON_STATE={loc}; keep the local directory for the policy and this machine's keys"
        ));
    }
    Ok(Exit::Ok)
}
