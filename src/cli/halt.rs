//! `cordon halt --reason R --key KEY` and `cordon resume --key KEY`: the
//! signed switch that stops every automation principal at once (see
//! `crate::halt`). Only a person in the roster, proven by an SSH signature
//! from a key in allowed_signers, may set or release it; both are audit
//! records.

use std::path::PathBuf;

use clap::Args;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::{Kind, RecordDraft};
use crate::gate::Principal;
use crate::halt::{self, Halt, Statement};
use crate::plan::{now_ms, PrincipalKind};

#[derive(Args, Debug)]
pub struct HaltArgs {
    /// Why automation must stop (recorded, and shown in every stopped step).
    #[arg(long)]
    pub reason: String,
    /// Your SSH private key (unencrypted), listed in allowed_signers.
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// The principal you sign as, when your allowed_signers line names several.
    #[arg(long = "as", value_name = "NAME")]
    pub signer: Option<String>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Why automation may act again (recorded).
    #[arg(long, default_value = "resumed")]
    pub reason: String,
    /// Your SSH private key (unencrypted), listed in allowed_signers.
    #[arg(long, value_name = "PATH")]
    pub key: PathBuf,
    /// The principal you sign as, when your allowed_signers line names several.
    #[arg(long = "as", value_name = "NAME")]
    pub signer: Option<String>,
}

/// Sign `statement` with `key` and prove the signer is a person of the roster.
fn sign_as_person(
    ctx: &Context,
    statement: &Statement,
    key: &std::path::Path,
    claimed: Option<&str>,
) -> Result<(Principal, String, String), CommandError> {
    let gate = ctx.gate();
    let policy = gate.policy().map_err(|e| {
        CommandError::new(
            Exit::PolicyInvalid,
            format!("cannot check who signs: {}", e.summary()),
        )
        .hint("run `cordon policy check`")
    })?;
    let bytes = statement
        .bytes()
        .map_err(|e| CommandError::failed(format!("cannot encode the statement: {e}")))?;
    let armored = crate::policy::sign(&bytes, key)
        .map_err(|e| CommandError::usage(format!("cannot sign: {e}")))?;
    let check = policy
        .verify_signature(&bytes, &armored, claimed, statement.at)
        .map_err(|e| CommandError::failed(format!("signature refused: {e}")))?;
    if !policy.roster().people.contains_key(&check.signer) {
        return Err(CommandError::new(
            Exit::Denied,
            format!(
                "`{}` is not a person in roster.toml: only people may set or release the halt switch",
                check.signer
            ),
        ));
    }
    let who = Principal {
        name: check.signer.clone(),
        kind: PrincipalKind::Person,
        verified: true,
        proof: Some(format!("ssh:{}", check.fingerprint)),
    };
    Ok((who, check.fingerprint, armored))
}

/// The halt in force: the state directory's file, or, on a shared state
/// (no file is written there), the audit log's latest halt record, which
/// holds for every machine. `Err` inside: a file that cannot be read.
fn in_force(
    ctx: &Context,
    root: &std::path::Path,
    shared: bool,
) -> Result<Result<Option<Halt>, String>, CommandError> {
    Ok(match halt::read(root) {
        Ok(None) if shared => Ok(halt::from_log(&ctx.log.read_all()?)),
        other => other,
    })
}

