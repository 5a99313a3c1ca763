//! Evidence: read-only snapshots of an identity, taken before any change. A snapshot has
//! no secret in it (AWS never returns secret keys or passwords on these reads).

use aws_sdk_iam::primitives::{DateTime, DateTimeFormat};
use cordon_connector::ConnectorError;
use serde_json::{json, Map, Value};

use crate::client::AccountClients;
use crate::error::{classify, error_code};
use crate::policy::decode_document;

pub(crate) const SCHEMA: &str = "cordon-aws/1";

pub(crate) fn fmt_time(t: &DateTime) -> String {
    t.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

pub(crate) fn now_rfc3339() -> String {
    fmt_time(&DateTime::from(std::time::SystemTime::now()))
}

fn tags_map<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in tags {
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Value::Object(m)
}

/// The owner of an access key and when, where and for what the key was last used.
pub(crate) struct KeyOwner {
    pub user: Option<String>,
    pub last_used: Value,
}

pub(crate) async fn key_owner(
    c: &AccountClients,
    key_id: &str,
) -> Result<KeyOwner, ConnectorError> {
    let out = c
        .iam
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
        .map_err(|e| {
            if matches!(
                error_code(&e),
                Some("NoSuchEntity" | "NoSuchEntityException")
            ) {
                ConnectorError::permanent(format!(
                    "access key `{key_id}` does not exist in account `{}`: it may have been \
                     deleted, or it belongs to another account (check the target's account)",
                    c.account
                ))
            } else {
                classify("iam:GetAccessKeyLastUsed", &e)
            }
        })?;
    let last_used = match out.access_key_last_used() {
        Some(lu) => json!({
            "date": lu.last_used_date().map(fmt_time),
            "service": lu.service_name(),
            "region": lu.region(),
        }),
        None => Value::Null,
    };
    Ok(KeyOwner {
        user: out.user_name().map(str::to_owned),
        last_used,
    })
}

/// Everything about a user that a containment or its restore may touch or need.
pub(crate) async fn user_snapshot(c: &AccountClients, user: &str) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let got = iam
        .get_user()
        .user_name(user)
        .send()
        .await
        .map_err(|e| not_found_or(&e, "iam:GetUser", "user", user, &c.account))?;
    let u = got.user().ok_or_else(|| {
        ConnectorError::permanent(format!("`iam:GetUser` returned no user for `{user}`"))
    })?;

    // The reads after GetUser do not depend on each other: issued together,
    // a snapshot costs four round trips instead of ten (the same calls).
    let keys = async {
        let mut keys = Vec::new();
        for k in access_key_metadata(c, user).await? {
            let id = k.access_key_id().unwrap_or_default().to_owned();
            let owner = key_owner(c, &id).await?;
            keys.push(json!({
                "access_key_id": id,
                "status": k.status().map(|s| s.as_str()),
                "create_date": k.create_date().map(fmt_time),
                "last_used": owner.last_used,
            }));
        }
        Ok::<_, ConnectorError>(keys)
    };

    let inline = async {
        let names = iam
            .list_user_policies()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListUserPolicies", &e))?;
        let mut inline = Vec::new();
        for name in names {
            let p = iam
                .get_user_policy()
                .user_name(user)
                .policy_name(&name)
                .send()
                .await
                .map_err(|e| classify("iam:GetUserPolicy", &e))?;
            inline.push(json!({ "name": name, "document": decode_document(p.policy_document()) }));
        }
        Ok::<_, ConnectorError>(inline)
    };

    let attached = async {
        Ok::<_, ConnectorError>(
            iam.list_attached_user_policies()
                .user_name(user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("iam:ListAttachedUserPolicies", &e))?
                .iter()
                .map(|p| json!({ "name": p.policy_name(), "arn": p.policy_arn() }))
                .collect::<Vec<Value>>(),
        )
    };

    let groups = async {
        Ok::<_, ConnectorError>(
            iam.list_groups_for_user()
                .user_name(user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("iam:ListGroupsForUser", &e))?
                .iter()
                .map(|g| json!({ "name": g.group_name(), "arn": g.arn() }))
                .collect::<Vec<Value>>(),
        )
    };

    let login_profile = async {
        match iam.get_login_profile().user_name(user).send().await {
            Ok(out) => Ok(match out.login_profile() {
                Some(lp) => json!({
                    "create_date": fmt_time(lp.create_date()),
                    "password_reset_required": lp.password_reset_required(),
                }),
                None => Value::Null,
            }),
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("NoSuchEntity" | "NoSuchEntityException")
                ) =>
            {
                Ok(Value::Null)
            }
            Err(e) => Err(classify("iam:GetLoginProfile", &e)),
        }
    };

    let tags = async {
        iam.list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListUserTags", &e))
    };

    let (keys, inline, attached, groups, login_profile, tags) =
        tokio::try_join!(keys, inline, attached, groups, login_profile, tags)?;
    let other = other_credentials(c, user).await;

    Ok(json!({
        "name": u.user_name(),
        "arn": u.arn(),
        "user_id": u.user_id(),
        "path": u.path(),
        "create_date": fmt_time(u.create_date()),
        "password_last_used": u.password_last_used().map(fmt_time),
        "access_keys": keys,
        "inline_policies": inline,
        "attached_policies": attached,
        "groups": groups,
        "login_profile": login_profile,
        "ssh_public_keys": other.ssh_public_keys,
        "service_specific_credentials": other.service_specific_credentials,
        "signing_certificates": other.signing_certificates,
        "tags": tags_map(tags.iter().map(|t| (t.key(), t.value()))),
    }))
}

