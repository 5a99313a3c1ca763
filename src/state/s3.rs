//! Shared team state on S3 (`--state s3://BUCKET/PREFIX`, `CORDON_STATE`).
//!
//! Layout under the prefix:
//!
//! ```text
//! plans/<id>.json                  write-once (If-None-Match: *), content-addressed
//! approvals/<plan>/<signer>.json   write-once, one per signer
//! evidence/<sha256>.json           write-once
//! connectors/<name>                connector state, replaced whole
//! log/records/<seq, 20 digits>.json audit records <seq>.. (a group), write-once
//! log/segments/<first>-<last>.jsonl records first..=last copied, write-once
//! claims/<plan>.lease              the lease of the one machine applying a plan
//! ```
//!
//! Every write of a record, plan, approval or piece of evidence is a
//! conditional `PutObject` with `If-None-Match: *`: S3 answers 412 when the
//! key exists, so two machines can never both create it. On 412 the existing
//! object is read back and compared: the same bytes are our own earlier write
//! whose answer was lost (a dropped connection after a successful PUT), any
//! other bytes are a conflict (objects) or another writer's record (the log,
//! which then re-chains on it and claims the next sequence number).
//! Conditional writes: <https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>.
//!
//! Leases are updated in place only with `If-Match: <etag>`, so a holder that
//! lost its lease cannot overwrite its successor's.
//!
//! The store is reached with the AWS SDK's default credential chain (or the
//! profile named by `CORDON_STATE_PROFILE`, so the state can use other
//! credentials than containment) and its standard endpoint settings
//! (`AWS_ENDPOINT_URL_S3`, then `AWS_ENDPOINT_URL`); an endpoint whose host is
//! an IP address or `localhost` is addressed path-style (no virtual host can
//! name a bucket there).
//!
//! Errors fail closed and name the bucket and key: nothing that needs a
//! durable record goes ahead without the PUT that made it durable.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;

use super::{check_object_name, ObjectKind, PlanClaim, StateError, Store};
use crate::audit::{parse_lines, AuditError, Record, RecordDraft, RemoteLog, GENESIS};

/// Records per page of a listing (S3's maximum).
const LIST_PAGE: i32 = 1000;
/// GETs in flight at once when reading the log back.
const READ_CONCURRENCY: usize = 32;
/// Attempts to claim a sequence number before giving up (each lost attempt
/// means another writer appended a record: the log moved on).
const MAX_CLAIMS: usize = 100_000;
/// Records per sealed log segment (`CORDON_STATE_SEGMENT_RECORDS` changes it,
/// for tests; every machine sharing a log should use the same size, though a
/// reader copes with any mix).
const SEGMENT_RECORDS: u64 = 1000;
/// Records in one group object at most. A group is the records of every
/// step in flight while the previous write was on the wire, so a process
/// appends one object per round trip, not one per record.
const MAX_GROUP: usize = 256;