pub fn cmd_halt(ctx: &Context, out: &Out, a: HaltArgs) -> CmdResult {
    let root = ctx.home.root().to_path_buf();
    let shared = ctx.shared.is_some();
    if let Ok(Some(h)) = in_force(ctx, &root, shared)? {
        return Err(
            CommandError::failed(format!("already {}", halt::describe(&h)))
                .hint("`cordon resume --key KEY` releases it"),
        );
    }
    if a.reason.trim().is_empty() {
        return Err(CommandError::usage(
            "--reason must say why automation stops",
        ));
    }
    let statement = Statement::new("halt", a.reason.trim(), now_ms());
    let (who, fingerprint, signature) =
        sign_as_person(ctx, &statement, &a.key, a.signer.as_deref())?;
    let h = Halt {
        statement,
        by: who.name.clone(),
        key_fingerprint: fingerprint,
        signature,
    };
    let bytes = serde_json::to_vec_pretty(&h)
        .map_err(|e| CommandError::failed(format!("cannot encode the halt: {e}")))?;
    // The file first, so the halt holds from this instant; if it cannot be
    // recorded, it is taken back and nothing changed.
    if !shared {
        crate::state::write_atomic(&halt::path(&root), &bytes)?;
    }
    let mut d = RecordDraft::new(Kind::Halt, who.clone());
    d.message = Some(format!("halt: {}", h.statement.reason));
    d.data = Some(
        serde_json::to_value(halt::HaltPayload::Halt {
            statement: h.statement.clone(),
            key_fingerprint: h.key_fingerprint.clone(),
            signature: h.signature.clone(),
        })
        .map_err(|e| CommandError::failed(format!("cannot encode the halt: {e}")))?,
    );
    if let Err(e) = ctx.log.append(d) {
        if !shared {
            let _ = std::fs::remove_file(halt::path(&root));
        }
        return Err(CommandError::failed(format!(
            "the halt could not be recorded, so it was not set: {e}"
        )));
    }
    if out.json {
        out.json(
            &serde_json::json!({"halted": true, "by": who.name, "reason": h.statement.reason}),
        );
    } else {
        out.line(format!(
            "{}: every automation principal (ci, agent, assistant) stops; the agent keeps queuing deliveries; people still act. `cordon resume --key KEY` releases it",
            halt::describe(&h)
        ));
    }
    Ok(Exit::Ok)
}

pub fn cmd_resume(ctx: &Context, out: &Out, a: ResumeArgs) -> CmdResult {
    let root = ctx.home.root().to_path_buf();
    let shared = ctx.shared.is_some();
    let current = match in_force(ctx, &root, shared)? {
        Ok(None) => {
            return Err(CommandError::failed(
                "automation is not halted: nothing to resume",
            ))
        }
        Ok(Some(h)) => Some(h),
        // An unreadable halt file halts too; a signed resume removes it.
        Err(e) => {
            tracing::warn!("the halt file is unreadable ({e}); a resume removes it");
            None
        }
    };
    let statement = Statement::new("resume", a.reason.trim(), now_ms());
    let (who, fingerprint, signature) =
        sign_as_person(ctx, &statement, &a.key, a.signer.as_deref())?;
    let mut d = RecordDraft::new(Kind::Halt, who.clone());
    d.message = Some(format!("resume: {}", statement.reason));
    d.data = Some(
        serde_json::to_value(halt::HaltPayload::Resume {
            statement,
            key_fingerprint: fingerprint,
            signature,
            released: current.as_ref().map(|h| halt::Released {
                by: h.by.clone(),
                reason: h.statement.reason.clone(),
            }),
        })
        .map_err(|e| CommandError::failed(format!("cannot encode the resume: {e}")))?,
    );
    // Recorded first: automation acts again only once the resume is on record.
    ctx.log.append(d)?;
    // A shared state has no file (the resume record released it), unless
    // this machine halted before its state was shared.
    let removed = match std::fs::remove_file(halt::path(&root)) {
        Err(e) if shared && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    removed.map_err(|e| {
        CommandError::failed(format!(
            "the resume is recorded but the halt file could not be removed, so automation stays halted: {e}"
        ))
    })?;
    crate::state::sync_dir(&root)?;
    if out.json {
        out.json(&serde_json::json!({"halted": false, "by": who.name}));
    } else {
        out.line(format!(
            "resumed by `{}`: automation principals act again (the agent processes what it queued)",
            who.name
        ));
    }
    Ok(Exit::Ok)
}
