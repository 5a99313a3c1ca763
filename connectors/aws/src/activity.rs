//! What a leaked access key did: its CloudTrail events since the key was created, and
//! the ones that look like a door the attacker opened for later (a new user, key, role,
//! login profile, changed trust policy, attached policy, a role assumed...), each with
//! the step that closes it.
//!
//! A read with cordon's own credentials (`cloudtrail:LookupEvents`), made after the key
//! is contained: it never blocks or fails containment, and a caller reports a failure as
//! "activity not checked". `LookupEvents` takes one lookup attribute; cordon passes the
//! key id (`AccessKeyId`), so only the key's own events come back.
//! https://docs.aws.amazon.com/awscloudtrail/latest/APIReference/API_LookupEvents.html
//!
//! Event history covers the last 90 days, management events only. IAM and the global
//! STS endpoint log in US East (N. Virginia): cordon looks there and, when it is
//! configured for another region, in that region too (regional STS endpoints, Lambda).

use std::collections::BTreeMap;

use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use aws_smithy_types::DateTime;
use cordon_connector::ConnectorError;
use serde::Serialize;
use serde_json::Value;

use crate::error::classify;
use crate::snapshot::fmt_time;
use crate::AwsConnector;

/// Where IAM and global STS events are recorded.
const GLOBAL_EVENTS_REGION: &str = "us-east-1";
/// LookupEvents pages hold at most 50 events.
const PAGE: i32 = 50;
/// At most this many pages per region (1,000 events): the rest is said, not read.
const MAX_PAGES: usize = 20;

/// One CloudTrail event of the key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityEvent {
    pub id: String,
    pub name: String,
    /// `iam.amazonaws.com`, `sts.amazonaws.com`, ...
    pub source: String,
    pub time: String,
    /// `requestParameters` of the CloudTrail record (`null` when it had none).
    pub request: Value,
    /// `responseElements` of the CloudTrail record.
    pub response: Value,
}

/// A change the key made that outlives the key: what it is and how to undo it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Door {
    /// What was created or changed, with the event that did it.
    pub what: String,
    /// The command (or console step) that closes it.
    pub undo: String,
    pub event: String,
    pub event_id: String,
    pub time: String,
}

impl Door {
    /// The whole instruction a person needs, as one line (an incident task's title).
    pub fn instruction(&self, key_id: &str) -> String {
        format!(
            "{} with the leaked key `{key_id}` ({} at {}, CloudTrail event {}): if nobody on \
             your team did this, {}",
            self.what, self.event, self.time, self.event_id, self.undo
        )
    }
}

/// The key's activity as CloudTrail recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyActivity {
    pub key_id: String,
    /// The start of the lookup (the key's creation, or 90 days back).
    pub since: String,
    pub events: Vec<ActivityEvent>,
    pub doors: Vec<Door>,
    /// Set when more events exist than cordon read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<String>,
}