/// `s3://BUCKET/PREFIX`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Location {
    /// Whether `--state` names an S3 location (else it is a directory).
    pub fn is_s3(s: &str) -> bool {
        s.starts_with("s3://")
    }

    pub fn parse(s: &str) -> Result<S3Location, StateError> {
        let bad = |why: &str| StateError::Config {
            what: format!("`--state {s}` is not an S3 state location ({why})"),
            fix: "write it as s3://BUCKET/PREFIX, e.g. s3://acme-cordon/prod".into(),
        };
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| bad("no s3:// scheme"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // Bucket names: 3-63 of a-z 0-9 . - (the S3 naming rules).
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !ok_bucket {
            return Err(bad(
                "the bucket name must be 3-63 characters of a-z, 0-9, '.' and '-'",
            ));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if prefix
            .split('/')
            .any(|c| c == "." || c == ".." || (c.is_empty() && !prefix.is_empty()))
            || prefix.bytes().any(|b| b.is_ascii_control())
        {
            return Err(bad("the prefix has an empty, `.` or `..` component"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The runtime the S3 calls run on: cordon's store interface is synchronous
/// and is called both from async commands and from blocking threads, so the
/// SDK gets a runtime of its own and callers wait for its tasks.
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        // A runtime cannot be dropped (blocking) inside another one.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// An object's bytes and ETag, if it exists.
type Fetched = Option<(Vec<u8>, Option<String>)>;
/// A key and its bytes, if it exists.
type Named = (String, Option<Vec<u8>>);

struct Inner {
    client: Client,
    loc: S3Location,
    rt: Rt,
    lease: Duration,
    /// Who this process is, in leases and takeover records.
    owner: String,
    /// How every PUT is protected (SSE-KMS, Object Lock on evidence).
    protect: Protect,
}

/// Server-side encryption and retention settings, from the environment:
/// `CORDON_STATE_SSE_KMS_KEY_ID` (every PUT carries
/// `x-amz-server-side-encryption: aws:kms` and this key id) and
/// `CORDON_STATE_OBJECT_LOCK_DAYS` with `CORDON_STATE_OBJECT_LOCK_MODE`
/// (`COMPLIANCE`, the default, or `GOVERNANCE`): evidence is written with
/// that retention. Without a period, a bucket's default retention (if it
/// has one) applies by itself; with one, a bucket without Object Lock
/// refuses the PUT (400) and cordon stops with that error rather than
/// keep evidence without the retention asked for.
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html>,
/// <https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html>.
#[derive(Clone, Default, Debug)]
struct Protect {
    kms_key: Option<String>,
    lock: Option<(aws_sdk_s3::types::ObjectLockMode, chrono::Duration)>,
}

impl Protect {
    fn from_env() -> Result<Protect, StateError> {
        let var = |k: &str| std::env::var(k).ok().filter(|s| !s.trim().is_empty());
        let kms_key = var("CORDON_STATE_SSE_KMS_KEY_ID");
        let lock = match var("CORDON_STATE_OBJECT_LOCK_DAYS") {
            None => None,
            Some(d) => {
                let days = d
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|d| (1..=36_500).contains(d))
                    .ok_or_else(|| StateError::Config {
                        what: format!(
                            "CORDON_STATE_OBJECT_LOCK_DAYS=`{d}` is not a number of days"
                        ),
                        fix: "set it to a whole number of days from 1 to 36500, or unset it".into(),
                    })?;
                let mode = match var("CORDON_STATE_OBJECT_LOCK_MODE")
                    .as_deref()
                    .map(str::trim)
                {
                    None | Some("COMPLIANCE") => aws_sdk_s3::types::ObjectLockMode::Compliance,
                    Some("GOVERNANCE") => aws_sdk_s3::types::ObjectLockMode::Governance,
                    Some(m) => {
                        return Err(StateError::Config {
                            what: format!(
                                "CORDON_STATE_OBJECT_LOCK_MODE=`{m}` is not a retention mode"
                            ),
                            fix: "use COMPLIANCE or GOVERNANCE".into(),
                        })
                    }
                };
                Some((mode, chrono::Duration::days(i64::from(days))))
            }
        };
        Ok(Protect { kms_key, lock })
    }
}

/// Result of a conditional create.
enum Created {
    Yes(Option<String>),
    /// The key exists (412): someone (maybe we, whose answer was lost) wrote it.
    Exists,
}

/// What a failed S3 call means for the caller.
struct CallError {
    status: Option<u16>,
    code: String,
    what: String,
    /// The request may have been applied (timeout, dropped answer).
    unknown: bool,
}

fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    e: &SdkError<E, R>,
    status: Option<u16>,
) -> CallError {
    match e {
        SdkError::TimeoutError(_) => CallError {
            status: None,
            code: "Timeout".into(),
            what: "no answer in time (the write may or may not have happened)".into(),
            unknown: true,
        },
        SdkError::DispatchFailure(d) => CallError {
            status: None,
            code: "Unreachable".into(),
            what: format!(
                "the store is unreachable ({})",
                if d.is_timeout() {
                    "timed out".to_owned()
                } else if d.is_io() {
                    "connection failed or was reset".to_owned()
                } else {
                    format!("{:?}", d.as_connector_error().map(|c| c.to_string()))
                }
            ),
            unknown: true,
        },
        SdkError::ResponseError(_) => CallError {
            status,
            code: "BadResponse".into(),
            what: "the answer was cut off or unreadable (the write may or may not have happened)"
                .into(),
            unknown: true,
        },
        _ => {
            let code = e.code().unwrap_or("").to_owned();
            let msg = e.message().unwrap_or("").to_owned();
            CallError {
                status,
                what: format!(
                    "{}{}{}",
                    status.map(|s| format!("HTTP {s} ")).unwrap_or_default(),
                    if code.is_empty() { "error" } else { &code },
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!(": {msg}")
                    }
                ),
                code,
                unknown: false,
            }
        }
    }
}

fn status_of<E, R>(e: &SdkError<E, R>) -> Option<u16>
where
    R: HasStatus,
{
    e.raw_response().map(|r| r.status_code())
}

trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

impl CallError {
    fn into_state(self, op: &'static str, loc: &S3Location, key: &str) -> StateError {
        let fix = match (self.status, self.code.as_str()) {
            (Some(403), _) | (_, "AccessDenied") | (_, "InvalidAccessKeyId") | (_, "SignatureDoesNotMatch") => {
                "give the state's credentials the policy in policies/cordon-state-s3.json (CORDON_STATE_PROFILE picks a profile for the state); nothing was done after this point".to_owned()
            }
            (_, "NoSuchBucket") => format!(
                "create the bucket `{}` (versioning and Object Lock recommended) or fix --state / CORDON_STATE",
                loc.bucket
            ),
            (Some(503), _) | (_, "SlowDown") => {
                "the store is throttling or unavailable even after retries: wait and run the command again; nothing was done after this point".to_owned()
            }
            _ if self.unknown => {
                "check the endpoint (AWS_ENDPOINT_URL_S3) and the network, then run the command again: cordon reads back what was written before it writes anything new".to_owned()
            }
            _ => "nothing was done after this point; run the command again once the store answers".to_owned(),
        };
        StateError::Remote {
            op,
            url: loc.url(key),
            what: self.what,
            fix,
        }
    }
}

impl Inner {
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StateError> {
        let rt = self.rt.0.as_ref().ok_or_else(|| StateError::Remote {
            op: "reach",
            url: self.loc.to_string(),
            what: "the S3 client has shut down".into(),
            fix: "run the command again".into(),
        })?;
        // Waited for on a plain channel, not by polling the task's handle:
        // the caller may be inside another runtime's task, whose cooperative
        // budget would make a polled handle spin forever once spent.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().map_err(|_| StateError::Remote {
            op: "reach",
            url: self.loc.to_string(),
            what: "the S3 call did not finish (its task stopped)".into(),
            fix: "run the command again".into(),
        })
    }

    fn get(&self, key: &str) -> Result<Fetched, StateError> {
        let (client, bucket, k) = (self.client.clone(), self.loc.bucket.clone(), key.to_owned());
        let r = self.block(async move {
            match client.get_object().bucket(bucket).key(k).send().await {
                Ok(o) => {
                    let etag = o.e_tag().map(str::to_owned);
                    match o.body.collect().await {
                        Ok(b) => Ok(Some((b.into_bytes().to_vec(), etag))),
                        Err(e) => Err(CallError {
                            status: None,
                            code: "BadResponse".into(),
                            what: format!("the object's body could not be read: {e}"),
                            unknown: false,
                        }),
                    }
                }
                Err(e) => {
                    let status = status_of(&e);
                    if status == Some(404)
                        || e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    {
                        // A missing bucket is an error, not a missing object.
                        if e.code() == Some("NoSuchBucket") {
                            return Err(classify(&e, status));
                        }
                        return Ok(None);
                    }
                    Err(classify(&e, status))
                }
            }
        })?;
        r.map_err(|e| e.into_state("read", &self.loc, key))
    }

    /// PUT with `If-None-Match: *` (create) or `If-Match: etag` (replace
    /// the version we read), or unconditionally.
    fn put(&self, key: &str, bytes: &[u8], cond: Cond) -> Result<Created, StateError> {
        self.put_with(key, bytes, cond, false)
    }

    /// As [`Inner::put`]; `lock`: with the configured Object Lock retention.
    fn put_with(
        &self,
        key: &str,
        bytes: &[u8],
        cond: Cond,
        lock: bool,
    ) -> Result<Created, StateError> {
        let (client, bucket, k) = (self.client.clone(), self.loc.bucket.clone(), key.to_owned());
        let body = bytes.to_vec();
        let cond2 = cond.clone();
        let protect = self.protect.clone();
        let r = self
            .block(async move { put_once(client, bucket, k, body, cond2, protect, lock).await })?;
        self.settle(key, bytes, &cond, r)
    }

    /// What a PUT's result means once its fate is known: an unknown
    /// outcome of a create is read back.
    fn settle(
        &self,
        key: &str,
        bytes: &[u8],
        cond: &Cond,
        r: Result<Created, CallError>,
    ) -> Result<Created, StateError> {
        match r {
            Ok(c) => Ok(c),
            Err(e) if e.unknown && matches!(cond, Cond::Create) => {
                // The fate of the write is unknown: read it back. Our own
                // bytes there mean it happened; anything else is reported
                // as what it is by the caller's 412 path.
                match self.get(key) {
                    Ok(Some((b, _))) if b == bytes => Ok(Created::Yes(None)),
                    Ok(Some(_)) => Ok(Created::Exists),
                    _ => Err(e.into_state("write", &self.loc, key)),
                }
            }
            Err(e) => Err(e.into_state("write", &self.loc, key)),
        }
    }

    /// Create many objects (`If-None-Match: *`), a few at a time; each
    /// result as [`Inner::put`] gives it, in order.
    fn put_many_new(&self, items: Vec<(String, Vec<u8>)>) -> Result<Vec<Created>, StateError> {
        use futures::stream::{self, StreamExt};
        let (client, bucket) = (self.client.clone(), self.loc.bucket.clone());
        let protect = self.protect.clone();
        let sent = items.clone();
        let r = self.block(async move {
            stream::iter(sent.into_iter().map(|(k, b)| {
                put_once(
                    client.clone(),
                    bucket.clone(),
                    k,
                    b,
                    Cond::Create,
                    protect.clone(),
                    false,
                )
            }))
            .buffered(READ_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
        })?;
        items
            .iter()
            .zip(r)
            .map(|((k, b), r)| self.settle(k, b, &Cond::Create, r))
            .collect()
    }

    /// Every key under `dir` (relative to the prefix) after `start_after`,
    /// up to `until` (a full key) included.
    fn list(
        &self,
        dir: &str,
        start_after: Option<&str>,
        until: Option<&str>,
    ) -> Result<Vec<String>, StateError> {
        let full = self.loc.key(dir);
        let (client, bucket, p) = (self.client.clone(), self.loc.bucket.clone(), full.clone());
        let start = start_after.map(str::to_owned);
        let until = until.map(str::to_owned);
        let r = self.block(async move {
            let mut keys = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut req = client
                    .list_objects_v2()
                    .bucket(bucket.clone())
                    .prefix(p.clone())
                    .max_keys(LIST_PAGE);
                if let Some(t) = &token {
                    req = req.continuation_token(t.clone());
                } else if let Some(s) = &start {
                    req = req.start_after(s.clone());
                }
                let out = match req.send().await {
                    Ok(o) => o,
                    Err(e) => {
                        let status = status_of(&e);
                        return Err(classify(&e, status));
                    }
                };
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_owned)),
                );
                if let Some(u) = &until {
                    // Keys come in order: past `until`, the rest are too.
                    if keys.last().is_some_and(|k| k > u) {
                        keys.retain(|k| k <= u);
                        break;
                    }
                }
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            Ok(keys)
        })?;
        r.map_err(|e| e.into_state("list", &self.loc, &full))
    }

    /// GET many keys, in order, a few at a time.
    fn get_many(&self, keys: Vec<String>) -> Result<Vec<Named>, StateError> {
        use futures::stream::{self, StreamExt};
        let (client, bucket) = (self.client.clone(), self.loc.bucket.clone());
        let r = self.block(async move {
            let results: Vec<_> = stream::iter(keys.into_iter().map(|k| {
                let (client, bucket) = (client.clone(), bucket.clone());
                async move {
                    let res = client
                        .get_object()
                        .bucket(bucket)
                        .key(k.clone())
                        .send()
                        .await;
                    match res {
                        Ok(o) => match o.body.collect().await {
                            Ok(b) => Ok((k, Some(b.into_bytes().to_vec()))),
                            Err(e) => Err((
                                k,
                                CallError {
                                    status: None,
                                    code: "BadResponse".into(),
                                    what: format!("the object's body could not be read: {e}"),
                                    unknown: false,
                                },
                            )),
                        },
                        Err(e) => {
                            let status = status_of(&e);
                            if status == Some(404) && e.code() != Some("NoSuchBucket") {
                                Ok((k, None))
                            } else {
                                Err((k, classify(&e, status)))
                            }
                        }
                    }
                }
            }))
            .buffered(READ_CONCURRENCY)
            .collect()
            .await;
            results
        })?;
        let mut out = Vec::with_capacity(r.len());
        for item in r {
            match item {
                Ok(x) => out.push(x),
                Err((k, e)) => return Err(e.into_state("read", &self.loc, &k)),
            }
        }
        Ok(out)
    }
}

