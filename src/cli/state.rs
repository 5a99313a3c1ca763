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
    /// Release a plan's lease on the shared state by hand, when the machine
    /// holding it is gone and waiting for the lease to expire is not an
    /// option (a lease expires by itself; nothing needs this in normal
    /// operation). Recorded in the audit log, with who did it and why,
    /// before the lease is released. A lease that has not expired is
    /// released only with --force: that machine may still be applying.
    ReleaseLease {
        /// The plan whose lease to release.
        plan: String,
        /// Why (kept in the audit record).
        #[arg(long)]
        reason: String,
        /// Who releases it (default: $USER); a claim, recorded as such.
        #[arg(long = "as", value_name = "NAME")]
        who: Option<String>,
        /// Release a lease that has not expired yet.
        #[arg(long)]
        force: bool,
    },
}

pub fn cmd_state(ctx: &Context, out: &Out, cmd: StateCommand) -> CmdResult {
    match cmd {
        StateCommand::Migrate { to } => migrate(ctx, out, &to),
        StateCommand::ReleaseLease {
            plan,
            reason,
            who,
            force,
        } => release_lease(ctx, out, &plan, &reason, who, force),
    }
}

fn release_lease(
    ctx: &Context,
    out: &Out,
    plan: &str,
    reason: &str,
    who: Option<String>,
    force: bool,
) -> CmdResult {
    if !ctx.log.is_remote() {
        return Err(CommandError::usage(
            "a local state has no leases: a plan's claim there is a lock the kernel releases when its process ends; `release-lease` is for a shared state (--state s3://…)",
        ));
    }
    let who = who
        .or_else(|| std::env::var("USER").ok())
        .filter(|a| !a.trim().is_empty())
        .ok_or_else(|| CommandError::usage("say who releases the lease with `--as NAME`"))?;
    if reason.trim().is_empty() {
        return Err(CommandError::usage("say why with `--reason TEXT`"));
    }
    let loc =
        S3Location::parse(&ctx.store.describe()).map_err(|e| CommandError::usage(e.to_string()))?;
    let s3 = S3State::open(loc)?;
    let Some(info) = s3.lease(plan)? else {
        return Err(CommandError::usage(format!(
            "plan `{plan}` has no lease on {}: nothing to release",
            ctx.store.describe()
        )));
    };
    let holder = info
        .owner
        .clone()
        .unwrap_or_else(|| "(not a lease cordon wrote)".into());
    let until = info
        .expires
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "(unknown)".into());
    if info.released {
        if out.json {
            out.json(&serde_json::json!({"plan": plan, "lease": info.url, "released": false, "already_released": true}));
        } else {
            out.line(format!(
                "the lease `{}` is already released ({holder})",
                info.url
            ));
        }
        return Ok(Exit::Ok);
    }
    if (info.live() || info.owner.is_none()) && !force {
        return Err(CommandError::usage(format!(
            "the lease `{}` of plan `{plan}` is held by `{holder}` until {until}: that machine may still be applying the plan",
            info.url
        ))
        .hint("wait for it to expire (it is renewed while its holder runs), or, if you know that machine is gone, run again with --force"));
    }
    // The record first: no lease is released without a durable record of
    // who did it and why.
    let mut d = crate::audit::RecordDraft::new(
        crate::audit::Kind::Note,
        crate::gate::Principal::claim(&who, crate::plan::PrincipalKind::of_name(&who)),
    );
    d.plan = Some(plan.to_owned());
    d.message = Some(format!(
        "lease `{}` released by hand by {who}: held by `{holder}` until {until}{}; reason: {reason}",
        info.url,
        if info.live() { " (not expired: --force)" } else { "" }
    ));
    let rec = ctx.log.append(d)?;
    if !s3.release_lease(plan, &info, &who)? {
        let mut d = crate::audit::RecordDraft::new(
            crate::audit::Kind::Note,
            crate::gate::Principal::claim(&who, crate::plan::PrincipalKind::of_name(&who)),
        );
        d.plan = Some(plan.to_owned());
        d.message = Some(format!(
            "the release recorded as record {} did not happen: the lease `{}` changed before it (renewed by its holder or taken over)",
            rec.seq, info.url
        ));
        ctx.log.append(d)?;
        return Err(CommandError::failed(format!(
            "the lease `{}` changed while it was being released (its holder renewed it, or another machine took it over); nothing was released",
            info.url
        ))
        .hint("a holder that renews is alive: let it finish"));
    }
    if out.json {
        out.json(&serde_json::json!({"plan": plan, "lease": info.url, "released": true, "holder": holder, "record": rec.seq}));
    } else {
        out.line(format!(
            "released the lease `{}` (held by `{holder}` until {until}); recorded as audit record {}",
            info.url, rec.seq
        ));
    }
    Ok(Exit::Ok)
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
    let objects = copy_objects(ctx.store.as_ref(), target.as_ref(), &loc.to_string())?;
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

/// Copy plans, evidence and approvals from one store to another, write-once
/// (identical bytes already there are kept, different ones are a conflict),
/// each read back. Returns how many objects are there.
pub(crate) fn copy_objects(
    from: &dyn Store,
    target: &dyn Store,
    loc: &str,
) -> Result<u64, CommandError> {
    let mut objects = 0u64;
    for kind in [ObjectKind::Plan, ObjectKind::Evidence, ObjectKind::Approval] {
        let names = match kind {
            ObjectKind::Approval => {
                let mut all = Vec::new();
                for plan in from.list(kind, "")? {
                    all.extend(from.list(kind, &plan)?);
                }
                all
            }
            _ => from.list(kind, "")?,
        };
        for name in names {
            let Some(bytes) = from.get(kind, &name)? else {
                continue;
            };
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
    Ok(objects)
}
