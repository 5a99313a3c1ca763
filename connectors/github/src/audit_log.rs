//! What a leaked token did: the organisation audit log searched by the token's
//! `hashed_token` (base64 of its SHA-256, which is exactly cordon's
//! fingerprint), `GET /orgs/{org}/audit-log?phrase=hashed_token:"VALUE"`.
//!
//! GitHub documents the search in
//! <https://docs.github.com/en/enterprise-cloud@latest/organizations/keeping-your-organization-secure/managing-security-settings-for-your-organization/identifying-audit-log-events-performed-by-an-access-token>
//! and the endpoint in
//! <https://docs.github.com/en/enterprise-cloud@latest/rest/orgs/orgs#get-the-audit-log-for-an-organization>:
//! GitHub Enterprise Cloud only, an organisation owner's credential with
//! `read:audit_log`, cursor pagination through the `Link` header, 1,750
//! queries an hour.
//!
//! The search is made with cordon's own token, never with the leaked one: it
//! reads a log about the token, and uses nothing of it but its hash.

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use base64::Engine as _;
use cordon_connector::ConnectorError;

use crate::connector::{segment, GithubConnector};
use crate::http::{status_error, Auth};

/// Pages of 100 events read at most per search (GitHub allows 1,750 queries
/// an hour): beyond that the result says it was cut.
pub const MAX_AUDIT_PAGES: usize = 10;
const PER_PAGE: usize = 100;

/// One audit-log event, with the fields cordon reads (GitHub's
/// `audit-log-event` schema; every field is optional there).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct AuditEvent {
    pub action: String,
    /// When it happened, in milliseconds since the epoch.
    #[serde(
        rename = "@timestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(
        rename = "_document_id",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub document_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// `owner/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The user the action affected (a member added, a key's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashed_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programmatic_access_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_id: Option<u64>,
    /// An SSH or deploy key's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_key_fingerprint: Option<String>,
    /// A key's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A protected branch's or a ruleset's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A webhook's configuration (`[{url, ...}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Vec<serde_json::Value>>,
}

impl AuditEvent {
    /// A webhook's target URL, when the event carries its configuration.
    pub fn hook_url(&self) -> Option<&str> {
        self.config
            .as_ref()?
            .iter()
            .find_map(|c| c.get("url").and_then(|u| u.as_str()))
    }
}

/// What the search found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenActivity {
    /// Newest first, as GitHub lists them.
    pub events: Vec<AuditEvent>,
    /// More events than [`MAX_AUDIT_PAGES`] pages: the rest were not read.
    pub truncated: bool,
}

impl GithubConnector {
    /// The events of organisation `org`'s audit log performed with the token
    /// whose `hashed_token` is `hashed_token`, read with cordon's own token.
    ///
    /// Errors say why the log could not be read: no own token, the leaked
    /// token is cordon's own, not Enterprise Cloud (404), not an owner (403),
    /// rate-limited, or an answer that mixes other tokens' events (the filter
    /// was not applied, so nothing in it can be attributed).
    pub async fn token_activity(
        &self,
        org: &str,
        hashed_token: &str,
    ) -> Result<TokenActivity, ConnectorError> {
        let org = segment(org, "organisation")?;
        let own = self.creds.token.as_ref().ok_or_else(|| {
            ConnectorError::permanent(
                "cordon has no github token of its own to read the audit log with: set \
                 GITHUB_TOKEN (or `cordon auth set github token`) to an organisation owner's \
                 token with `read:audit_log`",
            )
        })?;
        let own_hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(own.expose().as_bytes()));
        if own_hash == hashed_token {
            return Err(ConnectorError::permanent(
                "the leaked token is cordon's own github token; cordon does not use a leaked \
                 token: search the audit log with another owner's token",
            ));
        }
        let phrase = format!("hashed_token:\"{hashed_token}\"");
        let base = format!(
            "/orgs/{org}/audit-log?phrase={}&include=all&per_page={PER_PAGE}",
            percent_encode(&phrase)
        );
        let what = format!("reading the audit log of `{org}`");
        let mut out = TokenActivity::default();
        let mut after: Option<String> = None;
        for page in 1..=MAX_AUDIT_PAGES {
            let path = match &after {
                Some(cursor) => format!("{base}&after={cursor}"),
                None => base.clone(),
            };
            let reply = self
                .api
                .send(Method::GET, &path, Auth::Bearer(own), None::<&()>)
                .await?;
            match reply.status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    return Err(ConnectorError::permanent(format!(
                        "github answered 404 to {what}: the organisation audit log API exists \
                         only on GitHub Enterprise Cloud, and cordon's token must see the \
                         organisation"
                    )))
                }
                _ => {
                    let e = status_error(&what, &reply);
                    if reply.status == StatusCode::FORBIDDEN
                        && e.class != cordon_connector::ErrorClass::Retryable
                    {
                        return Err(ConnectorError::permanent(format!(
                            "github refused {what} (403): cordon's token must be an owner of \
                             `{org}` with `read:audit_log`; {}",
                            reply.message()
                        )));
                    }
                    return Err(e);
                }
            }
            let events: Vec<AuditEvent> = reply
                .json()
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or_else(|| {
                    ConnectorError::permanent(format!(
                        "github's answer to {what} is not a list of audit-log events"
                    ))
                })?;
            // The search names the token: an event of another token means
            // the filter was not applied, and nothing here is attributable.
            if events
                .iter()
                .any(|e| e.hashed_token.as_deref().is_some_and(|h| h != hashed_token))
            {
                return Err(ConnectorError::permanent(format!(
                    "github's answer to {what} holds events of other tokens: the \
                     `hashed_token` search was not applied, so none can be attributed"
                )));
            }
            out.events.extend(events);
            after = next_cursor(&reply.headers);
            if after.is_none() {
                return Ok(out);
            }
            if page == MAX_AUDIT_PAGES {
                out.truncated = true;
            }
        }
        Ok(out)
    }
}