/// One PUT, conditional as `cond` says; 412 is `Exists`. A 409
/// ConditionalRequestConflict (a concurrent conditional write to the same
/// key is in progress) is retried, as S3 says to.
async fn put_once(
    client: Client,
    bucket: String,
    key: String,
    body: Vec<u8>,
    cond: Cond,
    protect: Protect,
    lock: bool,
) -> Result<Created, CallError> {
    let mut attempt = 0;
    loop {
        let mut req = client
            .put_object()
            .bucket(bucket.clone())
            .key(key.clone())
            .body(ByteStream::from(body.clone()));
        if let Some(k) = &protect.kms_key {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(k.clone());
        }
        if let (true, Some((mode, period))) = (lock, &protect.lock) {
            let until = chrono::Utc::now() + *period;
            req = req
                .object_lock_mode(mode.clone())
                .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_millis(
                    until.timestamp_millis(),
                ));
        }
        match &cond {
            Cond::None => {}
            Cond::Create => req = req.if_none_match("*"),
            Cond::Match(etag) => req = req.if_match(etag.clone()),
        }
        match req.send().await {
            Ok(o) => return Ok(Created::Yes(o.e_tag().map(str::to_owned))),
            Err(e) => {
                let status = status_of(&e);
                if status == Some(412) || e.code() == Some("PreconditionFailed") {
                    return Ok(Created::Exists);
                }
                if (status == Some(409) || e.code() == Some("ConditionalRequestConflict"))
                    && attempt < 20
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                    continue;
                }
                return Err(classify(&e, status));
            }
        }
    }
}

#[derive(Clone)]
enum Cond {
    None,
    Create,
    Match(String),
}

/// The S3 backend: objects, the audit log and plan leases under one prefix.
#[derive(Clone)]
pub struct S3State {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for S3State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3State({})", self.inner.loc)
    }
}

/// Whether a host is an IP address or localhost (path-style addressing).
fn ip_like_host(endpoint: &str) -> bool {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
}

impl S3State {
    /// Connect to `loc` (no request is made yet: the first read or write
    /// reports an unreachable store or a missing bucket, naming them).
    pub fn open(loc: S3Location) -> Result<S3State, StateError> {
        // Settings first: an error returned after the runtime below exists
        // would drop it inside the caller's async context.
        let protect = Protect::from_env()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cordon-s3")
            .enable_all()
            .build()
            .map_err(|e| StateError::Remote {
                op: "reach",
                url: loc.to_string(),
                what: format!("cannot start the S3 client's runtime: {e}"),
                fix: "run the command again".into(),
            })?;
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()));
        let profile = std::env::var("CORDON_STATE_PROFILE")
            .ok()
            .filter(|s| !s.is_empty());
        let ep = endpoint.clone();
        // Per attempt (the SDK retries a timed-out attempt; an answer that
        // never comes is a write of unknown fate, read back before anything
        // else is written). `CORDON_STATE_TIMEOUT_MS` for slow links and tests.
        let attempt = Duration::from_millis(
            std::env::var("CORDON_STATE_TIMEOUT_MS")
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|ms| *ms >= 100)
                .unwrap_or(15_000),
        );
        // Spawned and waited for, not `block_on`: this may be called from
        // inside the command's own runtime.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(
                    aws_config::timeout::TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(5))
                        .operation_attempt_timeout(attempt)
                        .operation_timeout(attempt * 4)
                        .build(),
                );
            // The state's own profile: its credentials, not the default
            // chain's (which would take containment's from the environment
            // first).
            if let Some(p) = profile {
                loader = loader
                    .credentials_provider(
                        aws_config::profile::ProfileFileCredentialsProvider::builder()
                            .profile_name(&p)
                            .build(),
                    )
                    .profile_name(p);
            }
            let shared = loader.load().await;
            let mut b = aws_sdk_s3::config::Builder::from(&shared);
            if let Some(ep) = &ep {
                b = b.endpoint_url(ep.clone());
                if ip_like_host(ep) {
                    b = b.force_path_style(true);
                }
            }
            if shared.region().is_none() {
                b = b.region(aws_sdk_s3::config::Region::new("us-east-1"));
            }
            let _ = tx.send(Client::from_conf(b.build()));
        });
        let client = rx.recv().map_err(|_| StateError::Remote {
            op: "reach",
            url: loc.to_string(),
            what: "cannot configure the S3 client (its task stopped)".into(),
            fix: "check the AWS configuration (AWS_PROFILE, CORDON_STATE_PROFILE, AWS_REGION)"
                .into(),
        })?;
        let lease = std::env::var("CORDON_STATE_LEASE_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .unwrap_or(60);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown-host".into());
        let owner = format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(S3State {
            inner: Arc::new(Inner {
                client,
                loc,
                rt: Rt(Some(rt)),
                lease: Duration::from_secs(lease),
                owner,
                protect,
            }),
        })
    }

    pub fn location(&self) -> &S3Location {
        &self.inner.loc
    }

    /// The audit log kept in this state.
    pub fn log(&self) -> S3Log {
        S3Log {
            inner: self.inner.clone(),
            crash: crate::engine::CrashPoints::from_env(),
            head: Mutex::new(None),
        }
    }

    fn object_key(&self, kind: ObjectKind, name: &str) -> Result<String, StateError> {
        check_object_name(name)?;
        Ok(self.inner.loc.key(&format!("{}/{name}", kind.dir())))
    }
}

