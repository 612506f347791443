//! The embedded backend: a single redb file holding the current objects, the
//! store revision and an event log indexed by revision. Every write commits
//! with its event in one ACID transaction, so a crash never leaves an object
//! half-written, the revision never goes backwards, and watchers resuming from a
//! revision see every change after it (while it is inside the retained window).
//!
//! Writes are group-committed: one writer thread takes every write waiting at
//! the moment, applies them in order (each at its own revision, each checked on
//! its own) in one transaction, commits once (one fsync), and only then answers
//! them and publishes their events. An acknowledged write is therefore durable.
//!
//! The log also gives past states: a list at an older revision is the current
//! state with the later events undone (paginating over one snapshot).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use super::{
    op, timed, EventType, GetOptions, KeyValue, ListOptions, ListResult, ProgressRequests, PutOptions, Remaining,
    Result, Storage, StorageError, WatchEvent, WatchOptions, WatchStream,
};

/// key -> (mod_revision, create_revision, expires_at (unix ms, 0 = never), value)
const OBJECTS: TableDefinition<&str, (u64, u64, u64, &[u8])> = TableDefinition::new("objects");
/// (expires_at, key) -> (): what the sweeper deletes when its time comes.
const EXPIRY: TableDefinition<(u64, &str), ()> = TableDefinition::new("expiry");
/// An event log row: (type 0 put / 1 delete, key, value, create_revision, prev
/// value, prev mod_revision; 0 = no prev).
type EventRow = (u8, &'static str, &'static [u8], u64, &'static [u8], u64);
/// revision -> event
const EVENTS: TableDefinition<u64, EventRow> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
/// Events at or below this revision have been dropped from the log.
const COMPACTED: &str = "compacted";

/// How many events the log keeps; older resourceVersions get 410 Gone.
const EVENT_WINDOW: u64 = 100_000;
/// Live events buffered per watcher before it counts as too slow and is cut off.
const WATCH_BUFFER: usize = 10_000;

/// How many waiting writes one transaction takes at most.
const MAX_BATCH: usize = 512;

/// redb's page cache (reads and the write buffer). Its default, 1 GiB,
/// grows with everything written and read until it holds the whole file
/// several times over the objects' size; the watch cache already keeps
/// every current value in memory and the OS caches the file, so a small
/// one serves the writer's working set and storage's own reads. It fills
/// to its size with any full scan (the watch cache's first list): at
/// 16 MiB it was a sixth of what 100k objects cost beyond their JSON.
const PAGE_CACHE_BYTES: usize = 2 << 20;

/// Told after the batch's commit whether it held.
type Completion = Box<dyn FnOnce(Result<()>) + Send>;
/// One write: applied inside the batch's transaction at the revision given; the
/// event to log if it changed anything, and how to answer it after commit.
type WriteOp = Box<dyn FnOnce(&mut Tables<'_>, u64) -> (Option<WatchEvent>, Completion) + Send>;

/// How often expired objects (TTLs, as etcd leases give Events) are removed.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone)]
pub struct EmbeddedStorage {
    db: Arc<Database>,
    watchers: Arc<Watchers>,
    /// The revision of the last committed write, stored just before its
    /// event goes to `watchers`; a write is acknowledged only after, so this
    /// is the store's current revision as far as any reader or watcher can
    /// tell, read without a transaction.
    published: Arc<AtomicU64>,
    writes: std::sync::mpsc::Sender<WriteOp>,
}

/// The live watches, each sent only the events under its own prefix: a
/// write wakes the watches of its resource, not every watch of the store
/// (a cache and an informer or two for each of some thirty resources).
struct Watchers {
    open: std::sync::Mutex<Vec<Subscriber>>,
    /// Every event up to this revision is in its watchers' queues: what a
    /// progress notification may claim once its queue is drained.
    dispatched: tokio::sync::watch::Sender<u64>,
}

struct Subscriber {
    prefix: String,
    queue: mpsc::Sender<Arc<WatchEvent>>,
    fell_behind: Arc<std::sync::atomic::AtomicBool>,
}

/// One watch's queue of live events.
struct Subscription {
    queue: mpsc::Receiver<Arc<WatchEvent>>,
    fell_behind: Arc<std::sync::atomic::AtomicBool>,
}

impl Watchers {
    /// Watchers of a store whose events up to `revision` are all in its log.
    fn new(revision: u64) -> Self {
        Watchers { open: Default::default(), dispatched: tokio::sync::watch::channel(revision).0 }
    }

    fn subscribe(&self, prefix: &str) -> Subscription {
        let (queue, rx) = mpsc::channel(WATCH_BUFFER);
        let fell_behind = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let subscriber = Subscriber { prefix: prefix.to_string(), queue, fell_behind: fell_behind.clone() };
        self.open.lock().unwrap_or_else(|e| e.into_inner()).push(subscriber);
        Subscription { queue: rx, fell_behind }
    }

    /// Queues `e` for the watches under its key, in the writer's order;
    /// forgets watches that ended, and cuts off any whose queue is full.
    fn send(&self, e: &Arc<WatchEvent>) {
        use mpsc::error::TrySendError;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|s| {
            if !e.kv.key.starts_with(s.prefix.as_str()) {
                return !s.queue.is_closed();
            }
            match s.queue.try_send(e.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    // Dropping the sender ends its stream once it is drained.
                    s.fell_behind.store(true, Ordering::Release);
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
    }
}

impl Subscription {
    /// The next live event; None when the store is gone; an error when this
    /// watch fell too far behind and was cut off.
    async fn recv(&mut self) -> Result<Option<Arc<WatchEvent>>> {
        match self.queue.recv().await {
            Some(e) => Ok(Some(e)),
            None => self.ended(),
        }
    }

    /// What is queued now, without waiting: Ok(None) when nothing is.
    fn try_recv(&mut self) -> std::result::Result<Option<Arc<WatchEvent>>, Option<StorageError>> {
        use mpsc::error::TryRecvError;
        match self.queue.try_recv() {
            Ok(e) => Ok(Some(e)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(self.ended().err()),
        }
    }

    fn ended(&self) -> Result<Option<Arc<WatchEvent>>> {
        match self.fell_behind.load(Ordering::Acquire) {
            true => Err(StorageError::Unavailable("watcher fell behind".into())),
            false => Ok(None),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

type Objects<'t> = redb::Table<'t, &'static str, (u64, u64, u64, &'static [u8])>;

/// The tables a write works on.
struct Tables<'t> {
    objects: Objects<'t>,
    expiry: redb::Table<'t, (u64, &'static str), ()>,
}

impl Tables<'_> {
    /// The current row of `key`: its KeyValue and expiry.
    fn current(&self, key: &str) -> Result<Option<(KeyValue, u64)>> {
        Ok(self.objects.get(key).map_err(internal)?.map(|g| {
            let v = g.value();
            (kv(key, v), v.2)
        }))
    }

    fn put(&mut self, key: &str, rev: u64, create: u64, value: &[u8], ttl: Option<std::time::Duration>) -> Result<()> {
        if let Some((_, old)) = self.current(key)? {
            if old != 0 {
                self.expiry.remove((old, key)).map_err(internal)?;
            }
        }
        let expires = ttl.map(|t| now_ms().saturating_add(t.as_millis() as u64)).unwrap_or(0);
        self.objects.insert(key, (rev, create, expires, value)).map_err(internal)?;
        if expires != 0 {
            self.expiry.insert((expires, key), ()).map_err(internal)?;
        }
        Ok(())
    }

    fn remove(&mut self, key: &str, expires: u64) -> Result<()> {
        self.objects.remove(key).map_err(internal)?;
        if expires != 0 {
            self.expiry.remove((expires, key)).map_err(internal)?;
        }
        Ok(())
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn kv(key: &str, v: (u64, u64, u64, &[u8])) -> KeyValue {
    KeyValue { key: key.to_string(), mod_revision: v.0, create_revision: v.1, value: Bytes::copy_from_slice(v.3) }
}

fn meta_value(txn: &redb::ReadTransaction, name: &str) -> Result<u64> {
    let meta = txn.open_table(META).map_err(internal)?;
    Ok(meta.get(name).map_err(internal)?.map(|g| g.value()).unwrap_or(0))
}

impl EmbeddedStorage {
    pub fn open(path: &Path) -> Result<Self> {
        let db = redb::Builder::new().set_cache_size(PAGE_CACHE_BYTES).create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        {
            txn.open_table(OBJECTS).map_err(internal)?;
            txn.open_table(EXPIRY).map_err(internal)?;
            txn.open_table(EVENTS).map_err(internal)?;
            txn.open_table(META).map_err(internal)?;
        }
        txn.commit().map_err(internal)?;
        let published = Arc::new(AtomicU64::new(meta_value(&db.begin_read().map_err(internal)?, REVISION)?));
        let watchers = Arc::new(Watchers::new(published.load(Ordering::Acquire)));
        let db = Arc::new(db);
        let (writes, queue) = std::sync::mpsc::channel();
        {
            // Weak, so dropping the last handle closes the file at once.
            let db = Arc::downgrade(&db);
            let watchers = watchers.clone();
            let published = published.clone();
            std::thread::Builder::new()
                .name("embedded-writer".into())
                .spawn(move || writer(&db, &queue, &watchers, &published))
                .map_err(internal)?;
        }
        let storage = EmbeddedStorage { db, watchers, published, writes };
        {
            let weak = Arc::downgrade(&storage.db);
            let writes = storage.writes.clone();
            std::thread::Builder::new()
                .name("embedded-expiry".into())
                .spawn(move || sweeper(&weak, &writes))
                .map_err(internal)?;
        }
        Ok(storage)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(internal)?
    }

    /// Runs `f` in the next batch at its own revision; `f` returns its result
    /// and the event to log, or an error, in which case it must not have
    /// changed the table. Answers once the batch is durable.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tables<'_>, u64) -> Result<(T, WatchEvent)> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let op: WriteOp = Box::new(move |table, rev| match f(table, rev) {
            Ok((out, event)) => (
                Some(event),
                Box::new(move |committed: Result<()>| {
                    let _ = tx.send(committed.map(|()| out));
                }),
            ),
            Err(e) => (
                None,
                Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }),
            ),
        });
        self.writes.send(op).map_err(|_| StorageError::Unavailable("the embedded store is closed".into()))?;
        rx.await.map_err(|_| StorageError::Internal("the embedded writer stopped".into()))?
    }
}

impl EmbeddedStorage {
    /// A create whose object is deleted after `ttl` (as an etcd lease does).
    async fn create_expiring(&self, key: &str, value: Bytes, ttl: Option<std::time::Duration>) -> Result<u64> {
        let key = key.to_string();
        self.write(move |t, rev| {
            if t.current(&key)?.is_some() {
                return Err(StorageError::AlreadyExists(key));
            }
            t.put(&key, rev, rev, &value, ttl)?;
            Ok((rev, put_event(&key, &value, rev, rev, None)))
        })
        .await
    }

    /// An update; like an etcd put, it replaces any earlier TTL with `ttl`.
    async fn update_expiring(
        &self,
        key: &str,
        value: Bytes,
        expected: u64,
        ttl: Option<std::time::Duration>,
    ) -> Result<u64> {
        let key = key.to_string();
        self.write(move |t, rev| {
            let Some((current, _)) = t.current(&key)? else {
                return Err(StorageError::NotFound(key));
            };
            if current.mod_revision != expected {
                return Err(StorageError::Conflict { key, current: Some(current) });
            }
            let create = current.create_revision;
            t.put(&key, rev, create, &value, ttl)?;
            Ok((rev, put_event(&key, &value, rev, create, Some(current))))
        })
        .await
    }
}

/// The writer thread: batches waiting writes into one transaction each.
fn writer(
    db: &std::sync::Weak<Database>,
    queue: &std::sync::mpsc::Receiver<WriteOp>,
    watchers: &Watchers,
    published: &AtomicU64,
) {
    while let Ok(first) = queue.recv() {
        let Some(db) = db.upgrade() else { return };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut completions = Vec::with_capacity(batch.len());
        let mut logged = Vec::new();
        let committed = commit_batch(&db, batch, &mut completions, &mut logged);
        drop(db);
        if committed.is_ok() {
            // Published in revision order, before anyone hears back, and
            // each revision before its event: whoever has seen a change must
            // find it in a consistent read, which reads up to `published`.
            let last = logged.last().map(WatchEvent::revision);
            for e in logged {
                published.store(e.revision(), Ordering::Release);
                watchers.send(&Arc::new(e));
            }
            if let Some(last) = last {
                watchers.dispatched.send_replace(last);
            }
        }
        for done in completions {
            done(committed.as_ref().map(|_| ()).map_err(|e| StorageError::Internal(e.to_string())));
        }
    }
}

/// Submits a delete for every object whose TTL has passed, through the writer,
/// so watchers see the deletes like any other.
fn sweeper(db: &std::sync::Weak<Database>, writes: &std::sync::mpsc::Sender<WriteOp>) {
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let Some(db) = db.upgrade() else { return };
        let due: Vec<(u64, String)> = (|| -> Result<Vec<(u64, String)>> {
            let txn = db.begin_read().map_err(internal)?;
            let t = txn.open_table(EXPIRY).map_err(internal)?;
            let mut out = Vec::new();
            for entry in t.range((0u64, "")..(now_ms() + 1, "")).map_err(internal)? {
                let (k, _) = entry.map_err(internal)?;
                let (at, key) = k.value();
                out.push((at, key.to_string()));
            }
            Ok(out)
        })()
        .unwrap_or_default();
        drop(db);
        for (at, key) in due {
            let op: WriteOp = Box::new(move |t, rev| match expire(t, &key, at, rev) {
                Ok(Some(e)) => (Some(e), Box::new(|_| {})),
                _ => (None, Box::new(|_| {})),
            });
            if writes.send(op).is_err() {
                return;
            }
        }
    }
}