/// A user's credentials besides access keys and the console password. Each list is JSON
/// (`[{id, status, ...}]`), or `{"error": ...}` when it could not be read: a missing read
/// permission (or a peer that lacks the call) is said, and never blocks containment.
pub(crate) struct OtherCredentials {
    pub ssh_public_keys: Value,
    pub service_specific_credentials: Value,
    pub signing_certificates: Value,
}

pub(crate) async fn other_credentials(c: &AccountClients, user: &str) -> OtherCredentials {
    let iam = &c.iam;
    let ssh = async {
        match iam
            .list_ssh_public_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
        {
            Ok(keys) => Value::Array(
                keys.iter()
                    .map(|k| {
                        json!({
                            "id": k.ssh_public_key_id(),
                            "status": k.status().as_str(),
                            "upload_date": fmt_time(k.upload_date()),
                        })
                    })
                    .collect(),
            ),
            Err(e) => json!({ "error": classify("iam:ListSSHPublicKeys", &e).message }),
        }
    };
    let service = async {
        match iam
            .list_service_specific_credentials()
            .user_name(user)
            .send()
            .await
        {
            Ok(out) => Value::Array(
                out.service_specific_credentials()
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.service_specific_credential_id(),
                            "service": k.service_name(),
                            "service_user_name": k.service_user_name(),
                            "status": k.status().as_str(),
                            "create_date": fmt_time(k.create_date()),
                        })
                    })
                    .collect(),
            ),
            Err(e) => {
                json!({ "error": classify("iam:ListServiceSpecificCredentials", &e).message })
            }
        }
    };
    let certs = async {
        match iam
            .list_signing_certificates()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
        {
            Ok(certs) => Value::Array(
                certs
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.certificate_id(),
                            "status": k.status().as_str(),
                            "upload_date": k.upload_date().map(fmt_time),
                        })
                    })
                    .collect(),
            ),
            Err(e) => json!({ "error": classify("iam:ListSigningCertificates", &e).message }),
        }
    };
    let (ssh_public_keys, service_specific_credentials, signing_certificates) =
        tokio::join!(ssh, service, certs);
    OtherCredentials {
        ssh_public_keys,
        service_specific_credentials,
        signing_certificates,
    }
}