impl Store for S3State {
    fn put_new(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let key = self.object_key(kind, name)?;
        let lock = kind == ObjectKind::Evidence;
        match self.inner.put_with(&key, bytes, Cond::Create, lock)? {
            Created::Yes(_) => Ok(()),
            Created::Exists => match self.inner.get(&key)? {
                Some((b, _)) if b == bytes => Ok(()),
                _ => Err(StateError::Conflict {
                    kind: kind.label(),
                    name: self.inner.loc.url(&key),
                }),
            },
        }
    }

    fn put(&self, kind: ObjectKind, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let key = self.object_key(kind, name)?;
        self.inner.put(&key, bytes, Cond::None).map(|_| ())
    }

    fn get(&self, kind: ObjectKind, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let key = self.object_key(kind, name)?;
        Ok(self.inner.get(&key)?.map(|(b, _)| b))
    }

    fn list(&self, kind: ObjectKind, prefix: &str) -> Result<Vec<String>, StateError> {
        if !prefix.is_empty() {
            check_object_name(prefix)?;
        }
        let dir = if prefix.is_empty() {
            format!("{}/", kind.dir())
        } else {
            format!("{}/{prefix}/", kind.dir())
        };
        let base = self.inner.loc.key(&format!("{}/", kind.dir()));
        let mut names: Vec<String> = self
            .inner
            .list(&dir, None, None)?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&base).map(str::to_owned))
            // "" lists the kind's direct entries (as the local directory
            // does), a plan id lists that plan's approvals.
            .filter(|n| prefix.is_empty() != n.contains('/'))
            .filter(|n| !n.rsplit('/').next().unwrap_or("").starts_with('.'))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn path_of(&self, _kind: ObjectKind, _name: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn claim_plan(&self, plan_id: &str) -> Result<PlanClaim, StateError> {
        super::check_plan_id(plan_id)?;
        let key = self.inner.loc.key(&format!("claims/{plan_id}.lease"));
        Lease::acquire(self.inner.clone(), key, plan_id)
    }

    fn describe(&self) -> String {
        self.inner.loc.to_string()
    }
}

/// A plan's lease as the store holds it (`cordon state release-lease`).
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub url: String,
    /// Who holds (or last held) it; None when the object is not a lease
    /// cordon wrote.
    pub owner: Option<String>,
    pub expires: Option<chrono::DateTime<chrono::Utc>>,
    pub released: bool,
    etag: String,
}

impl LeaseInfo {
    /// Held and not expired: a machine may still be applying the plan.
    pub fn live(&self) -> bool {
        !self.released && self.expires.is_some_and(|t| t > chrono::Utc::now())
    }
}

impl S3State {
    fn lease_key(&self, plan_id: &str) -> Result<String, StateError> {
        super::check_plan_id(plan_id)?;
        Ok(self.inner.loc.key(&format!("claims/{plan_id}.lease")))
    }

    /// The plan's lease, if there is one.
    pub fn lease(&self, plan_id: &str) -> Result<Option<LeaseInfo>, StateError> {
        let key = self.lease_key(plan_id)?;
        let Some((bytes, etag)) = self.inner.get(&key)? else {
            return Ok(None);
        };
        let etag = etag.ok_or_else(|| StateError::Remote {
            op: "read",
            url: self.inner.loc.url(&key),
            what: "the store sent no ETag, so the lease cannot be updated safely".into(),
            fix: "use an S3-compatible store that supports conditional writes (If-Match)".into(),
        })?;
        let held: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
        Ok(Some(LeaseInfo {
            url: self.inner.loc.url(&key),
            owner: held.as_ref().map(|h| h.owner.clone()),
            expires: held
                .as_ref()
                .and_then(|h| chrono::DateTime::<chrono::Utc>::from_timestamp_millis(h.expires_ms)),
            released: held.as_ref().is_some_and(|h| h.released),
            etag,
        }))
    }

    /// Release the lease read as `info` on behalf of `by` (a person, by
    /// hand): replaced with `If-Match`, so a lease renewed or taken over
    /// since it was read is left alone (false).
    pub fn release_lease(
        &self,
        plan_id: &str,
        info: &LeaseInfo,
        by: &str,
    ) -> Result<bool, StateError> {
        let key = self.lease_key(plan_id)?;
        let body = serde_json::to_vec(&LeaseBody {
            plan: plan_id.to_owned(),
            owner: format!("released by {by}"),
            expires_ms: 0,
            released: true,
        })
        .map_err(|e| StateError::Config {
            what: format!("cannot encode the lease: {e}"),
            fix: "report this as a bug".into(),
        })?;
        Ok(matches!(
            self.inner
                .put(&key, &body, Cond::Match(info.etag.clone()))?,
            Created::Yes(_)
        ))
    }
}

/// A lease body: who holds the plan, until when (holder's clock, ms).
#[derive(serde::Serialize, serde::Deserialize)]
struct LeaseBody {
    plan: String,
    owner: String,
    expires_ms: i64,
    #[serde(default)]
    released: bool,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A held lease, renewed in the background until dropped, then released.
struct Lease {
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    fn body(inner: &Inner, plan: &str, released: bool) -> Vec<u8> {
        let b = LeaseBody {
            plan: plan.to_owned(),
            owner: inner.owner.clone(),
            expires_ms: if released {
                0
            } else {
                now_ms() + inner.lease.as_millis() as i64
            },
            released,
        };
        serde_json::to_vec(&b).unwrap_or_default()
    }