impl AwsConnector {
    /// The CloudTrail events signed with `key_id` in `account` (`None`: cordon's own)
    /// since `since` (RFC 3339; `None`: as far back as event history goes, 90 days), and
    /// the doors among them. A read: changes nothing.
    pub async fn key_activity(
        &self,
        account: Option<&str>,
        key_id: &str,
        since: Option<&str>,
    ) -> Result<KeyActivity, ConnectorError> {
        let start = match since {
            Some(s) => Some(
                DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime).map_err(
                    |e| {
                        ConnectorError::permanent(format!(
                            "the key's creation time `{s}` is not a time: {e}"
                        ))
                    },
                )?,
            ),
            None => None,
        };
        let clients = self.clients_for(account).await?;
        let mut regions = vec![GLOBAL_EVENTS_REGION.to_owned()];
        if self.config().region != GLOBAL_EVENTS_REGION {
            regions.push(self.config().region.clone());
        }
        let mut by_id: BTreeMap<String, ActivityEvent> = BTreeMap::new();
        let mut truncated = None;
        for region in &regions {
            let ct = clients.cloudtrail_in(region);
            let mut token: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                let out = ct
                    .lookup_events()
                    .lookup_attributes(
                        LookupAttribute::builder()
                            .attribute_key(LookupAttributeKey::AccessKeyId)
                            .attribute_value(key_id)
                            .build()
                            .map_err(|e| ConnectorError::permanent(e.to_string()))?,
                    )
                    .set_start_time(start)
                    .max_results(PAGE)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(|e| classify("cloudtrail:LookupEvents", &e))?;
                // LookupEvents filters by the key (no second filter here: the tests
                // prove the lookup itself names the key).
                for e in out.events() {
                    let ev = event_of(e);
                    by_id.entry(ev.id.clone()).or_insert(ev);
                }
                match out.next_token() {
                    Some(t) if pages < MAX_PAGES => token = Some(t.to_owned()),
                    Some(_) => {
                        truncated = Some(format!(
                            "more than {} events in {region}: cordon read the newest {}; see \
                             the rest with `aws cloudtrail lookup-events --region {region} \
                             --lookup-attributes AttributeKey=AccessKeyId,AttributeValue={key_id}`",
                            MAX_PAGES * PAGE as usize,
                            MAX_PAGES * PAGE as usize
                        ));
                        break;
                    }
                    None => break,
                }
            }
        }
        let mut events: Vec<ActivityEvent> = by_id.into_values().collect();
        events.sort_by(|a, b| a.time.cmp(&b.time).then(a.id.cmp(&b.id)));
        let doors = events.iter().filter_map(door_of).collect();
        Ok(KeyActivity {
            key_id: key_id.to_owned(),
            since: since
                .map(str::to_owned)
                .unwrap_or_else(|| "the start of event history (90 days)".to_owned()),
            events,
            doors,
            truncated,
        })
    }
}

