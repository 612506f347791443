//! The storage contract the registry Store is written against, and its backends.
//!
//! Values are opaque bytes (JSON of the object without its resourceVersion); the
//! backend owns revisions. A revision is a store-wide counter (etcd's
//! mod_revision): every write gets the next one, and it is what clients see as
//! resourceVersion. This module must not know about objects, metadata or HTTP.

pub mod cacher;
pub mod embedded;
pub mod etcd;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub mod_revision: u64,
    pub create_revision: u64,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: u64,
    /// How many keys under the prefix come after the last item returned.
    pub remaining: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key not found: {0}")]
    NotFound(String),
    #[error("key exists: {0}")]
    AlreadyExists(String),
    /// The key's mod_revision was not the one expected; carries what is there now.
    #[error("revision mismatch on {key}")]
    Conflict { key: String, current: Option<KeyValue> },
    /// The requested revision is older than the retained history.
    #[error("required revision has been compacted (oldest available {0})")]
    Compacted(u64),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Put,
    Delete,
    /// Not a change: the watch has delivered every change under its prefix
    /// up to this event's revision (etcd's progress notification). Only a
    /// watch that asked for progress ([`WatchOptions::progress`]) gets one;
    /// its `kv` carries the revision and nothing else.
    Progress,
}

/// One change, as etcd reports it with prev_kv: for a Put `kv` is the new value
/// and `prev` the old one (None on create); for a Delete `kv` holds the value
/// that was deleted, with `mod_revision` set to the revision of the deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl WatchEvent {
    pub fn revision(&self) -> u64 {
        self.kv.mod_revision
    }

    /// The progress notification for `revision`.
    pub fn progress(revision: u64) -> Self {
        let kv = KeyValue { key: String::new(), value: Bytes::new(), mod_revision: revision, create_revision: 0 };
        WatchEvent { event_type: EventType::Progress, kv, prev: None }
    }
}

/// Where a watcher asks its watch for a progress notification: after a
/// request the watch yields [`EventType::Progress`] at a revision at least
/// the store's current one when asked, once every change up to it has been
/// delivered. The watch cache asks when a consistent read waits for it to
/// catch up with writes elsewhere in the store (upstream's progress
/// requester).
/// A backend that cannot report progress correctly (etcd before 3.4.31 and
/// 3.5.13 may report it ahead of events, etcd-io/etcd#15220 and #17507)
/// refuses instead, and the watcher does without.
#[derive(Debug, Clone, Default)]
pub struct ProgressRequests {
    requests: Arc<tokio::sync::Notify>,
    refused: Arc<std::sync::atomic::AtomicBool>,
}

impl ProgressRequests {
    /// Asks for one notification; requests made before it is sent share it.
    pub fn request(&self) {
        self.requests.notify_one();
    }

    /// Waits for the next request.
    pub async fn requested(&self) {
        self.requests.notified().await
    }

    /// The backend's answer when it cannot report progress.
    pub fn refuse(&self) {
        self.refused.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether requests are answered (until the backend refuses).
    pub fn answered(&self) -> bool {
        !self.refused.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Where a `watch` starts, and whether it reports progress.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Changes with revisions after this one (a resourceVersion), then live ones.
    pub after: u64,
    /// Progress notifications on request; None: changes only.
    pub progress: Option<ProgressRequests>,
}

impl WatchOptions {
    /// Changes after `revision`, without progress notifications.
    pub fn after(revision: u64) -> Self {
        WatchOptions { after: revision, progress: None }
    }
}

/// A stream of changes in revision order. It ends (or yields an error) when the
/// watcher fell too far behind; the client then relists.
pub type WatchStream = futures::stream::BoxStream<'static, Result<WatchEvent>>;

/// A watch made of `backlog` (already filtered) followed by the live items
/// of a broadcast that `keep` accepts. A receiver that lags (a watcher too
/// slow for the others) yields one error and ends, as upstream's cacher
/// terminates a watcher whose buffer is full: the client resumes from its
/// last resourceVersion, or relists once that has left the window.
pub(crate) fn replay_then_follow<T: Clone + Send + 'static>(
    backlog: Vec<T>,
    live: tokio::sync::broadcast::Receiver<T>,
    keep: impl Fn(&T) -> bool + Send + 'static,
) -> futures::stream::BoxStream<'static, Result<T>> {
    use futures::StreamExt;
    use tokio::sync::broadcast::error::RecvError;
    let live = futures::stream::unfold((live, false), |(mut rx, failed)| async move {
        if failed {
            return None;
        }
        match rx.recv().await {
            Ok(e) => Some((Ok(e), (rx, false))),
            Err(RecvError::Lagged(_)) => {
                Some((Err(StorageError::Unavailable("watcher fell behind".into())), (rx, true)))
            }
            Err(RecvError::Closed) => None,
        }
    })
    .filter(move |r| {
        futures::future::ready(match r {
            Ok(item) => keep(item),
            Err(_) => true,
        })
    });
    futures::stream::iter(backlog.into_iter().map(Ok)).chain(live).boxed()
}

