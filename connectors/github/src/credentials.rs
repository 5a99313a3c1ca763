//! cordon's own GitHub credentials (not the leaked ones): a token for deploy
//! keys, a GitHub App for organisation-level actions, an OAuth app's client
//! credentials for OAuth tokens.
//!
//! Read from the environment first, then from the OS keyring. They live only in
//! [`Secret`]s: never written to state, evidence or logs.

use std::path::Path;

use cordon_connector::{ConnectorError, Secret};

/// The keyring service every cordon credential is stored under.
pub const KEYRING_SERVICE: &str = "cordon";

/// The credentials `cordon auth set github NAME` can store.
pub const CREDENTIAL_NAMES: &[&str] = &[
    "token",
    "app-id",
    "app-key",
    "oauth-client-id",
    "oauth-client-secret",
];

/// A GitHub App cordon acts as: app id and its private key (PEM).
pub struct AppCredentials {
    pub app_id: u64,
    pub private_key_pem: Secret,
}

/// An OAuth app's client credentials.
pub struct OauthClient {
    pub client_id: String,
    pub client_secret: Secret,
}

/// Everything cordon may authenticate with at GitHub. `Debug` shows which
/// credentials are present, never their values.
#[derive(Default)]
pub struct CordonCredentials {
    pub token: Option<Secret>,
    pub app: Option<AppCredentials>,
    pub oauth: Option<OauthClient>,
}

impl std::fmt::Debug for CordonCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CordonCredentials")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("app_id", &self.app.as_ref().map(|a| a.app_id))
            .field(
                "oauth_client_id",
                &self.oauth.as_ref().map(|o| o.client_id.as_str()),
            )
            .finish()
    }
}

impl CordonCredentials {
    /// `GITHUB_TOKEN`, `CORDON_GITHUB_APP_ID` + `CORDON_GITHUB_APP_KEY` (a PEM
    /// file path), `CORDON_GITHUB_OAUTH_CLIENT_ID` + `_SECRET`; each missing one
    /// is then looked up in the OS keyring.
    pub fn load() -> Result<Self, ConnectorError> {
        let token = env_secret("GITHUB_TOKEN").or_else(|| keyring_get("token"));

        let app_id = env_string("CORDON_GITHUB_APP_ID")
            .or_else(|| keyring_get("app-id").map(|s| s.expose().trim().to_owned()));
        let app_key = match env_string("CORDON_GITHUB_APP_KEY") {
            Some(path) => Some(read_pem(Path::new(&path))?),
            None => keyring_get("app-key"),
        };
        let app = match (app_id, app_key) {
            (Some(id), Some(key)) => Some(AppCredentials {
                app_id: id.parse().map_err(|_| {
                    ConnectorError::permanent(format!(
                        "github app id `{id}` is not a number; set CORDON_GITHUB_APP_ID to the \
                         app's numeric id"
                    ))
                })?,
                private_key_pem: key,
            }),
            (Some(_), None) => {
                return Err(ConnectorError::permanent(
                    "CORDON_GITHUB_APP_ID is set but the app's private key is not: set \
                     CORDON_GITHUB_APP_KEY to its PEM file or run `cordon auth set github app-key`",
                ))
            }
            _ => None,
        };

        let client_id = env_string("CORDON_GITHUB_OAUTH_CLIENT_ID")
            .or_else(|| keyring_get("oauth-client-id").map(|s| s.expose().trim().to_owned()));
        let client_secret = env_secret("CORDON_GITHUB_OAUTH_CLIENT_SECRET")
            .or_else(|| keyring_get("oauth-client-secret"));
        let oauth = match (client_id, client_secret) {
            (Some(client_id), Some(client_secret)) => Some(OauthClient {
                client_id,
                client_secret,
            }),
            _ => None,
        };
        Ok(CordonCredentials { token, app, oauth })
    }
}

/// Store one of cordon's own GitHub credentials in the OS keyring (for
/// `cordon auth set github NAME`). `name` is one of [`CREDENTIAL_NAMES`].
pub fn store_credential(name: &str, value: &Secret) -> Result<(), ConnectorError> {
    if !CREDENTIAL_NAMES.contains(&name) {
        return Err(ConnectorError::permanent(format!(
            "unknown github credential `{name}`; use one of: {}",
            CREDENTIAL_NAMES.join(", ")
        )));
    }
    let entry = keyring::Entry::new(KEYRING_SERVICE, &keyring_user(name)).map_err(keyring_error)?;
    entry.set_password(value.expose()).map_err(keyring_error)
}

fn keyring_user(name: &str) -> String {
    format!("github/{name}")
}

