//! Webhook payloads → events to respond to. Pure parsing, no I/O: the agent
//! (src/agent) checks signatures, size and replays before calling these.
//!
//! * GitHub `secret_scanning_alert` deliveries never carry the secret: they
//!   become [`AlertRef`]s, fetched from the REST API when acted on.
//! * AWS EventBridge: GuardDuty findings whose resource is an IAM access key,
//!   and AWS Health `AWS_RISK_CREDENTIALS_EXPOSED` events; both name the key
//!   id only (never the secret).
//!
//! An event is stored in the agent's inbox as this module's [`Event`] (never
//! the raw body), so what is kept is exactly what will be acted on.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::report::{AlertRef, Credential, Finding, NotContainable, Provenance, Report};
use crate::plan::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Github,
    Aws,
}

/// An AWS access key named by an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The role of a session (`ASIA`) key, when the event names it
    /// (GuardDuty's `userName` for `userType` `AssumedRole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

/// One event worth acting on. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub source: EventSource,
    /// The delivery id (GitHub `X-GitHub-Delivery`) or event id (EventBridge
    /// `id`): the unit of replay protection.
    pub id: String,
    /// `secret_scanning_alert.created`, `GuardDuty Finding`, ...
    pub kind: String,
    pub severity: Severity,
    #[serde(default)]
    pub alerts: Vec<AlertRef>,
    #[serde(default)]
    pub keys: Vec<KeyRef>,
    /// Where it came from (repository, finding id, rule).
    pub provenance: EventProvenance,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventProvenance {
    pub scanner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a delivery means.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Act(Event),
    /// Understood, nothing to do (a `ping`, an alert being resolved).
    Ignore(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    #[error("payload field `{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("unsupported event `{0}`")]
    Unsupported(String),
}

fn field_err(field: &str, reason: &str) -> WebhookError {
    WebhookError::Field {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

fn str_at<'a>(v: &'a Value, path: &str) -> Result<&'a str, WebhookError> {
    let mut cur = v;
    for part in path.split('.') {
        cur = cur.get(part).ok_or_else(|| field_err(path, "missing"))?;
    }
    cur.as_str().ok_or_else(|| field_err(path, "not a string"))
}

fn parse_json(body: &[u8]) -> Result<Value, WebhookError> {
    serde_json::from_slice(body).map_err(|e| {
        WebhookError::NotJson(format!(
            "line {} column {}: {}",
            e.line(),
            e.column(),
            e.classify_str()
        ))
    })
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// A GitHub delivery: `event` is the `X-GitHub-Event` header, `delivery` the
/// `X-GitHub-Delivery` header.
pub fn parse_github(event: &str, delivery: &str, body: &[u8]) -> Result<Parsed, WebhookError> {
    if delivery.is_empty()
        || delivery.len() > 128
        || !delivery
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(field_err(
            "X-GitHub-Delivery",
            "missing or not a delivery id",
        ));
    }
    let v = parse_json(body)?;
    // Every event a secret-scanning webhook can be sent gets an answer GitHub
    // shows as delivered (2xx): an event cordon does not act on is recorded as
    // ignored with the reason, never refused. Events and actions:
    // https://docs.github.com/en/webhooks/webhook-events-and-payloads#secret_scanning_alert
    // (created, reopened, resolved, publicly_leaked, validated, assigned,
    // unassigned), #secret_scanning_alert_location (created) and
    // #secret_scanning_scan (completed).
    match event {
        "ping" => Ok(Parsed::Ignore("ping: the hook is set up".into())),
        "secret_scanning_alert" => {
            let action = action_of(&v)?;
            let state = str_at(&v, "alert.state").ok();
            let validity = str_at(&v, "alert.validity").ok();
            // Act when an alert opens or gets worse; `resolved` never revokes
            // (someone closed it on purpose), and assignment changes nothing.
            let act = match action {
                "created" | "reopened" | "publicly_leaked" => true,
                // GitHub re-checked the secret with its provider and found it
                // working: an open alert whose secret is live calls for action.
                "validated" => validity == Some("active") && state != Some("resolved"),
                _ => false,
            };
            if !act {
                let why = match action {
                    "resolved" => {
                        "the alert was resolved: cordon never revokes on a resolution".to_owned()
                    }
                    "assigned" | "unassigned" => {
                        "an assignment change needs no containment".to_owned()
                    }
                    "validated" => format!(
                        "validity is now `{}`{}: nothing to contain",
                        validity.unwrap_or("unknown"),
                        if state == Some("resolved") {
                            " on a resolved alert"
                        } else {
                            ""
                        }
                    ),
                    _ => "not an action cordon acts on".to_owned(),
                };
                return Ok(Parsed::Ignore(format!(
                    "secret_scanning_alert.{action}: {why}"
                )));
            }
            alert_event(
                &v,
                delivery,
                &format!("secret_scanning_alert.{action}"),
                action,
            )
        }
        "secret_scanning_alert_location" => {
            let action = action_of(&v)?;
            // A known secret found in a new place: re-check that its credential
            // is dead (respond finds it already contained, or contains it).
            match (action, str_at(&v, "alert.state").ok()) {
                ("created", Some("resolved")) => Ok(Parsed::Ignore(
                    "secret_scanning_alert_location.created: the alert is resolved: cordon never revokes on a resolved alert".into(),
                )),
                ("created", _) => alert_event(
                    &v,
                    delivery,
                    "secret_scanning_alert_location.created",
                    action,
                ),
                (other, _) => Ok(Parsed::Ignore(format!(
                    "secret_scanning_alert_location.{other}: not an action cordon acts on"
                ))),
            }
        }
        "secret_scanning_scan" => {
            let action = action_of(&v)?;
            Ok(Parsed::Ignore(format!(
                "secret_scanning_scan.{action}: a scan's progress carries no alert; its alerts arrive as secret_scanning_alert"
            )))
        }
        other => Err(WebhookError::Unsupported(other.to_owned())),
    }
}

/// The `action` field: a short lowercase word (it reaches records and logs).
fn action_of(v: &Value) -> Result<&str, WebhookError> {
    let action = str_at(v, "action")?;
    if action.is_empty()
        || action.len() > 40
        || !action.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return Err(field_err("action", "not a GitHub webhook action"));
    }
    Ok(action)
}

