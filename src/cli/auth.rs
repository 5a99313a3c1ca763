//! `cordon auth set github NAME`: store one of cordon's own credentials in the
//! OS keyring, read from stdin (never from argv).

use std::io::Read;

use clap::Subcommand;
use cordon_connector::Secret;

use super::error::{CmdResult, CommandError, Exit};
use super::output::Out;

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Store a credential for a provider; the value is read from stdin.
    Set {
        /// Only `github` for now (AWS uses its own default credential chain).
        provider: String,
        /// token, app-id, app-key, oauth-client-id, oauth-client-secret
        name: String,
    },
}

pub fn cmd_auth(out: &Out, cmd: AuthCommand) -> CmdResult {
    match cmd {
        AuthCommand::Set { provider, name } => {
            if provider != "github" {
                return Err(CommandError::usage(format!("provider `{provider}` keeps no credentials in cordon"))
                    .hint("AWS credentials come from the AWS default chain (environment, profiles, SSO, instance roles)"));
            }
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .map_err(|e| CommandError::failed(format!("cannot read stdin: {e}")))?;
            let secret = Secret::new(v.trim_end_matches(['\n', '\r']).to_owned());
            cordon_github::store_credential(&name, &secret).map_err(|e| {
                CommandError::failed(format!(
                    "cannot store `github/{name}` in the keyring: {}",
                    e.message
                ))
                .hint("set it in the environment instead (GITHUB_TOKEN, CORDON_GITHUB_*)")
            })?;
            if out.json {
                out.json(&serde_json::json!({"stored": format!("github/{name}")}));
            } else {
                out.line(format!("stored github/{name} in the OS keyring"));
            }
            Ok(Exit::Ok)
        }
    }
}
