//! `cordon revoke github-oauth-token | github-deploy-key | github-org-pat`:
//! the GitHub containment actions other than the revocation API, each
//! identified → planned → gated → applied → verified like `revoke github-token`.
//!
//! * an OAuth app's token (`gho_`, or a `ghu_` of a GitHub App acting as an
//!   OAuth client) through the app's client credentials:
//!   `DELETE /applications/{client_id}/token`, or `/grant` for every token of
//!   the user's authorization;
//! * a deploy key, found by the SHA256 fingerprint derived from the leaked
//!   private key (the key itself never leaves this process);
//! * a fine-grained token's access to one organisation (partial: the token
//!   stays valid elsewhere, and the verification says so).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;

use clap::Args;
use cordon_connector::{Action, PlanStep, Provider, Secret, Target};
use serde_json::json;

use super::context::Context;
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use super::revoke::{plan_and_run, read_secret_env, OneShot};
use crate::engine::SecretBag;
use crate::intake::classify::{classify, Found, GithubKind};

#[derive(Args, Debug)]
pub struct OauthTokenArgs {
    /// The OAuth app's client id (cordon needs its client secret too:
    /// CORDON_GITHUB_OAUTH_CLIENT_ID/_SECRET or `cordon auth set github`).
    #[arg(long)]
    pub client_id: String,
    /// Revoke the user's whole authorization of the app (every token of it),
    /// not only this token.
    #[arg(long)]
    pub grant: bool,
    /// Read the token from stdin.
    #[arg(long, conflicts_with = "env", required_unless_present = "env")]
    pub stdin: bool,
    /// Read the token from this environment variable.
    #[arg(long, value_name = "VAR")]
    pub env: Option<String>,
    #[command(flatten)]
    pub one: OneShot,
}

#[derive(Args, Debug)]
pub struct DeployKeyArgs {
    /// The repository the key is deployed on, `OWNER/REPO`.
    #[arg(long, value_name = "OWNER/REPO")]
    pub repo: String,
    /// The leaked private key (OpenSSH format); only its public half's
    /// fingerprint is used.
    #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
    pub key_file: Option<PathBuf>,
    /// The key's fingerprint (`SHA256:...`, as `ssh-keygen -lf` prints it).
    #[arg(long, required_unless_present = "key_file")]
    pub fingerprint: Option<String>,
    #[command(flatten)]
    pub one: OneShot,
}

#[derive(Args, Debug)]
pub struct OrgPatArgs {
    /// The organisation whose access to remove.
    #[arg(long)]
    pub org: String,
    /// The id of the token's grant (`GET /orgs/ORG/personal-access-tokens`).
    #[arg(long)]
    pub pat_id: u64,
    #[command(flatten)]
    pub one: OneShot,
}

fn read_token(stdin: bool, env: Option<&str>) -> Result<Secret, CommandError> {
    if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CommandError::failed(format!("cannot read stdin: {e}")))?;
        // Moved, not copied: `Secret` owns the buffer and zeroes it on drop.
        return Ok(Secret::new(s));
    }
    match env {
        Some(var) => read_secret_env(var),
        None => Err(CommandError::usage("give --stdin or --env VAR")),
    }
}