/// Deletes `key` if it still expires at `at` (a newer write may have moved it).
fn expire(t: &mut Tables<'_>, key: &str, at: u64, rev: u64) -> Result<Option<WatchEvent>> {
    match t.current(key)? {
        Some((current, expires)) if expires == at => {
            t.remove(key, expires)?;
            Ok(Some(WatchEvent {
                event_type: EventType::Delete,
                kv: KeyValue { mod_revision: rev, ..current.clone() },
                prev: Some(current),
            }))
        }
        _ => {
            t.expiry.remove((at, key)).map_err(internal)?;
            Ok(None)
        }
    }
}

fn commit_batch(
    db: &Database,
    batch: Vec<WriteOp>,
    completions: &mut Vec<Completion>,
    logged: &mut Vec<WatchEvent>,
) -> Result<()> {
    // An op dropped unapplied (the transaction failed before reaching it)
    // drops its answer channel, which its caller sees as an error.
    let txn = db.begin_write().map_err(internal)?;
    {
        let mut meta = txn.open_table(META).map_err(internal)?;
        let mut rev = meta.get(REVISION).map_err(internal)?.map(|g| g.value()).unwrap_or(0);
        let mut tables = Tables {
            objects: txn.open_table(OBJECTS).map_err(internal)?,
            expiry: txn.open_table(EXPIRY).map_err(internal)?,
        };
        let mut log = txn.open_table(EVENTS).map_err(internal)?;
        for op in batch {
            let (event, done) = op(&mut tables, rev + 1);
            completions.push(done);
            let Some(event) = event else { continue };
            rev += 1;
            let (prev_value, prev_rev): (&[u8], u64) =
                event.prev.as_ref().map(|p| (p.value.as_ref(), p.mod_revision)).unwrap_or((&[], 0));
            let kind = match event.event_type {
                EventType::Put | EventType::Progress => 0u8,
                EventType::Delete => 1u8,
            };
            let row =
                (kind, event.kv.key.as_str(), event.kv.value.as_ref(), event.kv.create_revision, prev_value, prev_rev);
            log.insert(rev, row).map_err(internal)?;
            logged.push(event);
        }
        // The window slides with every batch, so each commit frees about as
        // many rows as it adds: trimming in bursts made one write in a
        // thousand pay for a thousand deletions and stalled the writes queued
        // behind it.
        if rev > EVENT_WINDOW {
            let floor = rev - EVENT_WINDOW;
            log.retain_in(..=floor, |_, _| false).map_err(internal)?;
            meta.insert(COMPACTED, floor).map_err(internal)?;
        }
        meta.insert(REVISION, rev).map_err(internal)?;
    }
    txn.commit().map_err(internal)
}

