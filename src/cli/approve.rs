//! `cordon approve PLAN --key KEY | --import SIG`: record an SSH signature over
//! the plan's bytes (namespace `cordon-plan`).

use std::path::PathBuf;

use clap::Args;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::workspace::{sign_and_store, store_signature};

#[derive(Args, Debug)]
pub struct ApproveArgs {
    pub plan: String,
    /// Your SSH private key (unencrypted; for an encrypted key sign with
    /// `ssh-keygen -Y sign -n cordon-plan -f KEY PLANFILE` and use --import).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "import",
        required_unless_present = "import"
    )]
    pub key: Option<PathBuf>,
    /// An armored signature made by `ssh-keygen -Y sign -n cordon-plan`.
    #[arg(long, value_name = "FILE")]
    pub import: Option<PathBuf>,
    /// The principal you sign as, when your allowed_signers line names several.
    #[arg(long = "as", value_name = "NAME", value_parser = crate::text::free_text)]
    pub signer: Option<String>,
}

pub fn cmd_approve(ctx: &Context, out: &Out, a: ApproveArgs) -> CmdResult {
    let (id, bytes, _plan) = ctx.load_plan(&a.plan)?;
    let (signer, fp) = if let Some(key) = &a.key {
        sign_and_store(ctx, &id, &bytes, key, a.signer.as_deref())?
    } else if let Some(file) = &a.import {
        let armored = std::fs::read_to_string(file)
            .map_err(|e| CommandError::failed(format!("cannot read `{}`: {e}", file.display())))?;
        store_signature(ctx, &id, &bytes, armored, a.signer.as_deref())?
    } else {
        return Err(CommandError::usage("give --key or --import"));
    };
    if out.json {
        out.json(&serde_json::json!({"plan": id, "signer": signer, "key_fingerprint": fp}));
    } else {
        out.line(format!(
            "approval recorded: plan {id} signed by {signer} ({fp})"
        ));
        out.line(format!("next: `cordon apply {id}`"));
    }
    Ok(Exit::Ok)
}
