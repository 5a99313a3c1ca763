use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use cordon_connector::{
    Action, BatchResult, Connector, ConnectorError, Outcome, Provider, Secret, StepContext,
    TargetState, Verification,
};
use futures::StreamExt as _;
use http::{Method, StatusCode};
use octocrab::Octocrab;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::alerts::{parse_alert, parse_locations, SecretScanningAlert};
use crate::budget::{hhmm_utc, until, BudgetStatus, RevocationBudget};
use crate::config::{GithubConfig, REVOKE_BATCH_LIMIT};
use crate::credentials::CordonCredentials;
use crate::http::{send_on, status_error, Api, Auth, Reply};
use cordon_connector::github_token::{github_token_type, stateless_installation};

/// How many leaked tokens are probed at once before a batch revocation.
const PROBE_CONCURRENCY: usize = 8;
/// Upper bound on pages read from a GitHub list (100 items a page).
const MAX_PAGES: u32 = 100;

/// cordon's GitHub connector.
pub struct GithubConnector {
    config: GithubConfig,
    pub(crate) creds: CordonCredentials,
    pub(crate) api: Api,
    budget: RevocationBudget,
    /// Installation clients of cordon's GitHub App, by organisation.
    installations: tokio::sync::Mutex<HashMap<String, Octocrab>>,
    /// github.com or a GitHub Enterprise Server of some version, asked once.
    server: tokio::sync::OnceCell<Server>,
}

/// Which GitHub cordon talks to: the revocation API differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// github.com (or a server that does not say it is GHES).
    Dotcom,
    /// GitHub Enterprise Server `major.minor`.
    Enterprise(u32, u32),
}

/// The first GHES release with `POST /credentials/revoke`. There it needs
/// authentication and takes only `ghp_` and `github_pat_` tokens:
/// <https://docs.github.com/en/enterprise-server@3.19/rest/credentials/revoke>.
pub const GHES_REVOKE_SINCE: (u32, u32) = (3, 19);

impl std::fmt::Debug for GithubConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConnector")
            .field("config", &self.config)
            .field("credentials", &self.creds)
            .finish()
    }
}

/// What a leaked token's own `GET /user` said.
enum Probe {
    /// 401: GitHub refuses the token.
    Refused,
    /// 200: the token works; owner and scopes as evidence.
    Live(serde_json::Value),
    /// 403 to an installation token: it works, but integrations cannot read /user.
    LiveIntegration,
}

#[derive(Serialize)]
struct RevokeBody<'a> {
    credentials: Vec<&'a str>,
}

#[derive(Serialize)]
struct AccessTokenBody<'a> {
    access_token: &'a str,
}

impl GithubConnector {
    pub fn new(config: GithubConfig, creds: CordonCredentials) -> Result<Self, ConnectorError> {
        config.validate()?;
        let api = Api::new(&config)?;
        let budget = RevocationBudget::new(&config.budget_file, config.revoke_requests_per_hour);
        Ok(GithubConnector {
            config,
            creds,
            api,
            budget,
            installations: tokio::sync::Mutex::new(HashMap::new()),
            server: tokio::sync::OnceCell::new(),
        })
    }

    /// Configuration from the environment (`CORDON_GITHUB_API_URL`), the
    /// budget file in `state_dir`, cordon's credentials from the environment
    /// and the OS keyring.
    pub fn from_env(state_dir: &std::path::Path) -> Result<Self, ConnectorError> {
        GithubConnector::new(
            GithubConfig::from_env(state_dir)?,
            CordonCredentials::load()?,
        )
    }

    pub fn config(&self) -> &GithubConfig {
        &self.config
    }

    /// The revocation API's budget for this hour (for `cordon status`).
    pub fn revocation_budget(&self) -> Result<BudgetStatus, ConnectorError> {
        self.budget.status()
    }