fn put_event(key: &str, value: &Bytes, rev: u64, create: u64, prev: Option<KeyValue>) -> WatchEvent {
    WatchEvent {
        event_type: EventType::Put,
        kv: KeyValue { key: key.to_string(), value: value.clone(), mod_revision: rev, create_revision: create },
        prev,
    }
}

/// Reads of the committed state, each in one read transaction.
impl EmbeddedStorage {
    async fn get_latest(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let t = txn.open_table(OBJECTS).map_err(internal)?;
            Ok(t.get(key.as_str()).map_err(internal)?.map(|g| kv(&key, g.value())))
        })
        .await
    }

    async fn get_at_revision(&self, key: &str, revision: u64) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let page = Snapshot::at(&txn, &key, |k| k == key, revision)?.page(None, 1, Remaining::Any)?;
            Ok(page.items.into_iter().next())
        })
        .await
    }

    async fn list_latest(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        count: Remaining,
    ) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let revision = meta_value(&txn, REVISION)?;
            let t = txn.open_table(OBJECTS).map_err(internal)?;
            let start = start_after.clone().unwrap_or_else(|| prefix.clone());
            let mut items = Vec::new();
            let mut remaining = 0u64;
            for entry in t.range(start.as_str()..).map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                if start_after.as_deref() == Some(key) {
                    continue;
                }
                if limit == 0 || items.len() < limit {
                    items.push(kv(key, v.value()));
                } else {
                    remaining += 1;
                    if count == Remaining::Any {
                        break;
                    }
                }
            }
            Ok(ListResult { items, revision, remaining })
        })
        .await
    }

    async fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: u64,
        count: Remaining,
    ) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let snapshot = Snapshot::at(&txn, &prefix, |_| true, revision)?;
            snapshot.page(start_after.as_deref(), limit, count)
        })
        .await
    }
}

