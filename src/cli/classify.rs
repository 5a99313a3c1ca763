//! `cordon classify`: what credentials are in this text? Never prints one.

use std::io::Read;

use clap::Args;

use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::intake::classify::{classify_lines, Found};

#[derive(Args, Debug)]
pub struct ClassifyArgs {}

pub fn cmd_classify(out: &Out, _a: ClassifyArgs) -> CmdResult {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CommandError::failed(format!("cannot read stdin: {e}")))?;
    classify_text(out, cordon_connector::Secret::new(text))
}

/// List the credentials in `text` by fingerprint or key id (never the text).
pub fn classify_text(out: &Out, text: cordon_connector::Secret) -> CmdResult {
    let found = classify_lines(text.expose());
    let mut rows = Vec::new();
    let mut any = false;
    for f in &found {
        let (kind, ident, note) = match f {
            Found::GithubToken { kind, secret, .. } => {
                any = true;
                (
                    format!("github-token ({})", kind.prefix()),
                    format!("sha256:{}", secret.fingerprint()),
                    "checksum ok".to_owned(),
                )
            }
            Found::AwsKey {
                key_id,
                session,
                secret,
                ..
            } => {
                any = true;
                (
                    if *session {
                        "aws-session-key".into()
                    } else {
                        "aws-access-key".into()
                    },
                    key_id.clone(),
                    if secret.is_some() {
                        "paired with its secret".into()
                    } else {
                        "key id only".into()
                    },
                )
            }
            Found::Invalid {
                what,
                reason,
                fingerprint,
                ..
            } => (
                format!("not a credential ({what})"),
                format!("sha256:{fingerprint}"),
                reason.clone(),
            ),
            Found::PrivateKey { info, .. } => {
                any = true;
                (
                    format!("private-key ({}, {})", info.format, info.algorithm),
                    info.ssh_fingerprint.clone().unwrap_or_else(|| "-".into()),
                    if info.app_key_candidate {
                        "an RSA key in PEM: a deploy key's or a GitHub App's".into()
                    } else {
                        "a deploy key's (or another SSH key's)".into()
                    },
                )
            }
            Found::AwsSecretUnpaired { secret, .. } => (
                "aws-secret (no key id)".into(),
                format!("sha256:{}", secret.fingerprint()),
                "not containable without its key id".into(),
            ),
            Found::Unrecognised { length, .. } => (
                "unrecognised".into(),
                "-".into(),
                format!("{length} characters, not echoed"),
            ),
        };
        rows.push(vec![f.line().to_string(), kind, ident, note]);
    }
    if out.json {
        let v: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"line": r[0], "kind": r[1], "id": r[2], "note": r[3]}))
            .collect();
        out.json(&v);
    } else {
        out.table(&["LINE", "KIND", "ID", "NOTE"], &rows);
    }
    Ok(if any {
        Exit::Ok
    } else {
        Exit::NothingContainable
    })
}