/// A GitHub owner, repository, organisation or client id: the characters
/// GitHub allows, so that nothing planned can steer a request elsewhere.
fn name_ok(v: &str) -> bool {
    !v.is_empty()
        && v != "."
        && v != ".."
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub async fn cmd_oauth_token(ctx: &Context, out: &Out, a: OauthTokenArgs) -> CmdResult {
    if !name_ok(&a.client_id) {
        return Err(CommandError::usage(format!(
            "`{}` is not an oauth client id",
            a.client_id
        )));
    }
    let raw = read_token(a.stdin, a.env.as_deref())?;
    let mut found = classify(raw.expose()).into_iter().filter_map(|f| match f {
        Found::GithubToken { kind, secret, .. } => Some((kind, secret)),
        _ => None,
    });
    let Some((kind, secret)) = found.next() else {
        return Err(CommandError::new(
            Exit::NothingContainable,
            "no valid GitHub token in the input",
        )
        .hint("an oauth token starts with gho_ (or ghu_ for a github app's user token)"));
    };
    if found.next().is_some() {
        return Err(CommandError::usage(
            "give one oauth token at a time (each is checked against its app)",
        ));
    }
    if !matches!(kind, GithubKind::Oauth | GithubKind::AppUser) {
        return Err(CommandError::usage(format!(
            "a `{}` token is not an oauth app's token; use `cordon revoke github-token`",
            kind.prefix()
        )));
    }
    let fp = secret.fingerprint();
    let (action, tkind) = if a.grant {
        (Action::GithubRevokeOauthGrant, "oauth-grant")
    } else {
        (Action::GithubRevokeOauthToken, "oauth-token")
    };
    let mut target = Target::new(Provider::Github, tkind, fp.clone());
    target.tags.insert(
        "token_type".into(),
        kind.prefix().trim_end_matches('_').to_owned(),
    );
    let step = PlanStep {
        id: "s1".into(),
        action,
        target,
        secret: Some(fp),
        params: BTreeMap::from([("client_id".to_owned(), json!(a.client_id))]),
    };
    let mut secrets = SecretBag::default();
    secrets.insert(secret);
    drop(raw);
    plan_and_run(ctx, out, &a.one, vec![step], secrets).await
}

/// `SHA256:...` of the public half of an OpenSSH private key, read from
/// `path`. The key's bytes stay in a zeroed buffer and are never shown.
fn deploy_key_fingerprint(path: &std::path::Path) -> Result<String, CommandError> {
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
        CommandError::failed(format!("cannot read `{}`: {}", path.display(), e.kind()))
    })?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        CommandError::usage(format!(
            "`{}` is not a text (OpenSSH) private key",
            path.display()
        ))
    })?;
    // The public key of an OpenSSH private key is stored in the clear, even
    // when the private part is encrypted: no passphrase is needed.
    let key = ssh_key::PrivateKey::from_openssh(text).map_err(|_| {
        CommandError::usage(format!(
            "`{}` is not an OpenSSH private key (-----BEGIN OPENSSH PRIVATE KEY-----)",
            path.display()
        ))
        .hint("for another format pass --fingerprint (`ssh-keygen -lf KEY` prints it)")
    })?;
    Ok(key
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string())
}

pub async fn cmd_deploy_key(ctx: &Context, out: &Out, a: DeployKeyArgs) -> CmdResult {
    let Some((owner, repo)) = a
        .repo
        .split_once('/')
        .filter(|(o, r)| name_ok(o) && name_ok(r))
    else {
        return Err(CommandError::usage(format!(
            "`{}` is not OWNER/REPO",
            a.repo
        )));
    };
    let fingerprint = match (&a.key_file, &a.fingerprint) {
        (Some(path), _) => deploy_key_fingerprint(path)?,
        (None, Some(fp)) => {
            let body = fp.trim().strip_prefix("SHA256:").unwrap_or(fp.trim());
            let body = body.trim_end_matches('=');
            let ok = body.len() == 43
                && body
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
            if !ok {
                return Err(CommandError::usage(format!(
                    "`{fp}` is not an OpenSSH SHA256 fingerprint (SHA256: and 43 base64 characters)"
                )));
            }
            format!("SHA256:{body}")
        }
        (None, None) => return Err(CommandError::usage("give --key-file or --fingerprint")),
    };
    if !out.json {
        out.line(format!("deploy key {fingerprint} on {owner}/{repo}"));
    }
    let mut target = Target::new(Provider::Github, "deploy-key", fingerprint.clone());
    target.account = Some(owner.to_owned());
    let step = PlanStep {
        id: "s1".into(),
        action: Action::GithubDeleteDeployKey,
        target,
        secret: None,
        params: BTreeMap::from([
            ("owner".to_owned(), json!(owner)),
            ("repo".to_owned(), json!(repo)),
            ("fingerprint".to_owned(), json!(fingerprint)),
        ]),
    };
    plan_and_run(ctx, out, &a.one, vec![step], SecretBag::default()).await
}

pub async fn cmd_org_pat(ctx: &Context, out: &Out, a: OrgPatArgs) -> CmdResult {
    if !name_ok(&a.org) {
        return Err(CommandError::usage(format!(
            "`{}` is not a github organisation",
            a.org
        )));
    }
    let mut target = Target::new(Provider::Github, "org-pat", a.pat_id.to_string());
    target.account = Some(a.org.clone());
    let step = PlanStep {
        id: "s1".into(),
        action: Action::GithubRevokeOrgPatAccess,
        target,
        secret: None,
        params: BTreeMap::from([
            ("org".to_owned(), json!(a.org)),
            ("pat_id".to_owned(), json!(a.pat_id)),
        ]),
    };
    plan_and_run(ctx, out, &a.one, vec![step], SecretBag::default()).await
}