/// The credentials of `user` only (keys, console password, the others), in the shape of
/// [`user_snapshot`] (with `"view": "credentials"`): the evidence of a key's kill and the
/// source of [`alive_beside`]. One round trip (the reads run together), where a full
/// snapshot is four; no policies, groups or last use (the user's own steps read those).
/// Only the access-key list is required: the others are said as `{"error": ...}` when
/// they cannot be read, and never stop the kill.
pub(crate) async fn credentials_snapshot(
    c: &AccountClients,
    user: &str,
) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let login = async {
        match iam.get_login_profile().user_name(user).send().await {
            Ok(out) => match out.login_profile() {
                Some(lp) => json!({ "create_date": fmt_time(lp.create_date()) }),
                None => json!({}),
            },
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("NoSuchEntity" | "NoSuchEntityException")
                ) =>
            {
                Value::Null
            }
            Err(e) => json!({ "error": classify("iam:GetLoginProfile", &e).message }),
        }
    };
    let (keys, login, other) = tokio::join!(list_keys(c, user), login, other_credentials(c, user));
    Ok(json!({
        "name": user,
        "view": "credentials",
        "access_keys": keys?,
        "login_profile": login,
        "ssh_public_keys": other.ssh_public_keys,
        "service_specific_credentials": other.service_specific_credentials,
        "signing_certificates": other.signing_certificates,
    }))
}

/// The access keys of `user` only, in the shape of [`credentials_snapshot`] (with
/// `"view": "access-keys"`): the evidence of a key's kill when the same plan quarantines
/// the user, whose snapshot reads the user's other credentials (one read where the
/// credentials view is five).
pub(crate) async fn access_keys_snapshot(
    c: &AccountClients,
    user: &str,
) -> Result<Value, ConnectorError> {
    Ok(json!({
        "name": user,
        "view": "access-keys",
        "access_keys": list_keys(c, user).await?,
    }))
}

/// One user's access-key list in flight, by account and user.
type InFlight = std::collections::HashMap<
    (String, String),
    std::sync::Arc<tokio::sync::OnceCell<Result<Value, ConnectorError>>>,
>;

/// Reads of a user's access keys in flight, shared (issue 19): the kills of two keys of
/// one user start together, and the one `ListAccessKeys` that one of them started serves
/// both as the state of each key before its change. A read is shared only while it is in
/// flight (it leaves the table before it answers, so a kill that starts later reads
/// afresh) and only between evidence snapshots (never a read-back): every step's evidence
/// is a read that was under way when the step asked for it and that answered before the
/// step's change, as its own read would have.
#[derive(Default)]
pub(crate) struct KeyLists {
    inflight: std::sync::Arc<std::sync::Mutex<InFlight>>,
}

impl KeyLists {
    fn table(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`access_keys_snapshot`], joined to the read of the same user in flight if any.
    pub(crate) async fn read(
        &self,
        c: &AccountClients,
        user: &str,
    ) -> Result<Value, ConnectorError> {
        let key = (c.account.clone(), user.to_owned());
        let cell = self.table().entry(key.clone()).or_default().clone();
        cell.get_or_init(|| async {
            let read = access_keys_snapshot(c, user).await;
            let mut table = self.table();
            if table
                .get(&key)
                .is_some_and(|now| std::sync::Arc::ptr_eq(now, &cell))
            {
                table.remove(&key);
            }
            read
        })
        .await
        .clone()
    }
}

/// A shared read-back's answer, filled once by whoever sends the read.
type Answer = std::sync::Arc<tokio::sync::OnceCell<Result<Value, ConnectorError>>>;

/// A key's change through this connector, registered by [`ReadBacks::changing`]: in flight
/// (`returned: None`), or returned at `Some(when)` and awaiting its key's read-back, for
/// at most [`READ_BACK_GRACE`].
struct Change {
    key: String,
    returned: Option<tokio::time::Instant>,
}

/// A user's read scheduled and not sent yet: whoever asks for a read-back of the user
/// joins it.
struct Scheduled {
    answer: Answer,
    /// It waits for the changes registered before it was scheduled (`seq < upto`), never
    /// for later ones, so a stream of changes cannot hold it back.
    upto: u64,
    since: tokio::time::Instant,
}

#[derive(Default)]
struct UserReadBacks {
    changes: std::collections::HashMap<u64, Change>,
    next: Option<Scheduled>,
}

