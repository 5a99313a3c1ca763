//! The IAM policies cordon writes. Fixed names make idempotency and restore exact: cordon
//! finds its own controls by name and never touches a policy it did not write.

use serde_json::{json, Value};

/// Inline deny-all policy put on a quarantined user or role.
pub const QUARANTINE_POLICY_NAME: &str = "cordon-quarantine-deny-all";
/// Inline policy denying every session of a role issued before a cut-off (what the IAM
/// console's "revoke active sessions" writes, under its own name).
pub const REVOKE_SESSIONS_POLICY_NAME: &str = "cordon-revoke-sessions";
/// Customer-managed policies holding a session cut-off when the principal's inline
/// policies are at their size quota: `cordon-revoke-sessions-<plan>-<u|r>-<name>`, under
/// path `/cordon/`, one per plan and principal, deleted when restore removes it.
pub const REVOKE_SESSIONS_MANAGED_PREFIX: &str = "cordon-revoke-sessions-";
pub(crate) const CORDON_POLICY_PATH: &str = "/cordon/";

/// The plan's part of a managed cut-off's name (its first 16 letters and digits).
pub(crate) fn managed_revoke_plan_part(plan_id: &str) -> String {
    plan_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect()
}

/// The name of the managed cut-off of `principal` (`u`ser or `r`ole `name`) for a plan.
/// At most 23 + 16 + 3 + 64 = 106 characters (IAM allows 128), of IAM's name characters.
pub(crate) fn managed_revoke_name(plan_id: &str, kind: char, name: &str) -> String {
    format!(
        "{REVOKE_SESSIONS_MANAGED_PREFIX}{}-{kind}-{name}",
        managed_revoke_plan_part(plan_id)
    )
}

/// Whether `arn` is one of cordon's managed session cut-offs.
pub(crate) fn is_managed_revoke(arn: &str) -> bool {
    arn.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with(REVOKE_SESSIONS_MANAGED_PREFIX))
        && arn.contains(&format!(":policy{CORDON_POLICY_PATH}"))
}

/// The group holding the session cut-off of a user at both its inline-size and its
/// attached-policies quota: `cordon-revoke-sessions-<plan>-u-<user>` under path `/cordon/`
/// (the managed policy's name: one per plan and user, at most 106 of IAM's 128 characters),
/// carrying the cut-off as its inline policy; restore takes the user out and deletes it.
pub(crate) fn revoke_group_name(plan_id: &str, user: &str) -> String {
    managed_revoke_name(plan_id, 'u', user)
}

/// Whether a group (by name and ARN) is one of cordon's session cut-off groups.
pub(crate) fn is_revoke_group(name: &str, arn: &str) -> bool {
    name.starts_with(REVOKE_SESSIONS_MANAGED_PREFIX)
        && arn.contains(&format!(":group{CORDON_POLICY_PATH}"))
}

/// AWS's managed quarantine policy (`quarantine: managed-v3`).
pub const MANAGED_QUARANTINE_POLICY_ARN: &str =
    "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";

/// AWS's managed deny-all: the quarantine when a principal's inline policies are at their
/// size quota (2,048 characters for a user, 10,240 for a role).
pub const AWS_DENY_ALL_POLICY_ARN: &str = "arn:aws:iam::aws:policy/AWSDenyAll";
/// A group holding cordon's deny-all: the quarantine of a user at both the inline-size and
/// the attached-policies quota (10 by default). Created on first use, in each account.
pub const QUARANTINE_GROUP_NAME: &str = "cordon-quarantine";

pub(crate) fn deny_all_document() -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "CordonQuarantineDenyAll",
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*"
        }]
    })
    .to_string()
}

/// The statement id records which plan wrote the revocation, so a second run of the same
/// plan is a no-op while a later incident's plan moves the cut-off forward.
pub(crate) fn revoke_sid(plan_id: &str) -> String {
    let alnum: String = plan_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(80)
        .collect();
    format!("CordonRevokeSessions{alnum}")
}

pub(crate) fn revoke_sessions_document(plan_id: &str, issued_before: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": revoke_sid(plan_id),
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": { "DateLessThan": { "aws:TokenIssueTime": issued_before } }
        }]
    })
    .to_string()
}

/// Policy documents come back URL-encoded; evidence keeps them as JSON when they parse.
pub(crate) fn decode_document(raw: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8_lossy()
        .into_owned();
    serde_json::from_str(&decoded).unwrap_or(Value::String(decoded))
}

/// True when `doc` is cordon's deny-all (an explicit Deny of `*` on `*`, no condition).
pub(crate) fn is_deny_all(doc: &Value) -> bool {
    statements(doc).iter().any(|s| {
        s.get("Effect").and_then(Value::as_str) == Some("Deny")
            && matches_star(s.get("Action"))
            && matches_star(s.get("Resource"))
            && s.get("Condition").is_none()
    })
}

/// The revocation cut-off and statement id of a revoke-sessions document.
pub(crate) fn revoke_cutoff(doc: &Value) -> Option<(String, String)> {
    statements(doc).iter().find_map(|s| {
        let cutoff = s
            .get("Condition")?
            .get("DateLessThan")?
            .get("aws:TokenIssueTime")?
            .as_str()?
            .to_owned();
        let sid = s
            .get("Sid")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        Some((cutoff, sid))
    })
}

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

fn matches_star(v: Option<&Value>) -> bool {
    match v {
        Some(Value::String(s)) => s == "*",
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some("*")),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let deny: Value = serde_json::from_str(&deny_all_document()).unwrap();
        assert!(is_deny_all(&deny));
        let revoke: Value = serde_json::from_str(&revoke_sessions_document(
            "plan-1:ab",
            "2026-01-01T00:00:00Z",
        ))
        .unwrap();
        assert!(!is_deny_all(&revoke));
        assert_eq!(
            revoke_cutoff(&revoke),
            Some((
                "2026-01-01T00:00:00Z".into(),
                "CordonRevokeSessionsplan1ab".into()
            ))
        );
        let encoded = "%7B%22Statement%22%3A%5B%5D%7D";
        assert_eq!(
            decode_document(encoded),
            serde_json::json!({"Statement": []})
        );
    }

    #[test]
    fn the_cut_off_group_is_named_per_plan_and_user_and_found_only_under_cordon() {
        let name = revoke_group_name("plan-1ab_c", "alice");
        assert_eq!(name, "cordon-revoke-sessions-plan1abc-u-alice");
        assert!(is_revoke_group(
            &name,
            &format!("arn:aws:iam::123456789012:group/cordon/{name}")
        ));
        // Someone else's group of the same name outside /cordon/, or another group of ours.
        assert!(!is_revoke_group(
            &name,
            &format!("arn:aws:iam::123456789012:group/{name}")
        ));
        assert!(!is_revoke_group(
            "cordon-quarantine",
            "arn:aws:iam::123456789012:group/cordon/cordon-quarantine"
        ));
    }
}
