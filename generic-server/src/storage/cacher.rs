//! The watch cache (upstream's Cacher): one per key root, beside the backend
//! rather than in front of it. A single backend watch keeps an in-memory copy
//! of the resource's objects and a window of recent events; client watches are
//! served from it (so a thousand watchers cost the backend one), and so are
//! reads that accept any or a not-older-than state.
//!
//! Each stored version is held once, as a [`CachedValue`] behind an `Arc`
//! that the object map, the window and every watcher share. Readers keep what
//! they derive from it in its slots (the registry Store: the object in its
//! served version, its selector sets and its encodings, upstream's
//! cachingObject), and what they derive from a change in the change's slots
//! (its watch frames), so one write watched by a thousand clients is decoded
//! and encoded once per form, not once per watcher. This module still knows
//! nothing of objects: a slot is an opaque value a reader fills.
//!
//! It is not a [`Storage`]: the registry Store consults it explicitly, as
//! upstream's cacher delegator does. Each method answers `None` when the
//! cache cannot serve the request (a cache not yet filled or behind the
//! asked revision, a snapshot or watch older than its window), and the Store
//! then goes to storage; writes always go to storage. A consistent read is
//! served once the cache has caught up with the store's current revision
//! ([`Cacher::caught_up`], upstream's consistent reads from cache): the
//! cache's watch reports progress on request, so writes elsewhere in the
//! store do not leave it looking behind. A list at an older revision (a
//! continue token's snapshot) is the cached state with the window's later
//! events undone. The cache never decides
//! an object's state, only remembers what the backend said. Delivery is a
//! broadcast the cache's own task feeds, so no writer waits on a watcher; a
//! watcher that falls a buffer behind is cut off (its stream yields an error
//! and ends) rather than slowing the others, and the client resumes from its
//! last resourceVersion.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use super::{
    EventType, Freshness, KeyValue, ListOptions, ProgressRequests, Remaining, Storage, WatchEvent, WatchOptions,
};

/// Recent events kept for watchers that resume from a resourceVersion.
const WINDOW: usize = 10_000;
/// Live events buffered per watcher before it is cut off as too slow.
const WATCHER_BUFFER: usize = 4_096;
/// How long a watch waits for the cache to fill before going to the backend.
const READY_WAIT: Duration = Duration::from_secs(5);
/// How long a consistent read waits for the cache to catch up before going
/// to storage (upstream's 3 s), and how often it asks for progress meanwhile.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// One stored version of a key, shared by everything that holds it, with
/// what readers derived from it.
pub struct CachedValue {
    pub kv: KeyValue,
    slots: Slots,
}

/// What readers keep beside a shared value or event: one slot per live
/// [`Reader`]. Most values are read by one Store, so the first slot is held
/// in place and a list is made only for a second reader: a hundred thousand
/// cached objects each carry whatever is allocated here.
#[derive(Default)]
struct Slots(Mutex<SlotList>);

#[derive(Default)]
enum SlotList {
    #[default]
    Empty,
    One(Slot),
    Many(Vec<Slot>),
}

/// A reader's slot: whose it is, and what it holds (a value the reader
/// derived, or while one is being derived, the cell its other callers wait on).
type Slot = (Weak<()>, Arc<dyn Any + Send + Sync>);

impl SlotList {
    fn find(&self, reader: &Reader) -> Option<Arc<dyn Any + Send + Sync>> {
        let slots = match self {
            SlotList::Empty => &[],
            SlotList::One(s) => std::slice::from_ref(s),
            SlotList::Many(v) => v.as_slice(),
        };
        slots.iter().find(|(r, _)| reader.owns(r)).map(|(_, s)| s.clone())
    }