impl UserReadBacks {
    fn idle(&self) -> bool {
        self.changes.is_empty() && self.next.is_none()
    }
}

#[derive(Default)]
struct ReadBackTable {
    seq: u64,
    users: std::collections::HashMap<(String, String), UserReadBacks>,
}

/// How long a scheduled read waits for the read-back of a key whose change has returned
/// (the engine records the outcome, then asks): past it, the read goes without that key.
pub(crate) const READ_BACK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Read-backs of a user's access keys, shared when several keys of the user are killed
/// at once (issue 19): the verification of each disabled key reads the user's key list
/// after the change, and one `ListAccessKeys` can answer for every key of the user whose
/// change returned before that read was sent.
///
/// Why an answer is never stale: a read-back joins only a read that is *scheduled and not
/// yet sent* (`UserReadBacks::next`); the read leaves the table before it is sent
/// ([`ReadBacks::until_sent`]), so whoever asks later schedules the next read, and a read
/// already on the wire is never joined (unlike the evidence, [`KeyLists`]). A read-back
/// asks after its key's change returned (the engine verifies after `execute`), so every
/// joiner's change returned before it joined, hence before the read was sent: the read
/// sees it, as the key's own read would have. A sender that is cancelled hands the cell
/// to another joiner (`OnceCell`), whose read is sent later still.
///
/// Why it saves requests: the kills of one user's keys run together (their evidence is
/// one shared read), so when the first key's read-back asks, the other key's change is
/// usually in flight. The connector counts those changes ([`ReadBacks::changing`], a
/// guard around `UpdateAccessKey`), and a scheduled read waits until the changes of the
/// user registered before it have returned and their keys' read-backs have joined, each
/// for at most [`READ_BACK_GRACE`] after its change returned (the engine may never
/// verify: a failed record, a crash), and the whole wait for at most the caller's bound
/// (the operation timeout). The table's lock is never held across an await, and a
/// poisoned lock is taken over as [`KeyLists`] does (every critical section is plain map
/// edits, so the table stays consistent).
pub(crate) struct ReadBacks {
    table: std::sync::Mutex<ReadBackTable>,
    changed: tokio::sync::Notify,
    grace: std::time::Duration,
}

impl Default for ReadBacks {
    fn default() -> Self {
        ReadBacks::with_grace(READ_BACK_GRACE)
    }
}

/// A key's change in flight, registered with [`ReadBacks`]: dropped without
/// [`Changing::returned`] (an error, a cancelled step) it is forgotten.
pub(crate) struct Changing<'a> {
    owner: &'a ReadBacks,
    user: (String, String),
    seq: u64,
    returned: bool,
}

impl Changing<'_> {
    /// The change returned: the user's next read may wait for this key's read-back.
    pub(crate) fn returned(mut self) {
        self.returned = true;
    }
}

impl Drop for Changing<'_> {
    fn drop(&mut self) {
        {
            let mut t = self.owner.table();
            if let Some(u) = t.users.get_mut(&self.user) {
                match u.changes.get_mut(&self.seq) {
                    Some(c) if self.returned => c.returned = Some(tokio::time::Instant::now()),
                    _ => {
                        u.changes.remove(&self.seq);
                    }
                }
                if u.idle() {
                    t.users.remove(&self.user);
                }
            }
        }
        self.owner.changed.notify_waiters();
    }
}