    /// github.com, or the GHES version: `x-github-enterprise-version` on the
    /// answer to `GET /meta` (GHES sends it on every answer, and `/meta`
    /// carries `installed_version`). Asked with cordon's own token when it
    /// has one (a GHES in private mode answers nothing anonymously), once.
    pub async fn server(&self) -> Result<Server, ConnectorError> {
        if self.config.api_url.trim_end_matches('/') == crate::config::DEFAULT_API_URL {
            return Ok(Server::Dotcom);
        }
        self.server
            .get_or_try_init(|| async {
                let auth = match self.creds.token.as_ref() {
                    Some(t) => Auth::Bearer(t),
                    None => Auth::None,
                };
                let reply = self
                    .api
                    .send(Method::GET, "/meta", auth, None::<&()>)
                    .await?;
                let header = reply
                    .headers
                    .get("x-github-enterprise-version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = reply
                    .json()
                    .and_then(|v| v["installed_version"].as_str().map(str::to_owned));
                match header.or(body) {
                    Some(v) => parse_ghes_version(&v).ok_or_else(|| {
                        ConnectorError::permanent(format!(
                            "the github server says it is enterprise server `{v}`, a version \
                             cordon cannot read"
                        ))
                    }),
                    None if reply.status.is_success() => Ok(Server::Dotcom),
                    None => Err(status_error(
                        "asking the github server for its version (GET /meta)",
                        &reply,
                    )),
                }
            })
            .await
            .copied()
    }

    // ------------------------------------------------------------ tokens

    async fn probe(&self, secret: &Secret) -> Result<Probe, ConnectorError> {
        let reply = self
            .api
            .send(Method::GET, "/user", Auth::Bearer(secret), None::<&()>)
            .await?;
        match reply.status {
            StatusCode::UNAUTHORIZED => Ok(Probe::Refused),
            StatusCode::OK => {
                let user = reply.json().unwrap_or_default();
                let scopes = reply
                    .headers
                    .get("x-oauth-scopes")
                    .and_then(|v| v.to_str().ok())
                    .map(|s| {
                        s.split(',')
                            .map(|x| x.trim().to_owned())
                            .filter(|x| !x.is_empty())
                            .collect::<Vec<_>>()
                    });
                Ok(Probe::Live(json!({
                    "owner": {
                        "login": user.get("login"),
                        "id": user.get("id"),
                        "type": user.get("type"),
                    },
                    // Absent for fine-grained tokens, which have no OAuth scopes.
                    "scopes": scopes,
                })))
            }
            StatusCode::FORBIDDEN if token_type(secret) == Some("installation-token") => {
                Ok(Probe::LiveIntegration)
            }
            _ => Err(status_error(
                "reading the token's owner (GET /user)",
                &reply,
            )),
        }
    }

    async fn describe_token(&self, secret: &Secret) -> Result<TargetState, ConnectorError> {
        let mut evidence = token_evidence(secret);
        if token_type(secret) == Some("app-refresh-token") {
            evidence["probed"] = json!(false);
            evidence["note"] = json!(REFRESH_NOTE);
            return Ok(TargetState {
                contained: false,
                evidence,
            });
        }
        if !self.config.allow_probe {
            evidence["probed"] = json!(false);
            evidence["note"] = json!(
                "the policy does not allow using the leaked token, so its owner and scopes were \
                 not read and whether it still works is unknown"
            );
            return Ok(TargetState {
                contained: false,
                evidence,
            });
        }
        evidence["probed"] = json!(true);
        let probed = match self.probe(secret).await {
            Ok(p) => p,
            // Evidence never blocks containment: a probe the token's owner's
            // rate limit refuses would otherwise hold the revocation for up
            // to an hour (its Retry-After). Say so and go on.
            Err(e) => {
                evidence["probed"] = json!(false);
                evidence["note"] = json!(format!(
                    "the owner probe failed, so the owner and scopes are unknown: {}",
                    e.message
                ));
                return Ok(TargetState {
                    contained: false,
                    evidence,
                });
            }
        };
        let contained = match probed {
            Probe::Refused => {
                evidence["github"] = json!("refuses the token (401 on GET /user)");
                true
            }
            Probe::Live(found) => {
                evidence["github"] = json!("accepts the token (200 on GET /user)");
                evidence["owner"] = found["owner"].clone();
                evidence["scopes"] = found["scopes"].clone();
                false
            }
            Probe::LiveIntegration => {
                evidence["github"] = json!(
                    "accepts the token (403 on GET /user: an installation token cannot read it)"
                );
                false
            }
        };
        Ok(TargetState {
            contained,
            evidence,
        })
    }

    async fn revoke_tokens(&self, ctxs: &[StepContext<'_>]) -> Vec<BatchResult> {
        let mut results: Vec<Option<BatchResult>> = vec![None; ctxs.len()];
        let mut pending: Vec<(usize, &Secret)> = Vec::new();
        for (i, ctx) in ctxs.iter().enumerate() {
            match step_secret(ctx).and_then(|s| revocable(ctx, s).map(|()| s)) {
                Ok(secret) => pending.push((i, secret)),
                Err(e) => results[i] = Some(Err(e)),
            }
        }

        // With probing allowed, a token GitHub already refuses needs no
        // request: that keeps execute idempotent and saves the hourly budget.
        if self.config.allow_probe && !pending.is_empty() {
            // Boxed so the stream's item type names no closure lifetime
            // (async-trait futures must be Send for every lifetime).
            type ProbeFuture<'f> =
                std::pin::Pin<Box<dyn std::future::Future<Output = (usize, bool)> + Send + 'f>>;
            let futs: Vec<ProbeFuture<'_>> = pending
                .iter()
                // A refresh token never authenticates an API call: its 401
                // proves nothing, so it is always sent for revocation.
                .filter(|(_, secret)| token_type(secret) != Some("app-refresh-token"))
                .map(|&(i, secret)| -> ProbeFuture<'_> {
                    Box::pin(
                        async move { (i, matches!(self.probe(secret).await, Ok(Probe::Refused))) },
                    )
                })
                .collect();
            let probes: Vec<(usize, bool)> = futures::stream::iter(futs)
                .buffer_unordered(PROBE_CONCURRENCY)
                .collect()
                .await;
            let refused: std::collections::HashSet<usize> = probes
                .into_iter()
                .filter_map(|(i, dead)| dead.then_some(i))
                .collect();
            pending.retain(|(i, _)| {
                if refused.contains(i) {
                    results[*i] = Some(Ok(Outcome::AlreadyContained {
                        detail: "github already refuses this token (401 on GET /user); no \
                                 revocation request sent"
                            .into(),
                    }));
                    false
                } else {
                    true
                }
            });
        }

        // GitHub Enterprise Server: the API exists from 3.19, needs
        // authentication there and takes only ghp_ and github_pat_.
        let mut authenticate_with: Option<&Secret> = None;
        if !pending.is_empty() {
            match self.server().await {
                Ok(Server::Dotcom) => {}
                Ok(Server::Enterprise(major, minor)) => {
                    let token = self.creds.token.as_ref();
                    pending.retain(|&(i, secret)| {
                        let refused = if (major, minor) < GHES_REVOKE_SINCE {
                            Some(format!(
                                "github enterprise server {major}.{minor} has no credential \
                                 revocation api (it came with 3.19)"
                            ))
                        } else if !matches!(
                            token_type(secret),
                            Some("classic-pat" | "fine-grained-pat")
                        ) {
                            Some(format!(
                                "github enterprise server {major}.{minor}'s credential \
                                 revocation api takes only ghp_ and github_pat_ tokens"
                            ))
                        } else if token.is_none() {
                            Some(format!(
                                "github enterprise server {major}.{minor}'s credential \
                                 revocation api needs authentication: set GITHUB_TOKEN (or `cordon \
                                 auth set github token`) to cordon's own token"
                            ))
                        } else {
                            None
                        };
                        match refused {
                            Some(why) => {
                                results[i] = Some(Err(ConnectorError::permanent(format!(
                                    "step `{}`: token `{}`: {why}; contain it another way: {}",
                                    ctxs[i].step.id,
                                    secret.fingerprint(),
                                    other_ways(token_type(secret))
                                ))));
                                false
                            }
                            None => true,
                        }
                    });
                    authenticate_with = token;
                }
                Err(e) => {
                    for (i, _) in pending.drain(..) {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }

        let chunks: Vec<&[(usize, &Secret)]> = pending.chunks(REVOKE_BATCH_LIMIT).collect();
        let wanted = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let (granted, status) = if wanted == 0 {
            (0, None)
        } else {
            match self.budget.take(wanted) {
                Ok((granted, status)) => (granted, Some(status)),
                Err(e) => {
                    for (i, _) in &pending {
                        results[*i] = Some(Err(e.clone()));
                    }
                    (0, None)
                }
            }
        };
        let total = chunks.len();
        for (n, chunk) in chunks.iter().enumerate() {
            if results[chunk[0].0].is_some() {
                continue; // budget file error already recorded
            }
            if n >= granted as usize {
                let e = budget_exhausted(status.as_ref());
                for (i, _) in chunk.iter() {
                    results[*i] = Some(Err(e.clone()));
                }
                continue;
            }
            let body = RevokeBody {
                credentials: chunk.iter().map(|(_, s)| s.expose()).collect(),
            };
            let auth = match authenticate_with {
                Some(t) => Auth::Bearer(t),
                None => Auth::None,
            };
            let outcome = match self
                .api
                .send(Method::POST, "/credentials/revoke", auth, Some(&body))
                .await
            {
                Ok(reply) if reply.status == StatusCode::ACCEPTED => Ok(Outcome::Done {
                    detail: format!(
                        "revocation accepted by github (request {} of {total}, {} tokens); \
                         github revokes asynchronously: verification decides",
                        n + 1,
                        chunk.len()
                    ),
                }),
                Ok(reply) => {
                    let e = revoke_refused(&reply);
                    if let Some(reset) = revocation_rate_limit_reset(&reply) {
                        // Remember GitHub's word so that no other cordon run on
                        // this machine spends a request before the reset.
                        if let Err(w) = self.budget.spent_until(reset) {
                            tracing::warn!("revocation budget not updated: {}", w.message);
                        }
                    }
                    Err(e)
                }
                // The revocation API is idempotent: a request whose answer was
                // lost can be sent again, so a lost answer is retryable here.
                Err(e) => Err(ConnectorError {
                    class: cordon_connector::ErrorClass::Retryable,
                    ..e
                }),
            };
            drop(body);
            for (i, _) in chunk.iter() {
                results[*i] = Some(outcome.clone());
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(ConnectorError::permanent(
                        "internal error: a step of the batch got no result",
                    ))
                })
            })
            .collect()
    }

    async fn revoke_installation_token(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Outcome, ConnectorError> {
        let secret = step_secret(ctx)?;
        if token_type(secret) != Some("installation-token") {
            return Err(ConnectorError::permanent(format!(
                "step `{}`: the token `{}` is not a github app installation token (ghs_); plan \
                 `github:revoke-token` for it instead",
                ctx.step.id,
                secret.fingerprint()
            )));
        }
        let reply = self
            .api
            .send(
                Method::DELETE,
                "/installation/token",
                Auth::Bearer(secret),
                None::<&()>,
            )
            .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(Outcome::Done {
                detail: "installation token revoked (204 on DELETE /installation/token)".into(),
            }),
            StatusCode::UNAUTHORIZED => Ok(Outcome::AlreadyContained {
                detail: "github already refuses this installation token (401)".into(),
            }),
            _ => Err(status_error(
                "revoking the installation token (DELETE /installation/token)",
                &reply,
            )),
        }
    }

    /// Verify a token is dead: `GET /user` with it answering 401, retried with
    /// backoff up to the configured bound. That is a call with the leaked
    /// token, so it is made only when the policy allowed `github:probe-token`;
    /// a refresh token has no harmless check at all.
    async fn verify_token(&self, secret: &Secret) -> Verification {
        if token_type(secret) == Some("app-refresh-token") {
            return Verification::NotVerified {
                detail: REFRESH_NOTE.into(),
            };
        }
        if !self.config.allow_probe {
            return Verification::NotVerified {
                detail: "the policy did not allow calling github with the leaked token \
                         (`github:probe-token`), so whether it is dead was not checked; github \
                         accepted the revocation, and a person allowed to probe can verify with \
                         `cordon apply` of this plan"
                    .into(),
            };
        }
        let started = std::time::Instant::now();
        let mut last = String::from("no answer");
        let mut pause = self.config.verify_backoff;
        for attempt in 1..=self.config.verify_attempts {
            match self
                .api
                .send(Method::GET, "/user", Auth::Bearer(secret), None::<&()>)
                .await
            {
                Ok(reply) if reply.status == StatusCode::UNAUTHORIZED => {
                    return Verification::Dead {
                        detail: format!(
                            "github refuses the token (401 on GET /user, check {attempt})"
                        ),
                    }
                }
                Ok(reply) => last = format!("{} on GET /user", reply.status.as_u16()),
                Err(e) => last = e.message,
            }
            if attempt < self.config.verify_attempts {
                // Without holding the step's in-flight places.
                cordon_connector::pause(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
        let remains = match stateless_installation(secret.expose()) {
            Ok(t) => format!(
                "; this is a stateless installation token of github app {}: {}, and the app's \
                 owner can suspend the installation (PUT /app/installations/ID/suspended) to \
                 stop it sooner",
                t.app_id,
                match t.expires_at {
                    Some(exp) => format!(
                        "it expires at {} at the latest (the token's own unverified `exp` claim)",
                        rfc3339(exp)
                    ),
                    None => "it expires at most one hour after it was issued".into(),
                }
            ),
            Err(_) => String::new(),
        };
        Verification::NotVerified {
            detail: format!(
                "github still did not refuse the token after {} checks over {}s (last: {last}); \
                 revocation is asynchronous at github: verify again later, and if it stays \
                 alive contain it another way{remains}",
                self.config.verify_attempts,
                started.elapsed().as_secs()
            ),
        }
    }

    // ------------------------------------------------------------ oauth

    fn oauth_client<'a>(
        &'a self,
        ctx: &StepContext<'_>,
    ) -> Result<(&'a str, &'a Secret), ConnectorError> {
        let wanted = required_param(ctx, "client_id")?;
        let Some(oauth) = self.creds.oauth.as_ref() else {
            return Err(ConnectorError::permanent(format!(
                "revoking an oauth token of app `{wanted}` needs the app's client credentials: \
                 set CORDON_GITHUB_OAUTH_CLIENT_ID and CORDON_GITHUB_OAUTH_CLIENT_SECRET, or run \
                 `cordon auth set github oauth-client-id` and `oauth-client-secret`"
            )));
        };
        if oauth.client_id != wanted {
            return Err(ConnectorError::permanent(format!(
                "the token belongs to oauth app `{wanted}` but cordon has client credentials for \
                 `{}`; configure the credentials of `{wanted}`",
                oauth.client_id
            )));
        }
        Ok((oauth.client_id.as_str(), &oauth.client_secret))
    }

    /// `POST /applications/{client_id}/token`: the app checks its token
    /// (this does not use the token's own privileges). `None` when GitHub no
    /// longer knows the token.
    async fn oauth_check(
        &self,
        ctx: &StepContext<'_>,
        secret: &Secret,
    ) -> Result<Option<serde_json::Value>, ConnectorError> {
        let (client_id, client_secret) = self.oauth_client(ctx)?;
        let path = format!("/applications/{}/token", segment(client_id, "client_id")?);
        let reply = self
            .api
            .send(
                Method::POST,
                &path,
                Auth::Basic {
                    user: client_id,
                    pass: client_secret,
                },
                Some(&AccessTokenBody {
                    access_token: secret.expose(),
                }),
            )
            .await?;
        match reply.status {
            StatusCode::OK => {
                let v = reply.json().unwrap_or_default();
                Ok(Some(json!({
                    "owner": { "login": v["user"]["login"], "id": v["user"]["id"] },
                    "scopes": v.get("scopes"),
                    "expires_at": v.get("expires_at"),
                })))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(
                &format!("checking the oauth token of app `{client_id}`"),
                &reply,
            )),
        }
    }

    async fn describe_oauth(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        let secret = step_secret(ctx)?;
        let mut evidence = token_evidence(secret);
        evidence["client_id"] = json!(ctx.step.param_str("client_id"));
        let found = self.oauth_check(ctx, secret).await?;
        let contained = found.is_none();
        match found {
            Some(v) => {
                evidence["github"] = json!("the app's token check finds the token (200)");
                evidence["owner"] = v["owner"].clone();
                evidence["scopes"] = v["scopes"].clone();
                evidence["expires_at"] = v["expires_at"].clone();
            }
            None => {
                evidence["github"] = json!("the app's token check no longer finds the token (404)")
            }
        }
        Ok(TargetState {
            contained,
            evidence,
        })
    }

    async fn revoke_oauth(
        &self,
        ctx: &StepContext<'_>,
        whole_grant: bool,
    ) -> Result<Outcome, ConnectorError> {
        let secret = step_secret(ctx)?;
        if self.oauth_check(ctx, secret).await?.is_none() {
            return Ok(Outcome::AlreadyContained {
                detail: "github no longer knows this oauth token (404 on the app's token check)"
                    .into(),
            });
        }
        let (client_id, client_secret) = self.oauth_client(ctx)?;
        let what = if whole_grant { "grant" } else { "token" };
        let path = format!("/applications/{}/{what}", segment(client_id, "client_id")?);
        let reply = self
            .api
            .send(
                Method::DELETE,
                &path,
                Auth::Basic {
                    user: client_id,
                    pass: client_secret,
                },
                Some(&AccessTokenBody {
                    access_token: secret.expose(),
                }),
            )
            .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(Outcome::Done {
                detail: if whole_grant {
                    format!("the user's whole grant of oauth app `{client_id}` was revoked")
                } else {
                    format!("oauth token of app `{client_id}` revoked")
                },
            }),
            StatusCode::NOT_FOUND => Ok(Outcome::AlreadyContained {
                detail: format!("github no longer knows this oauth {what} (404)"),
            }),
            _ => Err(status_error(
                &format!("revoking the oauth {what} of app `{client_id}`"),
                &reply,
            )),
        }
    }

    // ------------------------------------------------------------ secret scanning alerts

    /// Read secret scanning alert `number` of `owner/repo` with its secret and
    /// every location (`GET /repos/{owner}/{repo}/secret-scanning/alerts/{n}`
    /// and `…/locations`), with cordon's own token: a `secret_scanning_alert`
    /// webhook carries no secret. The answer's body is wiped once read.
    pub async fn fetch_secret_scanning_alert(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
    ) -> Result<SecretScanningAlert, ConnectorError> {
        use zeroize::Zeroize as _;
        let owner = segment(owner, "owner")?;
        let repo = segment(repo, "repository")?;
        let token = self.cordon_token("reading a secret scanning alert")?;
        let base = format!("/repos/{owner}/{repo}/secret-scanning/alerts/{number}");
        let what = format!("reading secret scanning alert {number} of `{owner}/{repo}`");
        let mut reply = self
            .api
            .send(Method::GET, &base, Auth::Bearer(token), None::<&()>)
            .await?;
        if reply.status != StatusCode::OK {
            return Err(status_error(&what, &reply));
        }
        let parsed = serde_json::from_str::<serde_json::Value>(&reply.body);
        reply.body.zeroize();
        let mut value = parsed.map_err(|_| {
            ConnectorError::permanent(format!("github's answer to {what} is not JSON"))
        })?;
        let fields = parse_alert(&value, owner, repo, number);
        if let Some(serde_json::Value::String(s)) = value.get_mut("secret") {
            s.zeroize();
        }
        let (secret, secret_type, html_url) = fields?;

        let mut locations = Vec::new();
        for page in 1..=MAX_PAGES {
            let reply = self
                .api
                .send(
                    Method::GET,
                    &format!("{base}/locations?per_page=100&page={page}"),
                    Auth::Bearer(token),
                    None::<&()>,
                )
                .await?;
            if reply.status != StatusCode::OK {
                return Err(status_error(
                    &format!("listing the locations of secret scanning alert {number} of `{owner}/{repo}`"),
                    &reply,
                ));
            }
            let v = reply.json().ok_or_else(|| {
                ConnectorError::permanent(format!(
                    "github's list of locations of alert {number} of `{owner}/{repo}` is not JSON"
                ))
            })?;
            let got = parse_locations(&v, owner, repo, number)?;
            let n = got.len();
            locations.extend(got);
            if n < 100 {
                break;
            }
        }
        Ok(SecretScanningAlert {
            owner: owner.to_owned(),
            repo: repo.to_owned(),
            number,
            secret,
            secret_type,
            html_url,
            locations,
        })
    }

    // ------------------------------------------------------------ deploy keys

    fn cordon_token(&self, what: &str) -> Result<&Secret, ConnectorError> {
        self.creds.token.as_ref().ok_or_else(|| {
            ConnectorError::permanent(format!(
                "{what} needs cordon's own github token with admin access to the repository: set \
                 GITHUB_TOKEN or run `cordon auth set github token`"
            ))
        })
    }

    /// The deploy key of `owner/repo` whose SHA256 fingerprint is the step's
    /// `fingerprint` param: `(key id, evidence)`, or `None` when not listed.
    async fn find_deploy_key(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<(String, Option<(u64, serde_json::Value)>), ConnectorError> {
        let owner = segment(required_param(ctx, "owner")?, "owner")?;
        let repo = segment(required_param(ctx, "repo")?, "repo")?;
        let wanted = normalize_fingerprint(required_param(ctx, "fingerprint")?);
        let token = self.cordon_token("reading deploy keys")?;
        let base = format!("/repos/{owner}/{repo}/keys");
        for page in 1..=MAX_PAGES {
            let reply = self
                .api
                .send(
                    Method::GET,
                    &format!("{base}?per_page=100&page={page}"),
                    Auth::Bearer(token),
                    None::<&()>,
                )
                .await?;
            if reply.status != StatusCode::OK {
                return Err(status_error(
                    &format!("listing the deploy keys of `{owner}/{repo}`"),
                    &reply,
                ));
            }
            let keys = reply
                .json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            for k in &keys {
                let fp = k["key"].as_str().and_then(ssh_fingerprint);
                if fp.as_deref() == Some(wanted.as_str()) {
                    let id = k["id"].as_u64().ok_or_else(|| {
                        ConnectorError::permanent("github listed a deploy key without an id")
                    })?;
                    let evidence = json!({
                        "repository": format!("{owner}/{repo}"),
                        "key_id": id,
                        "fingerprint": wanted,
                        "title": k.get("title"),
                        "read_only": k.get("read_only"),
                        "created_at": k.get("created_at"),
                        "added_by": k.get("added_by"),
                        "last_used": k.get("last_used"),
                    });
                    return Ok((base, Some((id, evidence))));
                }
            }
            if keys.len() < 100 {
                break;
            }
        }
        Ok((base, None))
    }

    async fn describe_deploy_key(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<TargetState, ConnectorError> {
        let (base, found) = self.find_deploy_key(ctx).await?;
        Ok(match found {
            Some((_, evidence)) => TargetState {
                contained: false,
                evidence,
            },
            None => TargetState {
                contained: true,
                evidence: json!({
                    "repository": base.trim_start_matches("/repos/").trim_end_matches("/keys"),
                    "fingerprint": ctx.step.param_str("fingerprint"),
                    "github": "no deploy key with this fingerprint is listed",
                }),
            },
        })
    }

    async fn delete_deploy_key(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        let (base, found) = self.find_deploy_key(ctx).await?;
        let Some((id, _)) = found else {
            return Ok(Outcome::AlreadyContained {
                detail: "no deploy key with this fingerprint is listed".into(),
            });
        };
        let token = self.cordon_token("deleting a deploy key")?;
        let reply = self
            .api
            .send(
                Method::DELETE,
                &format!("{base}/{id}"),
                Auth::Bearer(token),
                None::<&()>,
            )
            .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(Outcome::Done {
                detail: format!("deploy key {id} deleted"),
            }),
            StatusCode::NOT_FOUND => Ok(Outcome::AlreadyContained {
                detail: format!("deploy key {id} was already gone (404)"),
            }),
            _ => Err(status_error(&format!("deleting deploy key {id}"), &reply)),
        }
    }

    // ------------------------------------------------------------ org PAT access

    async fn installation_for(&self, org: &str) -> Result<Octocrab, ConnectorError> {
        let mut cache = self.installations.lock().await;
        if let Some(client) = cache.get(org) {
            return Ok(client.clone());
        }
        let Some(app) = self.creds.app.as_ref() else {
            return Err(ConnectorError::permanent(format!(
                "revoking a fine-grained token's access to `{org}` needs cordon's github app: set \
                 CORDON_GITHUB_APP_ID and CORDON_GITHUB_APP_KEY (PEM path), or run `cordon auth \
                 set github app-id` and `app-key`"
            )));
        };
        let app_client = Api::app_client(&self.config, app.app_id, &app.private_key_pem)?;
        let reply = send_on(
            &app_client,
            Method::GET,
            &format!("/orgs/{org}/installation"),
            Auth::Client,
            None::<&()>,
        )
        .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Err(ConnectorError::permanent(format!(
                "cordon's github app ({}) is not installed on `{org}`; install it there with \
                 the `organization_personal_access_tokens: write` permission",
                app.app_id
            )));
        }
        if reply.status != StatusCode::OK {
            return Err(status_error(
                &format!("finding the github app's installation on `{org}`"),
                &reply,
            ));
        }
        let id = reply.json().and_then(|v| v["id"].as_u64()).ok_or_else(|| {
            ConnectorError::permanent("github answered an installation without id")
        })?;
        let client = app_client
            .installation(octocrab::models::InstallationId(id))
            .map_err(|_| ConnectorError::permanent("cannot build the installation client"))?;
        cache.insert(org.to_owned(), client.clone());
        Ok(client)
    }

    async fn find_org_pat(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<(String, u64, Octocrab, Option<serde_json::Value>), ConnectorError> {
        let org = segment(required_param(ctx, "org")?, "org")?.to_owned();
        let pat_id = pat_id(ctx)?;
        let client = self.installation_for(&org).await?;
        for page in 1..=MAX_PAGES {
            let reply = send_on(
                &client,
                Method::GET,
                &format!("/orgs/{org}/personal-access-tokens?per_page=100&page={page}"),
                Auth::Client,
                None::<&()>,
            )
            .await?;
            if reply.status != StatusCode::OK {
                return Err(status_error(
                    &format!("listing the fine-grained tokens with access to `{org}`"),
                    &reply,
                ));
            }
            let grants = reply
                .json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            if let Some(g) = grants.iter().find(|g| g["id"].as_u64() == Some(pat_id)) {
                let evidence = json!({
                    "org": org,
                    "pat_id": pat_id,
                    "owner": { "login": g["owner"]["login"], "id": g["owner"]["id"] },
                    "token_id": g.get("token_id"),
                    "token_name": g.get("token_name"),
                    "token_expired": g.get("token_expired"),
                    "token_expires_at": g.get("token_expires_at"),
                    "token_last_used_at": g.get("token_last_used_at"),
                    "access_granted_at": g.get("access_granted_at"),
                    "repository_selection": g.get("repository_selection"),
                    "permissions": g.get("permissions"),
                });
                return Ok((org, pat_id, client, Some(evidence)));
            }
            if grants.len() < 100 {
                break;
            }
        }
        Ok((org, pat_id, client, None))
    }

    async fn describe_org_pat(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        let (org, pat_id, _, found) = self.find_org_pat(ctx).await?;
        Ok(match found {
            Some(evidence) => TargetState {
                contained: false,
                evidence,
            },
            None => TargetState {
                contained: true,
                evidence: json!({
                    "org": org,
                    "pat_id": pat_id,
                    "github": "the token has no access to the organisation",
                }),
            },
        })
    }

    async fn revoke_org_pat(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        let (org, pat_id, client, found) = self.find_org_pat(ctx).await?;
        if found.is_none() {
            return Ok(Outcome::AlreadyContained {
                detail: format!("fine-grained token {pat_id} has no access to `{org}`"),
            });
        }
        let reply = send_on(
            &client,
            Method::POST,
            &format!("/orgs/{org}/personal-access-tokens/{pat_id}"),
            Auth::Client,
            Some(&json!({ "action": "revoke" })),
        )
        .await?;
        match reply.status {
            StatusCode::NO_CONTENT => Ok(Outcome::Done {
                detail: format!("access of fine-grained token {pat_id} to `{org}` revoked"),
            }),
            StatusCode::NOT_FOUND => Ok(Outcome::AlreadyContained {
                detail: format!("fine-grained token {pat_id} has no access to `{org}` (404)"),
            }),
            _ => Err(status_error(
                &format!("revoking the access of fine-grained token {pat_id} to `{org}`"),
                &reply,
            )),
        }
    }
}

#[async_trait]
impl Connector for GithubConnector {
    fn provider(&self) -> Provider {
        Provider::Github
    }

    fn batch_limit(&self, action: Action) -> usize {
        match action {
            Action::GithubRevokeToken => REVOKE_BATCH_LIMIT,
            _ => 1,
        }
    }

    async fn describe(&self, ctx: &StepContext<'_>) -> Result<TargetState, ConnectorError> {
        match ctx.step.action {
            Action::GithubRevokeToken | Action::GithubRevokeInstallationToken => {
                if ctx.secret.is_none() {
                    // Planning without the token: say what is known, ask nothing.
                    return Ok(TargetState {
                        contained: false,
                        evidence: json!({
                            "fingerprint": ctx.step.secret.as_deref().unwrap_or(&ctx.step.target.id),
                            "probed": false,
                            "note": "the token was not supplied, so github was not asked",
                        }),
                    });
                }
                let secret = step_secret(ctx)?;
                self.describe_token(secret).await
            }
            Action::GithubRevokeOauthToken | Action::GithubRevokeOauthGrant => {
                self.describe_oauth(ctx).await
            }
            Action::GithubDeleteDeployKey => self.describe_deploy_key(ctx).await,
            Action::GithubRevokeOrgPatAccess => self.describe_org_pat(ctx).await,
            Action::GithubSuspendAppInstallations => self.describe_app_key(ctx).await,
            other => Err(unsupported(other)),
        }
    }

    async fn execute(&self, ctx: &StepContext<'_>) -> Result<Outcome, ConnectorError> {
        match ctx.step.action {
            Action::GithubRevokeToken => self
                .revoke_tokens(std::slice::from_ref(ctx))
                .await
                .pop()
                .unwrap_or_else(|| Err(ConnectorError::permanent("internal error: no result"))),
            Action::GithubRevokeInstallationToken => self.revoke_installation_token(ctx).await,
            Action::GithubRevokeOauthToken => self.revoke_oauth(ctx, false).await,
            Action::GithubRevokeOauthGrant => self.revoke_oauth(ctx, true).await,
            Action::GithubDeleteDeployKey => self.delete_deploy_key(ctx).await,
            Action::GithubRevokeOrgPatAccess => self.revoke_org_pat(ctx).await,
            Action::GithubSuspendAppInstallations => self.suspend_app_installations(ctx).await,
            other => Err(unsupported(other)),
        }
    }

    async fn execute_batch(&self, ctxs: &[StepContext<'_>]) -> Vec<BatchResult> {
        if !ctxs.is_empty()
            && ctxs
                .iter()
                .all(|c| c.step.action == Action::GithubRevokeToken)
        {
            return self.revoke_tokens(ctxs).await;
        }
        let mut out = Vec::with_capacity(ctxs.len());
        for ctx in ctxs {
            out.push(self.execute(ctx).await);
        }
        out
    }

    async fn verify(&self, ctx: &StepContext<'_>) -> Result<Verification, ConnectorError> {
        match ctx.step.action {
            Action::GithubRevokeToken | Action::GithubRevokeInstallationToken => {
                let secret = step_secret(ctx)?;
                Ok(self.verify_token(secret).await)
            }
            // The app's own token check (client credentials, not the leaked
            // token's privileges): 404 means github no longer knows the token.
            Action::GithubRevokeOauthToken | Action::GithubRevokeOauthGrant => {
                let secret = step_secret(ctx)?;
                Ok(match self.oauth_check(ctx, secret).await? {
                    None => Verification::Dead {
                        detail: "the oauth app's token check no longer finds the token (404 on \
                                 POST /applications/{client_id}/token)"
                            .into(),
                    },
                    Some(_) => Verification::Alive {
                        detail: "the oauth app's token check still finds the token (200)".into(),
                    },
                })
            }
            Action::GithubSuspendAppInstallations => self.verify_app_key(ctx).await,
            Action::GithubDeleteDeployKey => Ok(match self.find_deploy_key(ctx).await?.1 {
                None => Verification::Dead {
                    detail: "no deploy key with this fingerprint is listed any more".into(),
                },
                Some((id, _)) => Verification::Alive {
                    detail: format!("deploy key {id} is still listed"),
                },
            }),
            Action::GithubRevokeOrgPatAccess => Ok(match self.find_org_pat(ctx).await?.3 {
                // Partial by nature: the grant to this organisation is gone,
                // the token is not. It still works for the owner's own
                // repositories and every other organisation it was granted.
                None => Verification::Partial {
                    detail: format!(
                        "the token no longer has access to `{}` (read back from \
                         GET /orgs/{{org}}/personal-access-tokens); the token itself stays valid \
                         everywhere else it was granted (its owner's repositories, other \
                         organisations): revoke the token with `github:revoke-token` or ask \
                         its owner to delete it",
                        ctx.step.param_str("org").unwrap_or("the organisation")
                    ),
                },
                Some(_) => Verification::Alive {
                    detail: "the token still has access to the organisation".into(),
                },
            }),
            other => Err(unsupported(other)),
        }
    }
}

// ------------------------------------------------------------ helpers

fn unsupported(action: Action) -> ConnectorError {
    ConnectorError::permanent(format!(
        "the github connector cannot run `{}`; this is a bug in the plan",
        action.id()
    ))
}

/// The step's token, checked against the fingerprint the plan names.
fn step_secret<'a>(ctx: &StepContext<'a>) -> Result<&'a Secret, ConnectorError> {
    let expected = ctx.step.secret.as_deref();
    let Some(secret) = ctx.secret else {
        return Err(ConnectorError::permanent(format!(
            "step `{}` needs the token{}; supply it when applying the plan (stdin, environment \
             or the scanner report)",
            ctx.step.id,
            expected
                .map(|f| format!(" with fingerprint `{f}`"))
                .unwrap_or_default()
        )));
    };
    if let Some(expected) = expected {
        if secret.fingerprint() != expected {
            return Err(ConnectorError::permanent(format!(
                "step `{}`: the supplied token does not match fingerprint `{expected}`; supply \
                 the token the plan was made for",
                ctx.step.id
            )));
        }
    }
    Ok(secret)
}

/// The kinds the credential revocation API accepts.
fn revocable(ctx: &StepContext<'_>, secret: &Secret) -> Result<(), ConnectorError> {
    match token_type(secret) {
        Some("installation-token") => Err(ConnectorError::permanent(format!(
            "step `{}`: token `{}` is a github app installation token (ghs_), which the \
             revocation api does not take; plan `github:revoke-installation-token` instead",
            ctx.step.id,
            secret.fingerprint()
        ))),
        Some(_) => Ok(()),
        None => Err(ConnectorError::permanent(format!(
            "step `{}`: token `{}` is not a github token the revocation api takes (ghp_, \
             github_pat_, gho_, ghu_, ghr_); check the plan",
            ctx.step.id,
            secret.fingerprint()
        ))),
    }
}

/// GitHub's token kinds, by prefix.
pub fn token_type(secret: &Secret) -> Option<&'static str> {
    github_token_type(secret.expose())
}

/// Why a refresh token is never "verified dead". A `ghr_` token is only ever
/// exchanged at `POST https://github.com/login/oauth/access_token` for a new
/// user token; it authenticates no API call, so `GET /user` refuses it whether
/// it is revoked or not, and exchanging it would consume it and mint a live
/// token. Source:
/// <https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens>.
const REFRESH_NOTE: &str =
    "a refresh token (ghr_) authenticates no api call, so github refusing it on GET /user \
     proves nothing, and github documents no check that leaves a refresh token intact \
     (exchanging it would consume it and mint a live user token): it cannot be verified; \
     revoking it with POST /credentials/revoke is what can be done";

fn token_evidence(secret: &Secret) -> serde_json::Value {
    let mut v = json!({
        "fingerprint": secret.fingerprint(),
        "token_type": token_type(secret),
    });
    if let Ok(t) = stateless_installation(secret.expose()) {
        v["format"] = json!("stateless");
        v["app_id"] = json!(t.app_id);
        v["installation_id_claim"] = json!(t.installation_id);
        v["expires_at_claim"] = json!(t.expires_at.map(rfc3339));
        v["claims_note"] = json!(
            "app id from the token's documented format; expiry and installation from its jwt \
             claims, not verified by cordon"
        );
    }
    v
}

/// Other containment paths for a token the revocation API will not take now.
fn other_ways(kind: Option<&str>) -> String {
    let all = "an installation token with `github:revoke-installation-token` (or suspending the \
               app's installation), an oauth token with `cordon revoke github-oauth-token` (the \
               app's client credentials), a deploy key with `cordon revoke github-deploy-key`, a \
               fine-grained token's organisation access with `cordon revoke github-org-pat` \
               (partial: the token stays valid elsewhere), or ask the token's owner to delete \
               it in their settings";
    match kind {
        Some("oauth-token") => "revoke it through its oauth app with `cordon revoke \
                               github-oauth-token --client-id ID` (the app's client \
                               credentials), or ask its owner to revoke the app's authorization"
            .into(),
        Some("fine-grained-pat") => "remove its organisation access with `cordon revoke \
                                     github-org-pat` (partial), or ask its owner to delete it"
            .into(),
        Some("classic-pat") => "ask its owner or a site administrator to delete it".into(),
        _ => all.into(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a unix time (days from the civil calendar).
fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's days_from_civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// `3.19.0` -> `Enterprise(3, 19)`.
fn parse_ghes_version(v: &str) -> Option<Server> {
    let mut it = v.trim().split('.');
    let major = it.next()?.trim().parse().ok()?;
    let minor = it.next()?.trim().parse().ok()?;
    Some(Server::Enterprise(major, minor))
}

/// GitHub's answer when the revocation API's budget of the originating IP is
/// spent: 403 or 429 with `x-ratelimit-remaining: 0`, and the reset time in
/// `x-ratelimit-reset` (unix seconds). Source:
/// <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-primary-rate-limit>.
/// Returns the reset time (now + `retry-after` when only that is given).
fn revocation_rate_limit_reset(reply: &Reply) -> Option<u64> {
    let code = reply.status.as_u16();
    let header = |k: &str| reply.headers.get(k).and_then(|v| v.to_str().ok());
    let spent = header("x-ratelimit-remaining").map(str::trim) == Some("0");
    if !(matches!(code, 403 | 429) && (spent || header("retry-after").is_some())) {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    header("x-ratelimit-reset")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .or_else(|| {
            header("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| now + s)
        })
        // Rate limited without a time: GitHub's window is an hour.
        .or(Some(now + 3600))
}

fn revoke_refused(reply: &Reply) -> ConnectorError {
    let what = "the credential revocation request (POST /credentials/revoke)";
    if let Some(reset) = revocation_rate_limit_reset(reply) {
        return ConnectorError::retryable(format!(
            "github rate-limited {what} ({}): the 60-an-hour budget of this machine's public \
             address is spent (other machines behind the same address, such as shared ci \
             runners, spend it too); cordon retries at {} — or contain the token another way \
             now: {}",
            reply.status.as_u16(),
            hhmm_utc(reset),
            other_ways(None)
        ))
        .with_retry_after(Some(until(reset)));
    }
    match reply.status.as_u16() {
        403 => ConnectorError::permanent(format!(
            "github refused {what} with 403: {}; the endpoint must be called without \
             authentication, so check for a proxy that adds credentials",
            reply.message()
        )),
        422 => ConnectorError::permanent(format!(
            "github rejected {what} with 422 (validation failed, or the endpoint has been \
             spammed): {}; wait before trying again, or contain the tokens another way",
            reply.message()
        )),
        _ => status_error(what, reply),
    }
}

fn budget_exhausted(status: Option<&BudgetStatus>) -> ConnectorError {
    let (limit, at) = match status {
        Some(s) => (s.limit, s.next_free_at),
        None => (crate::config::REVOKE_REQUESTS_PER_HOUR, None),
    };
    let when = at
        .map(|t| format!("wait until {}", hhmm_utc(t)))
        .unwrap_or_else(|| "wait an hour".into());
    ConnectorError::retryable(format!(
        "github's credential revocation api allows {limit} requests an hour and this hour's are \
         spent; {when} and apply again, or contain the token another way: {}",
        other_ways(None)
    ))
    .with_retry_after(at.map(until))
}

fn required_param<'a>(ctx: &StepContext<'a>, key: &str) -> Result<&'a str, ConnectorError> {
    ctx.step
        .param_str(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            ConnectorError::permanent(format!(
                "step `{}` (`{}`) is missing the parameter `{key}`; fix the plan",
                ctx.step.id,
                ctx.step.action.id()
            ))
        })
}

fn pat_id(ctx: &StepContext<'_>) -> Result<u64, ConnectorError> {
    let v = ctx.step.params.get("pat_id");
    v.and_then(|v| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    })
    .ok_or_else(|| {
        ConnectorError::permanent(format!(
            "step `{}`: `pat_id` must be the numeric id of the fine-grained token's grant \
                 (from `GET /orgs/ORG/personal-access-tokens`)",
            ctx.step.id
        ))
    })
}

/// A path segment from the plan: GitHub owner, repo, org and client id
/// characters only, so that no plan can steer a request to another path.
pub(crate) fn segment<'a>(value: &'a str, name: &str) -> Result<&'a str, ConnectorError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(value)
    } else {
        Err(ConnectorError::permanent(format!(
            "`{value}` is not a valid github {name}; fix the plan"
        )))
    }
}