/// The alert an alert or alert-location delivery names, as an event to act on.
fn alert_event(
    v: &Value,
    delivery: &str,
    kind: &str,
    action: &str,
) -> Result<Parsed, WebhookError> {
    {
        let number = v
            .get("alert")
            .and_then(|a| a.get("number"))
            .ok_or_else(|| field_err("alert.number", "missing"))?
            .as_u64()
            .ok_or_else(|| field_err("alert.number", "not a positive integer"))?;
        let full = str_at(v, "repository.full_name")?;
        let (owner, repo) = full
            .split_once('/')
            .filter(|(o, r)| !o.is_empty() && !r.is_empty() && !r.contains('/'))
            .ok_or_else(|| field_err("repository.full_name", "not `owner/name`"))?;
        let secret_type = str_at(v, "alert.secret_type").ok().map(str::to_owned);
        let url = str_at(v, "alert.html_url").ok().map(str::to_owned);
        Ok(Parsed::Act(Event {
            source: EventSource::Github,
            id: delivery.to_owned(),
            kind: kind.to_owned(),
            // A valid secret in a repository: revoke at once (the agent
            // policy allows `agent` alone at high or critical severity).
            severity: if action == "publicly_leaked" {
                Severity::Critical
            } else {
                Severity::High
            },
            alerts: vec![AlertRef {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                number,
            }],
            keys: vec![],
            provenance: EventProvenance {
                scanner: "github-secret-scanning".into(),
                rule: secret_type,
                url,
            },
        }))
    }
}