impl ReadBacks {
    pub(crate) fn with_grace(grace: std::time::Duration) -> ReadBacks {
        ReadBacks {
            table: std::sync::Mutex::default(),
            changed: tokio::sync::Notify::new(),
            grace,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, ReadBackTable> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register a change of `key_id` of `user` in `account`, about to be sent; the guard
    /// says when it returned.
    pub(crate) fn changing(&self, account: &str, user: &str, key_id: &str) -> Changing<'_> {
        let mut t = self.table();
        // Forget the returned changes whose read-back never came, everywhere: the
        // table holds only users with a change or a read under way.
        let now = tokio::time::Instant::now();
        let grace = self.grace;
        // A scheduled read whose every joiner was cancelled has no sender left (only
        // the table holds it): drop it too.
        t.users.retain(|_, u| {
            u.changes
                .retain(|_, c| c.returned.is_none_or(|r| now < r + grace));
            if u.next
                .as_ref()
                .is_some_and(|s| std::sync::Arc::strong_count(&s.answer) == 1)
            {
                u.next = None;
            }
            !u.idle()
        });
        t.seq += 1;
        let seq = t.seq;
        let k = (account.to_owned(), user.to_owned());
        t.users.entry(k.clone()).or_default().changes.insert(
            seq,
            Change {
                key: key_id.to_owned(),
                returned: None,
            },
        );
        Changing {
            owner: self,
            user: k,
            seq,
            returned: false,
        }
    }

    /// The read-back of `key_id` of `user` in `account`: joins the user's read scheduled
    /// and not sent yet, or schedules one; `read` sends it (one of the joiners' `read`
    /// runs). The read waits for the user's changes in flight, at most `max_wait`.
    pub(crate) async fn read<F, Fut>(
        &self,
        account: &str,
        user: &str,
        key_id: &str,
        max_wait: std::time::Duration,
        read: F,
    ) -> Result<Value, ConnectorError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Value, ConnectorError>>,
    {
        let k = (account.to_owned(), user.to_owned());
        let answer = {
            let mut t = self.table();
            let upto = t.seq + 1;
            let u = t.users.entry(k.clone()).or_default();
            // This key's change returned and its read-back is here: nothing more to
            // wait for on its behalf.
            u.changes
                .retain(|_, c| c.returned.is_none() || c.key != key_id);
            match &u.next {
                Some(s) => s.answer.clone(),
                None => {
                    let answer = Answer::default();
                    u.next = Some(Scheduled {
                        answer: answer.clone(),
                        upto,
                        since: tokio::time::Instant::now(),
                    });
                    answer
                }
            }
        };
        self.changed.notify_waiters();
        answer
            .get_or_init(|| async {
                self.until_sent(&k, &answer, max_wait).await;
                read().await
            })
            .await
            .clone()
    }

    /// Wait until the user's scheduled read `answer` may be sent, then take it out of
    /// the table: whoever asks from then on schedules the next read. Returns at once
    /// when it is out already (its first sender was cancelled after taking it out).
    async fn until_sent(
        &self,
        k: &(String, String),
        answer: &Answer,
        max_wait: std::time::Duration,
    ) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = {
                let mut t = self.table();
                let Some(u) = t.users.get_mut(k) else {
                    return;
                };
                let Some((upto, since)) = u
                    .next
                    .as_ref()
                    .filter(|s| std::sync::Arc::ptr_eq(&s.answer, answer))
                    .map(|s| (s.upto, s.since))
                else {
                    return;
                };
                let now = tokio::time::Instant::now();
                let grace = self.grace;
                u.changes
                    .retain(|_, c| c.returned.is_none_or(|r| now < r + grace));
                let deadline = since + max_wait;
                let mut wake = deadline;
                let mut ready = true;
                for c in u
                    .changes
                    .iter()
                    .filter(|(seq, _)| **seq < upto)
                    .map(|(_, c)| c)
                {
                    ready = false;
                    if let Some(r) = c.returned {
                        wake = wake.min(r + grace);
                    }
                }
                if ready || now >= deadline {
                    u.next = None;
                    if u.idle() {
                        t.users.remove(k);
                    }
                    return;
                }
                wake
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Every page of `iam:ListAccessKeys` for `user`.
pub(crate) async fn access_key_metadata(
    c: &AccountClients,
    user: &str,
) -> Result<Vec<aws_sdk_iam::types::AccessKeyMetadata>, ConnectorError> {
    c.iam
        .list_access_keys()
        .user_name(user)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListAccessKeys", &e))
}

async fn list_keys(c: &AccountClients, user: &str) -> Result<Vec<Value>, ConnectorError> {
    Ok(access_key_metadata(c, user)
        .await?
        .iter()
        .map(|k| {
            json!({
                "access_key_id": k.access_key_id(),
                "status": k.status().map(|s| s.as_str()),
                "create_date": k.create_date().map(fmt_time),
            })
        })
        .collect())
}

/// What still lets someone act as `user` besides `except_key`, one plain sentence each
/// with the command or call that ends it, read from a user snapshot.
pub(crate) fn alive_beside(snap: &Value, user: &str, except_key: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let active = |v: &Value| v.get("status").and_then(Value::as_str) == Some("Active");
    for k in snap
        .get("access_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = k.get("access_key_id").and_then(Value::as_str).unwrap_or("");
        if Some(id) != except_key && active(k) {
            out.push(format!(
                "the user's other access key `{id}` is still active: `cordon revoke aws-key {id}`"
            ));
        }
    }
    match snap.get("login_profile") {
        Some(Value::Object(p)) if p.contains_key("error") => {
            out.push(format!(
            "unverified: cordon could not read whether user `{user}` has a console password ({})",
            p.get("error").and_then(Value::as_str).unwrap_or("no answer")
        ))
        }
        Some(p) if !p.is_null() => out.push(format!(
            "user `{user}` still has a console password: `cordon quarantine aws-user {user}` \
             (deletes it), or `aws iam delete-login-profile --user-name {user}`"
        )),
        _ => {}
    }
    let lists: [(&str, &str, &str); 3] = [
        (
            "ssh_public_keys",
            "SSH public key (CodeCommit)",
            "aws iam update-ssh-public-key --user-name {user} --ssh-public-key-id {id} --status Inactive",
        ),
        (
            "service_specific_credentials",
            "service-specific credential",
            "aws iam update-service-specific-credential --user-name {user} --service-specific-credential-id {id} --status Inactive",
        ),
        (
            "signing_certificates",
            "signing certificate",
            "aws iam update-signing-certificate --user-name {user} --certificate-id {id} --status Inactive",
        ),
    ];
    for (field, what, fix) in lists {
        match snap.get(field) {
            Some(Value::Array(items)) => {
                for item in items.iter().filter(|i| active(i)) {
                    let id = item.get("id").and_then(Value::as_str).unwrap_or("");
                    let service = item
                        .get("service")
                        .and_then(Value::as_str)
                        .map(|s| format!(" for `{s}`"))
                        .unwrap_or_default();
                    out.push(format!(
                        "{what} `{id}`{service} of user `{user}` is still active: `{}`",
                        fix.replace("{user}", user).replace("{id}", id)
                    ));
                }
            }
            Some(Value::Object(e)) => out.push(format!(
                "unverified: cordon could not list the {what}s of user `{user}` ({})",
                e.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no answer")
            )),
            _ => {}
        }
    }
    out
}

/// Everything about a role that a containment or its restore may touch or need.
pub(crate) async fn role_snapshot(c: &AccountClients, role: &str) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let got = iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .map_err(|e| not_found_or(&e, "iam:GetRole", "role", role, &c.account))?;
    let r = got.role().ok_or_else(|| {
        ConnectorError::permanent(format!("`iam:GetRole` returned no role for `{role}`"))
    })?;

    let mut inline = Vec::new();
    let names = iam
        .list_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListRolePolicies", &e))?;
    for name in names {
        let p = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
            .map_err(|e| classify("iam:GetRolePolicy", &e))?;
        inline.push(json!({ "name": name, "document": decode_document(p.policy_document()) }));
    }

    let attached: Vec<Value> = iam
        .list_attached_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListAttachedRolePolicies", &e))?
        .iter()
        .map(|p| json!({ "name": p.policy_name(), "arn": p.policy_arn() }))
        .collect();

    let tags = iam
        .list_role_tags()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListRoleTags", &e))?;

    Ok(json!({
        "name": r.role_name(),
        "arn": r.arn(),
        "role_id": r.role_id(),
        "path": r.path(),
        "create_date": fmt_time(r.create_date()),
        "max_session_duration": r.max_session_duration(),
        "trust_policy": r.assume_role_policy_document().map(decode_document),
        "last_used": r.role_last_used().map(|lu| json!({
            "date": lu.last_used_date().map(fmt_time),
            "region": lu.region(),
        })),
        "inline_policies": inline,
        "attached_policies": attached,
        "tags": tags_map(tags.iter().map(|t| (t.key(), t.value()))),
    }))
}

pub(crate) fn not_found_or<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    op: &str,
    what: &str,
    name: &str,
    account: &str,
) -> ConnectorError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    if matches!(
        error_code(e),
        Some("NoSuchEntity" | "NoSuchEntityException")
    ) {
        ConnectorError::permanent(format!(
            "IAM {what} `{name}` does not exist in account `{account}`: check the target's name and account"
        ))
    } else {
        classify(op, e)
    }
}

