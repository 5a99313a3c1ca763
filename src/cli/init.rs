//! `cordon init`: create the state dir and install the shipped policy.

use clap::Args;

use super::context::Context;
use super::error::{CmdResult, Exit};
use super::output::Out;
use crate::state::write_atomic;

/// The shipped policy, compiled in so `init` works from the binary alone.
const SHIPPED: [(&str, &str); 4] = [
    (
        "authority.cedar",
        include_str!("../../policies/authority.cedar"),
    ),
    (
        "authority.cedarschema",
        include_str!("../../policies/authority.cedarschema"),
    ),
    ("roster.toml", include_str!("../../policies/roster.toml")),
    (
        "allowed_signers",
        include_str!("../../policies/allowed_signers"),
    ),
];

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Replace policy files that already exist.
    #[arg(long)]
    pub force: bool,
}

pub fn cmd_init(ctx: &Context, out: &Out, a: InitArgs) -> CmdResult {
    let dir = ctx.home.ensure_dir("policy")?;
    let mut written = Vec::new();
    for (name, text) in SHIPPED {
        let p = dir.join(name);
        if p.exists() && !a.force {
            continue;
        }
        write_atomic(&p, text.as_bytes())?;
        written.push(name);
    }
    if out.json {
        out.json(&serde_json::json!({"home": ctx.home.root(), "policy": dir, "written": written}));
    } else {
        out.line(format!("state: {}", ctx.home.root().display()));
        out.line(format!(
            "policy: {} ({} files written)",
            dir.display(),
            written.len()
        ));
        out.line("next: edit roster.toml and allowed_signers for your organisation, then `cordon policy check`");
    }
    Ok(Exit::Ok)
}
