//! `cordon agent`: an HTTP listener for GitHub webhooks and AWS EventBridge
//! events. Each accepted event takes the same path as `cordon respond`, with
//! principal `agent`.
//!
//! Order of checks for every delivery, before anything is parsed or kept:
//! body size (413), authentication — `X-Hub-Signature-256` HMAC for GitHub,
//! a bearer token for EventBridge, both compared in constant time (401) —
//! then the payload (400), then replay by delivery id (409). An accepted
//! event is written to the inbox and fsynced before the 202 goes out, so an
//! acknowledged event survives a crash; one worker thread takes events in
//! order, and the inbox entry is only removed after its outcome is written to
//! `done/`. A delivery id seen before (in the inbox or done) is a replay.
//!
//! Shutdown (SIGINT, SIGTERM): stop accepting, finish the requests in flight,
//! let the worker finish the event it is on (its steps complete and are
//! journaled), and leave the rest in the inbox for the next start.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cordon_connector::Secret;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::intake::webhook::{github_signature_ok, parse_eventbridge, parse_github, Event, Parsed};

/// What the agent needs besides its handler.
pub struct AgentConfig {
    /// The GitHub webhook secret; without it `/github` answers 503.
    pub github_secret: Option<Secret>,
    /// The bearer token EventBridge sends (API destination connection with
    /// API-key auth, header `Authorization: Bearer ...`); without it `/aws` answers 503.
    pub eventbridge_token: Option<Secret>,
    /// Largest body accepted (413 above it).
    pub max_body: usize,
    /// Events accepted but not yet processed, at most (503 + Retry-After above it).
    pub max_queue: usize,
    /// The agent's directory in the state dir (`inbox/`, `done/`).
    pub dir: PathBuf,
    /// The state directory whose halt switch (`crate::halt`) the worker
    /// obeys: while it is set, deliveries are still accepted and queued, and
    /// none is processed until `cordon resume`.
    pub halt_root: Option<PathBuf>,
    /// On a shared state (`--state s3://…`), the shared audit log: a halt
    /// set on any machine is its latest `halt` record (no local file is
    /// written there), and the worker pauses the queue for it as for the
    /// local switch.
    pub shared_log: Option<Arc<crate::audit::AuditLog>>,
}

/// How often, at most, the worker reads the shared log for a halt.
const SHARED_HALT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The halt switch of a shared state as the worker last read it.
struct SharedHalt {
    log: Arc<crate::audit::AuditLog>,
    /// When it was last read, at which log version, and what it said.
    seen: Mutex<Option<(std::time::Instant, u64, bool)>>,
    /// The last answer, for `/healthz` (which does no I/O).
    last: std::sync::atomic::AtomicBool,
}

impl SharedHalt {
    /// Whether the shared log's latest halt record halts; read again when
    /// the log has grown, at most every [`SHARED_HALT_EVERY`]. `Err`: the
    /// log cannot be read (the caller fails closed).
    fn halted(&self) -> Result<bool, String> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, _, h)) = *seen {
            if at.elapsed() < SHARED_HALT_EVERY {
                return Ok(h);
            }
        }
        let now = std::time::Instant::now();
        let version = self.log.version().map_err(|e| e.to_string())?;
        let h = match *seen {
            Some((_, v, h)) if v == version => h,
            _ => {
                let records = self.log.read_all().map_err(|e| e.to_string())?;
                crate::halt::from_log(&records).is_some()
            }
        };
        *seen = Some((now, version, h));
        self.last.store(h, Ordering::SeqCst);
        Ok(h)
    }
}

