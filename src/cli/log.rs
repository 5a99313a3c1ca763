//! `cordon log verify` and `cordon log show`.

use clap::Subcommand;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{verify_file, Kind, VerifyStatus};

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Check the hash chain; exit 0 intact, 7 tampered, 8 torn tail.
    Verify,
    /// Show records (table or --json).
    Show {
        #[arg(long)]
        incident: Option<String>,
        #[arg(long)]
        plan: Option<String>,
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Only records that rest on break-glass (for review after the incident).
        #[arg(long)]
        break_glass: bool,
    },
}

pub fn cmd_log(ctx: &Context, out: &Out, cmd: LogCommand) -> CmdResult {
    match cmd {
        LogCommand::Verify => {
            let path = ctx.log.path();
            let r = verify_file(path).map_err(|e| {
                CommandError::failed(format!("cannot read `{}`: {e}", path.display()))
            })?;
            let exit = match &r.status {
                VerifyStatus::Intact => Exit::Ok,
                VerifyStatus::TornTail { .. } => Exit::TornTail,
                VerifyStatus::Tampered { .. } => Exit::Tampered,
            };
            if out.json {
                out.json(&r);
            } else {
                match &r.status {
                    VerifyStatus::Intact => out.line(format!("audit log intact: {} records, head {}", r.records, r.head)),
                    VerifyStatus::TornTail { bytes } => out.line(format!(
                        "audit log torn tail: the last {bytes} bytes are an incomplete record (a crash mid-write); the {} records before it are intact. The next cordon command keeps the bytes in `audit.torn/` and records the recovery.",
                        r.records
                    )),
                    VerifyStatus::Tampered { seq, reason } => out.line(format!(
                        "audit log TAMPERED at seq {seq}: {reason}. {} records before it verify.",
                        r.records
                    )),
                }
            }
            Ok(exit)
        }
        LogCommand::Show {
            incident,
            plan,
            kind,
            break_glass,
        } => {
            let recs = ctx.log.read_all()?;
            let sel: Vec<_> = recs
                .into_iter()
                .filter(|r| {
                    incident
                        .as_ref()
                        .is_none_or(|i| r.incident.as_ref() == Some(i))
                })
                .filter(|r| {
                    plan.as_ref().is_none_or(|p| {
                        r.plan.as_deref().is_some_and(|x| x.starts_with(p.as_str()))
                    })
                })
                .filter(|r| kind.is_none_or(|k| r.kind == k))
                .filter(|r| !break_glass || r.break_glass.is_some())
                .collect();
            if out.json {
                out.json(&sel);
                return Ok(Exit::Ok);
            }
            let rows: Vec<Vec<String>> = sel
                .iter()
                .map(|r| {
                    let what = if let Some(d) = &r.decision {
                        format!(
                            "{:?} by {}",
                            d.effect,
                            if d.policies.is_empty() {
                                "default".into()
                            } else {
                                d.policies.join(",")
                            }
                        )
                        .to_lowercase()
                    } else if let Some(o) = &r.outcome {
                        format!("{}: {}", o.label(), o.detail())
                    } else if let Some(v) = &r.verification {
                        v.label().to_owned()
                    } else if let Some(e) = &r.evidence {
                        format!("sha256:{}", &e[..16.min(e.len())])
                    } else {
                        r.message.clone().unwrap_or_default()
                    };
                    vec![
                        r.seq.to_string(),
                        crate::timefmt::format(&r.time),
                        r.kind.as_str().into(),
                        format!(
                            "{}{}",
                            r.actor.name,
                            if r.actor.verified { "" } else { "?" }
                        ),
                        r.approvers
                            .iter()
                            .map(|a| a.id.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                        r.plan.clone().unwrap_or_default(),
                        r.step.clone().unwrap_or_default(),
                        r.target
                            .as_ref()
                            .map(|t| t.display_name())
                            .unwrap_or_default(),
                        match &r.break_glass {
                            Some(b) => format!("BREAK-GLASS ({b}) {what}"),
                            None => what,
                        },
                    ]
                })
                .collect();
            out.table(
                &[
                    "SEQ",
                    "TIME",
                    "KIND",
                    "ACTOR",
                    "APPROVERS",
                    "PLAN",
                    "STEP",
                    "TARGET",
                    "WHAT",
                ],
                &rows,
            );
            Ok(Exit::Ok)
        }
    }
}