    fn acquire(inner: Arc<Inner>, key: String, plan: &str) -> Result<PlanClaim, StateError> {
        let mut waited_for: Option<String> = None;
        let mut takeover = None;
        let etag = loop {
            let body = Lease::body(&inner, plan, false);
            match inner.put(&key, &body, Cond::Create)? {
                Created::Yes(Some(etag)) => break etag,
                // Our create's answer was lost and read back: fetch its etag.
                Created::Yes(None) | Created::Exists => {}
            }
            let Some((bytes, etag)) = inner.get(&key)? else {
                continue;
            };
            let etag = etag.ok_or_else(|| StateError::Remote {
                op: "read",
                url: inner.loc.url(&key),
                what: "the store sent no ETag, so the lease cannot be updated safely".into(),
                fix: "use an S3-compatible store that supports conditional writes (If-Match)"
                    .into(),
            })?;
            let held: Option<LeaseBody> = serde_json::from_slice(&bytes).ok();
            if let Some(h) = &held {
                if h.owner == inner.owner && !h.released {
                    break etag; // our own create, read back
                }
            }
            let free = match &held {
                Some(h) => h.released || h.expires_ms <= now_ms(),
                // Unreadable: not ours to judge as free. Report it.
                None => {
                    return Err(StateError::Remote {
                        op: "read",
                        url: inner.loc.url(&key),
                        what: "the plan's lease is not a lease cordon wrote".into(),
                        fix: format!("inspect the object; if no cordon is applying the plan, release it with `cordon state release-lease {plan} --reason TEXT --force` (recorded in the audit log)"),
                    })
                }
            };
            if free {
                let body = Lease::body(&inner, plan, false);
                if let Created::Yes(Some(new_etag)) = inner.put(&key, &body, Cond::Match(etag))? {
                    if let Some(h) = held.filter(|h| !h.released) {
                        takeover = Some(format!(
                            "took over the lease of plan {plan} from `{}`, which expired at {} without being released (that machine stopped while applying); steps it left unfinished are resumed from the journal",
                            h.owner,
                            chrono::DateTime::<chrono::Utc>::from_timestamp_millis(h.expires_ms)
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_default()
                        ));
                    }
                    break new_etag;
                }
                continue; // someone else took it first
            }
            if let Some(h) = &held {
                if waited_for.as_deref() != Some(h.owner.as_str()) {
                    tracing::warn!(
                        plan,
                        holder = %h.owner,
                        "another machine is applying this plan (lease `{}`, held by `{}` until {}); waiting for it to finish or for its lease to expire. If that machine is gone and you cannot wait, release the lease with `cordon state release-lease {plan} --reason TEXT --force` (recorded in the audit log)",
                        inner.loc.url(&key),
                        h.owner,
                        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(h.expires_ms)
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_default()
                    );
                    waited_for = Some(h.owner.clone());
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let renewer = {
            let (inner, key, plan, stop) =
                (inner.clone(), key.clone(), plan.to_owned(), stop.clone());
            std::thread::Builder::new()
                .name("cordon-lease".into())
                .spawn(move || Lease::renew(inner, key, plan, etag, stop))
                .ok()
        };
        Ok(PlanClaim::new(Lease { stop, renewer }, takeover))
    }

    /// Renew every third of the lease; release when told to stop.
    fn renew(
        inner: Arc<Inner>,
        key: String,
        plan: String,
        mut etag: String,
        stop: Arc<AtomicBool>,
    ) {
        let step = Duration::from_millis(50);
        let every = inner.lease / 3;
        let mut since = std::time::Instant::now();
        loop {
            if stop.load(Ordering::SeqCst) {
                let body = Lease::body(&inner, &plan, true);
                if let Err(e) = inner.put(&key, &body, Cond::Match(etag)) {
                    tracing::warn!(
                        "could not release the plan's lease ({e}); it expires by itself"
                    );
                }
                return;
            }
            if since.elapsed() >= every {
                since = std::time::Instant::now();
                let body = Lease::body(&inner, &plan, false);
                match inner.put(&key, &body, Cond::Match(etag.clone())) {
                    Ok(Created::Yes(Some(e))) => etag = e,
                    Ok(_) => {
                        tracing::error!(
                            "lost the lease `{}`: another machine took it over, or a person released it (`cordon state release-lease`, recorded in the audit log); steps already journaled are safe, the rest are that machine's",
                            inner.loc.url(&key)
                        );
                        return;
                    }
                    Err(e) => tracing::warn!("could not renew the plan's lease: {e}"),
                }
            }
            std::thread::sleep(step);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.renewer.take() {
            let _ = h.join();
        }
    }
}

/// The audit log on S3: groups of consecutive records, each group one
/// object named by its first record's zero-padded sequence number and
/// created with `If-None-Match: *`. A group holds one canonical line per
/// record, so its key and its line count give the records it holds, and
/// the next group's key is its last record's successor. A writer claims the
/// next group's key only from the content of the newest group (its last
/// line), so no two groups can overlap; a log written one record at a time
/// is a log of groups of one.
pub struct S3Log {
    inner: Arc<Inner>,
    crash: crate::engine::CrashPoints,
    /// The last record this process knows of: (seq, hash).
    head: Mutex<Option<(u64, String)>>,
}

/// The log's latest signed checkpoint (C2SP note), replaced with `If-Match`.
const CHECKPOINT_REL: &str = "log/checkpoint";

fn record_rel(seq: u64) -> String {
    format!("log/records/{seq:020}.json")
}

/// A group object's lines (the last may lack its newline if torn).
fn group_lines(body: &[u8]) -> Vec<&[u8]> {
    body.split_inclusive(|b| *b == b'\n').collect()
}

/// Records read back from the group objects: exactly `first..=last`.
struct Run {
    bytes: Vec<u8>,
    /// The last record read (`first - 1` when none).
    last: u64,
    /// Where the groups read end, within the run (for sealing).
    ends: Vec<u64>,
    /// The highest record number seen in any group fetched.
    seen: u64,
}

impl S3Log {
    fn records_dir(&self) -> String {
        "log/records/".to_owned()
    }

    fn key(&self, seq: u64) -> String {
        self.inner.loc.key(&record_rel(seq))
    }

    /// `log/verifiers/<key name>`: the name is `cordon.audit/<hex>`.
    fn verifier_key(&self, name: &str) -> Result<String, AuditError> {
        let (ns, id) = name.split_once('/').unwrap_or(("", name));
        if ns != "cordon.audit" || id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuditError::State(StateError::Config {
                what: format!("`{name}` is not a cordon checkpoint key name"),
                fix: "check the checkpoint's origin line".into(),
            }));
        }
        Ok(self.inner.loc.key(&format!("log/verifiers/{id}.pub")))
    }

    /// A record that cannot be read; named by the records' folder, since a
    /// record lives in the group object of its first record.
    fn corrupt(&self, seq: u64, why: String) -> AuditError {
        AuditError::Corrupt {
            path: std::path::PathBuf::from(
                self.inner.loc.url(&self.inner.loc.key(&self.records_dir())),
            ),
            seq,
            why,
        }
    }

    /// The last record of the group whose first record is `first`: (seq,
    /// hash). The group's line count must match the last line's `seq`.
    fn parse_group_head(&self, first: u64, bytes: &[u8]) -> Result<(u64, String), AuditError> {
        let lines = group_lines(bytes);
        let Some(last_line) = lines.last() else {
            return Err(self.corrupt(first, "the record object is empty".into()));
        };
        let seq = first + lines.len() as u64 - 1;
        let v: serde_json::Value = serde_json::from_slice(last_line)
            .map_err(|e| self.corrupt(seq, format!("not JSON: {e}")))?;
        match (
            v.get("seq").and_then(|s| s.as_u64()),
            v.get("hash").and_then(|h| h.as_str()),
        ) {
            (Some(s), Some(h)) if s == seq => Ok((s, h.to_owned())),
            _ => Err(self.corrupt(
                seq,
                "the record has no seq or hash, or the wrong seq".into(),
            )),
        }
    }

    /// The newest record: the last line of the last group listed after the
    /// last record this process knew, or after the last sealed segment (so a
    /// fresh process lists only the unsealed tail, not every record of a
    /// long log).
    fn discover_head(&self, known: Option<(u64, String)>) -> Result<(u64, String), AuditError> {
        let known = match known {
            Some(k) => Some(k),
            None => self.sealed_head()?,
        };
        let after = known.as_ref().map(|(s, _)| self.key(*s));
        let keys = self
            .inner
            .list(&self.records_dir(), after.as_deref(), None)?;
        let Some(last) = keys.last() else {
            return Ok(known.unwrap_or((0, GENESIS.to_owned())));
        };
        let seq = seq_of_key(last)
            .ok_or_else(|| self.corrupt(0, format!("`{last}` is not a record key")))?;
        match self.inner.get(last)? {
            Some((b, _)) => self.parse_group_head(seq, &b),
            None => Err(self.corrupt(seq, "listed but not readable".into())),
        }
    }

    /// The last record of the sealed run, read from the group that ends
    /// there (the source of truth, not the segment): None when nothing is
    /// sealed, or when no group ends at that record (a segment that claims
    /// more than the log holds is ignored here; readers report it).
    fn sealed_head(&self) -> Result<Option<(u64, String)>, AuditError> {
        let Some(&(_, last, _)) = self.sealed_run()?.last() else {
            return Ok(None);
        };
        let from = last.saturating_sub(MAX_GROUP as u64 + 1);
        let keys = self.inner.list(
            &self.records_dir(),
            Some(&self.key(from)),
            Some(&self.key(last)),
        )?;
        let Some(k) = keys.last() else {
            return Ok(None);
        };
        let Some(first) = seq_of_key(k) else {
            return Ok(None);
        };
        match self.inner.get(k)? {
            Some((b, _)) => {
                let head = self.parse_group_head(first, &b)?;
                Ok((head.0 == last).then_some(head))
            }
            None => Ok(None),
        }
    }

    /// Claim the next sequence numbers for `drafts`, as one group object,
    /// re-chaining on every group another writer got in first. One result
    /// per draft, in order: a draft that cannot be encoded fails alone.
    fn claim_group(
        &self,
        head: &mut Option<(u64, String)>,
        drafts: &[RecordDraft],
    ) -> Vec<Result<Record, AuditError>> {
        let fail = |e: &AuditError| drafts.iter().map(|_| Err(e.duplicate())).collect();
        let (mut seq, mut hash) = match head.clone() {
            Some(h) => h,
            None => match self.discover_head(None) {
                Ok(h) => h,
                Err(e) => return fail(&e),
            },
        };
        for _ in 0..MAX_CLAIMS {
            let mut results = Vec::with_capacity(drafts.len());
            let mut body = Vec::new();
            let (mut last, mut last_hash) = (seq, hash.clone());
            for d in drafts {
                let rec = d.clone().seal(last + 1, &last_hash);
                match rec.canonical_line() {
                    Ok(mut line) => {
                        line.push(b'\n');
                        body.extend_from_slice(&line);
                        last = rec.seq;
                        last_hash = rec.hash.clone();
                        results.push(Ok(rec));
                    }
                    // Only this draft fails; the chain goes on without it.
                    Err(e) => results.push(Err(AuditError::Encode(e))),
                }
            }
            if body.is_empty() {
                return results;
            }
            let first = seq + 1;
            let key = self.key(first);
            self.crash.hit("s3-before-put", &first.to_string());
            match self.inner.put(&key, &body, Cond::Create) {
                Ok(Created::Yes(_)) => {
                    // Test builds: die with the group durable but its
                    // appends not returned (the writer never learns it).
                    self.crash.hit("s3-after-put", &first.to_string());
                    *head = Some((last, last_hash));
                    self.seal_after(first, last);
                    return results;
                }
                Ok(Created::Exists) => {
                    // Another writer holds this sequence number: chain on
                    // the last record of its group.
                    let got = match self.inner.get(&key) {
                        Ok(g) => g,
                        Err(e) => {
                            *head = None;
                            return fail(&e.into());
                        }
                    };
                    let Some((b, _)) = got else {
                        continue;
                    };
                    if b == body {
                        *head = Some((last, last_hash));
                        return results;
                    }
                    match self.parse_group_head(first, &b) {
                        Ok(h) => (seq, hash) = h,
                        Err(e) => {
                            *head = None;
                            return fail(&e);
                        }
                    }
                }
                Err(e) => {
                    *head = None;
                    return fail(&e.into());
                }
            }
        }
        fail(&AuditError::State(StateError::Remote {
            op: "append to",
            url: self.inner.loc.url(&self.inner.loc.key("log/records/")),
            what: format!("no free sequence number after {MAX_CLAIMS} attempts"),
            fix: "too many writers at once: run the command again".into(),
        }))
    }

    /// Records `first..=last` (`last` None: to the end of the log), read
    /// from the groups that hold them: the group that holds `first` (found
    /// among the keys up to [`MAX_GROUP`] records before it) and every group
    /// after it. A record that no group holds is an error naming it.
    fn read_range(&self, first: u64, last: Option<u64>) -> Result<Run, AuditError> {
        let from = first.saturating_sub(MAX_GROUP as u64 + 1);
        let listed = self.inner.list(
            &self.records_dir(),
            (from > 0).then(|| self.key(from)).as_deref(),
            last.map(|l| self.key(l)).as_deref(),
        )?;
        let mut seqs = Vec::with_capacity(listed.len());
        for k in listed {
            match seq_of_key(&k) {
                Some(s) => seqs.push((s, k)),
                None => return Err(self.corrupt(first, format!("`{k}` is not a record key"))),
            }
        }
        // Only the last group starting at or before `first` can hold it.
        let lead = seqs.partition_point(|(s, _)| *s <= first).saturating_sub(1);
        let (starts, keys): (Vec<u64>, Vec<String>) = seqs.into_iter().skip(lead).unzip();
        let mut run = Run {
            bytes: Vec::new(),
            last: first - 1,
            ends: Vec::new(),
            seen: 0,
        };
        for (s, (k, body)) in starts.into_iter().zip(self.inner.get_many(keys)?) {
            let Some(body) = body else {
                return Err(self.corrupt(s, format!("`{k}` was listed but gone when read")));
            };
            let lines = group_lines(&body);
            if lines.is_empty() {
                return Err(self.corrupt(s, "the record object is empty".into()));
            }
            let end = s + lines.len() as u64 - 1;
            run.seen = run.seen.max(end);
            let expected = run.last + 1;
            if end < expected {
                continue;
            }
            if s > expected {
                return Err(self.corrupt(
                    expected,
                    format!("record {expected} is missing (the next key is record {s}): a record was removed or written out of order; run `cordon log verify`"),
                ));
            }
            let upto = last.map_or(end, |l| end.min(l));
            for l in &lines[(expected - s) as usize..=(upto - s) as usize] {
                run.bytes.extend_from_slice(l);
            }
            if upto == end {
                run.ends.push(end);
            }
            run.last = upto;
            if Some(upto) == last {
                break;
            }
        }
        if let Some(l) = last {
            if run.last < l {
                let missing = run.last + 1;
                return Err(self.corrupt(
                    missing,
                    format!("record {missing} is missing: a record was removed; run `cordon log verify`"),
                ));
            }
        }
        Ok(run)
    }

    /// The last record the log holds, from a full listing (0 when empty).
    fn log_end(&self) -> Result<u64, AuditError> {
        let all = self.inner.list(&self.records_dir(), None, None)?;
        let Some(k) = all.last() else {
            return Ok(0);
        };
        let first =
            seq_of_key(k).ok_or_else(|| self.corrupt(0, format!("`{k}` is not a record key")))?;
        match self.inner.get(k)? {
            Some((b, _)) => Ok(first + (group_lines(&b).len() as u64).max(1) - 1),
            None => Err(self.corrupt(first, "listed but not readable".into())),
        }
    }
}

/// Where a piece of the log read back came from.
struct Piece {
    first: u64,
    last: u64,
    bytes: Vec<u8>,
    /// From a sealed segment (else from the record objects).
    segment: bool,
    /// Where the groups end within the piece (read from the records).
    ends: Vec<u64>,
}

/// A run of records whose chain checks: exactly `first..=last`, each line
/// canonical and newline-terminated, the first chained on `prev`. Returns
/// the last record's hash. The same check `log verify` runs, so a torn,
/// partial, reordered or forged segment is never taken for the records.
fn check_run(bytes: &[u8], first: u64, last: u64, prev: &str) -> Option<String> {
    if bytes.last() != Some(&b'\n') {
        return None;
    }
    let r = crate::audit::verify_reader_from(std::io::Cursor::new(bytes), first, prev).ok()?;
    (r.status == crate::audit::VerifyStatus::Intact && r.records == last + 1 - first)
        .then_some(r.head)
}

fn segment_rel(first: u64, last: u64) -> String {
    format!("log/segments/{first:020}-{last:020}.jsonl")
}

fn segment_range_of_key(key: &str) -> Option<(u64, u64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".jsonl")?;
    let (a, b) = name.split_once('-')?;
    let num = |d: &str| {
        (d.len() == 20 && d.bytes().all(|c| c.is_ascii_digit()))
            .then(|| d.parse::<u64>().ok())
            .flatten()
    };
    let (a, b) = (num(a)?, num(b)?);
    (a >= 1 && a <= b).then_some((a, b))
}

/// Records per segment for this process.
fn segment_records() -> u64 {
    std::env::var("CORDON_STATE_SEGMENT_RECORDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n >= 2)
        .unwrap_or(SEGMENT_RECORDS)
}

/// Whether the group `first..=last` closes a segment: it holds a multiple
/// of the segment size. Writers and readers cut segments by this one rule,
/// at group ends, so they seal the same ranges.
fn closes_segment(first: u64, last: u64, size: u64) -> bool {
    last / size > (first - 1) / size
}

/// Sealed segments: records `first..=last` copied, byte for byte, into one
/// object `log/segments/<first>-<last>.jsonl`, so that reading the log back
/// costs one GET per segment, not per group. A segment runs from the end of
/// the one before it to the end of the group that holds the next multiple
/// of the segment size. The record objects stay the source of truth: a
/// segment is created with `If-None-Match: *` only from records whose chain
/// checked, its content is fully determined by them (two machines sealing
/// the same run at once write the same bytes; the loser's 412 is harmless),
/// and a reader takes a segment only if it chains exactly like the records
/// would (see [`S3Log::read_pieces`]); otherwise it reads the records of
/// that range and says so.
impl S3Log {
    /// The sealed segments that cover the log from record 1 without a gap:
    /// (first, last, key), in order. Segments after a gap are not used.
    fn sealed_run(&self) -> Result<Vec<(u64, u64, String)>, AuditError> {
        let mut segs: Vec<(u64, u64, String)> = self
            .inner
            .list("log/segments/", None, None)?
            .into_iter()
            .filter_map(|k| segment_range_of_key(&k).map(|(a, b)| (a, b, k)))
            .collect();
        segs.sort();
        let mut run = Vec::new();
        let mut next = 1;
        for (a, b, k) in segs {
            if a == next {
                next = b + 1;
                run.push((a, b, k));
            }
        }
        Ok(run)
    }

    /// The log as pieces that chain one onto the next: sealed segments while
    /// they check, the records where they do not, then the unsealed tail.
    /// A segment is replaced by its records when it does not chain on what
    /// comes before it, or when what comes after it does not chain on it
    /// (a segment that is consistent inside but not the records). When the
    /// records themselves do not chain, they are returned as they are, for
    /// `log verify` to report where.
    /// Also returns how many pieces, from the first, chain.
    fn read_pieces(&self) -> Result<(Vec<Piece>, usize), AuditError> {
        let mut run = self.sealed_run()?;
        let mut sealed_to = run.last().map_or(0, |s| s.1);
        let mut tail = self.read_range(sealed_to + 1, None)?;
        // No group reaches the sealed run's end: segments claim records the
        // log does not hold (written ahead of the log). They are dropped,
        // with every segment after them.
        if sealed_to > 0 && tail.seen < sealed_to {
            let head = self.log_end()?;
            tracing::warn!(
                "sealed segments under `{}` claim records up to {sealed_to}, but the log holds {head}: those segments are ignored",
                self.inner.loc.url(&self.inner.loc.key("log/segments/"))
            );
            run.retain(|s| s.1 <= head);
            sealed_to = run.last().map_or(0, |s| s.1);
            tail = self.read_range(sealed_to + 1, None)?;
        }
        let mut pieces = Vec::with_capacity(run.len() + 1);
        let seg_keys: Vec<String> = run.iter().map(|s| s.2.clone()).collect();
        for ((first, last, _), (_, body)) in run.iter().zip(self.inner.get_many(seg_keys)?) {
            pieces.push(match body {
                Some(bytes) => Piece {
                    first: *first,
                    last: *last,
                    bytes,
                    segment: true,
                    ends: Vec::new(),
                },
                None => {
                    let r = self.read_range(*first, Some(*last))?;
                    Piece {
                        first: *first,
                        last: *last,
                        bytes: r.bytes,
                        segment: false,
                        ends: r.ends,
                    }
                }
            });
        }
        if tail.last > sealed_to {
            pieces.push(Piece {
                first: sealed_to + 1,
                last: tail.last,
                bytes: tail.bytes,
                segment: false,
                ends: tail.ends,
            });
        }
        let mut prevs = vec![GENESIS.to_owned()];
        let mut i = 0;
        while i < pieces.len() {
            if let Some(h) = check_run(&pieces[i].bytes, pieces[i].first, pieces[i].last, &prevs[i])
            {
                prevs.truncate(i + 1);
                prevs.push(h);
                i += 1;
                continue;
            }
            if pieces[i].segment {
                self.distrust(&mut pieces[i])?;
                continue;
            }
            if i > 0 && pieces[i - 1].segment {
                self.distrust(&mut pieces[i - 1])?;
                i -= 1;
                continue;
            }
            // The records themselves break here: everything after is read
            // from the records too, and the break is left for the verifier.
            for p in pieces.iter_mut().skip(i + 1).filter(|p| p.segment) {
                self.distrust(p)?;
            }
            break;
        }
        Ok((pieces, i))
    }

    /// Replace a segment that does not chain by the records it claims to hold.
    fn distrust(&self, p: &mut Piece) -> Result<(), AuditError> {
        tracing::warn!(
            "sealed segment `{}` does not match the chain of the records it covers; reading those {} records from the record objects instead",
            self.inner.loc.url(&self.inner.loc.key(&segment_rel(p.first, p.last))),
            p.last + 1 - p.first
        );
        let r = self.read_range(p.first, Some(p.last))?;
        p.bytes = r.bytes;
        p.ends = r.ends;
        p.segment = false;
        Ok(())
    }

    /// Seal the runs of records that were read from the groups and checked,
    /// cut by [`closes_segment`], so the next reader fetches one object per
    /// run. Best effort: a failure (a reader without write access, the store
    /// busy) costs only speed.
    fn seal_checked(&self, checked: &[Piece]) {
        for p in checked.iter().filter(|p| !p.segment) {
            self.seal_groups(p.first, &p.bytes, &p.ends);
        }
    }

    /// Seal checked records `first..` (`bytes`, their groups ending at
    /// `ends`) into segments cut by [`closes_segment`].
    fn seal_groups(&self, first: u64, bytes: &[u8], ends: &[u64]) {
        let size = segment_records();
        let mut lines = bytes.split_inclusive(|b| *b == b'\n');
        let (mut start, mut group_first) = (first, first);
        for &end in ends {
            if closes_segment(group_first, end, size) {
                let body: Vec<u8> = lines
                    .by_ref()
                    .take((end + 1 - start) as usize)
                    .flatten()
                    .copied()
                    .collect();
                self.put_segment(start, end, &body);
                start = end + 1;
            }
            group_first = end + 1;
        }
    }

    fn put_segment(&self, first: u64, last: u64, body: &[u8]) {
        let key = self.inner.loc.key(&segment_rel(first, last));
        if let Err(e) = self.inner.put(&key, body, Cond::Create) {
            tracing::warn!("could not seal log segment: {e}");
        }
    }

    /// After appending the group `first..=last`: when it closes a segment,
    /// seal the records from the end of the sealed run to `last` (as many
    /// segments as they close: a run a dead writer left unsealed too). Their
    /// chain is checked from the first record's own `prev`; whether that is
    /// the true predecessor is checked by every reader.
    fn seal_after(&self, first: u64, last: u64) {
        if !closes_segment(first, last, segment_records()) {
            return;
        }
        let Ok(run) = self.sealed_run() else {
            return;
        };
        let start = run.last().map_or(1, |s| s.1 + 1);
        if start > first {
            return;
        }
        let Ok(r) = self.read_range(start, Some(last)) else {
            return;
        };
        let prev = r
            .bytes
            .split(|b| *b == b'\n')
            .next()
            .and_then(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
            .and_then(|v| v.get("prev").and_then(|p| p.as_str()).map(str::to_owned));
        if let Some(prev) = prev {
            if check_run(&r.bytes, start, last, &prev).is_some() {
                self.seal_groups(start, &r.bytes, &r.ends);
            }
        }
    }
}

impl S3Log {
    /// Copy a local log's lines to the same sequence numbers (`state
    /// migrate`). A record already there with the same bytes is kept (a
    /// re-run); any other is refused. Returns the records copied or kept.
    pub fn import_lines(&self, data: &[u8]) -> Result<u64, AuditError> {
        let mut items = Vec::new();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let n = items.len() as u64 + 1;
            let v: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| self.corrupt(n, format!("local record is not JSON: {e}")))?;
            if v.get("seq").and_then(|s| s.as_u64()) != Some(n) {
                return Err(self.corrupt(n, "local record out of sequence".into()));
            }
            let mut bytes = line.to_vec();
            bytes.push(b'\n');
            items.push((self.key(n), bytes));
        }
        let n = items.len() as u64;
        // Each record goes to its own key, so they are written side by side;
        // a run cut short leaves a gap that readers report and a re-run fills.
        for chunk in items.chunks(10 * SEGMENT_RECORDS as usize) {
            let results = self.inner.put_many_new(chunk.to_vec())?;
            for ((key, bytes), r) in chunk.iter().zip(results) {
                if let Created::Exists = r {
                    match self.inner.get(key)? {
                        Some((b, _)) if &b == bytes => {}
                        _ => {
                            return Err(AuditError::State(StateError::Remote {
                                op: "migrate into",
                                url: self.inner.loc.url(key),
                                what: format!(
                                    "the shared log already holds a different record {}",
                                    seq_of_key(key).unwrap_or(0)
                                ),
                                fix: "migrate into an empty prefix (or the one this log was migrated to before)".into(),
                            }))
                        }
                    }
                }
            }
        }
        // Seal the full runs from the lines just written (the same bytes).
        let size = segment_records();
        let mut first = 1;
        while first + size - 1 <= n {
            let body: Vec<u8> = items[(first - 1) as usize..(first + size - 1) as usize]
                .iter()
                .flat_map(|(_, b)| b.iter().copied())
                .collect();
            self.put_segment(first, first + size - 1, &body);
            first += size;
        }
        Ok(n)
    }
}

fn seq_of_key(key: &str) -> Option<u64> {
    let name = key.rsplit('/').next()?;
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl RemoteLog for S3Log {
    fn describe(&self) -> String {
        self.inner.loc.url(&self.inner.loc.key("log/"))
    }

    fn append_group(&self, drafts: Vec<RecordDraft>) -> Vec<Result<Record, AuditError>> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(drafts.len());
        for chunk in drafts.chunks(MAX_GROUP) {
            out.extend(self.claim_group(&mut head, chunk));
        }
        out
    }

    fn append_with(
        &self,
        build: &mut dyn FnMut(&[Record]) -> Result<RecordDraft, String>,
    ) -> Result<Result<Record, String>, AuditError> {
        let mut head = self.head.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..MAX_CLAIMS {
            let records = parse_lines(&self.read_bytes()?, &self.describe())?;
            let (seq, hash) = records
                .last()
                .map_or((0, GENESIS.to_owned()), |r| (r.seq, r.hash.clone()));
            let draft = match build(&records) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            let rec = draft.seal(seq + 1, &hash);
            let mut line = rec.canonical_line().map_err(AuditError::Encode)?;
            line.extend_from_slice(b"\n");
            let key = self.key(rec.seq);
            match self.inner.put(&key, &line, Cond::Create)? {
                Created::Yes(_) => {
                    *head = Some((rec.seq, rec.hash.clone()));
                    self.seal_after(rec.seq, rec.seq);
                    return Ok(Ok(rec));
                }
                // The log moved on: decide again on what it holds now.
                Created::Exists => match self.inner.get(&key)? {
                    Some((b, _)) if b == line => {
                        *head = Some((rec.seq, rec.hash.clone()));
                        return Ok(Ok(rec));
                    }
                    _ => continue,
                },
            }
        }
        Err(AuditError::Encode(
            "no free sequence number: too many writers at once".into(),
        ))
    }

    fn read_bytes(&self) -> Result<Vec<u8>, AuditError> {
        let (pieces, checked) = self.read_pieces()?;
        self.seal_checked(&pieces[..checked]);
        let mut out = Vec::with_capacity(pieces.iter().map(|p| p.bytes.len()).sum());
        for p in pieces {
            out.extend_from_slice(&p.bytes);
        }
        Ok(out)
    }

    fn head_seq(&self) -> Result<u64, AuditError> {
        let known = self.head.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(self.discover_head(known)?.0)
    }

    fn read_checkpoint(&self) -> Result<Option<crate::audit::Versioned>, AuditError> {
        Ok(self.inner.get(&self.inner.loc.key(CHECKPOINT_REL))?)
    }

    fn write_checkpoint(&self, note: &[u8], version: Option<&str>) -> Result<bool, AuditError> {
        let cond = match version {
            Some(etag) => Cond::Match(etag.to_owned()),
            None => Cond::Create,
        };
        let key = self.inner.loc.key(CHECKPOINT_REL);
        Ok(match self.inner.put(&key, note, cond)? {
            Created::Yes(_) => true,
            Created::Exists => false,
        })
    }

    fn publish_verifier(&self, name: &str, verifier: &str) -> Result<(), AuditError> {
        let key = self.verifier_key(name)?;
        let body = format!("{verifier}\n").into_bytes();
        match self.inner.put(&key, &body, Cond::Create)? {
            Created::Yes(_) => Ok(()),
            Created::Exists => match self.inner.get(&key)? {
                Some((b, _)) if b == body => Ok(()),
                _ => Err(AuditError::State(StateError::Conflict {
                    kind: "checkpoint verifier key",
                    name: self.inner.loc.url(&key),
                })),
            },
        }
    }

    fn read_verifier(&self, name: &str) -> Result<Option<String>, AuditError> {
        let key = self.verifier_key(name)?;
        Ok(self
            .inner
            .get(&key)?
            .map(|(b, _)| String::from_utf8_lossy(&b).trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn locations_parse_and_refuse_what_is_not_one() {
        let l = S3Location::parse("s3://acme-cordon/prod/team/").unwrap();
        assert_eq!(l.bucket, "acme-cordon");
        assert_eq!(l.prefix, "prod/team");
        assert_eq!(l.key("plans/x.json"), "prod/team/plans/x.json");
        assert_eq!(l.to_string(), "s3://acme-cordon/prod/team");
        let bare = S3Location::parse("s3://acme-cordon").unwrap();
        assert_eq!(bare.key("log/"), "log/");
        for bad in [
            "s3://",
            "s3://A_B/x",
            "s3://ab/x",
            "s3://acme/../x",
            "/tmp/x",
            "s3://acme/a//b",
        ] {
            let e = S3Location::parse(bad).unwrap_err().to_string();
            assert!(e.contains("s3://BUCKET/PREFIX"), "{bad}: {e}");
        }
    }

    #[test]
    fn ip_endpoints_are_path_style() {
        assert!(ip_like_host("http://127.0.0.1:5000"));
        assert!(ip_like_host("http://[::1]:9000/"));
        assert!(ip_like_host("http://localhost:9000"));
        assert!(!ip_like_host("https://s3.eu-west-1.amazonaws.com"));
        assert!(!ip_like_host("https://minio.internal:9000"));
    }

    #[test]
    fn record_keys_sort_by_sequence() {
        assert_eq!(record_rel(7), "log/records/00000000000000000007.json");
        assert!(record_rel(9) < record_rel(10));
        assert_eq!(
            seq_of_key("p/log/records/00000000000000000010.json"),
            Some(10)
        );
        assert_eq!(seq_of_key("p/log/records/10.json"), None);
    }
}