/// The objects under a prefix as they were at a revision: the current
/// objects, except the keys changed since, which are as the oldest of
/// those changes found them. Only the changes are held in memory, so a page
/// of a large resource costs its own items, not a copy of the resource.
struct Snapshot<'t, K> {
    txn: &'t redb::ReadTransaction,
    prefix: &'t str,
    keep: K,
    revision: u64,
    /// Each key changed since `revision`: the revision of its oldest change
    /// after it, and whether the key existed before that change.
    changed: std::collections::BTreeMap<String, (u64, bool)>,
}

impl<'t, K: Fn(&str) -> bool> Snapshot<'t, K> {
    /// `Compacted` when the log no longer reaches back to `revision`.
    fn at(txn: &'t redb::ReadTransaction, prefix: &'t str, keep: K, revision: u64) -> Result<Self> {
        let now = meta_value(txn, REVISION)?;
        let compacted = meta_value(txn, COMPACTED)?;
        if revision < compacted || revision > now {
            return Err(StorageError::Compacted(compacted + 1));
        }
        let mut changed = std::collections::BTreeMap::new();
        let log = txn.open_table(EVENTS).map_err(internal)?;
        // Newest first, so the oldest change of a key is the one kept.
        for entry in log.range(revision + 1..).map_err(internal)?.rev() {
            let (rev, v) = entry.map_err(internal)?;
            let (_, key, _, _, _, prev_rev) = v.value();
            if key.starts_with(prefix) && keep(key) {
                changed.insert(key.to_string(), (rev.value(), prev_rev != 0));
            }
        }
        Ok(Snapshot { txn, prefix, keep, revision, changed })
    }

