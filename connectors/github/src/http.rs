//! The few HTTP calls cordon makes, on top of octocrab's client stack (base
//! URL, timeouts, GitHub App JWTs and installation tokens), with one place
//! that turns GitHub's answers into classified [`ConnectorError`]s.

use std::time::Duration;

use base64::Engine as _;
use cordon_connector::{ConnectorError, Secret};
use http::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use http::{Method, StatusCode};
use octocrab::Octocrab;
use serde::Serialize;

use crate::config::GithubConfig;

/// The media type GitHub documents for its REST API.
pub const GITHUB_MEDIA_TYPE: &str = "application/vnd.github+json";

/// How a request authenticates.
pub enum Auth<'a> {
    /// No `Authorization` header (the revocation API refuses authenticated calls).
    None,
    /// `Authorization: Bearer <token>`: a leaked token used on itself, or cordon's token.
    Bearer(&'a Secret),
    /// HTTP basic with an OAuth app's client id and secret.
    Basic { user: &'a str, pass: &'a Secret },
    /// Whatever the client itself carries (a GitHub App JWT or installation token).
    Client,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// GitHub's `message` (or a problem document's `detail`), redacted and
    /// shortened, for error messages.
    pub fn message(&self) -> String {
        let text = self
            .json()
            .and_then(|v| {
                let msg = v.get("message").and_then(|m| m.as_str()).map(str::to_owned);
                let detail = v.get("detail").and_then(|m| m.as_str()).map(str::to_owned);
                let validation = v
                    .get("validation")
                    .and_then(|x| x.as_array())
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|i| i.get("message").and_then(|m| m.as_str()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .filter(|s| !s.is_empty());
                match (msg, detail, validation) {
                    (Some(m), _, _) => Some(m),
                    (None, Some(d), Some(v)) => Some(format!("{d} ({v})")),
                    (None, Some(d), None) => Some(d),
                    (None, None, v) => v,
                }
            })
            .unwrap_or_default();
        let text = redact_tokens(&text);
        if text.chars().count() > 300 {
            let cut: String = text.chars().take(300).collect();
            format!("{cut}…")
        } else {
            text
        }
    }
}

/// Replace anything shaped like a GitHub token with `<redacted>`: error bodies
/// are echoed into cordon's errors, and no secret may ride along.
pub fn redact_tokens(text: &str) -> String {
    const PREFIXES: &[&str] = &["github_pat_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let hit = PREFIXES
            .iter()
            .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
            .min_by_key(|(i, _)| *i);
        match hit {
            Some((i, plen)) => {
                out.push_str(&rest[..i]);
                let tail = &rest[i + plen..];
                // `.` and `-` too: a stateless installation token is
                // `ghs_<app id>_<jwt>`, three base64url parts joined by dots.
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                    .unwrap_or(tail.len());
                // A sentence may end right after the token.
                let end = tail[..end].trim_end_matches('.').len();
                out.push_str("<redacted>");
                rest = &tail[end..];
            }
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out
}

#[derive(Clone)]
pub struct Api {
    client: Octocrab,
}

impl Api {
    pub fn new(config: &GithubConfig) -> Result<Self, ConnectorError> {
        let client = base_builder(config)?
            .build()
            .map_err(|_| ConnectorError::permanent("cannot build the github http client"))?;
        Ok(Api { client })
    }

    /// A client that authenticates as a GitHub App (JWT signed with its key).
    pub fn app_client(
        config: &GithubConfig,
        app_id: u64,
        private_key_pem: &Secret,
    ) -> Result<Octocrab, ConnectorError> {
        let key = octocrab::EncodingKey::from_rsa_pem(private_key_pem.expose().as_bytes())
            .map_err(|_| {
                ConnectorError::permanent(
                    "the github app private key is not an RSA PEM key; download a new key from \
                     the app's settings and set CORDON_GITHUB_APP_KEY to its path",
                )
            })?;
        base_builder(config)?
            .app(octocrab::models::AppId(app_id), key)
            .build()
            .map_err(|_| ConnectorError::permanent("cannot build the github app client"))
    }

    pub async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<&B>,
    ) -> Result<Reply, ConnectorError> {
        send_on(&self.client, method, path, auth, body).await
    }
}

fn base_builder(
    config: &GithubConfig,
) -> Result<
    octocrab::OctocrabBuilder<
        octocrab::NoSvc,
        octocrab::DefaultOctocrabBuilderConfig,
        octocrab::NoAuth,
        octocrab::NotLayerReady,
    >,
    ConnectorError,
> {
    let url = config.api_url.trim_end_matches('/');
    Octocrab::builder()
        .base_uri(url)
        .map_err(|_| {
            ConnectorError::permanent(format!(
                "github api url `{url}` is not a valid url; set CORDON_GITHUB_API_URL"
            ))
        })
        .map(|b| {
            b.add_header(ACCEPT, GITHUB_MEDIA_TYPE.to_owned())
                .set_connect_timeout(Some(config.request_timeout))
                .set_read_timeout(Some(config.request_timeout))
                .set_write_timeout(Some(config.request_timeout))
        })
}

/// Send one request on `client` and read the whole answer.
pub async fn send_on<B: Serialize + ?Sized>(
    client: &Octocrab,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&B>,
) -> Result<Reply, ConnectorError> {
    let mut builder = http::Request::builder().method(method.clone()).uri(path);
    match auth {
        Auth::None | Auth::Client => {}
        Auth::Bearer(secret) => {
            builder = builder.header(
                AUTHORIZATION,
                sensitive(&format!("Bearer {}", secret.expose()))?,
            );
        }
        Auth::Basic { user, pass } => {
            let raw = zeroize::Zeroizing::new(format!("{user}:{}", pass.expose()));
            let encoded = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(raw.as_bytes()),
            );
            builder = builder.header(
                AUTHORIZATION,
                sensitive(&format!("Basic {}", encoded.as_str()))?,
            );
        }
    }
    let request = client.build_request(builder, body).map_err(|_| {
        ConnectorError::permanent(format!("cannot build the request {method} {path}"))
    })?;
    let response = client
        .execute(request)
        .await
        .map_err(|e| transport_error(&method, path, &e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = client
        .body_to_string(response)
        .await
        .map_err(|e| transport_error(&method, path, &e))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn sensitive(value: &str) -> Result<HeaderValue, ConnectorError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        ConnectorError::permanent(
            "the credential contains characters that cannot be sent in an http header; \
             check that it was copied whole",
        )
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// A failure before any answer. Refused connections never reached GitHub and
/// are safe to retry; anything else may have been applied.
fn transport_error(method: &Method, path: &str, e: &octocrab::Error) -> ConnectorError {
    // octocrab itself answers with GitHub's error when it mints an installation
    // token for a GitHub App and GitHub refuses: classify it like any answer.
    if let octocrab::Error::GitHub { source, .. } = e {
        let body = serde_json::json!({ "message": source.message }).to_string();
        let reply = Reply {
            status: source.status_code,
            headers: source.headers.clone().unwrap_or_default(),
            body,
        };
        return status_error(
            "the github app installation token request (POST /app/installations/{id}/access_tokens)",
            &reply,
        );
    }
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        chain.push(redact_tokens(&err.to_string()));
        cur = err.source();
    }
    let text = chain.join(": ").to_lowercase();
    let not_sent = text.contains("connect") || text.contains("dns") || text.contains("resolve");
    let summary = if not_sent {
        "could not connect"
    } else if text.contains("timed out") || text.contains("timeout") {
        "timed out waiting for the answer"
    } else {
        "the connection failed before an answer arrived"
    };
    let msg = format!(
        "{method} {path}: {summary}; check network access to github (CORDON_GITHUB_API_URL) and retry"
    );
    if not_sent && !text.contains("timed out") {
        ConnectorError::retryable(msg)
    } else {
        ConnectorError::ambiguous(msg)
    }
}

/// Classify a non-success answer. `what` names the call in plain words.
pub fn status_error(what: &str, reply: &Reply) -> ConnectorError {
    let status = reply.status;
    let code = status.as_u16();
    let message = reply.message();
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    };
    let rate_limited = code == 429
        || (code == 403
            && (reply
                .headers
                .get("x-ratelimit-remaining")
                .and_then(|v| v.to_str().ok())
                == Some("0")
                || message.to_lowercase().contains("rate limit")));
    if rate_limited {
        return ConnectorError::retryable(format!(
            "github rate-limited {what} ({code}){said}; cordon will retry after the limit resets"
        ))
        .with_retry_after(retry_after(&reply.headers));
    }
    if status.is_server_error() {
        return ConnectorError::retryable(format!(
            "github failed {what} with {code}{said}; this is on github's side, retrying is safe"
        ))
        .with_retry_after(retry_after(&reply.headers));
    }
    let hint = match code {
        401 => {
            "check cordon's own github credentials (GITHUB_TOKEN, CORDON_GITHUB_APP_ID/_KEY, \
                CORDON_GITHUB_OAUTH_CLIENT_ID/_SECRET)"
        }
        403 => {
            "the credential cordon used lacks the permission this needs; grant it or contain \
                the credential another way"
        }
        404 => {
            "check the owner, repository, organisation or client id in the plan, and that \
                cordon's credential can see it"
        }
        422 => "github rejected the request as invalid; check the plan's parameters",
        _ => "see github's answer above",
    };
    ConnectorError::permanent(format!("github refused {what} with {code}{said}; {hint}"))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(secs) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(Duration::from_secs(secs));
    }
    let reset = headers
        .get("x-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())?;
    Some(crate::budget::until(reset))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn token_shapes_are_redacted() {
        let t = "bad token ghp_abcDEF123 and github_pat_11AA_bb, ghs_x.";
        assert_eq!(
            redact_tokens(t),
            "bad token <redacted> and <redacted>, <redacted>."
        );
        let stateless = "token ghs_12345_eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2ln-_x. end";
        assert_eq!(redact_tokens(stateless), "token <redacted>. end");
    }

    fn reply(code: u16, body: &str, headers: &[(&'static str, &str)]) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        Reply {
            status: StatusCode::from_u16(code).unwrap(),
            headers: h,
            body: body.to_owned(),
        }
    }

    #[test]
    fn statuses_are_classified() {
        use cordon_connector::ErrorClass::*;
        let e = status_error("x", &reply(503, "", &[("retry-after", "7")]));
        assert_eq!(
            (e.class, e.retry_after),
            (Retryable, Some(Duration::from_secs(7)))
        );
        let e = status_error("x", &reply(403, r#"{"message":"Forbidden"}"#, &[]));
        assert_eq!(e.class, Permanent);
        assert!(e.message.contains("Forbidden"), "{}", e.message);
        let e = status_error("x", &reply(403, "{}", &[("x-ratelimit-remaining", "0")]));
        assert_eq!(e.class, Retryable);
        let e = status_error("x", &reply(422, r#"{"message":"nope ghp_SECRET"}"#, &[]));
        assert_eq!(e.class, Permanent);
        assert!(!e.message.contains("SECRET"));
    }
}
