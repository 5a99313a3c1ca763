//! `cordon approve PLAN --key KEY | --import SIG`: record an SSH signature over
//! the plan's bytes (namespace `cordon-plan`).

use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{Approver, Kind, RecordDraft};
use crate::gate::Principal;
use crate::plan::{now_ms, PrincipalKind};
use crate::policy::StoredSignature;
use crate::state::{ObjectKind, Store};

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
    #[arg(long = "as", value_name = "NAME", value_parser = super::args::free_text)]
    pub signer: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredFile {
    armored: String,
    #[serde(with = "crate::timefmt")]
    recorded_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    claimed_signer: Option<String>,
}

/// The signatures stored for a plan, oldest first (the requester's first).
pub fn stored_signatures(
    ctx: &Context,
    plan_id: &str,
) -> Result<Vec<StoredSignature>, CommandError> {
    let mut out = Vec::new();
    for name in ctx.home.list(ObjectKind::Approval, plan_id)? {
        let Some(bytes) = ctx.home.get(ObjectKind::Approval, &name)? else {
            continue;
        };
        let f: StoredFile = serde_json::from_slice(&bytes).map_err(|e| {
            CommandError::failed(format!("approval file `{name}` is unreadable: {e}"))
        })?;
        out.push(StoredSignature {
            armored: f.armored,
            recorded_at: f.recorded_at,
            claimed_signer: f.claimed_signer,
        });
    }
    Ok(out)
}

fn store(
    ctx: &Context,
    plan_id: &str,
    bytes: &[u8],
    armored: String,
    claimed: Option<&str>,
) -> Result<(String, String), CommandError> {
    let gate = ctx.gate();
    let policy = gate.policy().map_err(|e| {
        CommandError::new(
            Exit::PolicyInvalid,
            format!("cannot check the signature: {}", e.summary()),
        )
        .hint("run `cordon policy check`")
    })?;
    let now = now_ms();
    let check = policy
        .verify_signature(bytes, &armored, claimed, now)
        .map_err(|e| CommandError::failed(format!("signature refused: {e}")))?;
    // One review per reviewer.
    for s in stored_signatures(ctx, plan_id)? {
        if let Ok(prev) = policy.verify_signature(
            bytes,
            &s.armored,
            s.claimed_signer.as_deref(),
            s.recorded_at,
        ) {
            if prev.signer == check.signer {
                return Err(CommandError::failed(format!(
                    "`{}` has already signed plan `{plan_id}`: a second approval by the same person does not count",
                    check.signer
                ))
                .hint("ask another approver"));
            }
        }
    }
    let file = StoredFile {
        armored,
        recorded_at: now,
        claimed_signer: claimed.map(str::to_owned),
    };
    let json = serde_json::to_vec(&file).map_err(|e| CommandError::failed(e.to_string()))?;
    let name = format!(
        "{plan_id}/{}-{}.json",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        check.signer
    );
    ctx.home.put_new(ObjectKind::Approval, &name, &json)?;
    let mut d = RecordDraft::new(
        Kind::Approval,
        Principal {
            name: check.signer.clone(),
            kind: PrincipalKind::Person,
            verified: true,
            proof: Some(format!("ssh:{}", check.fingerprint)),
        },
    );
    d.plan = Some(plan_id.to_owned());
    d.approvers = vec![Approver {
        id: check.signer.clone(),
        key_fingerprint: check.fingerprint.clone(),
        signed_at: now,
    }];
    ctx.log.append(d)?;
    Ok((check.signer, check.fingerprint))
}

pub fn sign_and_store(
    ctx: &Context,
    plan_id: &str,
    bytes: &[u8],
    key: &Path,
    claimed: Option<&str>,
) -> Result<(String, String), CommandError> {
    let armored =
        crate::policy::sign(bytes, key).map_err(|e| CommandError::failed(e.to_string()))?;
    store(ctx, plan_id, bytes, armored, claimed)
}

pub fn cmd_approve(ctx: &Context, out: &Out, a: ApproveArgs) -> CmdResult {
    let (id, bytes, _plan) = ctx.load_plan(&a.plan)?;
    let (signer, fp) = if let Some(key) = &a.key {
        sign_and_store(ctx, &id, &bytes, key, a.signer.as_deref())?
    } else if let Some(file) = &a.import {
        let armored = std::fs::read_to_string(file)
            .map_err(|e| CommandError::failed(format!("cannot read `{}`: {e}", file.display())))?;
        store(ctx, &id, &bytes, armored, a.signer.as_deref())?
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