fn event_of(e: &aws_sdk_cloudtrail::types::Event) -> ActivityEvent {
    let record: Value = e
        .cloud_trail_event()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    ActivityEvent {
        id: e.event_id().unwrap_or_default().to_owned(),
        name: e.event_name().unwrap_or_default().to_owned(),
        source: e
            .event_source()
            .map(str::to_owned)
            .or_else(|| {
                record
                    .get("eventSource")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        time: e.event_time().map(fmt_time).unwrap_or_default(),
        request: record
            .get("requestParameters")
            .cloned()
            .unwrap_or(Value::Null),
        response: record
            .get("responseElements")
            .cloned()
            .unwrap_or(Value::Null),
    }
}

/// A string at `path` (keys, outer first) of `v`.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// The door an event opened, if it is one. What counts: changes that give someone a
/// way back in after the key is dead (identities, credentials, permissions, trust, code
/// that runs with a role), and sessions of other roles obtained with the key.
pub fn door_of(e: &ActivityEvent) -> Option<Door> {
    let req = &e.request;
    let resp = &e.response;
    let user = || at(req, &["userName"]).unwrap_or("?").to_owned();
    let role = || at(req, &["roleName"]).unwrap_or("?").to_owned();
    let (what, undo) = match (e.source.as_str(), e.name.as_str()) {
        ("iam.amazonaws.com", "CreateUser") => {
            let u = user();
            (
                format!("IAM user `{u}` was created"),
                format!(
                    "contain it (`aws iam list-access-keys --user-name {u}`, then `cordon revoke \
                     aws-key KEY_ID` for each key), then delete it: remove its keys, login \
                     profile, policies and groups, and `aws iam delete-user --user-name {u}`"
                ),
            )
        }
        ("iam.amazonaws.com", "CreateAccessKey") => {
            let k = at(resp, &["accessKey", "accessKeyId"]).unwrap_or("?");
            let u = at(resp, &["accessKey", "userName"])
                .map(str::to_owned)
                .unwrap_or_else(user);
            (
                format!("access key `{k}` of IAM user `{u}` was created"),
                format!(
                    "run `cordon revoke aws-key {k}`, then `aws iam delete-access-key \
                     --user-name {u} --access-key-id {k}`"
                ),
            )
        }
        ("iam.amazonaws.com", n @ ("CreateLoginProfile" | "UpdateLoginProfile")) => {
            let u = user();
            (
                format!(
                    "a console password of IAM user `{u}` was {}",
                    if n == "CreateLoginProfile" {
                        "created"
                    } else {
                        "changed"
                    }
                ),
                format!("delete it: `aws iam delete-login-profile --user-name {u}`"),
            )
        }
        ("iam.amazonaws.com", "CreateRole") => {
            let r = role();
            (
                format!("IAM role `{r}` was created"),
                format!(
                    "quarantine it and end its sessions (`cordon quarantine aws-role {r}`), then \
                     detach and delete its policies and `aws iam delete-role --role-name {r}`"
                ),
            )
        }
        ("iam.amazonaws.com", "UpdateAssumeRolePolicy") => {
            let r = role();
            (
                format!("the trust policy of IAM role `{r}` was replaced"),
                format!(
                    "put back the previous trust policy: `aws iam update-assume-role-policy \
                     --role-name {r} --policy-document file://previous.json` (the new one is in \
                     the event's requestParameters.policyDocument), and end the role's sessions \
                     (`cordon quarantine aws-role {r}`, or the console's \"Revoke active \
                     sessions\")"
                ),
            )
        }
        (
            "iam.amazonaws.com",
            n @ ("AttachUserPolicy" | "AttachRolePolicy" | "AttachGroupPolicy"),
        ) => {
            let arn = at(req, &["policyArn"]).unwrap_or("?");
            let (kind, flag, name) = principal_of(n, req);
            (
                format!("policy `{arn}` was attached to IAM {kind} `{name}`"),
                format!("`aws iam detach-{kind}-policy --{flag} {name} --policy-arn {arn}`"),
            )
        }
        ("iam.amazonaws.com", n @ ("PutUserPolicy" | "PutRolePolicy" | "PutGroupPolicy")) => {
            let p = at(req, &["policyName"]).unwrap_or("?");
            let (kind, flag, name) = principal_of(n, req);
            (
                format!("inline policy `{p}` was written on IAM {kind} `{name}`"),
                format!("`aws iam delete-{kind}-policy --{flag} {name} --policy-name {p}`"),
            )
        }
        ("iam.amazonaws.com", "AddUserToGroup") => {
            let u = user();
            let g = at(req, &["groupName"]).unwrap_or("?");
            (
                format!("IAM user `{u}` was added to group `{g}`"),
                format!("`aws iam remove-user-from-group --user-name {u} --group-name {g}`"),
            )
        }
        ("iam.amazonaws.com", "CreatePolicyVersion") => {
            let arn = at(req, &["policyArn"]).unwrap_or("?");
            let v = at(resp, &["policyVersion", "versionId"]).unwrap_or("?");
            (
                format!("version `{v}` of managed policy `{arn}` was created"),
                format!(
                    "make the previous version the default (`aws iam set-default-policy-version \
                     --policy-arn {arn} --version-id PREVIOUS`), then `aws iam \
                     delete-policy-version --policy-arn {arn} --version-id {v}`"
                ),
            )
        }
        ("iam.amazonaws.com", "UploadSSHPublicKey") => {
            let u = user();
            (
                format!("an SSH public key (CodeCommit) of IAM user `{u}` was uploaded"),
                format!(
                    "find it with `aws iam list-ssh-public-keys --user-name {u}` and `aws iam \
                     delete-ssh-public-key --user-name {u} --ssh-public-key-id ID`"
                ),
            )
        }
        ("iam.amazonaws.com", "CreateServiceSpecificCredential") => {
            let u = user();
            (
                format!("a service-specific credential of IAM user `{u}` was created"),
                format!(
                    "find it with `aws iam list-service-specific-credentials --user-name {u}` and \
                     `aws iam delete-service-specific-credential --user-name {u} \
                     --service-specific-credential-id ID`"
                ),
            )
        }
        ("iam.amazonaws.com", "UploadSigningCertificate") => {
            let u = user();
            (
                format!("a signing certificate of IAM user `{u}` was uploaded"),
                format!(
                    "find it with `aws iam list-signing-certificates --user-name {u}` and `aws \
                     iam delete-signing-certificate --user-name {u} --certificate-id ID`"
                ),
            )
        }
        ("sts.amazonaws.com", "AssumeRole") => {
            let arn = at(req, &["roleArn"]).unwrap_or("?");
            let name = arn.rsplit('/').next().unwrap_or(arn);
            let session = at(req, &["roleSessionName"]).unwrap_or("?");
            let key = at(resp, &["credentials", "accessKeyId"])
                .map(|k| format!(" (session key `{k}`)"))
                .unwrap_or_default();
            (
                format!("role `{arn}` was assumed as session `{session}`{key}"),
                match at(resp, &["credentials", "accessKeyId"]) {
                    Some(k) => format!(
                        "end the role's sessions issued until now: `cordon revoke aws-key {k} \
                         --role {name}` (or the IAM console's \"Revoke active sessions\" on \
                         the role)"
                    ),
                    None => format!(
                        "end the role's sessions issued until now: the IAM console's \"Revoke \
                         active sessions\" on role `{name}`"
                    ),
                },
            )
        }
        ("lambda.amazonaws.com", n)
            if n.starts_with("CreateFunction") || n.starts_with("UpdateFunctionCode") =>
        {
            let f = at(req, &["functionName"]).unwrap_or("?");
            (
                format!(
                    "Lambda function `{f}` was {}",
                    if n.starts_with("CreateFunction") {
                        "created"
                    } else {
                        "given new code"
                    }
                ),
                format!(
                    "review it (`aws lambda get-function --function-name {f}`); delete it with \
                     `aws lambda delete-function --function-name {f}` or put back its code"
                ),
            )
        }
        _ => return None,
    };
    Some(Door {
        what,
        undo,
        event: e.name.clone(),
        event_id: e.id.clone(),
        time: e.time.clone(),
    })
}

/// (`user` | `role` | `group`, the CLI flag naming it, its name) of an Attach/Put event.
fn principal_of<'a>(event: &str, req: &'a Value) -> (&'static str, &'static str, &'a str) {
    if event.contains("Role") {
        ("role", "role-name", at(req, &["roleName"]).unwrap_or("?"))
    } else if event.contains("Group") {
        (
            "group",
            "group-name",
            at(req, &["groupName"]).unwrap_or("?"),
        )
    } else {
        ("user", "user-name", at(req, &["userName"]).unwrap_or("?"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn ev(source: &str, name: &str, request: Value, response: Value) -> ActivityEvent {
        ActivityEvent {
            id: "e1".into(),
            name: name.into(),
            source: source.into(),
            time: "2026-01-01T00:00:00Z".into(),
            request,
            response,
        }
    }

    #[test]
    fn persistence_events_become_doors_and_reads_do_not() {
        let k = ev(
            "iam.amazonaws.com",
            "CreateAccessKey",
            json!({"userName": "mallory"}),
            json!({"accessKey": {"accessKeyId": "AKIANEW", "userName": "mallory"}}),
        );
        let d = door_of(&k).unwrap();
        assert!(
            d.what.contains("AKIANEW") && d.what.contains("mallory"),
            "{d:?}"
        );
        assert!(d.undo.contains("cordon revoke aws-key AKIANEW"), "{d:?}");
        let a = ev(
            "iam.amazonaws.com",
            "AttachRolePolicy",
            json!({"roleName": "r1", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
            Value::Null,
        );
        assert!(door_of(&a)
            .unwrap()
            .undo
            .contains("aws iam detach-role-policy --role-name r1 --policy-arn arn:aws:iam::aws:policy/AdministratorAccess"));
        for read in ["GetUser", "ListUsers", "GetCallerIdentity"] {
            assert!(door_of(&ev("iam.amazonaws.com", read, Value::Null, Value::Null)).is_none());
        }
        // An event name of another service is not an IAM door.
        assert!(door_of(&ev(
            "s3.amazonaws.com",
            "CreateUser",
            Value::Null,
            Value::Null
        ))
        .is_none());
    }
}