    /// `reader`'s slot, if it holds a `T`.
    fn get<T: Send + Sync + 'static>(&self, reader: &Reader) -> Option<Arc<T>> {
        self.find(reader).and_then(|s| s.downcast::<T>().ok())
    }

    /// Puts `value` in `reader`'s slot. The slots of readers gone (a CRD's
    /// Stores rebuilt) go when another reader fills its own, as the new
    /// Store does on every value.
    fn put(&mut self, reader: &Reader, value: Arc<dyn Any + Send + Sync>) {
        let slot = (Arc::downgrade(&reader.0), value);
        let other_live = |(r, _): &Slot| r.strong_count() > 0 && !reader.owns(r);
        *self = match std::mem::take(self) {
            SlotList::Empty => SlotList::One(slot),
            SlotList::One(s) if !other_live(&s) => SlotList::One(slot),
            SlotList::One(s) => SlotList::Many(vec![s, slot]),
            SlotList::Many(mut v) => {
                v.retain(other_live);
                v.push(slot);
                SlotList::Many(v)
            }
        };
    }
}

impl Slots {
    fn list(&self) -> std::sync::MutexGuard<'_, SlotList> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get<T: Send + Sync + 'static>(&self, reader: &Reader) -> Option<Arc<T>> {
        self.list().get(reader)
    }

    /// What `reader`'s slot holds, or `make`'s value, which it then holds.
    fn get_or_put<T: Send + Sync + 'static>(&self, reader: &Reader, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut list = self.list();
        if let Some(held) = list.get(reader) {
            return held;
        }
        let t = make();
        list.put(reader, t.clone());
        t
    }

    async fn get_or_try_init<T, E, F, Fut>(&self, reader: &Reader, init: F) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<T>, E>>,
    {
        type Pending<T> = tokio::sync::OnceCell<Arc<T>>;
        let pending = {
            let mut list = self.list();
            match list.find(reader) {
                Some(held) => match held.downcast::<T>() {
                    Ok(t) => return Ok(t),
                    Err(held) => held.downcast::<Pending<T>>().ok(),
                },
                None => None,
            }
            .unwrap_or_else(|| {
                let p = Arc::new(Pending::<T>::new());
                list.put(reader, p.clone());
                p
            })
        };
        let t = pending.get_or_try_init(init).await?.clone();
        // The slot keeps the value, not the cell its callers waited on.
        let mut list = self.list();
        if list.find(reader).is_some_and(|held| std::ptr::addr_eq(Arc::as_ptr(&held), Arc::as_ptr(&pending))) {
            list.put(reader, t.clone());
        }
        Ok(t)
    }
}

impl CachedValue {
    pub fn new(kv: KeyValue) -> Arc<Self> {
        Arc::new(CachedValue { kv, slots: Slots::default() })
    }

    /// What `reader` keeps of this value, if it has filled its slot.
    pub fn slot_get<T: Send + Sync + 'static>(&self, reader: &Reader) -> Option<Arc<T>> {
        self.slots.get(reader)
    }

    /// Fills `reader`'s slot with `t`, unless it was filled meanwhile:
    /// then what it holds, which stays.
    pub fn slot_set<T: Send + Sync + 'static>(&self, reader: &Reader, t: Arc<T>) -> Arc<T> {
        self.slots.get_or_put(reader, || t)
    }

    /// What `reader` keeps of this value, made by `init` at most once:
    /// concurrent callers wait for the first (a conversion webhook is asked
    /// once, not once per watcher); after a failure the next caller tries.
    pub async fn slot_get_or_try_init<T, E, F, Fut>(&self, reader: &Reader, init: F) -> Result<Arc<T>, E>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<T>, E>>,
    {
        self.slots.get_or_try_init(reader, init).await
    }
}

impl std::fmt::Debug for CachedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedValue").field("kv", &self.kv).finish_non_exhaustive()
    }
}

/// Who keeps a slot in cached values: each Store (one served version, one
/// strategy) is its own reader, so a CRD Store rebuilt with a new schema
/// never reads what its predecessor derived, and its predecessor's slots
/// are dropped with it.
#[derive(Default)]
pub struct Reader(Arc<()>);

impl Reader {
    fn owns(&self, slot: &Weak<()>) -> bool {
        std::ptr::eq(slot.as_ptr(), Arc::as_ptr(&self.0))
    }
}