/// Acts on one event; runs on the worker thread, one event at a time.
/// Returns a summary kept in `done/` (and logged), or why it failed.
pub trait Handler: Send + Sync + 'static {
    /// `received`: when the delivery reached the agent (its inbox file's
    /// time), where the time to dead starts.
    fn handle(
        &self,
        event: &Event,
        received: std::time::Instant,
    ) -> Result<serde_json::Value, String>;
    /// Record an authenticated delivery that needs no action (`source` is
    /// `github` or `aws`, `delivery` its id when known, `why` the reason), so
    /// the record shows every delivery, not only the acted-on ones. Durable
    /// before the 200 goes out; an error answers 500 and the sender retries.
    fn ignored(&self, source: &str, delivery: Option<&str>, why: &str) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent state `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Server(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct Shared {
    config: AgentConfig,
    inbox: PathBuf,
    done: PathBuf,
    queued: AtomicUsize,
    /// The worker's queue; `None` once shutting down.
    tx: Mutex<Option<mpsc::Sender<String>>>,
    /// Set once the server has stopped: the worker finishes the event it is
    /// on and leaves the rest, durable in the inbox, for the next start.
    stopping: std::sync::atomic::AtomicBool,
    handler: Arc<dyn Handler>,
    shared_halt: Option<SharedHalt>,
}

/// Counters reported at shutdown.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub processed: usize,
    pub failed: usize,
    pub left_in_inbox: usize,
}

fn fsync_dir(dir: &Path) -> Result<(), AgentError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Inbox entries in arrival order (file names start with a zero-padded
/// nanosecond timestamp).
fn inbox_entries(inbox: &Path) -> Result<Vec<String>, AgentError> {
    let mut names: Vec<String> = std::fs::read_dir(inbox)
        .map_err(io_err(inbox))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    Ok(names)
}

/// The key of a delivery: `github-<id>` / `aws-<id>` (ids are checked to be
/// `[A-Za-z0-9-]` by the parsers, so they are safe file names).
fn key_of(e: &Event) -> String {
    let src = match e.source {
        crate::intake::webhook::EventSource::Github => "github",
        crate::intake::webhook::EventSource::Aws => "aws",
    };
    format!("{src}-{}", e.id)
}

/// Serve until `shutdown` resolves; then drain as described above.
pub async fn serve(
    config: AgentConfig,
    listener: tokio::net::TcpListener,
    handler: Arc<dyn Handler>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Stats, AgentError> {
    let inbox = config.dir.join("inbox");
    let done = config.dir.join("done");
    for d in [&config.dir, &inbox, &done] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
        set_private(d)?;
    }
    // An entry that does not parse was cut short by a crash before its 202
    // went out (the fsync comes first): the sender will redeliver it.
    let mut pending = Vec::new();
    for name in inbox_entries(&inbox)? {
        let p = inbox.join(&name);
        let ok = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Event>(&b).ok())
            .is_some();
        if ok {
            pending.push(name);
        } else {
            tracing::warn!(file = %name, "removing an inbox entry cut short before it was acknowledged");
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    // A replay marker with neither an entry nor a done record belongs to a
    // delivery that was never acknowledged: forget it, so a retry is taken.
    let live: std::collections::HashSet<&str> = pending.iter().filter_map(|n| key_in(n)).collect();
    for m in std::fs::read_dir(&inbox)
        .map_err(io_err(&inbox))?
        .filter_map(|e| e.ok())
    {
        let name = m.file_name().to_string_lossy().into_owned();
        if let Some(key) = name.strip_suffix(".id") {
            if !live.contains(key) && !done.join(format!("{key}.json")).exists() {
                let _ = std::fs::remove_file(m.path());
            }
        }
    }
    let (tx, rx) = mpsc::channel::<String>();
    for name in &pending {
        let _ = tx.send(name.clone());
    }
    if !pending.is_empty() {
        tracing::info!(
            count = pending.len(),
            "resuming events accepted before the last stop"
        );
    }
    let shared_halt = config.shared_log.clone().map(|log| SharedHalt {
        log,
        seen: Mutex::new(None),
        last: std::sync::atomic::AtomicBool::new(false),
    });
    let shared = Arc::new(Shared {
        shared_halt,
        queued: AtomicUsize::new(pending.len()),
        config,
        inbox: inbox.clone(),
        done: done.clone(),
        tx: Mutex::new(Some(tx)),
        stopping: std::sync::atomic::AtomicBool::new(false),
        handler: handler.clone(),
    });
    let worker_shared = shared.clone();
    let worker = std::thread::Builder::new()
        .name("cordon-agent-worker".into())
        .spawn(move || worker_loop(&worker_shared, &rx, handler.as_ref()))
        .map_err(|e| AgentError::Server(format!("cannot start the worker: {e}")))?;

    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/github", post(github))
        .route("/aws", post(eventbridge))
        .layer(DefaultBodyLimit::max(shared.config.max_body))
        .with_state(shared.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    // No new events: close the queue; the worker finishes the one it is on.
    if let Ok(mut g) = shared.tx.lock() {
        g.take();
    }
    shared.stopping.store(true, Ordering::SeqCst);
    let stats = worker
        .join()
        .map_err(|_| AgentError::Server("the worker thread panicked".into()))?;
    served.map_err(|e| AgentError::Server(format!("http server: {e}")))?;
    Ok(stats)
}

fn set_private(d: &Path) -> Result<(), AgentError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).map_err(io_err(d))
}

fn worker_loop(shared: &Shared, rx: &mpsc::Receiver<String>, handler: &dyn Handler) -> Stats {
    let mut stats = Stats::default();
    while let Ok(name) = rx.recv() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        // Halted: act on nothing; the event stays in the inbox (durable,
        // acknowledged) and is processed once, after `cordon resume`. The gate
        // stops the agent's steps as well, should a halt land mid-event.
        if !wait_while_halted(shared) {
            break;
        }
        let path = shared.inbox.join(&name);
        let event = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Event>(&b).map_err(|e| e.to_string()))
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(file = %name, "inbox entry unreadable, left in place: {e}");
                stats.failed += 1;
                continue;
            }
        };
        let key = key_of(&event);
        let started = std::time::Instant::now();
        let received = received_at(&path, started);
        let result = handler.handle(&event, received);
        let (ok, body) = match &result {
            Ok(v) => (true, json!({"event": &event, "result": v})),
            Err(e) => (false, json!({"event": &event, "error": e})),
        };
        tracing::info!(
            delivery = %event.id,
            kind = %event.kind,
            ok,
            ms = started.elapsed().as_millis() as u64,
            "event processed"
        );
        if ok {
            stats.processed += 1;
        } else {
            stats.failed += 1;
        }
        // done/ first, then the inbox entry goes: at every instant one of the
        // two exists, so a replay is always recognised.
        let done = shared.done.join(format!("{key}.json"));
        let written = serde_json::to_vec(&body)
            .map_err(|e| e.to_string())
            .and_then(|b| crate::state::write_atomic(&done, &b).map_err(|e| e.to_string()));
        match written {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::error!(file = %name, "cannot remove the inbox entry: {e}");
                }
            }
            Err(e) => {
                tracing::error!(delivery = %event.id, "cannot record the event as done, left in the inbox: {e}")
            }
        }
        shared.queued.fetch_sub(1, Ordering::SeqCst);
    }
    stats.left_in_inbox = inbox_entries(&shared.inbox).map(|v| v.len()).unwrap_or(0);
    stats
}

/// Whether the halt switch of the agent's state is set (an unreadable switch
/// counts as set): the local file, or on a shared state the shared log's
/// latest halt record (a log that cannot be read counts as halted: the
/// deliveries wait, durable in the inbox, until it can).
fn halted(shared: &Shared) -> bool {
    if local_halt(shared) {
        return true;
    }
    match &shared.shared_halt {
        None => false,
        Some(sh) => sh.halted().unwrap_or_else(|e| {
            tracing::warn!("cannot read the shared log for a halt, holding the queue: {e}");
            sh.last.store(true, Ordering::SeqCst);
            true
        }),
    }
}

fn local_halt(shared: &Shared) -> bool {
    shared
        .config
        .halt_root
        .as_deref()
        .is_some_and(|root| !matches!(crate::halt::read(root), Ok(None)))
}

/// Block while halted; false when the agent is stopping meanwhile.
fn wait_while_halted(shared: &Shared) -> bool {
    let mut said = false;
    while halted(shared) {
        if shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        if !said {
            tracing::warn!(
                queued = shared.queued.load(Ordering::SeqCst),
                "automation is halted: deliveries are queued and none is acted on until `cordon resume`"
            );
            said = true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if said {
        tracing::info!("resumed: processing the queued deliveries");
    }
    true
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let queued = s.queued.load(Ordering::SeqCst);
    (
        StatusCode::OK,
        // The shared log's halt as the worker last read it: no I/O here.
        Json(
            json!({"status": "ok", "queued": queued, "halted": local_halt(&s)
            || s.shared_halt.as_ref().is_some_and(|h| h.last.load(Ordering::SeqCst))}),
        ),
    )
        .into_response()
}

fn reply(code: StatusCode, body: serde_json::Value) -> Response {
    (code, Json(body)).into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn bearer_ok(token: &Secret, headers: &HeaderMap) -> bool {
    let Some(got) = header(headers, "authorization").and_then(|v| v.strip_prefix("Bearer ")) else {
        return false;
    };
    // Compare digests: equal length, constant time, whatever was sent.
    let a = Sha256::digest(got.as_bytes());
    let b = Sha256::digest(token.expose().as_bytes());
    a.ct_eq(&b).into()
}

async fn github(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &s.config.github_secret else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no GitHub webhook secret is configured (CORDON_WEBHOOK_SECRET)"}),
        );
    };
    let Some(sig) = header(&headers, "x-hub-signature-256") else {
        tracing::warn!("refused an unsigned GitHub delivery");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unsigned delivery: X-Hub-Signature-256 is required"}),
        );
    };
    if !github_signature_ok(secret, &body, sig) {
        tracing::warn!("refused a GitHub delivery with a bad signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "signature does not match"}),
        );
    }
    let event = header(&headers, "x-github-event").unwrap_or("");
    let delivery = header(&headers, "x-github-delivery").unwrap_or("");
    let parsed = parse_github(event, delivery, &body);
    // parse_github checked the delivery id's shape before anything else.
    accept(&s, parsed, "github", Some(delivery.to_owned())).await
}

async fn eventbridge(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(token) = &s.config.eventbridge_token else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "no EventBridge token is configured (CORDON_EVENTBRIDGE_TOKEN)"}),
        );
    };
    if !bearer_ok(token, &headers) {
        tracing::warn!("refused an EventBridge delivery without the right bearer token");
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "missing or wrong bearer token"}),
        );
    }
    accept(&s, parse_eventbridge(&body), "aws", None).await
}

async fn accept(
    s: &Arc<Shared>,
    parsed: Result<Parsed, crate::intake::webhook::WebhookError>,
    source: &'static str,
    delivery: Option<String>,
) -> Response {
    let event = match parsed {
        Err(e) => {
            tracing::warn!("refused a delivery: {e}");
            return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()}));
        }
        Ok(Parsed::Ignore(why)) => {
            tracing::info!(what = %why, "delivery needs no action");
            let (s2, why2) = (s.clone(), why.clone());
            let recorded = tokio::task::spawn_blocking(move || {
                s2.handler.ignored(source, delivery.as_deref(), &why2)
            })
            .await;
            return match recorded {
                Ok(Ok(())) => reply(StatusCode::OK, json!({"ignored": why})),
                Ok(Err(e)) => {
                    tracing::error!("cannot record an ignored delivery: {e}");
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "cannot record the delivery; retry later"}),
                    )
                }
                Err(e) => {
                    tracing::error!("cannot record an ignored delivery: {e}");
                    reply(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        json!({"error": "cannot record the delivery; retry later"}),
                    )
                }
            };
        }
        Ok(Parsed::Act(e)) => e,
    };
    if s.queued.load(Ordering::SeqCst) >= s.config.max_queue {
        let mut r = reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "too many events waiting; retry later"}),
        );
        r.headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("30"));
        return r;
    }
    let s2 = s.clone();
    let key = key_of(&event);
    let stored = tokio::task::spawn_blocking(move || store(&s2, &event)).await;
    match stored {
        Ok(Ok(Some(name))) => {
            let sent =
                s.tx.lock()
                    .ok()
                    .and_then(|g| g.as_ref().map(|tx| tx.send(name).is_ok()))
                    .unwrap_or(false);
            if !sent {
                // Kept in the inbox: the next start processes it.
                tracing::info!(delivery = %key, "accepted while stopping; kept for the next start");
            }
            reply(StatusCode::ACCEPTED, json!({"accepted": key}))
        }
        Ok(Ok(None)) => {
            tracing::warn!(delivery = %key, "refused a replayed delivery");
            reply(
                StatusCode::CONFLICT,
                json!({"error": "replay: this delivery id was already accepted", "delivery": key}),
            )
        }
        Ok(Err(e)) => {
            tracing::error!("cannot keep an event: {e}");
            reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "cannot keep the event; retry later"}),
            )
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"error": format!("internal: {e}")}),
        ),
    }
}

/// Keep an event durably; `None` when its id was seen before.
fn store(s: &Shared, e: &Event) -> Result<Option<String>, AgentError> {
    let key = key_of(e);
    if s.done.join(format!("{key}.json")).exists() {
        return Ok(None);
    }
    // One marker per delivery id, created exclusively: two deliveries with
    // the same id race here and exactly one wins.
    let marker = s.inbox.join(format!("{key}.id"));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&marker)
    {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
        Err(err) => return Err(io_err(&marker)(err)),
    }
    if s.done.join(format!("{key}.json")).exists() {
        // Finished between the two checks.
        let _ = std::fs::remove_file(&marker);
        return Ok(None);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("{nanos:020}-{key}.json");
    let path = s.inbox.join(&name);
    let written = (|| {
        let bytes = serde_json::to_vec(e).map_err(|err| AgentError::Server(err.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err(&path))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(io_err(&path))?;
        fsync_dir(&s.inbox)
    })();
    if let Err(err) = written {
        // Not acknowledged: forget the id so that the sender's retry is taken.
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&marker);
        return Err(err);
    }
    s.queued.fetch_add(1, Ordering::SeqCst);
    Ok(Some(name))
}

/// The delivery key inside an inbox entry name (`<nanos>-<key>.json`).
fn key_in(name: &str) -> Option<&str> {
    name.strip_suffix(".json")?.split_once('-').map(|(_, k)| k)
}

/// Where the agent listens by default: loopback only.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

/// When a queued delivery was received: its inbox file was written then (the
/// file's modification time, carried over to the monotonic clock). A clock
/// that cannot say gives `now`: the time to dead is then counted from the
/// start of processing, never from before the receipt.
fn received_at(path: &Path, now: std::time::Instant) -> std::time::Instant {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .and_then(|age| now.checked_sub(age))
        .unwrap_or(now)
}

#[cfg(test)]
mod received_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_time_to_dead_of_a_queued_delivery_counts_from_its_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("entry.json");
        let f = std::fs::File::create(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7))
            .unwrap();
        let now = std::time::Instant::now();
        let age = now.duration_since(received_at(&p, now));
        assert!((6_500..=7_500).contains(&age.as_millis()), "{age:?}");
        // No file: from now, never earlier.
        assert_eq!(received_at(&dir.path().join("gone"), now), now);
    }
}