    fn selected(&self, key: &str, start_after: Option<&str>) -> bool {
        key.starts_with(self.prefix) && start_after.is_none_or(|s| key > s) && (self.keep)(key)
    }

    /// Up to `limit` objects (0: all) after `start_after`, in key order,
    /// with what `count` asks of the rest.
    fn page(&self, start_after: Option<&str>, limit: usize, count: Remaining) -> Result<ListResult> {
        use std::cmp::Ordering;
        let objects = self.txn.open_table(OBJECTS).map_err(internal)?;
        let log = self.txn.open_table(EVENTS).map_err(internal)?;
        let mut current = objects.range(start_after.unwrap_or(self.prefix)..).map_err(internal)?;
        let mut next_current = || -> Result<Option<_>> {
            for entry in current.by_ref() {
                let (k, v) = entry.map_err(internal)?;
                if !k.value().starts_with(self.prefix) {
                    return Ok(None);
                }
                if self.selected(k.value(), start_after) {
                    return Ok(Some((k, v)));
                }
            }
            Ok(None)
        };
        let mut changes = self.changed.iter().filter(|(k, _)| self.selected(k, start_after)).peekable();
        let mut pending = next_current()?;
        let (mut items, mut remaining) = (Vec::new(), 0u64);
        loop {
            let order = match (&pending, changes.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((k, _)), Some((changed, _))) => k.value().cmp(changed.as_str()),
            };
            let full = limit != 0 && items.len() >= limit;
            if full && remaining > 0 && count == Remaining::Any {
                break;
            }
            if order == Ordering::Less {
                // Unchanged since the revision: as it is now.
                if let Some((k, v)) = pending.take() {
                    if full {
                        remaining += 1;
                    } else {
                        items.push(kv(k.value(), v.value()));
                    }
                }
                pending = next_current()?;
                continue;
            }
            if order == Ordering::Equal {
                pending = next_current()?;
            }
            let Some((key, &(rev, existed))) = changes.next() else { break };
            if !existed {
                continue;
            }
            if full {
                remaining += 1;
                continue;
            }
            let row = log.get(rev).map_err(internal)?.ok_or_else(|| internal("a change left the log"))?;
            let (_, _, _, create, prev_value, prev_rev) = row.value();
            items.push(KeyValue {
                key: key.clone(),
                value: Bytes::copy_from_slice(prev_value),
                mod_revision: prev_rev,
                create_revision: create,
            });
        }
        Ok(ListResult { items, revision: self.revision, remaining })
    }
}