/// One change as the cache delivers it: the value written (for a Delete,
/// the last value, at the deletion's revision) and the one it replaced,
/// both shared with the cache's map so what readers derived is reused.
/// Readers keep what they make of the change itself (its watch frames) in
/// its slots, which go with the event when it leaves the window.
pub struct CachedEvent {
    pub event_type: EventType,
    pub value: Arc<CachedValue>,
    pub prev: Option<Arc<CachedValue>>,
    slots: Slots,
}

impl CachedEvent {
    pub fn new(event_type: EventType, value: Arc<CachedValue>, prev: Option<Arc<CachedValue>>) -> Arc<Self> {
        Arc::new(CachedEvent { event_type, value, prev, slots: Slots::default() })
    }

    pub fn revision(&self) -> u64 {
        self.value.kv.mod_revision
    }

    /// A backend's event, with nothing derived yet (a watch the cache
    /// cannot serve).
    pub fn from_storage(e: WatchEvent) -> Arc<Self> {
        Self::new(e.event_type, CachedValue::new(e.kv), e.prev.map(CachedValue::new))
    }

    /// `reader`'s slot in this change, empty (`T`'s default) until the
    /// reader fills it.
    pub fn slot<T: Default + Send + Sync + 'static>(&self, reader: &Reader) -> Arc<T> {
        self.slots.get_or_put(reader, Arc::<T>::default)
    }
}

impl std::fmt::Debug for CachedEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEvent")
            .field("event_type", &self.event_type)
            .field("value", &self.value)
            .field("prev", &self.prev)
            .finish_non_exhaustive()
    }
}

/// Changes in revision order; ends (after an error) like a [`super::WatchStream`].
pub type CachedStream = futures::stream::BoxStream<'static, super::Result<Arc<CachedEvent>>>;

/// A page of cached values.
#[derive(Debug, Clone)]
pub struct CachedPage {
    pub items: Vec<Arc<CachedValue>>,
    /// The revision the cache had reached.
    pub revision: u64,
    /// How many keys under the prefix come after the last item returned.
    pub remaining: u64,
}

/// A cached value ordered by its key, so the map of objects holds each key
/// once (in the value) rather than a second copy beside it.
struct ByKey(Arc<CachedValue>);

impl std::borrow::Borrow<str> for ByKey {
    fn borrow(&self) -> &str {
        &self.0.kv.key
    }
}

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.kv.key == other.0.kv.key
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.kv.key.cmp(&other.0.kv.key)
    }
}

/// The cached objects, in key order for lists and hashed for reads of one
/// key. Ordered alone, a read compares its key with a dozen or more others
/// down the tree, each behind two pointers (the value, then its key): at
/// 10,000 objects that was a tenth of a GET's own work. The hash side holds
/// one pointer per object, about 10-20 bytes with its slack.
#[derive(Default)]
struct Objects {
    ordered: BTreeSet<ByKey>,
    hashed: hashbrown::HashTable<Arc<CachedValue>>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl Objects {
    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    fn get(&self, key: &str) -> Option<&Arc<CachedValue>> {
        self.hashed.find(self.hash(key), |v| v.kv.key == key)
    }

    /// Puts `value` in place of what its key held, which it returns.
    fn put(&mut self, value: Arc<CachedValue>) -> Option<Arc<CachedValue>> {
        let hash = self.hash(&value.kv.key);
        let hasher = &self.hasher;
        match self.hashed.entry(hash, |v| v.kv.key == value.kv.key, |v| hasher.hash_one(v.kv.key.as_str())) {
            hashbrown::hash_table::Entry::Occupied(mut e) => *e.get_mut() = value.clone(),
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert(value.clone());
            }
        }
        self.ordered.replace(ByKey(value)).map(|old| old.0)
    }

    fn remove(&mut self, key: &str) -> Option<Arc<CachedValue>> {
        if let Ok(e) = self.hashed.find_entry(self.hash(key), |v| v.kv.key == key) {
            e.remove();
        }
        self.ordered.take(key).map(|old| old.0)
    }

    /// The values from `start` on, in key order.
    fn range<'a>(&'a self, start: Bound<&'a str>) -> impl Iterator<Item = &'a Arc<CachedValue>> + 'a {
        self.ordered.range::<str, _>((start, Bound::Unbounded)).map(|v| &v.0)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ordered.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.ordered.is_empty()
    }
}