/// An EventBridge event (the JSON EventBridge delivers to an API destination).
pub fn parse_eventbridge(body: &[u8]) -> Result<Parsed, WebhookError> {
    let v = parse_json(body)?;
    let id = str_at(&v, "id")?;
    if id.is_empty()
        || id.len() > 128
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(field_err("id", "not an event id"));
    }
    let source = str_at(&v, "source")?;
    let detail_type = str_at(&v, "detail-type")?;
    let account = str_at(&v, "account").ok().map(str::to_owned);
    let detail = v
        .get("detail")
        .ok_or_else(|| field_err("detail", "missing"))?;
    match (source, detail_type) {
        ("aws.guardduty", "GuardDuty Finding") => {
            let rtype = str_at(detail, "resource.resourceType")?;
            if rtype != "AccessKey" {
                return Ok(Parsed::Ignore(format!(
                    "GuardDuty finding about a {rtype}, not an access key"
                )));
            }
            let key_id = str_at(detail, "resource.accessKeyDetails.accessKeyId")?;
            let name = str_at(detail, "resource.accessKeyDetails.userName")
                .ok()
                .map(str::to_owned);
            let assumed = str_at(detail, "resource.accessKeyDetails.userType") == Ok("AssumedRole");
            let (user, role) = if assumed { (None, name) } else { (name, None) };
            let gd_type = str_at(detail, "type").ok().map(str::to_owned);
            let sev = detail
                .get("severity")
                .and_then(Value::as_f64)
                .ok_or_else(|| field_err("detail.severity", "missing or not a number"))?;
            // GuardDuty's bands: 1-3.9 low, 4-6.9 medium, 7-8.9 high, 9-10 critical.
            let severity = if sev >= 9.0 {
                Severity::Critical
            } else if sev >= 7.0 {
                Severity::High
            } else if sev >= 4.0 {
                Severity::Medium
            } else {
                Severity::Low
            };
            let finding_id = str_at(detail, "id").ok();
            Ok(Parsed::Act(Event {
                source: EventSource::Aws,
                id: id.to_owned(),
                kind: "GuardDuty Finding".into(),
                severity,
                alerts: vec![],
                keys: vec![KeyRef {
                    key_id: key_id.to_owned(),
                    account: str_at(detail, "accountId")
                        .ok()
                        .map(str::to_owned)
                        .or(account),
                    user,
                    role,
                }],
                provenance: EventProvenance {
                    scanner: "guardduty".into(),
                    rule: gd_type,
                    url: finding_id.map(|f| format!("guardduty:finding/{f}")),
                },
            }))
        }
        ("aws.health", "AWS Health Event") => {
            let code = str_at(detail, "eventTypeCode")?;
            if code != "AWS_RISK_CREDENTIALS_EXPOSED" {
                return Ok(Parsed::Ignore(format!("AWS Health event {code}")));
            }
            let entities = detail
                .get("affectedEntities")
                .and_then(Value::as_array)
                .ok_or_else(|| field_err("detail.affectedEntities", "missing or not a list"))?;
            let mut keys = Vec::new();
            for (i, e) in entities.iter().enumerate() {
                let k = e
                    .get("entityValue")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        field_err(
                            &format!("detail.affectedEntities[{i}].entityValue"),
                            "missing or not a string",
                        )
                    })?;
                keys.push(KeyRef {
                    key_id: k.to_owned(),
                    account: account.clone(),
                    user: None,
                    role: None,
                });
            }
            if keys.is_empty() {
                return Err(field_err(
                    "detail.affectedEntities",
                    "empty: no exposed key named",
                ));
            }
            Ok(Parsed::Act(Event {
                source: EventSource::Aws,
                id: id.to_owned(),
                kind: "AWS_RISK_CREDENTIALS_EXPOSED".into(),
                // AWS found the key in public: an attacker may have it already.
                severity: Severity::Critical,
                alerts: vec![],
                keys,
                provenance: EventProvenance {
                    scanner: "aws-health".into(),
                    rule: Some(code.to_owned()),
                    url: str_at(detail, "eventArn").ok().map(str::to_owned),
                },
            }))
        }
        (s, d) => Err(WebhookError::Unsupported(format!("{s} / {d}"))),
    }
}

impl Event {
    /// Roles named for session keys: key id → role.
    pub fn role_hints(&self) -> std::collections::BTreeMap<String, String> {
        self.keys
            .iter()
            .filter_map(|k| k.role.clone().map(|r| (k.key_id.clone(), r)))
            .collect()
    }

    /// The report respond acts on: alerts to fetch, keys to identify.
    pub fn to_report(&self) -> Report {
        let prov = Provenance {
            scanner: self.provenance.scanner.clone(),
            rule: self.provenance.rule.clone(),
            url: self.provenance.url.clone(),
            ..Provenance::default()
        };
        let findings = self
            .keys
            .iter()
            .map(|k| Finding {
                provenance: prov.clone(),
                item: match cordon_connector::aws_key::key_kind(&k.key_id) {
                    Ok(kind) => Ok(Credential::AwsKey {
                        key_id: k.key_id.clone(),
                        session: kind == cordon_connector::aws_key::KeyKind::Session,
                        secret: None,
                    }),
                    Err(e) => Err(NotContainable {
                        reason: format!("not an AWS access key id: {}", e.message),
                        fingerprint: None,
                    }),
                },
            })
            .collect();
        Report {
            findings,
            alerts: self.alerts.clone(),
        }
    }
}