/// OpenSSH's SHA256 fingerprint (`SHA256:` + unpadded base64) of an
/// `ssh-<type> <base64> [comment]` public key line.
pub fn ssh_fingerprint(line: &str) -> Option<String> {
    let blob = line.split_whitespace().nth(1)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Sha256::digest(&bytes);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

fn normalize_fingerprint(fp: &str) -> String {
    let fp = fp.trim();
    let body = fp
        .strip_prefix("SHA256:")
        .unwrap_or(fp)
        .trim_end_matches('=');
    format!("SHA256:{body}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn ssh_fingerprint_matches_openssh() {
        // Both values printed by `ssh-keygen -lf` for these keys.
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpRboUAtmus8dYE5g9dEHD4NXw18AJvHFHSvhxM0rAS root@vm";
        let want = "SHA256:PcSAkaPeaAd5ST2XTfrYZ6B1Y26CfIfgai+jbC/14A4";
        assert_eq!(ssh_fingerprint(key).unwrap(), want);
        let zero =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(
            ssh_fingerprint(zero).unwrap(),
            "SHA256:kmYcvdi2GkPeWxB6XLjrZB8JHsy2Hm8luHMFp9GMvqk"
        );
        assert_eq!(normalize_fingerprint(&format!("{want}=")), want);
        assert_eq!(
            normalize_fingerprint(want.trim_start_matches("SHA256:")),
            want
        );
    }

    #[test]
    fn segments_reject_path_tricks() {
        assert!(segment("octo-org", "org").is_ok());
        assert!(segment("..", "org").is_err());
        assert!(segment("a/b", "org").is_err());
        assert!(segment("a?b", "org").is_err());
    }

    #[test]
    fn budget_message_says_when_and_what_else() {
        let e = budget_exhausted(Some(&BudgetStatus {
            limit: 60,
            used: 60,
            next_free_at: Some(3600 * 14 + 5 * 60),
        }));
        assert!(e.message.contains("wait until 14:05 UTC"), "{}", e.message);
        assert!(e.message.contains("github:revoke-installation-token"));
        assert_eq!(e.class, cordon_connector::ErrorClass::Retryable);
    }

    #[test]
    fn rfc3339_and_ghes_versions() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_777_777_777), "2026-05-03T03:09:37Z");
        assert_eq!(
            parse_ghes_version("3.19.0"),
            Some(Server::Enterprise(3, 19))
        );
        assert_eq!(parse_ghes_version("3.9"), Some(Server::Enterprise(3, 9)));
        assert!(Server::Enterprise(3, 9) != Server::Dotcom);
        assert!((3, 9) < GHES_REVOKE_SINCE && (3, 19) >= GHES_REVOKE_SINCE);
        assert_eq!(parse_ghes_version("x"), None);
    }

    // issue 17: every 403 from the revocation API was a permanent failure.
    #[test]
    fn a_spent_revocation_budget_is_retried_after_githubs_reset() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-ratelimit-remaining", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset", "4102444800".parse().unwrap());
        for code in [403u16, 429] {
            let reply = Reply {
                status: StatusCode::from_u16(code).unwrap(),
                headers: headers.clone(),
                body: r#"{"message":"API rate limit exceeded for 203.0.113.7."}"#.into(),
            };
            assert_eq!(revocation_rate_limit_reset(&reply), Some(4102444800));
            let e = revoke_refused(&reply);
            assert_eq!(
                e.class,
                cordon_connector::ErrorClass::Retryable,
                "{}",
                e.message
            );
            assert!(e.retry_after.is_some());
        }
        let plain = Reply {
            status: StatusCode::FORBIDDEN,
            headers: http::HeaderMap::new(),
            body: "{}".into(),
        };
        assert_eq!(revocation_rate_limit_reset(&plain), None);
        assert_eq!(
            revoke_refused(&plain).class,
            cordon_connector::ErrorClass::Permanent
        );
    }
}