impl FromIterator<Arc<CachedValue>> for Objects {
    fn from_iter<I: IntoIterator<Item = Arc<CachedValue>>>(values: I) -> Self {
        let mut objects = Objects::default();
        for v in values {
            objects.put(v);
        }
        objects
    }
}

struct State {
    objects: Objects,
    /// The revision the cache reflects: the last event applied or progress
    /// reported, or the initial list's revision.
    revision: u64,
    window: VecDeque<Arc<CachedEvent>>,
    /// The window holds every event after this revision.
    complete_after: u64,
    /// Live events while the cache is filled; dropped (ending every client
    /// watch) when it loses its watch. Made only once the cache fills: the
    /// channel's ring is allocated whole, and most kinds are never cached.
    live: Option<broadcast::Sender<Arc<CachedEvent>>>,
    /// How many live events a watcher may be behind before it is cut off.
    buffer: usize,
    ready: bool,
}

impl State {
    /// Applies one backend event, reusing the cached previous value.
    fn apply(&mut self, e: WatchEvent) -> Arc<CachedEvent> {
        let value = CachedValue::new(e.kv);
        let cached_prev = match e.event_type {
            EventType::Put => self.objects.put(value.clone()),
            EventType::Delete => self.objects.remove(value.kv.key.as_str()),
            EventType::Progress => None,
        };
        // The map's previous value is the event's, unless the cache missed
        // something; then the event's own bytes are the truth.
        let prev = match (cached_prev, e.prev) {
            (Some(c), Some(p)) if c.kv.mod_revision == p.mod_revision => Some(c),
            (_, p) => p.map(CachedValue::new),
        };
        let event = CachedEvent::new(e.event_type, value, prev);
        self.revision = self.revision.max(event.revision());
        if self.window.len() == WINDOW {
            if let Some(gone) = self.window.pop_front() {
                self.complete_after = gone.revision();
            }
        }
        self.window.push_back(event.clone());
        if let Some(live) = &self.live {
            // No receivers just means nobody is watching.
            let _ = live.send(event.clone());
        }
        event
    }
}

pub struct Cacher {
    /// What the cache fills itself from; never read on a client's behalf.
    storage: Arc<dyn Storage>,
    prefix: String,
    state: Arc<RwLock<State>>,
    ready: tokio::sync::watch::Receiver<bool>,
    /// The revision the cache has reached, for reads waiting on it.
    reached: tokio::sync::watch::Sender<u64>,
    progress: ProgressRequests,
    /// Taken by the first read or watch the cache could serve: a resource
    /// nobody reads from memory costs no backend watch and no copy of its
    /// objects (a server registers some sixty kinds; most stay idle).
    start: std::sync::Mutex<Option<tokio::sync::watch::Sender<bool>>>,
    /// Set once `start` is taken: every read asks, and a load, unlike the
    /// lock, does not move the cache line between cores.
    started: std::sync::atomic::AtomicBool,
}

impl Cacher {
    /// A cache of everything under `prefix` (ending in '/'), filled and kept up to
    /// date by a background task from its first use on.
    pub fn new(storage: Arc<dyn Storage>, prefix: &str) -> Arc<Self> {
        Self::with_watcher_buffer(storage, prefix, WATCHER_BUFFER)
    }

