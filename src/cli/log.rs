//! `cordon log verify`, `log show`, `log checkpoint` and `log key`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::audit::checkpoint::{self, CheckpointKey, Consistency, Verifier};
use crate::audit::{Kind, VerifyReport, VerifyStatus};

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Check the hash chain; exit 0 intact, 7 tampered, 8 torn tail. With
    /// --checkpoint, also check that the log still holds every record an
    /// exported checkpoint covers (catches a log cut short and re-chained).
    Verify(VerifyArgs),
    /// Sign a checkpoint of the log as it is now (also written after every
    /// plan run) and print it, or write it to --out: keep it somewhere the
    /// state directory's users cannot change.
    Checkpoint {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Print the public key that checks this log's checkpoints (safe to
    /// share; pass it to `log verify --key`). The private key never leaves
    /// the state directory.
    Key {
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Add a note to the audit log (a responder's observation, a decision
    /// taken outside cordon). `-` reads one note per line from stdin, each
    /// durable before the next. The author is a claim (`--as`), not proven.
    Note {
        /// The note, or `-` for one note per line of stdin.
        text: String,
        /// Who writes it (default: $USER).
        #[arg(long = "as", value_name = "NAME")]
        author: Option<String>,
    },
    /// Import an emergency local state (`cordon init --emergency`) into the
    /// shared one once the store answers again: its plans, approvals and
    /// evidence, and every record of its log appended to the shared chain,
    /// each carrying `imported` (the local chain, seq and hash it copies),
    /// then a note naming the local head. Both chains still verify. Safe to
    /// run again: records already imported are skipped.
    Import {
        /// The emergency state directory.
        dir: PathBuf,
        /// The shared state (default: --state / CORDON_STATE).
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        into: Option<String>,
    },
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

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A checkpoint exported earlier (`cordon log checkpoint --out FILE`).
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// The verifier key exported with `cordon log key` (the key text, or a
    /// file holding it). Default: the key in the state directory, which
    /// whoever can rewrite the log can also replace.
    #[arg(long, value_name = "VERIFIER", requires = "checkpoint")]
    key: Option<String>,
}

pub fn cmd_log(ctx: &Context, out: &Out, cmd: LogCommand) -> CmdResult {
    match cmd {
        LogCommand::Verify(args) => match args.checkpoint {
            Some(file) => verify_against_checkpoint(ctx, out, &file, args.key.as_deref(), false),
            // The state's own signed checkpoint (written after every plan
            // run) is checked too: a log cut back below it is not intact,
            // even if what is left chains (issue 21).
            None if !ctx.log.is_remote()
                && checkpoint::latest_path(&ctx.home).is_file()
                && CheckpointKey::load(&ctx.home).ok().flatten().is_some() =>
            {
                let latest = checkpoint::latest_path(&ctx.home);
                verify_against_checkpoint(ctx, out, &latest, None, true)
            }
            // A shared log: the signed checkpoint kept beside it, likewise.
            None if ctx.log.is_remote() => {
                let remote = ctx.log.remote_log().ok_or_else(|| {
                    CommandError::failed("the shared log is not reachable".to_owned())
                })?;
                match remote.read_checkpoint()? {
                    Some((note, _)) => {
                        let source = checkpoint::shared_source(remote);
                        let (cp, verifier) = checkpoint::open_shared(remote, &ctx.home, &note)
                            .map_err(|e| {
                                checkpoint_error(e).hint("the checkpoint kept beside the shared log does not verify: check it with `cordon log verify --checkpoint FILE --key VERIFIER` against one exported earlier")
                            })?;
                        report_against(ctx, out, &source, &cp, &verifier, true)
                    }
                    None => {
                        let r = ctx.log.verify()?;
                        if out.json {
                            out.json(&r);
                        } else {
                            out.line(describe(&r));
                        }
                        Ok(exit_for(&r))
                    }
                }
            }
            None => {
                let r = ctx.log.verify()?;
                if out.json {
                    out.json(&r);
                } else {
                    out.line(describe(&r));
                }
                Ok(exit_for(&r))
            }
        },
        LogCommand::Checkpoint { out: file } => {
            let (cp, note) = if ctx.log.is_remote() {
                // A shared log: signed by this machine's key over what the
                // store holds now, kept beside the log (replacing the last
                // one only if the log still holds what that one covers).
                checkpoint::write_shared(&ctx.log, &ctx.home).map_err(checkpoint_error)?
            } else {
                checkpoint::write_latest(&ctx.home).map_err(checkpoint_error)?
            };
            if let Some(f) = &file {
                std::fs::write(f, &note).map_err(|e| {
                    CommandError::failed(format!("cannot write `{}`: {e}", f.display()))
                })?;
            }
            if out.json {
                out.json(&serde_json::json!({
                    "origin": cp.origin,
                    "size": cp.size,
                    "root": cp.root_b64(),
                    "checkpoint": note,
                }));
            } else if let Some(f) = &file {
                out.line(format!(
                    "checkpoint of {} records written to `{}`; check it later with `cordon log verify --checkpoint {} --key \"$(cordon log key)\"`",
                    cp.size,
                    f.display(),
                    f.display()
                ));
            } else {
                out.line(note.trim_end_matches('\n'));
            }
            Ok(Exit::Ok)
        }
        LogCommand::Key { out: file } => {
            let key = CheckpointKey::load_or_create(&ctx.home).map_err(checkpoint_error)?;
            let vkey = key.verifier().encode();
            if let Some(f) = &file {
                std::fs::write(f, format!("{vkey}\n")).map_err(|e| {
                    CommandError::failed(format!("cannot write `{}`: {e}", f.display()))
                })?;
            }
            if out.json {
                out.json(&serde_json::json!({ "name": key.name(), "verifier_key": vkey }));
            } else if file.is_none() {
                out.line(vkey);
            }
            Ok(Exit::Ok)
        }
        LogCommand::Note { text, author } => {
            let author = author
                .or_else(|| std::env::var("USER").ok())
                .filter(|a| !a.trim().is_empty())
                .ok_or_else(|| CommandError::usage("say who writes the note with `--as NAME`"))?;
            let notes: Vec<String> = if text == "-" {
                let mut all = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut all).map_err(|e| {
                    CommandError::failed(format!("cannot read notes from stdin: {e}"))
                })?;
                all.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_owned)
                    .collect()
            } else {
                vec![text]
            };
            if notes.is_empty() {
                return Err(CommandError::usage("no note given (stdin was empty)"));
            }
            let mut last = 0;
            for n in &notes {
                let mut d = crate::audit::RecordDraft::new(
                    Kind::Note,
                    crate::gate::Principal::claim(
                        &author,
                        crate::plan::PrincipalKind::of_name(&author),
                    ),
                );
                d.message = Some(n.clone());
                last = ctx.log.append(d)?.seq;
            }
            if out.json {
                out.json(&serde_json::json!({ "notes": notes.len(), "last_seq": last }));
            } else {
                out.line(format!(
                    "{} note(s) recorded, the last as record {last}",
                    notes.len()
                ));
            }
            Ok(Exit::Ok)
        }
        LogCommand::Import { dir, into } => import(ctx, out, &dir, into),
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

fn exit_for(r: &VerifyReport) -> Exit {
    match &r.status {
        VerifyStatus::Intact => Exit::Ok,
        VerifyStatus::TornTail { .. } => Exit::TornTail,
        VerifyStatus::Tampered { .. } => Exit::Tampered,
    }
}

fn describe(r: &VerifyReport) -> String {
    match &r.status {
        VerifyStatus::Intact => format!("audit log intact: {} records, head {}", r.records, r.head),
        VerifyStatus::TornTail { bytes } => format!(
            "audit log torn tail: the last {bytes} bytes are an incomplete record (a crash mid-write); the {} records before it are intact. The next cordon command keeps the bytes in `audit.torn/` and records the recovery.",
            r.records
        ),
        VerifyStatus::Tampered { seq, reason } => format!(
            "audit log TAMPERED at seq {seq}: {reason}. {} records before it verify.",
            r.records
        ),
    }
}

fn checkpoint_error(e: checkpoint::CheckpointError) -> CommandError {
    match e {
        checkpoint::CheckpointError::Tampered { .. } => {
            CommandError::new(Exit::Tampered, e.to_string())
        }
        e => CommandError::failed(e.to_string()),
    }
}

/// `--key`: the key text itself, or a file that holds it.
fn verifier_from_arg(arg: &str) -> Result<Verifier, CommandError> {
    match Verifier::parse(arg) {
        Ok(v) => Ok(v),
        Err(parse_err) => {
            let path = Path::new(arg);
            if !path.is_file() {
                return Err(CommandError::usage(format!(
                    "`--key`: {parse_err}, and no file `{arg}` exists"
                ))
                .hint("print the key with `cordon log key` (on the machine that wrote the checkpoint)"));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                CommandError::failed(format!("cannot read verifier key `{arg}`: {e}"))
            })?;
            Verifier::parse(&text)
                .map_err(|e| CommandError::failed(format!("verifier key file `{arg}`: {e}")))
        }
    }
}

fn verify_against_checkpoint(
    ctx: &Context,
    out: &Out,
    file: &Path,
    key: Option<&str>,
    // The state directory's own checkpoint (plain `log verify`).
    own: bool,
) -> CmdResult {
    let verifier = match key {
        Some(k) => verifier_from_arg(k)?,
        None => CheckpointKey::load(&ctx.home)
            .map_err(checkpoint_error)?
            .map(|k| k.verifier())
            .ok_or_else(|| {
                CommandError::failed(format!(
                    "this state directory has no checkpoint key, so `{}` cannot be checked against it",
                    file.display()
                ))
                .hint("pass the verifier key exported when the checkpoint was made: `--key VERIFIER`")
            })?,
    };
    let cp = checkpoint::open_file(file, &verifier).map_err(|e| {
        CommandError::failed(e.to_string()).hint(
            "a checkpoint only proves something with the verifier key exported before it: pass it with `--key`",
        )
    })?;
    report_against(ctx, out, &file.display().to_string(), &cp, &verifier, own)
}

/// Scan the log against an opened checkpoint and report.
fn report_against(
    ctx: &Context,
    out: &Out,
    source: &str,
    cp: &checkpoint::Checkpoint,
    verifier: &Verifier,
    own: bool,
) -> CmdResult {
    let path = ctx.log.path();
    let scan = if ctx.log.is_remote() {
        checkpoint::scan_reader(&ctx.log.read_bytes()?[..], Some(cp.size))
    } else {
        checkpoint::scan_file(path, Some(cp.size))
    }
    .map_err(|e| CommandError::failed(format!("cannot read `{}`: {e}", path.display())))?;
    let consistency = checkpoint::consistency(&scan, cp);
    let problem = consistency.describe(cp);
    let exit = match (&scan.report.status, &consistency) {
        (VerifyStatus::Tampered { .. }, _)
        | (_, Consistency::Truncated { .. } | Consistency::Rewritten { .. }) => Exit::Tampered,
        _ => exit_for(&scan.report),
    };
    if out.json {
        let mut v = serde_json::to_value(&scan.report).unwrap_or_default();
        v["checkpoint"] = serde_json::json!({
            "file": source,
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root_b64(),
            "contained": problem.is_none(),
            "reason": problem,
        });
        out.json(&v);
        return Ok(exit);
    }
    match (&scan.report.status, problem) {
        (VerifyStatus::Tampered { .. }, _) => out.line(describe(&scan.report)),
        (_, Some(p)) => out.line(format!(
            "audit log TAMPERED against checkpoint `{}`: {p}. The hash chain alone {}: it was rewritten after the checkpoint was exported.",
            source,
            match scan.report.status {
                VerifyStatus::Intact => "verifies",
                _ => "verifies up to a torn tail",
            }
        )),
        (_, None) if own => {
            out.line(describe(&scan.report));
            out.line(format!(
                "and it still contains the {} records of {} signed checkpoint (`log verify --checkpoint` checks one exported elsewhere)",
                cp.size,
                if ctx.log.is_remote() { "the shared log's" } else { "this state directory's" }
            ));
        }
        (_, None) => {
            out.line(describe(&scan.report));
            out.line(format!(
                "checkpoint `{}` verified: signed by `{}`, and the log still contains its {} records (root {})",
                source,
                verifier.name,
                cp.size,
                cp.root_b64()
            ));
        }
    }
    Ok(exit)
}

/// `cordon log import DIR --into s3://…`.
fn import(ctx: &Context, out: &Out, dir: &Path, into: Option<String>) -> CmdResult {
    use crate::audit::{AuditLog, Imported, RecordDraft};
    use crate::state::s3::{S3Location, S3State};
    let url = into.or_else(|| ctx.shared.clone()).ok_or_else(|| {
        CommandError::usage("say which shared state to import into: --into s3://BUCKET/PREFIX")
    })?;
    let loc = S3Location::parse(&url).map_err(|e| CommandError::usage(e.to_string()))?;
    let home = crate::state::Home::open(dir)?;
    let local = AuditLog::new(home.audit_path(), home.torn_dir());
    let report = local.verify()?;
    if report.status != VerifyStatus::Intact {
        return Err(CommandError::new(
            exit_for(&report),
            format!(
                "the emergency log `{}` does not verify ({}); nothing was imported",
                local.describe(),
                describe(&report)
            ),
        )
        .hint(
            "run `cordon --home DIR log verify`; a torn tail is recovered by any command run there",
        ));
    }
    let records = local.read_all()?;
    match crate::audit::emergency_for(&records) {
        Some(u) if u == loc.to_string() => {}
        Some(u) => {
            return Err(CommandError::usage(format!(
                "`{}` is the emergency state for {u}, not for {loc}",
                dir.display()
            )))
        }
        None => {
            return Err(CommandError::usage(format!(
                "`{}` is not an emergency state (its log does not begin with the record `cordon init --emergency` writes)",
                dir.display()
            ))
            .hint("to move a whole local state into an empty shared one, use `cordon state migrate --to s3://…`"))
        }
    }
    let Some(chain) = records.first().map(|r| r.hash.clone()) else {
        return Err(CommandError::usage("the emergency log is empty"));
    };
    let s3 = S3State::open(loc.clone())?;
    let objects = super::state_cmd::copy_objects(&home, &s3, &loc.to_string())?;
    let shared = AuditLog::remote(Box::new(s3.log()));
    let (mut added, mut kept) = (0u64, 0u64);
    for r in &records {
        let mut d = RecordDraft::from_record(r);
        d.imported = Some(Imported {
            log: chain.clone(),
            seq: r.seq,
            hash: r.hash.clone(),
        });
        // Checked and appended as one step against the shared log: a re-run,
        // or another machine importing the same log at once, never copies a
        // record twice.
        let res = shared.append_with(|recs| {
            if recs.iter().any(|x| {
                x.imported
                    .as_ref()
                    .is_some_and(|i| i.log == chain && i.seq == r.seq)
            }) {
                Err(())
            } else {
                Ok(d.clone())
            }
        })?;
        match res {
            Ok(_) => added += 1,
            Err(()) => kept += 1,
        }
    }
    let head = report.head.clone();
    if added > 0 {
        let mut d = RecordDraft::note(
            "cordon",
            format!(
                "imported the emergency log `{}` ({} records, chain {chain}, head {head}); its records carry `imported` with their seq and hash there",
                dir.display(),
                records.len()
            ),
        );
        d.data = Some(serde_json::json!({
            "imported_log": chain,
            "records": records.len(),
            "local_head": head,
        }));
        shared.append(d)?;
    }
    // Both chains still verify: the local one untouched, the shared one
    // with the copies in it.
    let again = local.verify()?;
    let shared_report = shared.verify()?;
    if again.status != VerifyStatus::Intact || shared_report.status != VerifyStatus::Intact {
        return Err(CommandError::new(
            Exit::Tampered,
            format!(
                "after the import the local log says `{}` and the shared log says `{}`",
                describe(&again),
                describe(&shared_report)
            ),
        ));
    }
    if out.json {
        out.json(&serde_json::json!({
            "into": loc.to_string(),
            "objects": objects,
            "imported": added,
            "already_imported": kept,
            "local_chain": chain,
            "local_head": head,
            "shared_records": shared_report.records,
            "shared_head": shared_report.head,
        }));
    } else {
        out.line(format!(
            "imported {added} records of `{}` into {loc} ({kept} were already there) and {objects} objects; the local log ({} records, head {head}) and the shared log ({} records) both verify",
            dir.display(),
            records.len(),
            shared_report.records
        ));
    }
    Ok(Exit::Ok)
}
