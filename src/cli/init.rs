//! `cordon init`: create the state dir and install the organisation skeleton
//! (the shipped policy), with fresh secrets for the automation principals.

use std::path::Path;

use clap::Args;
use cordon_connector::Secret;

use super::context::{demo_switch, Context};
use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;
use crate::policy::{roster, DEMO_ENV};
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
    /// Give every automation principal of the existing roster a fresh secret
    /// (shown once; the old secrets stop working at once).
    #[arg(long)]
    pub rotate_secrets: bool,
    /// Keep the published example secrets (demos and tests only; the same as
    /// `CORDON_DEMO=1`, which every later command then also needs).
    #[arg(long)]
    pub demo: bool,
    /// Emergency local mode: the shared state (s3://BUCKET/PREFIX) is down
    /// and this home will hold the state meanwhile. Its log begins with a
    /// record naming the shared state; bring it back with `cordon log
    /// import DIR --into s3://BUCKET/PREFIX` once the store answers.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub emergency: Option<String>,
}

/// One fresh automation secret, shown to the operator once.
struct Fresh {
    principal: String,
    env: String,
    secret: Secret,
}

pub fn cmd_init(ctx: &Context, out: &Out, a: InitArgs) -> CmdResult {
    let demo = a.demo || demo_switch();
    if demo && a.rotate_secrets {
        return Err(CommandError::usage(
            "--rotate-secrets makes fresh secrets, the demo switch keeps the published ones: choose one",
        ));
    }
    // A shared state is checked before anything is written: an unreachable
    // store, a missing bucket or missing permissions are reported now.
    if ctx.shared.is_some() {
        if a.emergency.is_some() {
            return Err(CommandError::usage(
                "`--emergency` makes a local state while the shared one is down: unset --state / CORDON_STATE and pick the directory with --home",
            ));
        }
        ctx.log.version()?;
    }
    let emergency = match &a.emergency {
        Some(url) => Some(
            crate::state::s3::S3Location::parse(url)
                .map_err(|e| CommandError::usage(e.to_string()))?
                .to_string(),
        ),
        None => None,
    };
    let dir = ctx.home.ensure_dir("policy")?;
    let mut written = Vec::new();
    let mut fresh = Vec::new();
    for (name, text) in SHIPPED {
        let p = dir.join(name);
        if p.exists() && !a.force {
            continue;
        }
        let text = if name == "roster.toml" && !demo {
            // The example hashes never reach the disk outside a demo.
            let (t, f) = with_fresh_secrets(text, &p)?;
            fresh.extend(f);
            t
        } else {
            text.to_owned()
        };
        write_atomic(&p, text.as_bytes())?;
        written.push(name);
    }
    if a.rotate_secrets && !written.contains(&"roster.toml") {
        let p = dir.join("roster.toml");
        let text = std::fs::read_to_string(&p)
            .map_err(|e| CommandError::failed(format!("cannot read `{}`: {e}", p.display())))?;
        let (t, f) = with_fresh_secrets(&text, &p)?;
        write_atomic(&p, t.as_bytes())?;
        fresh.extend(f);
    }
    // The emergency marker is the log's own first record, so it travels
    // with the log and cannot be lost apart from it.
    if let Some(url) = &emergency {
        match crate::audit::emergency_for(&ctx.log.read_all()?) {
            Some(u) if &u == url => {}
            Some(u) => {
                return Err(CommandError::usage(format!(
                    "this home is already the emergency state for {u}"
                )))
            }
            None if ctx.log.version()? > 0 => {
                return Err(CommandError::usage(format!(
                    "`{}` already holds an audit log: an emergency state starts empty, so that its log can be imported whole",
                    ctx.home.root().display()
                ))
                .hint("pick a new directory with --home"))
            }
            None => {
                let mut d = crate::audit::RecordDraft::note(
                    "cordon",
                    format!(
                        "emergency local mode: the shared state {url} is unreachable; this log holds what is done meanwhile. Import it with `cordon log import {} --into {url}` once the store answers",
                        ctx.home.root().display()
                    ),
                );
                d.data = Some(serde_json::json!({ "emergency_for": url }));
                ctx.log.append(d)?;
            }
        }
    }
    if out.json {
        let secrets: Vec<serde_json::Value> = fresh
            .iter()
            .map(|f| {
                serde_json::json!({
                    "principal": f.principal,
                    "env": f.env,
                    // Shown once, by request: the operator stores it where the
                    // principal runs. Only its hash is kept.
                    "secret": f.secret.expose(),
                })
            })
            .collect();
        out.json(&serde_json::json!({
            "home": ctx.home.root(),
            "shared_state": ctx.shared,
            "policy": dir,
            "written": written,
            "secrets": secrets,
            "demo": demo,
            "emergency_for": emergency,
        }));
    } else {
        out.line(format!("state: {}", ctx.home.root().display()));
        if let Some(url) = &emergency {
            out.line(format!(
                "EMERGENCY local state for {url}: run commands with --home {} (and CORDON_STATE unset); afterwards `cordon log import {} --into {url}`",
                ctx.home.root().display(),
                ctx.home.root().display()
            ));
        }
        if let Some(shared) = &ctx.shared {
            out.line(format!(
                "shared state: {shared} (plans, approvals, evidence and the audit log; reachable)"
            ));
        }
        out.line(format!(
            "policy: {} ({} files written)",
            dir.display(),
            written.len()
        ));
        if !fresh.is_empty() {
            out.line("fresh secrets for the automation principals (shown once; roster.toml keeps only their SHA-256):");
            for f in &fresh {
                out.line(format!("  {}={}", f.env, f.secret.expose()));
            }
            out.line("store each where that principal runs (a CI secret, the agent's environment): cordon cannot show them again; `cordon init --rotate-secrets` makes new ones");
        } else if demo && written.contains(&"roster.toml") {
            out.line(format!(
                "demo: the roster keeps the published example secrets; every command needs {DEMO_ENV}=1 to accept them"
            ));
        }
        out.line("next: edit roster.toml and allowed_signers for your organisation, then `cordon policy check`");
    }
    Ok(Exit::Ok)
}