fn keyring_error(e: keyring::Error) -> ConnectorError {
    // keyring errors carry no secret; name the kind only.
    let kind = match e {
        keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_) => {
            "the OS keyring is not available to this process"
        }
        _ => "the OS keyring refused the credential",
    };
    ConnectorError::permanent(format!(
        "could not store the credential: {kind}; set it in the environment instead \
         (GITHUB_TOKEN, CORDON_GITHUB_APP_ID/CORDON_GITHUB_APP_KEY, \
         CORDON_GITHUB_OAUTH_CLIENT_ID/_SECRET)"
    ))
}

/// Every keyring failure is "not found": processes without a session keyring
/// (CI, containers) must fall through to "not configured", not crash.
fn keyring_get(name: &str) -> Option<Secret> {
    let entry = keyring::Entry::new(KEYRING_SERVICE, &keyring_user(name)).ok()?;
    let value = entry.get_password().ok()?;
    let secret = Secret::new(value);
    (!secret.expose().trim().is_empty()).then_some(secret)
}

fn env_string(var: &str) -> Option<String> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn env_secret(var: &str) -> Option<Secret> {
    let value = std::env::var(var).ok()?;
    let secret = Secret::new(value.trim().to_owned());
    drop(zeroize::Zeroizing::new(value));
    (!secret.is_empty()).then_some(secret)
}

fn read_pem(path: &Path) -> Result<Secret, ConnectorError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConnectorError::permanent(format!(
            "cannot read the github app key `{}`: {}; point CORDON_GITHUB_APP_KEY at the app's \
             private key (PEM)",
            path.display(),
            e.kind()
        ))
    })?;
    let secret = Secret::new(text);
    if !secret.expose().contains("-----BEGIN") {
        return Err(ConnectorError::permanent(format!(
            "`{}` is not a PEM private key; download the key from the app's settings page",
            path.display()
        )));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    // The only test in this binary that touches the environment.
    #[test]
    fn environment_first_and_debug_shows_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("app.pem");
        std::fs::write(
            &pem,
            "-----BEGIN RSA PRIVATE KEY-----\nMIIcanary\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        std::env::set_var("GITHUB_TOKEN", "ghp_envCanaryValue000000000000000000000");
        std::env::set_var("CORDON_GITHUB_APP_ID", "42");
        std::env::set_var("CORDON_GITHUB_APP_KEY", &pem);
        std::env::set_var("CORDON_GITHUB_OAUTH_CLIENT_ID", "Iv1.abc");
        std::env::set_var("CORDON_GITHUB_OAUTH_CLIENT_SECRET", "oauthCanarySecret");
        let creds = CordonCredentials::load().unwrap();
        assert_eq!(
            creds.token.as_ref().unwrap().expose(),
            "ghp_envCanaryValue000000000000000000000"
        );
        assert_eq!(creds.app.as_ref().unwrap().app_id, 42);
        assert_eq!(creds.oauth.as_ref().unwrap().client_id, "Iv1.abc");
        let shown = format!("{creds:?}");
        assert!(
            !shown.contains("Canary") && !shown.contains("MIIcanary"),
            "{shown}"
        );
        assert!(shown.contains("42") && shown.contains("Iv1.abc"), "{shown}");

        std::env::set_var("CORDON_GITHUB_APP_ID", "not-a-number");
        let e = CordonCredentials::load().unwrap_err();
        assert!(e.message.contains("`not-a-number`"), "{}", e.message);
        std::env::set_var("CORDON_GITHUB_APP_ID", "42");
        std::env::set_var("CORDON_GITHUB_APP_KEY", dir.path().join("missing.pem"));
        let e = CordonCredentials::load().unwrap_err();
        assert!(e.message.contains("CORDON_GITHUB_APP_KEY"), "{}", e.message);

        for v in [
            "GITHUB_TOKEN",
            "CORDON_GITHUB_APP_ID",
            "CORDON_GITHUB_APP_KEY",
            "CORDON_GITHUB_OAUTH_CLIENT_ID",
            "CORDON_GITHUB_OAUTH_CLIENT_SECRET",
        ] {
            std::env::remove_var(v);
        }
        // Nothing in the environment: the keyring is asked, and whatever it
        // answers (processes here have no session keyring) is not an error.
        CordonCredentials::load().unwrap();
    }

    #[test]
    fn unknown_credential_names_are_refused() {
        let e = store_credential("password", &Secret::new("x")).unwrap_err();
        assert!(e.message.contains("`password`"), "{}", e.message);
        assert!(e.message.contains("oauth-client-secret"), "{}", e.message);
    }
}