/// How fresh a read must be (a list's or get's resourceVersion semantics).
/// Storage always reads the latest state or the one at a given revision; the
/// Store decides whether its watch cache can answer a looser freshness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// resourceVersion unset: the latest committed state.
    Consistent,
    /// resourceVersion "0": any state the server has (the watch cache's).
    Any,
    /// resourceVersionMatch=NotOlderThan: a state at or after this revision.
    NotOlderThan(u64),
}

/// How a `get` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// The state as it was at this revision; `Compacted` once that history is
    /// gone. None: the latest state.
    pub revision: Option<u64>,
}

/// Which part of a prefix a `list` reads, and at which revision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListOptions<'a> {
    /// Only keys after this one (a continue token's key).
    pub start_after: Option<&'a str>,
    /// At most this many items; 0 = all.
    pub limit: usize,
    /// The state as it was at this revision (a consistent snapshot for
    /// paginating); `Compacted` once that history is gone. None: the latest.
    pub revision: Option<u64>,
    /// What a page with a limit says of the keys after it.
    pub remaining: Remaining,
}

/// What [`ListResult::remaining`] holds for a page with a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Remaining {
    /// Exactly how many keys follow (a list's remainingItemCount): the rest
    /// of the prefix is read to count it.
    #[default]
    Count,
    /// Only whether any key follows: 0 when none, at least 1 when some
    /// (a backend that counts anyway may say how many). Walking a prefix
    /// page by page this way reads each key once, not once per page before
    /// it.
    Any,
}

/// How a `create` or `update` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// The object goes away by itself this long after the write (Events; an
    /// etcd lease); its deletion is an ordinary Delete event. An update
    /// replaces any earlier TTL with this one, as an etcd put does.
    pub ttl: Option<Duration>,
}

/// The contract every backend implements once, with no defaults: whatever a
/// caller needs beyond it (caching, conversion, metrics) lives in the caller
/// or inside the backend, never in a wrapper that forwards.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The value of `key`, latest or at `opts.revision`.
    async fn get(&self, key: &str, opts: GetOptions) -> Result<Option<KeyValue>>;

    /// Keys under `prefix` (which should end in '/'), in key order, as
    /// `opts` pages them.
    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> Result<ListResult>;

    /// Creates `key`; fails with AlreadyExists if present. Returns the new revision.
    async fn create(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<u64>;

    /// Replaces `key` if its mod_revision is `expected` (the revision the
    /// caller read); otherwise Conflict (or NotFound if it is gone). Returns
    /// the new revision.
    async fn update(&self, key: &str, value: Bytes, expected: u64, opts: PutOptions) -> Result<u64>;

    /// Deletes `key`, if `expected` is given only when its mod_revision matches.
    /// Returns the value deleted and the revision of the deletion.
    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)>;

    async fn count(&self, prefix: &str) -> Result<u64>;

    /// The store's latest revision: at least that of every write
    /// acknowledged before the call (what a consistent read must reflect).
    async fn current_revision(&self) -> Result<u64>;

    /// Changes under `prefix` as `opts` says.
    async fn watch(&self, prefix: &str, opts: WatchOptions) -> Result<WatchStream>;
}

/// Upstream's operation names for etcd_request_duration_seconds (etcd3
/// store): a count is "listWithCount".
pub(crate) mod op {
    pub const GET: &str = "get";
    pub const LIST: &str = "list";
    pub const CREATE: &str = "create";
    pub const UPDATE: &str = "update";
    pub const DELETE: &str = "delete";
    pub const COUNT: &str = "listWithCount";
}

tokio::task_local! {
    /// Set while the metrics module counts objects for
    /// apiserver_storage_objects: its own bookkeeping, not a request to time.
    static UNTIMED: ();
}

/// Runs `f`, one request into a backend about `key`, and records its
/// duration as etcd_request_duration_seconds{operation, type} (upstream's
/// name, kept for the embedded backend too so that one dashboard serves
/// both). Both backends call it around each of their requests; current
/// revision and watch are not requests upstream times.
pub(crate) async fn timed<T>(operation: &'static str, key: &str, f: impl std::future::Future<Output = T>) -> T {
    if UNTIMED.try_with(|_| ()).is_ok() {
        return f.await;
    }
    let started = Instant::now();
    let out = f.await;
    crate::metrics::global().observe_storage(operation, key, started.elapsed());
    out
}

/// Runs `f` without timing the storage requests it makes.
pub(crate) async fn untimed<T>(f: impl std::future::Future<Output = T>) -> T {
    UNTIMED.scope((), f).await
}