/// The roster text with the `secret_sha256` of every automation principal
/// replaced by the hash of a fresh random secret; comments and layout kept.
fn with_fresh_secrets(text: &str, path: &Path) -> Result<(String, Vec<Fresh>), CommandError> {
    let file = path.display().to_string();
    let parsed = roster::parse(text, &file).map_err(|findings| {
        let shown: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        CommandError::new(Exit::PolicyInvalid, shown.join("; "))
            .hint("fix roster.toml (`cordon policy check`), then run `cordon init --rotate-secrets` again")
    })?;
    let mut fresh = Vec::new();
    let mut section: Option<String> = None;
    let mut lines: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed
                .strip_prefix("[automation.")
                .and_then(|s| s.strip_suffix(']'))
                .map(|s| s.trim_matches('"').to_owned());
        }
        let key = trimmed.split('=').next().map(str::trim);
        match (&section, key) {
            (Some(name), Some("secret_sha256")) if parsed.automation.contains_key(name) => {
                let def = &parsed.automation[name];
                let env = def
                    .secret_env
                    .clone()
                    .unwrap_or_else(|| format!("CORDON_{}_SECRET", name.to_uppercase()));
                let secret = generate()?;
                let indent = &line[..line.len() - line.trim_start().len()];
                let eol = if line.ends_with('\n') { "\n" } else { "" };
                lines.push(format!(
                    "{indent}secret_sha256 = \"{}\"{eol}",
                    secret.fingerprint()
                ));
                fresh.push(Fresh {
                    principal: name.clone(),
                    env,
                    secret,
                });
            }
            _ => lines.push(line.to_owned()),
        }
    }
    Ok((lines.concat(), fresh))
}

/// 32 random bytes from the OS, base64url: 256 bits, printable, no padding.
fn generate() -> Result<Secret, CommandError> {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|e| CommandError::failed(format!("cannot read randomness from the OS: {e}")))?;
    Ok(Secret::new(format!(
        "cordon_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    )))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fresh_secrets_replace_every_automation_hash_and_nothing_else() {
        let shipped = SHIPPED[2].1;
        let (text, fresh) = with_fresh_secrets(shipped, Path::new("roster.toml")).unwrap();
        // ci, agent and (since bounded automation) assistant.
        assert_eq!(fresh.len(), 3);
        for f in &fresh {
            assert!(text.contains(&f.secret.fingerprint()));
            assert!(
                !text.contains(f.secret.expose()),
                "a raw secret in the roster"
            );
            assert!(f.secret.expose().starts_with("cordon_"));
            assert_eq!(f.secret.len(), "cordon_".len() + 43);
        }
        assert_ne!(fresh[0].secret.expose(), fresh[1].secret.expose());
        for h in crate::policy::EXAMPLE_SECRETS {
            assert!(!text.contains(h), "example hash left: {h}");
        }
        let envs: Vec<&str> = fresh.iter().map(|f| f.env.as_str()).collect();
        assert_eq!(
            envs,
            [
                "CORDON_CI_SECRET",
                "CORDON_AGENT_SECRET",
                "CORDON_ASSISTANT_SECRET"
            ]
        );
        // Same number of lines, same comments: only the values changed.
        assert_eq!(text.lines().count(), shipped.lines().count());
        let parsed = roster::parse(&text, "roster.toml").unwrap();
        assert_eq!(parsed.automation.len(), 3);
    }
}