    /// A cache whose watchers are cut off `buffer` events behind (tests
    /// make it small).
    pub fn with_watcher_buffer(storage: Arc<dyn Storage>, prefix: &str, buffer: usize) -> Arc<Self> {
        let state = Arc::new(RwLock::new(State {
            objects: Objects::default(),
            revision: 0,
            window: VecDeque::new(),
            complete_after: 0,
            live: None,
            buffer,
            ready: false,
        }));
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        Arc::new(Cacher {
            storage,
            prefix: prefix.to_string(),
            state,
            ready,
            reached: tokio::sync::watch::Sender::new(0),
            progress: ProgressRequests::default(),
            start: std::sync::Mutex::new(Some(ready_tx)),
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Starts filling the cache, once.
    fn ensure_started(&self) {
        use std::sync::atomic::Ordering;
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let taken = self.start.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.started.store(true, Ordering::Release);
        if let Some(ready_tx) = taken {
            let follow = Follow {
                storage: self.storage.clone(),
                prefix: self.prefix.clone(),
                state: self.state.clone(),
                ready: ready_tx,
                reached: self.reached.clone(),
                progress: self.progress.clone(),
            };
            tokio::spawn(follow.run());
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait_ready(&self) -> bool {
        self.ensure_started();
        let mut rx = self.ready.clone();
        let filled = matches!(tokio::time::timeout(READY_WAIT, rx.wait_for(|r| *r)).await, Ok(Ok(_)));
        filled
    }

    /// Whether a read at `freshness` can be answered from memory now.
    #[cfg(test)]
    fn serves(&self, freshness: Freshness) -> bool {
        self.serves_state(&self.read(), freshness)
    }

    fn serves_state(&self, s: &State, freshness: Freshness) -> bool {
        s.ready
            && match freshness {
                Freshness::Consistent => false,
                Freshness::Any => true,
                Freshness::NotOlderThan(rev) => s.revision >= rev,
            }
    }
}

/// What the cache's task fills it from and tells about its progress.
struct Follow {
    storage: Arc<dyn Storage>,
    prefix: String,
    state: Arc<RwLock<State>>,
    ready: tokio::sync::watch::Sender<bool>,
    reached: tokio::sync::watch::Sender<u64>,
    progress: ProgressRequests,
}

impl Follow {
    /// Fills the cache and follows the backend; on any watch failure (compaction,
    /// the backend going away) it ends every client watch, relists and starts over.
    async fn run(self) {
        let Follow { storage: inner, prefix, state, ready, reached, progress } = self;
        let mut backoff = Duration::from_millis(100);
        loop {
            let list = match inner.list(&prefix, ListOptions::default()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(prefix, "watch cache list failed: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let opts = WatchOptions { after: list.revision, progress: Some(progress.clone()) };
            let mut changes = match inner.watch(&prefix, opts).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(prefix, "watch cache watch failed: {e}");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            {
                let mut s = state.write().unwrap_or_else(|e| e.into_inner());
                s.objects = list.items.into_iter().map(CachedValue::new).collect();
                s.revision = list.revision;
                s.window.clear();
                s.complete_after = list.revision;
                s.live = Some(broadcast::channel(s.buffer).0);
                s.ready = true;
            }
            reached.send_replace(list.revision);
            let _ = ready.send(true);
            while let Some(event) = changes.next().await {
                match event {
                    Ok(e) => {
                        let revision = {
                            let mut s = state.write().unwrap_or_else(|e| e.into_inner());
                            match e.event_type {
                                EventType::Progress => s.revision = s.revision.max(e.revision()),
                                EventType::Put | EventType::Delete => {
                                    s.apply(e);
                                }
                            }
                            s.revision
                        };
                        reached.send_if_modified(|r| std::mem::replace(r, revision) != revision);
                    }
                    Err(e) => {
                        tracing::debug!(prefix, "watch cache lost its watch: {e}");
                        break;
                    }
                }
            }
            let mut s = state.write().unwrap_or_else(|e| e.into_inner());
            s.ready = false;
            // Dropping the sender ends every client watch; they resume.
            s.live = None;
            let _ = ready.send(false);
        }
    }
}

/// The reads and watches the cache can answer; `None` sends the caller to storage.
impl Cacher {
    /// `key`'s value (or its absence) from memory.
    pub fn get(&self, key: &str, freshness: Freshness) -> Option<Option<Arc<CachedValue>>> {
        if freshness != Freshness::Consistent {
            self.ensure_started();
        }
        if !key.starts_with(&self.prefix) {
            return None;
        }
        let s = self.read();
        self.serves_state(&s, freshness).then(|| s.objects.get(key).cloned())
    }

    /// Whether the cache, already in use, has caught up with `revision`
    /// (the store's current one, for a consistent read), asking its watch
    /// for progress while it waits; false sends the read to storage.
    pub async fn caught_up(&self, revision: u64) -> bool {
        let mut reached = self.reached.subscribe();
        let caught_up = |r: &u64| *r >= revision;
        if !self.filled() {
            return false;
        }
        if caught_up(&reached.borrow()) {
            return true;
        }
        if !self.progress.answered() {
            // Only a write to this resource would move it: no use waiting.
            return false;
        }
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        while tokio::time::Instant::now() < deadline {
            self.progress.request();
            if let Ok(r) = tokio::time::timeout(PROGRESS_EVERY, reached.wait_for(caught_up)).await {
                return r.is_ok() && self.filled();
            }
        }
        false
    }

    /// Whether the cache is in use and filled.
    pub fn filled(&self) -> bool {
        self.read().ready
    }

    /// Whether consistent reads can be answered from memory: the cache is
    /// in use and its backend reports progress.
    pub fn serves_consistent_reads(&self) -> bool {
        self.filled() && self.progress.answered()
    }

    /// `kv` as the cache holds it when it holds that very version (so a
    /// value read from storage reuses what readers derived from it), else
    /// a fresh value. Never starts the cache.
    pub fn shared(&self, kv: KeyValue) -> Arc<CachedValue> {
        match self.read().objects.get(kv.key.as_str()) {
            Some(c) if c.kv.mod_revision == kv.mod_revision => c.clone(),
            _ => CachedValue::new(kv),
        }
    }

    /// A page of the keys under `prefix` from memory, as `opts` pages it:
    /// at the revision the cache has reached when `freshness` allows, or at
    /// `opts.revision` (a snapshot) while the window still holds every
    /// change since.
    pub fn list(&self, prefix: &str, opts: ListOptions<'_>, freshness: Freshness) -> Option<CachedPage> {
        if freshness != Freshness::Consistent || opts.revision.is_some() {
            self.ensure_started();
        }
        if !prefix.starts_with(&self.prefix) {
            return None;
        }
        let s = self.read();
        let at = match opts.revision {
            Some(at) if s.ready && s.complete_after <= at && at <= s.revision => Some(at),
            Some(_) => return None,
            None if self.serves_state(&s, freshness) => None,
            None => return None,
        };
        let start = match opts.start_after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix),
        };
        let in_range = |k: &str| k.starts_with(prefix) && opts.start_after.is_none_or(|after| k > after);
        // The state at a snapshot: what the first later change to a key
        // replaced is what the key held then (None: it did not exist).
        let mut then: BTreeMap<&str, Option<&Arc<CachedValue>>> = BTreeMap::new();
        if let Some(at) = at {
            let later = s.window.partition_point(|e| e.revision() <= at);
            for e in s.window.range(later..) {
                let key = e.value.kv.key.as_str();
                if in_range(key) {
                    then.entry(key).or_insert(e.prev.as_ref());
                }
            }
        }
        let mut now = s.objects.range(start).map(|v| (v.kv.key.as_str(), v)).take_while(|(k, _)| k.starts_with(prefix));
        let mut undone = then.into_iter().peekable();
        let mut items = Vec::new();
        let mut remaining = 0;
        let mut next_now = now.next();
        loop {
            // The current keys merged with those changed since the snapshot,
            // in key order; a changed key has its value from then.
            let value = match (next_now, undone.peek()) {
                (Some((k, _)), Some((u, _))) if *u <= k => {
                    if *u == k {
                        next_now = now.next();
                    }
                    undone.next().and_then(|(_, then)| then)
                }
                (Some((_, v)), _) => {
                    next_now = now.next();
                    Some(v)
                }
                (None, Some(_)) => undone.next().and_then(|(_, then)| then),
                (None, None) => break,
            };
            let Some(value) = value else { continue };
            if opts.limit == 0 || items.len() < opts.limit {
                items.push(value.clone());
            } else {
                remaining += 1;
                if opts.remaining == Remaining::Any {
                    break;
                }
            }
        }
        Some(CachedPage { items, revision: at.unwrap_or(s.revision), remaining })
    }

    /// Changes under `prefix` after `after` from the cache's window, then
    /// live ones; waits a moment for the cache to fill.
    pub async fn watch(&self, prefix: &str, after: u64) -> Option<CachedStream> {
        if !prefix.starts_with(&self.prefix) || !self.wait_ready().await {
            return None;
        }
        let s = self.read();
        // Anything older than the window is the backend's to replay (or to
        // call compacted); a cache that lost its watch since it was ready
        // has nothing live to follow.
        let live = s.live.as_ref()?;
        if after < s.complete_after {
            return None;
        }
        let backlog: Vec<Arc<CachedEvent>> =
            s.window.iter().filter(|e| e.revision() > after && e.value.kv.key.starts_with(prefix)).cloned().collect();
        let last = s.revision.max(after);
        let prefix = prefix.to_string();
        let keep = move |e: &Arc<CachedEvent>| e.revision() > last && e.value.kv.key.starts_with(prefix.as_str());
        Some(super::replay_then_follow(backlog, live.subscribe(), keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::embedded::EmbeddedStorage;
    use crate::storage::PutOptions;
    use bytes::Bytes;

    async fn ready(c: &Cacher) {
        assert!(c.wait_ready().await, "the cache never filled");
    }

    #[test]
    fn both_indexes_of_the_objects_agree() {
        let kv = |key: &str, rev: u64| {
            CachedValue::new(KeyValue { key: key.into(), value: Bytes::new(), mod_revision: rev, create_revision: 1 })
        };
        let mut o: Objects = ["/r/b", "/r/a", "/r/c"].iter().map(|k| kv(k, 1)).collect();
        let replaced = o.put(kv("/r/a", 2)).expect("a was there");
        assert_eq!(replaced.kv.mod_revision, 1);
        assert_eq!(o.get("/r/a").map(|v| v.kv.mod_revision), Some(2));
        assert_eq!(o.remove("/r/b").map(|v| v.kv.key.clone()).as_deref(), Some("/r/b"));
        assert!(o.get("/r/b").is_none() && o.remove("/r/b").is_none());
        let keys: Vec<_> = o.range(Bound::Excluded("/r/a")).map(|v| v.kv.key.as_str()).collect();
        assert_eq!(keys, ["/r/c"]);
        assert_eq!((o.len(), o.hashed.len()), (2, 2));
    }

    #[test]
    fn slots_per_reader_go_with_it() {
        let kv = KeyValue { key: "/k".into(), value: Bytes::from_static(b"1"), mod_revision: 2, create_revision: 2 };
        let v = CachedValue::new(kv);
        let (r1, r2) = (Reader::default(), Reader::default());
        assert_eq!(v.slot_get::<u32>(&r1), None);
        assert_eq!(*v.slot_set(&r1, Arc::new(1u32)), 1);
        assert_eq!(*v.slot_set(&r1, Arc::new(9u32)), 1, "a filled slot keeps what it holds");
        assert_eq!(v.slot_get::<u32>(&r1).as_deref(), Some(&1), "a reader finds its slot again");
        assert_eq!(v.slot_get::<u32>(&r2), None, "another reader has its own");
        v.slot_set(&r2, Arc::new(2u32));
        assert!(matches!(&*v.slots.list(), SlotList::Many(l) if l.len() == 2));
        drop(r1);
        let r3 = Reader::default();
        assert_eq!(v.slot_get::<u32>(&r3), None);
        v.slot_set(&r3, Arc::new(3u32));
        assert!(matches!(&*v.slots.list(), SlotList::Many(l) if l.len() == 2), "the slot of a reader gone is dropped");
        assert_eq!(v.slot_get::<u32>(&r2).as_deref(), Some(&2));
    }

    /// Concurrent callers share one computation; the slot then holds the
    /// value itself, and a failed computation leaves the next caller to try.
    #[tokio::test]
    async fn slots_fill_once() {
        let kv = KeyValue { key: "/k".into(), value: Bytes::from_static(b"1"), mod_revision: 2, create_revision: 2 };
        let v = CachedValue::new(kv);
        let r = Reader::default();
        let failed: Result<Arc<u32>, &str> = v.slot_get_or_try_init(&r, || async { Err("no") }).await;
        assert_eq!(failed, Err("no"));
        assert_eq!(v.slot_get::<u32>(&r), None);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let (gate, open) = tokio::sync::oneshot::channel::<()>();
        let init = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = open.await;
            Ok::<_, ()>(Arc::new(7u32))
        };
        let first = v.slot_get_or_try_init(&r, init);
        let second = v.slot_get_or_try_init(&r, || async { Ok::<_, ()>(Arc::new(8u32)) });
        let opener = async {
            tokio::task::yield_now().await;
            let _ = gate.send(());
        };
        let (a, b, ()) = tokio::join!(first, second, opener);
        assert_eq!((*a.unwrap(), *b.unwrap()), (7, 7), "the second caller waited for the first");
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(v.slot_get::<u32>(&r).as_deref(), Some(&7), "the slot holds the value, not the cell");
    }

    #[tokio::test]
    async fn idle_until_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        inner.create("/registry/cm/a/x", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap();
        let c = Cacher::new(inner.clone(), "/registry/cm/");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!c.read().ready && c.read().objects.is_empty(), "nothing is read before the cache is used");
        assert!(c.read().live.is_none(), "no ring of live events is allocated for a cache never used");
        // A consistent read is storage's and does not start the cache.
        assert!(c.get("/registry/cm/a/x", Freshness::Consistent).is_none());
        assert!(c.start.lock().unwrap().is_some());
        assert!(c.list("/registry/cm/", ListOptions::default(), Freshness::Any).is_none(), "not filled yet");
        ready(&c).await;
        assert_eq!(c.read().objects.len(), 1);
        assert!(c.read().live.is_some(), "a filled cache broadcasts live events");
    }

    #[tokio::test]
    async fn serves_reads_and_fans_out_watches() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let r1 = inner.create("/registry/cm/a/x", Bytes::from_static(b"1"), PutOptions::default()).await.unwrap();
        inner.create("/registry/other/y", Bytes::from_static(b"-"), PutOptions::default()).await.unwrap();
        let c = Cacher::new(inner.clone(), "/registry/cm/");
        ready(&c).await;
        let l = c.list("/registry/cm/", ListOptions::default(), Freshness::Any).unwrap();
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.items[0].kv.mod_revision, r1);
        assert!(c.list("/registry/other/", ListOptions::default(), Freshness::Any).is_none(), "outside its prefix");

        let mut w1 = c.watch("/registry/cm/", l.revision).await.unwrap();
        let mut w2 = c.watch("/registry/cm/a/", l.revision).await.unwrap();
        let r2 = inner.update("/registry/cm/a/x", Bytes::from_static(b"2"), r1, PutOptions::default()).await.unwrap();
        for w in [&mut w1, &mut w2] {
            let e = w.next().await.unwrap().unwrap();
            assert_eq!((e.revision(), e.value.kv.value.as_ref()), (r2, b"2".as_ref()));
        }
        // Reads at a version the cache has reached come from memory and see the write.
        let got = c.get("/registry/cm/a/x", Freshness::NotOlderThan(r2)).unwrap().unwrap();
        assert_eq!(got.kv.value.as_ref(), b"2");
        // A watch resuming from before the write replays it from the window.
        let mut w3 = c.watch("/registry/cm/", l.revision).await.unwrap();
        assert_eq!(w3.next().await.unwrap().unwrap().revision(), r2);
        let (_, r3) = inner.delete("/registry/cm/a/x", None).await.unwrap();
        let e = w3.next().await.unwrap().unwrap();
        assert_eq!((e.event_type, e.revision()), (EventType::Delete, r3));
        // The cache follows the backend asynchronously: once it has reached the
        // delete's revision, its reads agree.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !c.serves(Freshness::NotOlderThan(r3)) {
            assert!(std::time::Instant::now() < deadline, "the cache never reached revision {r3}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(c.list("/registry/cm/", ListOptions::default(), Freshness::NotOlderThan(r3)).unwrap().items.is_empty());
        assert!(matches!(c.get("/registry/cm/a/x", Freshness::Any), Some(None)));
    }
}
