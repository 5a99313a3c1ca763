//! GitHub secret scanning alerts, fetched with cordon's own credential: a
//! `secret_scanning_alert` webhook names the alert but never carries the
//! secret, so `cordon` reads it from
//! `GET /repos/{owner}/{repo}/secret-scanning/alerts/{alert_number}` and its
//! locations from `…/{alert_number}/locations`.

use cordon_connector::{ConnectorError, Secret};
use serde_json::Value;

/// An alert with its secret. `Debug` shows the secret redacted.
#[derive(Debug)]
pub struct SecretScanningAlert {
    pub owner: String,
    pub repo: String,
    pub number: u64,
    pub secret: Secret,
    /// GitHub's pattern name, such as `github_personal_access_token`.
    pub secret_type: String,
    pub html_url: Option<String>,
    pub locations: Vec<AlertLocation>,
}

/// Where GitHub saw the secret. Commit locations have a path, line and
/// commit; others (issue or pull request text) only a kind and a link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertLocation {
    /// `commit`, `issue_body`, `pull_request_comment`, ...
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

fn bad(what: &str, owner: &str, repo: &str, number: u64) -> ConnectorError {
    ConnectorError::permanent(format!(
        "github answered for secret scanning alert {number} of `{owner}/{repo}` without {what}; \
         this is not the documented alert shape (is CORDON_GITHUB_API_URL a GitHub API?)"
    ))
}

/// The alert object: its secret, type and link. Never echoes a value.
pub(crate) fn parse_alert(
    v: &Value,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<(Secret, String, Option<String>), ConnectorError> {
    let secret = match v.get("secret") {
        Some(Value::String(s)) if !s.is_empty() => Secret::new(s.as_str()),
        _ => {
            return Err(ConnectorError::permanent(format!(
                "github returned secret scanning alert {number} of `{owner}/{repo}` without its \
                 secret; cordon's token needs read access to secret scanning alerts \
                 (`security_events` scope, or the `secret_scanning_alerts` read permission)"
            )))
        }
    };
    let secret_type = v
        .get("secret_type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("a `secret_type`", owner, repo, number))?
        .to_owned();
    let html_url = v.get("html_url").and_then(Value::as_str).map(str::to_owned);
    Ok((secret, secret_type, html_url))
}

/// One page of locations.
pub(crate) fn parse_locations(
    v: &Value,
    owner: &str,
    repo: &str,
    number: u64,
) -> Result<Vec<AlertLocation>, ConnectorError> {
    let items = v
        .as_array()
        .ok_or_else(|| bad("a list of locations", owner, repo, number))?;
    items
        .iter()
        .map(|l| {
            let kind = l
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a location `type`", owner, repo, number))?;
            let d = l.get("details").unwrap_or(&Value::Null);
            let s = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
            Ok(AlertLocation {
                kind: kind.to_owned(),
                path: s("path"),
                // `start_line` is a JSON number in GitHub's description.
                line: d
                    .get("start_line")
                    .and_then(Value::as_f64)
                    .and_then(|f| (f >= 1.0 && f.fract() == 0.0 && f < 1e15).then_some(f as u64)),
                commit: s("commit_sha"),
                url: s("html_url")
                    .or_else(|| s("issue_body_url"))
                    .or_else(|| s("issue_comment_url"))
                    .or_else(|| s("pull_request_comment_url")),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn an_alert_without_its_secret_says_which_permission_is_missing() {
        let e = parse_alert(&json!({"number": 3, "secret_type": "x"}), "o", "r", 3).unwrap_err();
        assert!(e.to_string().contains("security_events"), "{e}");
    }

    #[test]
    fn a_wrong_shape_is_an_error_that_never_echoes_values() {
        let e = parse_alert(
            &json!({"secret": "CANARY-SECRET", "secret_type": 5}),
            "o",
            "r",
            3,
        )
        .unwrap_err();
        assert!(!e.to_string().contains("CANARY"), "{e}");
        let e = parse_locations(&json!({"type": "commit"}), "o", "r", 3).unwrap_err();
        assert!(e.to_string().contains("a list of locations"), "{e}");
    }

    #[test]
    fn locations_keep_path_line_commit_and_link() {
        let v = json!([
            {"type": "commit", "details": {"path": "a/b.env", "start_line": 4, "commit_sha": "c0ffee", "html_url": "https://github.com/o/r/blob/c0ffee/a/b.env#L4"}},
            {"type": "issue_body", "details": {"issue_body_url": "https://api.github.com/repos/o/r/issues/1"}}
        ]);
        let l = parse_locations(&v, "o", "r", 1).unwrap();
        assert_eq!(l[0].path.as_deref(), Some("a/b.env"));
        assert_eq!(l[0].line, Some(4));
        assert_eq!(l[0].commit.as_deref(), Some("c0ffee"));
        assert_eq!(l[1].kind, "issue_body");
        assert_eq!(
            l[1].url.as_deref(),
            Some("https://api.github.com/repos/o/r/issues/1")
        );
    }
}