/// Small readers over a snapshot's JSON.
pub(crate) fn inline_policy<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot
        .get("inline_policies")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("document"))
}

pub(crate) fn has_attached(snapshot: &Value, arn: &str) -> bool {
    snapshot
        .get("attached_policies")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|p| p.get("arn").and_then(Value::as_str) == Some(arn))
        })
}

pub(crate) fn has_login_profile(snapshot: &Value) -> bool {
    snapshot.get("login_profile").is_some_and(|v| !v.is_null())
}

pub(crate) fn key_status<'a>(snapshot: &'a Value, key_id: &str) -> Option<&'a str> {
    snapshot
        .get("access_keys")?
        .as_array()?
        .iter()
        .find(|k| k.get("access_key_id").and_then(Value::as_str) == Some(key_id))?
        .get("status")?
        .as_str()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    /// A read that counts itself and answers the number it was.
    fn counted(
        n: &Arc<AtomicUsize>,
    ) -> impl std::future::Future<Output = Result<Value, ConnectorError>> {
        let n = n.clone();
        async move { Ok(json!(n.fetch_add(1, Ordering::SeqCst) + 1)) }
    }

    /// The read-back of `key` of user `u`, under way on its own task.
    fn spawn_read(
        rb: &Arc<ReadBacks>,
        n: &Arc<AtomicUsize>,
        key: &'static str,
    ) -> tokio::task::JoinHandle<Result<Value, ConnectorError>> {
        let (rb, n) = (rb.clone(), n.clone());
        tokio::spawn(async move { rb.read("acct", "u", key, LONG, || counted(&n)).await })
    }

    #[tokio::test]
    async fn a_read_back_waits_for_the_users_change_in_flight_and_one_read_serves_both() {
        let rb = Arc::new(ReadBacks::with_grace(LONG));
        let n = Arc::new(AtomicUsize::new(0));
        let b = rb.changing("acct", "u", "B");
        let a = spawn_read(&rb, &n, "A");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            n.load(Ordering::SeqCst),
            0,
            "sent while B's change was in flight"
        );
        b.returned();
        // B's change returned: the read now waits for B's read-back (within the grace).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            n.load(Ordering::SeqCst),
            0,
            "sent before B's read-back asked"
        );
        let bv = rb
            .read("acct", "u", "B", LONG, || counted(&n))
            .await
            .unwrap();
        let av = a.await.unwrap().unwrap();
        assert_eq!((av, bv), (json!(1), json!(1)));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(rb.table().users.is_empty(), "the table keeps nothing after");
    }

    #[tokio::test]
    async fn a_read_already_sent_is_never_joined() {
        let rb = Arc::new(ReadBacks::with_grace(LONG));
        let n = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let a = tokio::spawn({
            let (rb, n) = (rb.clone(), n.clone());
            async move {
                rb.read("acct", "u", "A", LONG, || async move {
                    let v = counted(&n).await;
                    let _ = rx.await;
                    v
                })
                .await
            }
        });
        // A's read is on the wire; B's change completes, then B asks.
        while n.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rb.changing("acct", "u", "B").returned();
        let bv = rb
            .read("acct", "u", "B", LONG, || counted(&n))
            .await
            .unwrap();
        assert_eq!(bv, json!(2), "B must get a read of its own");
        tx.send(()).unwrap();
        assert_eq!(a.await.unwrap().unwrap(), json!(1));
    }

    #[tokio::test]
    async fn the_wait_is_bounded() {
        let n = Arc::new(AtomicUsize::new(0));
        // A change in flight past the bound: the read goes at the bound.
        let rb = ReadBacks::with_grace(LONG);
        let stuck = rb.changing("acct", "u", "B");
        let t = tokio::time::Instant::now();
        rb.read("acct", "u", "A", Duration::from_millis(200), || counted(&n))
            .await
            .unwrap();
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        drop(stuck);
        // A change that returned but whose read-back never asks: held for the grace only.
        let rb = ReadBacks::with_grace(Duration::from_millis(200));
        rb.changing("acct", "u", "B").returned();
        let t = tokio::time::Instant::now();
        rb.read("acct", "u", "A", LONG, || counted(&n))
            .await
            .unwrap();
        let waited = t.elapsed();
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        // A failed change (the guard dropped) holds nothing back.
        let rb = ReadBacks::with_grace(LONG);
        drop(rb.changing("acct", "u", "B"));
        let t = tokio::time::Instant::now();
        rb.read("acct", "u", "A", LONG, || counted(&n))
            .await
            .unwrap();
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn only_changes_before_the_read_was_scheduled_hold_it_and_other_users_never() {
        let rb = Arc::new(ReadBacks::with_grace(LONG));
        let n = Arc::new(AtomicUsize::new(0));
        let other_user = rb.changing("acct", "v", "C");
        let other_account = rb.changing("acct2", "u", "D");
        let a = spawn_read(&rb, &n, "A");
        tokio::time::timeout(Duration::from_secs(5), a)
            .await
            .expect("held back by another user's change")
            .unwrap()
            .unwrap();
        // A change that starts after the read was scheduled does not hold it back.
        let x = rb.changing("acct", "u", "X");
        let a = spawn_read(&rb, &n, "A");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let late = rb.changing("acct", "u", "E");
        x.returned();
        let xv = tokio::time::timeout(
            Duration::from_secs(5),
            rb.read("acct", "u", "X", LONG, || counted(&n)),
        )
        .await
        .expect("held back by a change that started later")
        .unwrap();
        assert_eq!(a.await.unwrap().unwrap(), xv);
        drop((late, other_user, other_account));
        assert!(rb.table().users.is_empty());
    }

    #[tokio::test]
    async fn a_failed_read_is_every_joiners_error_and_the_next_read_back_reads_again() {
        let rb = Arc::new(ReadBacks::with_grace(LONG));
        let n = Arc::new(AtomicUsize::new(0));
        let b = rb.changing("acct", "u", "B");
        let a = tokio::spawn({
            let (rb, n) = (rb.clone(), n.clone());
            async move {
                rb.read("acct", "u", "A", LONG, || async move {
                    n.fetch_add(1, Ordering::SeqCst);
                    Err(ConnectorError::retryable("throttled"))
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.returned();
        let be = rb
            .read("acct", "u", "B", LONG, || counted(&n))
            .await
            .unwrap_err();
        assert!(be.message.contains("throttled"), "{be}");
        assert!(a.await.unwrap().unwrap_err().message.contains("throttled"));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(
            rb.read("acct", "u", "B", LONG, || counted(&n))
                .await
                .unwrap(),
            json!(2)
        );
    }

    #[tokio::test]
    async fn a_cancelled_sender_hands_the_read_to_a_joiner() {
        let rb = Arc::new(ReadBacks::with_grace(LONG));
        let n = Arc::new(AtomicUsize::new(0));
        let b = rb.changing("acct", "u", "B");
        let a = spawn_read(&rb, &n, "A");
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.returned();
        let joiner = spawn_read(&rb, &n, "B");
        // A is cancelled: B's read-back still gets one read, sent now.
        a.abort();
        let bv = tokio::time::timeout(Duration::from_secs(5), joiner)
            .await
            .expect("the joiner was left waiting")
            .unwrap()
            .unwrap();
        assert_eq!(bv, json!(1));
    }
}