#[async_trait]
impl Storage for EmbeddedStorage {
    async fn get(&self, key: &str, opts: GetOptions) -> Result<Option<KeyValue>> {
        timed(op::GET, key, async {
            match opts.revision {
                Some(rev) => self.get_at_revision(key, rev).await,
                None => self.get_latest(key).await,
            }
        })
        .await
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> Result<ListResult> {
        timed(op::LIST, prefix, async {
            match opts.revision {
                Some(rev) => self.list_at_revision(prefix, opts.start_after, opts.limit, rev, opts.remaining).await,
                None => self.list_latest(prefix, opts.start_after, opts.limit, opts.remaining).await,
            }
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes, opts: PutOptions) -> Result<u64> {
        timed(op::CREATE, key, self.create_expiring(key, value, opts.ttl)).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64, opts: PutOptions) -> Result<u64> {
        timed(op::UPDATE, key, self.update_expiring(key, value, expected, opts.ttl)).await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        let owned = key.to_string();
        let deleted = self.write(move |t, rev| {
            let key = owned;
            let Some((current, expires)) = t.current(&key)? else {
                return Err(StorageError::NotFound(key));
            };
            if expected.is_some_and(|e| e != current.mod_revision) {
                return Err(StorageError::Conflict { key, current: Some(current) });
            }
            t.remove(&key, expires)?;
            let event = WatchEvent {
                event_type: EventType::Delete,
                kv: KeyValue { mod_revision: rev, ..current.clone() },
                prev: Some(current.clone()),
            };
            Ok(((current, rev), event))
        });
        timed(op::DELETE, key, deleted).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let page = timed(op::COUNT, prefix, self.list_latest(prefix, None, 1, Remaining::Count)).await?;
        Ok(page.items.len() as u64 + page.remaining)
    }

    async fn current_revision(&self) -> Result<u64> {
        Ok(self.published.load(Ordering::Acquire))
    }

    async fn watch(&self, prefix: &str, opts: WatchOptions) -> Result<WatchStream> {
        let after = opts.after;
        // Subscribe before reading the log so nothing committed in between is
        // missed; duplicates are dropped by revision below.
        let live = self.watchers.subscribe(prefix);
        let p = prefix.to_string();
        let backlog = self
            .blocking(move |db| {
                let txn = db.begin_read().map_err(internal)?;
                let compacted = meta_value(&txn, COMPACTED)?;
                if after < compacted {
                    return Err(StorageError::Compacted(compacted + 1));
                }
                let logged = meta_value(&txn, REVISION)?;
                let log = txn.open_table(EVENTS).map_err(internal)?;
                let mut out = Vec::new();
                for entry in log.range(after + 1..).map_err(internal)? {
                    let (rev, v) = entry.map_err(internal)?;
                    let (kind, key, value, create, prev_value, prev_rev) = v.value();
                    if !key.starts_with(p.as_str()) {
                        continue;
                    }
                    let rev = rev.value();
                    let kv = KeyValue {
                        key: key.to_string(),
                        value: Bytes::copy_from_slice(value),
                        mod_revision: rev,
                        create_revision: create,
                    };
                    let prev = (prev_rev != 0).then(|| KeyValue {
                        key: key.to_string(),
                        value: Bytes::copy_from_slice(prev_value),
                        mod_revision: prev_rev,
                        create_revision: create,
                    });
                    let event_type = if kind == 1 { EventType::Delete } else { EventType::Put };
                    out.push(WatchEvent { event_type, kv, prev });
                }
                Ok((out, logged))
            })
            .await?;
        use futures::StreamExt;
        let (backlog, logged) = backlog;
        let last = backlog.last().map(|e| e.revision()).unwrap_or(after);
        // Without progress requests, one nobody makes: the same stream.
        let watch = ProgressWatch {
            backlog: backlog.into(),
            live,
            last,
            seen: logged.max(after),
            requests: opts.progress.unwrap_or_default(),
            published: self.published.clone(),
            dispatched: self.watchers.dispatched.subscribe(),
            asked: None,
            ended: false,
        };
        Ok(futures::stream::unfold(watch, ProgressWatch::next).boxed())
    }
}

/// A watch of the embedded store, which answers progress requests when it
/// is given any. Asked, it answers at the revision published then, once
/// every event up to it has been queued (the writer's `dispatched`) and it
/// has passed on what its queue holds: the events under its prefix up to
/// that revision are then all delivered.
struct ProgressWatch {
    backlog: VecDeque<WatchEvent>,
    live: Subscription,
    /// The last revision delivered from the log; live events up to it are
    /// duplicates.
    last: u64,
    /// Every change under the prefix up to this revision has been delivered
    /// (once the backlog has been).
    seen: u64,
    requests: ProgressRequests,
    published: Arc<AtomicU64>,
    dispatched: tokio::sync::watch::Receiver<u64>,
    /// The revision a pending request must be answered at.
    asked: Option<u64>,
    ended: bool,
}

impl ProgressWatch {
    async fn next(mut self) -> Option<(Result<WatchEvent>, Self)> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                return Some((Ok(e), self));
            }
            if let Some(at) = self.asked {
                // The writer queues each event right after publishing its
                // revision, and says so per batch.
                if self.dispatched.wait_for(|d| *d >= at).await.is_err() {
                    return None;
                }
                match self.live.try_recv() {
                    Ok(Some(e)) => match self.deliver(e) {
                        Some(e) => return Some((Ok(e), self)),
                        None => continue,
                    },
                    Ok(None) => {
                        self.asked = None;
                        self.seen = self.seen.max(at);
                        return Some((Ok(WatchEvent::progress(self.seen)), self));
                    }
                    Err(e) => {
                        self.ended = true;
                        return e.map(|e| (Err(e), self));
                    }
                }
            }
            tokio::select! {
                _ = self.requests.requested() => self.asked = Some(self.published.load(Ordering::Acquire)),
                r = self.live.recv() => match r {
                    Ok(Some(e)) => {
                        if let Some(e) = self.deliver(e) {
                            return Some((Ok(e), self));
                        }
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        self.ended = true;
                        return Some((Err(e), self));
                    }
                },
            }
        }
    }

