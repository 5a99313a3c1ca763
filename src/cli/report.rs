//! `cordon report INCIDENT --format md|html|json`: the post-incident report,
//! replayed from the audit log, with the result of verifying the log itself.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::incident::{load_ledger, resolve, role_holders};
use super::output::Out;
use crate::incident::{build_report, name_role_holders, render_html, render_markdown};
use crate::plan::now_ms;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Incident id (default: CORDON_INCIDENT, else the only open incident).
    #[arg(env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
    #[arg(long, value_enum, default_value = "md")]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn cmd_report(ctx: &Context, out: &Out, a: ReportArgs) -> CmdResult {
    let ledger = load_ledger(ctx)?;
    let inc = resolve(&ledger, a.incident.as_deref())?;
    let verify = ctx.log.verify()?;
    let mut report = build_report(inc, verify, now_ms());
    name_role_holders(&mut report.open_items, &role_holders(ctx));
    let format = if out.json { Format::Json } else { a.format };
    let text = match format {
        Format::Md => render_markdown(&report),
        Format::Html => render_html(&report),
        Format::Json => serde_json::to_string_pretty(&report)
            .map_err(|e| CommandError::failed(format!("cannot encode the report: {e}")))?,
    };
    match &a.output {
        Some(file) => {
            std::fs::write(file, text.as_bytes()).map_err(|e| {
                CommandError::failed(format!("cannot write `{}`: {e}", file.display()))
            })?;
            if !out.json {
                out.line(format!(
                    "report of {} written to `{}`",
                    inc.id,
                    file.display()
                ));
            }
        }
        None => out.line(text.trim_end()),
    }
    // The report is only as good as the log: say so in the exit code too.
    Ok(match report.log_verify.status {
        crate::audit::VerifyStatus::Intact => Exit::Ok,
        crate::audit::VerifyStatus::TornTail { .. } => Exit::TornTail,
        crate::audit::VerifyStatus::Tampered { .. } => Exit::Tampered,
    })
}