/// The `after` cursor of the `Link: <…>; rel="next"` header, when it is a
/// plain cursor (only the cursor is taken from GitHub's URL, never the URL).
fn next_cursor(headers: &http::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    let next = link.split(',').find(|part| part.contains("rel=\"next\""))?;
    let url = next.split(['<', '>']).nth(1)?;
    let query = url.split_once('?')?.1;
    let cursor = query.split('&').find_map(|kv| kv.strip_prefix("after="))?;
    let plain = !cursor.is_empty()
        && cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '%' | '-' | '_' | '.' | '~'));
    plain.then(|| cursor.to_owned())
}

/// RFC 3986 percent-encoding of a query value: GitHub's guide says to
/// URI-escape the hash (`+`, `/` and `=` are in base64).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_phrase_is_escaped_whole() {
        assert_eq!(
            percent_encode("hashed_token:\"a+b/c=\""),
            "hashed_token%3A%22a%2Bb%2Fc%3D%22"
        );
    }

    #[test]
    fn only_a_plain_cursor_is_taken_from_the_link() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "link",
            http::HeaderValue::from_static(
                "<https://api.github.com/orgs/o/audit-log?phrase=x&after=MS4x_Yz-9>; rel=\"next\", <https://api.github.com/orgs/o/audit-log?before=z>; rel=\"prev\"",
            ),
        );
        assert_eq!(next_cursor(&h).as_deref(), Some("MS4x_Yz-9"));
        h.insert(
            "link",
            http::HeaderValue::from_static("<https://x/?after=a&b=c/../d>; rel=\"prev\""),
        );
        assert_eq!(next_cursor(&h), None);
        h.insert(
            "link",
            http::HeaderValue::from_static("<https://x/?after=a/../../user>; rel=\"next\""),
        );
        assert_eq!(next_cursor(&h), None);
    }

    /// The search never sends the leaked token: when it is cordon's own
    /// token, or cordon has none, nothing is sent (the URL is unreachable:
    /// any request would fail differently).
    #[tokio::test]
    async fn no_request_with_the_leaked_token_or_without_an_own_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::GithubConfig::new(dir.path().join("budget.json"))
            .with_api_url("http://127.0.0.1:9");
        let leaked = cordon_connector::Secret::new("ghp_leakedleakedleakedleakedleakedleaked");
        let hash = base64::engine::general_purpose::STANDARD
            .encode(Sha256::digest(leaked.expose().as_bytes()));
        let creds = crate::CordonCredentials {
            token: Some(leaked),
            ..Default::default()
        };
        let gh = GithubConnector::new(config.clone(), creds).unwrap();
        let e = gh.token_activity("octo-org", &hash).await.unwrap_err();
        assert!(
            e.message.contains("the leaked token is cordon's own"),
            "{}",
            e.message
        );
        let gh = GithubConnector::new(config, crate::CordonCredentials::default()).unwrap();
        let e = gh.token_activity("octo-org", &hash).await.unwrap_err();
        assert!(
            e.message.contains("no github token of its own"),
            "{}",
            e.message
        );
        let e = gh.token_activity("../x", &hash).await.unwrap_err();
        assert!(
            e.message.contains("not a valid github organisation"),
            "{}",
            e.message
        );
    }

    #[test]
    fn events_read_as_github_describes_them() {
        let v = serde_json::json!({
            "@timestamp": 1606929874512i64, "action": "hook.create", "actor": "octocat",
            "created_at": 1606929874512i64, "_document_id": "xJJ", "org": "o", "repo": "o/r",
            "hook_id": 7, "config": [{"url": "https://evil.example/h"}], "hashed_token": "abc=",
            "token_scopes": "repo", "unknown": {"x": 1}
        });
        let e: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(e.hook_id, Some(7));
        assert_eq!(e.hook_url(), Some("https://evil.example/h"));
        assert_eq!(e.timestamp, Some(1606929874512));
    }
}
