//! The shapes of GitHub's token formats, shared by the classifier (which must
//! not pull in octocrab) and the GitHub connector.
//!
//! Since 27 April 2026 GitHub mints GitHub App installation tokens in a
//! stateless format: `ghs_` + the app id + `_` + a JWT signed by GitHub
//! (about 520 characters, two dots). GitHub's recommended pattern for both
//! installation formats is `ghs_[A-Za-z0-9\._]{36,}`.
//! Source: <https://github.blog/changelog/2026-05-15-github-app-installation-tokens-per-request-override-header/>
//! and "About authentication to GitHub", token prefixes:
//! <https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/about-authentication-to-github#githubs-token-formats>.
//!
//! GitHub asks integrators to treat the token as opaque. cordon does not trust
//! anything inside it: it reads the app id (part of the documented format) to
//! know which App can contain it, and the JWT's `exp` claim only to tell a
//! responder when the token stops working at the latest, labelled as an
//! unverified claim. The signature is GitHub's and is not checked here.

use base64::Engine as _;

/// What the structure of a stateless installation token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatelessInstallation {
    /// The GitHub App that issued the token.
    pub app_id: u64,
    /// The JWT's `exp` (seconds since the epoch), when it has one. Unverified.
    pub expires_at: Option<i64>,
    /// The JWT's installation claim, when it names one (`installation_id` or
    /// `inst`). Unverified.
    pub installation_id: Option<u64>,
}

/// Characters of one base64url JWT segment.
fn b64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decode one JWT segment into a JSON object.
fn json_segment(seg: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(seg.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice::<serde_json::Value>(&bytes).ok()? {
        serde_json::Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Why a `ghs_<digits>_...` string is not a whole stateless token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatelessShapeError {
    /// Not `ghs_` + digits + `_` + three dot-separated segments.
    NotStateless,
    /// The structure is there but a part is cut short or damaged.
    Damaged(&'static str),
}

/// Parse a stateless installation token. `Err(NotStateless)` for anything that
/// is not shaped `ghs_<app id>_<jwt>`; `Err(Damaged)` for a token of that shape
/// whose JWT header or payload does not decode (truncated or corrupted copy).
pub fn stateless_installation(token: &str) -> Result<StatelessInstallation, StatelessShapeError> {
    let Some(rest) = token.strip_prefix("ghs_") else {
        return Err(StatelessShapeError::NotStateless);
    };
    let Some((app, jwt)) = rest.split_once('_') else {
        return Err(StatelessShapeError::NotStateless);
    };
    if app.is_empty() || app.len() > 20 || !app.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StatelessShapeError::NotStateless);
    }
    let parts: Vec<&str> = jwt.split('.').collect();
    if parts.len() > 3 || !parts.iter().all(|p| p.bytes().all(b64url_char)) {
        return Err(StatelessShapeError::NotStateless);
    }
    let app_id = app
        .parse::<u64>()
        .map_err(|_| StatelessShapeError::NotStateless)?;
    let header_ok = json_segment(parts[0]).is_some_and(|h| h.contains_key("alg"));
    if parts.len() < 3 {
        // A JWT header after `ghs_<digits>_` is a token cut short; anything
        // else is some identifier that merely starts the same way.
        return Err(if header_ok {
            StatelessShapeError::Damaged("it is cut short: the jwt lacks a part")
        } else {
            StatelessShapeError::NotStateless
        });
    }
    if !header_ok {
        return Err(StatelessShapeError::Damaged(
            "its jwt header does not decode",
        ));
    }
    let Some(payload) = json_segment(parts[1]) else {
        return Err(StatelessShapeError::Damaged(
            "its jwt payload does not decode",
        ));
    };
    // A JWT signature is at least 32 bytes (HS256); base64url of that is 43.
    if parts[2].len() < 43 {
        return Err(StatelessShapeError::Damaged(
            "its jwt signature is cut short",
        ));
    }
    let installation_id = ["installation_id", "inst"]
        .iter()
        .find_map(|k| payload.get(*k))
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
    Ok(StatelessInstallation {
        app_id,
        expires_at: payload.get("exp").and_then(serde_json::Value::as_i64),
        installation_id,
    })
}

/// GitHub's token kinds by prefix, as cordon names them in evidence.
pub fn github_token_type(token: &str) -> Option<&'static str> {
    [
        ("github_pat_", "fine-grained-pat"),
        ("ghp_", "classic-pat"),
        ("gho_", "oauth-token"),
        ("ghu_", "app-user-token"),
        ("ghr_", "app-refresh-token"),
        ("ghs_", "installation-token"),
    ]
    .iter()
    .find(|(p, _)| token.starts_with(p))
    .map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn b64(v: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    pub(crate) fn token(app: u64, payload: &str) -> String {
        format!(
            "ghs_{app}_{}.{}.{}",
            b64(r#"{"alg":"RS256","typ":"JWT"}"#),
            b64(payload),
            "s".repeat(342)
        )
    }

    #[test]
    fn stateless_token_parts_are_read() {
        let t = token(
            123456,
            r#"{"exp":1777777777,"installation_id":42,"iss":"github"}"#,
        );
        let s = stateless_installation(&t).unwrap();
        assert_eq!(s.app_id, 123456);
        assert_eq!(s.expires_at, Some(1777777777));
        assert_eq!(s.installation_id, Some(42));
    }

    #[test]
    fn classic_and_broken_shapes_are_told_apart() {
        assert_eq!(
            stateless_installation("ghs_abcdefghijklmnopqrstuvwxyz0123456789"),
            Err(StatelessShapeError::NotStateless)
        );
        let t = token(7, r#"{"exp":1}"#);
        let cut = &t[..t.len() - 300];
        assert!(matches!(
            stateless_installation(cut),
            Err(StatelessShapeError::Damaged(_))
        ));
        let no_payload = format!("ghs_7_{}.!!.{}", b64(r#"{"alg":"RS256"}"#), "s".repeat(50));
        assert_eq!(
            stateless_installation(&no_payload),
            Err(StatelessShapeError::NotStateless)
        );
        assert_eq!(
            stateless_installation("ghs_2024_release_notes_draft"),
            Err(StatelessShapeError::NotStateless)
        );
        let bad_payload = format!("ghs_7_{}.abc.{}", b64(r#"{"alg":"RS256"}"#), "s".repeat(50));
        assert!(matches!(
            stateless_installation(&bad_payload),
            Err(StatelessShapeError::Damaged(_))
        ));
    }
}