    /// A live event to pass on, unless the log already gave it.
    fn deliver(&mut self, e: Arc<WatchEvent>) -> Option<WatchEvent> {
        self.seen = self.seen.max(e.revision());
        (e.revision() > self.last).then(|| (*e).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn a_watch_is_sent_only_its_prefix_and_cut_off_when_full() {
        let watchers = Watchers::new(0);
        let mut a = watchers.subscribe("/registry/a/");
        let event = |key: &str, rev| Arc::new(put_event(key, &Bytes::new(), rev, rev, None));
        watchers.send(&event("/registry/b/x", 1));
        assert!(matches!(a.try_recv(), Ok(None)), "an event elsewhere reached the watch");
        watchers.send(&event("/registry/a/x", 2));
        assert!(matches!(a.try_recv(), Ok(Some(e)) if e.revision() == 2));
        for rev in 3..(3 + WATCH_BUFFER as u64 + 1) {
            watchers.send(&event("/registry/a/x", rev));
        }
        // What was queued still comes, then the watch ends as cut off.
        for rev in 3..(3 + WATCH_BUFFER as u64) {
            assert!(matches!(a.try_recv(), Ok(Some(e)) if e.revision() == rev));
        }
        assert!(matches!(a.try_recv(), Err(Some(StorageError::Unavailable(_)))));
        // A watch that ended is forgotten by the next send.
        drop(a);
        watchers.send(&event("/registry/a/x", 1 << 20));
        assert!(watchers.open.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn progress_on_a_reopened_store_before_any_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let written = {
            let s = EmbeddedStorage::open(&path).unwrap();
            s.create("/registry/a/x", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap()
        };
        let s = EmbeddedStorage::open(&path).unwrap();
        let progress = ProgressRequests::default();
        let opts = WatchOptions { after: written, progress: Some(progress.clone()) };
        let mut w = s.watch("/registry/b/", opts).await.unwrap();
        progress.request();
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
        assert_eq!((e.event_type, e.revision()), (EventType::Progress, written));
    }

    #[tokio::test]
    async fn crud_and_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        let r1 = s.create("/registry/a/x", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap();
        assert!(matches!(
            s.create("/registry/a/x", Bytes::new(), PutOptions::default()).await,
            Err(StorageError::AlreadyExists(_))
        ));
        let r2 = s.create("/registry/a/y", Bytes::from_static(b"2"), PutOptions::default()).await.unwrap();
        assert!(r2 > r1);
        assert!(matches!(
            s.update("/registry/a/x", Bytes::new(), r2, PutOptions::default()).await,
            Err(StorageError::Conflict { .. })
        ));
        let r3 = s.update("/registry/a/x", Bytes::from_static(b"3"), r1, PutOptions::default()).await.unwrap();
        let got = s.get("/registry/a/x", GetOptions::default()).await.unwrap().unwrap();
        assert_eq!((got.mod_revision, got.create_revision, got.value.as_ref()), (r3, r1, b"3".as_ref()));
        let l = s.list("/registry/a/", ListOptions { limit: 1, ..Default::default() }).await.unwrap();
        assert_eq!((l.items.len(), l.remaining, l.revision), (1, 1, r3));
        let l2 = s
            .list("/registry/a/", ListOptions { start_after: Some("/registry/a/x"), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(l2.items[0].key, "/registry/a/y");
        assert_eq!(s.count("/registry/a/").await.unwrap(), 2);
        let (old, r4) = s.delete("/registry/a/y", None).await.unwrap();
        assert_eq!(old.value.as_ref(), b"2");
        assert_eq!(s.current_revision().await.unwrap(), r4);
        drop(s);
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), r4);
        assert!(s.get("/registry/a/y", GetOptions::default()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn objects_with_a_ttl_expire_as_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        let mut w = s.watch("/ev/", WatchOptions::after(0)).await.unwrap();
        let r1 = s
            .create(
                "/ev/a",
                Bytes::from_static(b"short"),
                PutOptions { ttl: Some(std::time::Duration::from_millis(200)) },
            )
            .await
            .unwrap();
        s.create("/ev/b", Bytes::from_static(b"kept"), PutOptions::default()).await.unwrap();
        assert_eq!(w.next().await.unwrap().unwrap().revision(), r1);
        w.next().await.unwrap().unwrap();
        let gone = tokio::time::timeout(std::time::Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(
            (gone.event_type, gone.kv.key.as_str(), gone.kv.value.as_ref()),
            (EventType::Delete, "/ev/a", b"short".as_ref())
        );
        assert!(s.get("/ev/a", GetOptions::default()).await.unwrap().is_none());
        assert!(s.get("/ev/b", GetOptions::default()).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn lists_past_states_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        let r1 = s.create("/r/a", Bytes::from_static(b"a1"), PutOptions::default()).await.unwrap();
        s.create("/r/b", Bytes::from_static(b"b1"), PutOptions::default()).await.unwrap();
        let snapshot = s.current_revision().await.unwrap();
        s.update("/r/a", Bytes::from_static(b"a2"), r1, PutOptions::default()).await.unwrap();
        s.delete("/r/b", None).await.unwrap();
        s.create("/r/c", Bytes::from_static(b"c1"), PutOptions::default()).await.unwrap();
        let page =
            s.list("/r/", ListOptions { limit: 1, revision: Some(snapshot), ..Default::default() }).await.unwrap();
        assert_eq!((page.items[0].value.as_ref(), page.remaining, page.revision), (b"a1".as_ref(), 1, snapshot));
        let rest = s
            .list("/r/", ListOptions { start_after: Some("/r/a"), revision: Some(snapshot), ..Default::default() })
            .await
            .unwrap();
        let keys: Vec<&str> = rest.items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/b"]);
        assert_eq!(rest.items[0].value.as_ref(), b"b1");
        let future = s.current_revision().await.unwrap() + 1;
        assert!(matches!(
            s.list("/r/", ListOptions { revision: Some(future), ..Default::default() }).await,
            Err(StorageError::Compacted(_))
        ));
    }

    #[tokio::test]
    async fn watch_replays_the_log_then_follows_live_writes() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        let r1 = s.create("/registry/a/x", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap();
        s.create("/registry/b/other", Bytes::from_static(b"-"), PutOptions::default()).await.unwrap();
        let r2 = s.update("/registry/a/x", Bytes::from_static(b"2"), r1, PutOptions::default()).await.unwrap();
        let mut w = s.watch("/registry/a/", WatchOptions::after(r1)).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.event_type, e.revision(), e.kv.value.as_ref()), (EventType::Put, r2, b"2".as_ref()));
        assert_eq!(e.prev.map(|p| p.value), Some(Bytes::from_static(b"1")));
        let (_, r3) = s.delete("/registry/a/x", None).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.event_type, e.revision(), e.kv.value.as_ref()), (EventType::Delete, r3, b"2".as_ref()));
        let r4 = s.create("/registry/a/z", Bytes::from_static(b"z"), PutOptions::default()).await.unwrap();
        let e = w.next().await.unwrap().unwrap();
        assert_eq!((e.revision(), e.kv.key.as_str()), (r4, "/registry/a/z"));
    }
}
