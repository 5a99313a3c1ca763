//! `cordon status [INCIDENT] [--watch]`: the one screen that answers what is
//! contained, verified, failed, blocked, and waiting for whom — replayed from
//! the audit log every time, never read from a stored summary.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::incident::{load_ledger, resolve, role_holders};
use super::output::Out;
use crate::incident::{name_role_holders, render_status, status_of};
use crate::plan::now_ms;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Incident id (default: CORDON_INCIDENT, else the only open incident).
    #[arg(env = "CORDON_INCIDENT")]
    pub incident: Option<String>,
    /// Keep running and redraw whenever the audit log changes (Ctrl-C to stop).
    /// With `--json`, one compact JSON document per line per change.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between checks of the audit log with `--watch`.
    #[arg(long, default_value_t = 2.0, value_name = "SECS", value_parser = super::args::interval)]
    pub interval: f64,
}

/// One rendering of the status: text, pretty JSON, or compact JSON (watch).
fn render(
    ctx: &Context,
    a: &StatusArgs,
    json_compact: bool,
    pretty: bool,
) -> Result<String, CommandError> {
    let ledger = load_ledger(ctx)?;
    let inc = resolve(&ledger, a.incident.as_deref())?;
    let now = now_ms();
    let mut st = status_of(inc, now);
    name_role_holders(&mut st.waiting, &role_holders(ctx));
    Ok(if json_compact {
        serde_json::to_string(&st).map_err(|e| CommandError::failed(e.to_string()))?
    } else if pretty {
        serde_json::to_string_pretty(&st).map_err(|e| CommandError::failed(e.to_string()))?
    } else {
        render_status(&st, now)
    })
}

pub async fn cmd_status(ctx: &Context, out: &Out, a: StatusArgs) -> CmdResult {
    if !a.watch {
        let text = render(ctx, &a, false, out.json)?;
        out.line(text.trim_end());
        return Ok(Exit::Ok);
    }
    if !(a.interval.is_finite() && a.interval > 0.0) {
        return Err(CommandError::usage(format!(
            "`--interval {}` must be a positive number of seconds",
            a.interval
        )));
    }
    let tty = std::io::stdout().is_terminal();
    let mut last_len: Option<u64> = None;
    loop {
        // Redraw only when the log grew (appends are the only way it changes).
        let len = std::fs::metadata(ctx.log.path())
            .map(|m| m.len())
            .unwrap_or(0);
        if last_len != Some(len) {
            last_len = Some(len);
            let text = render(ctx, &a, out.json, false)?;
            if out.json {
                out.line(text);
            } else if tty {
                out.raw_then_line("\x1b[2J\x1b[H", text.trim_end());
            } else {
                out.line(format!("{}\n", text.trim_end()));
            }
        }
        tokio::time::sleep(Duration::from_secs_f64(a.interval)).await;
    }
}
