//! cordon's GitHub connector, built on `octocrab`.
//!
//! | action                               | target kind          | GitHub call |
//! |--------------------------------------|----------------------|-------------|
//! | `github:revoke-token`                | `token`              | `POST /credentials/revoke` (unauthenticated, 1,000 tokens a request, 60 requests an hour) |
//! | `github:revoke-installation-token`   | `installation-token` | `DELETE /installation/token` with the token itself |
//! | `github:revoke-oauth-token`          | `oauth-token`        | `DELETE /applications/{client_id}/token` with the app's client credentials |
//! | `github:revoke-oauth-grant`          | `oauth-token`        | `DELETE /applications/{client_id}/grant` |
//! | `github:delete-deploy-key`           | `deploy-key`         | `DELETE /repos/{owner}/{repo}/keys/{key_id}`, found by fingerprint |
//! | `github:revoke-org-pat-access`       | `org-pat`            | `POST /orgs/{org}/personal-access-tokens/{pat_id}` as cordon's GitHub App |
//! | `github:suspend-app-installations`   | `app-key`            | `PUT /app/installations/{id}/suspended` as the App, with a JWT signed by its leaked key |
//!
//! Reading a secret scanning alert (a webhook carries no secret):
//! [`GithubConnector::fetch_secret_scanning_alert`], with cordon's own token.
//! What a leaked token did: [`GithubConnector::token_activity`] searches an
//! organisation's audit log (GitHub Enterprise Cloud) by its `hashed_token`.
//!
//! Verification of a token is `GET /user` with it answering 401, retried with
//! backoff: GitHub revokes asynchronously, so `execute` of a revocation only
//! says "accepted; verification decides". That call uses the leaked token, so
//! it is made only when the policy allowed `github:probe-token`; a refresh
//! token (`ghr_`) authenticates no call at all and is reported not verified;
//! an OAuth token is checked by its app (`POST /applications/{id}/token`); a
//! fine-grained token's organisation access removed is reported `partial`.
//!
//! Installation tokens come classic (`ghs_` + 36) or, since April 2026,
//! stateless (`ghs_<app id>_<jwt>`); both are revoked with
//! `DELETE /installation/token`.
//!
//! The base URL is configurable for GitHub Enterprise Server
//! (`CORDON_GITHUB_API_URL`); the server's version decides how tokens are
//! revoked there (see [`GithubConnector::server`]).

mod alerts;
mod app_key;
mod audit_log;
mod budget;
mod config;
mod connector;
mod credentials;
mod http;

pub use alerts::{AlertLocation, SecretScanningAlert};
pub use audit_log::{AuditEvent, TokenActivity, MAX_AUDIT_PAGES};
pub use budget::{hhmm_utc, BudgetStatus, RevocationBudget};
pub use config::{GithubConfig, DEFAULT_API_URL, REVOKE_BATCH_LIMIT, REVOKE_REQUESTS_PER_HOUR};
pub use connector::{ssh_fingerprint, token_type, GithubConnector, Server, GHES_REVOKE_SINCE};
pub use credentials::{
    store_credential, AppCredentials, CordonCredentials, OauthClient, CREDENTIAL_NAMES,
    KEYRING_SERVICE,
};
pub use http::{redact_tokens, GITHUB_MEDIA_TYPE};