/// `sha256=<hex>` over the raw body, keyed with the webhook secret.
pub fn github_signature_ok(secret: &cordon_connector::Secret, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn alert(action: &str) -> Vec<u8> {
        serde_json::json!({
            "action": action,
            "alert": {"number": 7, "secret_type": "github_personal_access_token", "html_url": "https://github.com/o/r/security/secret-scanning/7"},
            "repository": {"full_name": "o/r", "name": "r", "owner": {"login": "o"}},
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn a_created_alert_becomes_an_alert_to_fetch() {
        let Parsed::Act(e) =
            parse_github("secret_scanning_alert", "d-1", &alert("created")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            e.alerts,
            vec![AlertRef {
                owner: "o".into(),
                repo: "r".into(),
                number: 7
            }]
        );
        assert_eq!(e.severity, Severity::High);
        assert_eq!(
            e.provenance.rule.as_deref(),
            Some("github_personal_access_token")
        );
        let r = e.to_report();
        assert!(r.findings.is_empty());
        assert_eq!(r.alerts.len(), 1);
    }

    #[test]
    fn resolved_alerts_and_pings_are_ignored() {
        assert!(matches!(
            parse_github("secret_scanning_alert", "d", &alert("resolved")).unwrap(),
            Parsed::Ignore(_)
        ));
        assert!(matches!(
            parse_github("ping", "d", b"{\"zen\":\"x\"}").unwrap(),
            Parsed::Ignore(_)
        ));
    }

    #[test]
    fn issue_14_every_secret_scanning_event_is_answered_acted_on_or_ignored_with_a_reason() {
        let with = |action: &str, state: &str, validity: &str| -> Vec<u8> {
            serde_json::to_vec(&json!({
                "action": action,
                "alert": {"number": 9, "state": state, "validity": validity, "secret_type": "github_personal_access_token"},
                "repository": {"full_name": "acme/api"}
            }))
            .unwrap()
        };
        // Acted on: the alert opens, reopens, leaks publicly, or is found live.
        for (action, state, validity) in [
            ("created", "open", "unknown"),
            ("reopened", "open", "unknown"),
            ("publicly_leaked", "open", "active"),
            ("validated", "open", "active"),
        ] {
            match parse_github(
                "secret_scanning_alert",
                "d-1",
                &with(action, state, validity),
            )
            .unwrap()
            {
                Parsed::Act(e) => {
                    assert_eq!(e.kind, format!("secret_scanning_alert.{action}"));
                    assert_eq!(e.alerts[0].number, 9);
                }
                other => panic!("{action}: {other:?}"),
            }
        }
        // Ignored, each with its reason; `resolved` never revokes.
        for (action, state, validity, reason) in [
            ("resolved", "resolved", "active", "never revokes"),
            ("assigned", "open", "active", "assignment"),
            ("unassigned", "open", "active", "assignment"),
            ("validated", "open", "inactive", "`inactive`"),
            ("validated", "resolved", "active", "resolved alert"),
        ] {
            match parse_github(
                "secret_scanning_alert",
                "d-1",
                &with(action, state, validity),
            )
            .unwrap()
            {
                Parsed::Ignore(why) => {
                    assert!(
                        why.starts_with(&format!("secret_scanning_alert.{action}: ")),
                        "{why}"
                    );
                    assert!(why.contains(reason), "{action}: {why}");
                }
                other => panic!("{action}: {other:?}"),
            }
        }
        // A known secret in a new place: re-checked through the respond path.
        let loc = |state: &str| {
            serde_json::to_vec(&json!({
                "action": "created",
                "alert": {"number": 4, "state": state},
                "location": {"type": "commit", "details": {"path": "a.env", "start_line": 3}},
                "repository": {"full_name": "acme/api"}
            }))
            .unwrap()
        };
        match parse_github("secret_scanning_alert_location", "d-2", &loc("open")).unwrap() {
            Parsed::Act(e) => {
                assert_eq!(e.kind, "secret_scanning_alert_location.created");
                assert_eq!(
                    (e.alerts[0].owner.as_str(), e.alerts[0].number),
                    ("acme", 4)
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_github("secret_scanning_alert_location", "d-2", &loc("resolved")).unwrap(),
            Parsed::Ignore(why) if why.contains("resolved")
        ));
        let scan = br#"{"action":"completed","type":"backfill","source":"git","repository":{"full_name":"acme/api"}}"#;
        assert!(matches!(
            parse_github("secret_scanning_scan", "d-3", scan).unwrap(),
            Parsed::Ignore(why) if why.starts_with("secret_scanning_scan.completed: ")
        ));
        // The action reaches records: anything but a short lowercase word is refused.
        let odd = br#"{"action":"created\u001b[2J","alert":{"number":1},"repository":{"full_name":"o/r"}}"#;
        assert!(matches!(
            parse_github("secret_scanning_alert", "d", odd).unwrap_err(),
            WebhookError::Field { field, .. } if field == "action"
        ));
    }

    #[test]
    fn bad_github_payloads_name_the_field() {
        assert!(
            matches!(parse_github("secret_scanning_alert", "d", b"{\"action\":").unwrap_err(), WebhookError::NotJson(m) if m.contains("truncated"))
        );
        let no_number = br#"{"action":"created","alert":{},"repository":{"full_name":"o/r"}}"#;
        assert_eq!(
            parse_github("secret_scanning_alert", "d", no_number).unwrap_err(),
            field_err("alert.number", "missing")
        );
        let bad_repo =
            br#"{"action":"created","alert":{"number":1},"repository":{"full_name":"o/r/x"}}"#;
        assert!(
            matches!(parse_github("secret_scanning_alert", "d", bad_repo).unwrap_err(), WebhookError::Field { field, .. } if field == "repository.full_name")
        );
        assert!(matches!(
            parse_github("push", "d", b"{}").unwrap_err(),
            WebhookError::Unsupported(_)
        ));
        assert!(parse_github("ping", "", b"{}").is_err());
        assert!(parse_github("ping", "../../etc", b"{}").is_err());
    }

    fn guardduty(key: &str, sev: f64) -> Vec<u8> {
        serde_json::json!({
            "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
            "detail-type": "GuardDuty Finding", "source": "aws.guardduty", "account": "123456789012",
            "detail": {"id": "f1", "accountId": "123456789012", "type": "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", "severity": sev,
              "resource": {"resourceType": "AccessKey", "accessKeyDetails": {"accessKeyId": key, "userName": "deploy", "userType": "IAMUser"}}}
        }).to_string().into_bytes()
    }

    #[test]
    fn guardduty_access_key_findings_name_the_key_with_severity_bands() {
        let Parsed::Act(e) = parse_eventbridge(&guardduty("AKIAIOSFODNN7EXAMPLE", 8.0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.severity, Severity::High);
        assert_eq!(e.keys[0].key_id, "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(e.keys[0].user.as_deref(), Some("deploy"));
        assert_eq!(e.keys[0].role, None);
        let assumed = String::from_utf8(guardduty("ASIAIOSFODNN7EXAMPLE", 8.0))
            .unwrap()
            .replace("\"IAMUser\"", "\"AssumedRole\"");
        let Parsed::Act(s) = parse_eventbridge(assumed.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.keys[0].user.as_deref(), s.keys[0].role.as_deref()),
            (None, Some("deploy"))
        );
        let r = e.to_report();
        assert!(
            matches!(&r.findings[0].item, Ok(Credential::AwsKey { key_id, secret: None, .. }) if key_id == "AKIAIOSFODNN7EXAMPLE")
        );
        let Parsed::Act(low) = parse_eventbridge(&guardduty("AKIAIOSFODNN7EXAMPLE", 2.0)).unwrap()
        else {
            panic!()
        };
        assert_eq!(low.severity, Severity::Low);
        // GuardDuty's sample findings carry a placeholder key id: not containable.
        let Parsed::Act(sample) =
            parse_eventbridge(&guardduty("GeneratedFindingAccessKeyId", 8.0)).unwrap()
        else {
            panic!()
        };
        assert!(sample.to_report().findings[0].item.is_err());
    }

    #[test]
    fn health_exposed_credentials_are_critical() {
        let body = serde_json::json!({"id": "e-1", "detail-type": "AWS Health Event", "source": "aws.health", "account": "123456789012",
            "detail": {"eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED", "affectedEntities": [{"entityValue": "AKIAIOSFODNN7EXAMPLE"}]}}).to_string();
        let Parsed::Act(e) = parse_eventbridge(body.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.keys.len(), 1);
        let other = body.replace("AWS_RISK_CREDENTIALS_EXPOSED", "AWS_EC2_MAINTENANCE");
        assert!(matches!(
            parse_eventbridge(other.as_bytes()).unwrap(),
            Parsed::Ignore(_)
        ));
        let none = body.replace(r#"[{"entityValue":"AKIAIOSFODNN7EXAMPLE"}]"#, "[]");
        assert!(parse_eventbridge(none.as_bytes()).is_err());
    }

    #[test]
    fn unknown_eventbridge_sources_are_refused() {
        let body = br#"{"id":"x","source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{}}"#;
        assert!(matches!(
            parse_eventbridge(body).unwrap_err(),
            WebhookError::Unsupported(_)
        ));
        assert!(parse_eventbridge(b"[]").is_err());
    }
}
