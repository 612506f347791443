//! The watch cache (upstream's Cacher): one per resource, in front of the
//! backend. A single backend watch keeps an in-memory copy of the resource's
//! objects and a window of recent events; every client watch is served from it
//! (so a thousand watchers cost the backend one), and reads that accept any or a
//! not-older-than state are answered from memory.
//!
//! It passes writes and consistent reads straight through: it never decides an
//! object's state, only remembers what the backend said. A slow watcher is cut
//! off (its stream ends) rather than slowing the others; the client resumes
//! from its last resourceVersion.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::{EventType, Freshness, KeyValue, ListResult, Result, Storage, WatchEvent, WatchStream};

/// Recent events kept for watchers that resume from a resourceVersion.
const WINDOW: usize = 10_000;
/// Live events buffered per watcher before it is cut off as too slow.
const WATCHER_BUFFER: usize = 4_096;
/// How long a watch waits for the cache to fill before going to the backend.
const READY_WAIT: Duration = Duration::from_secs(5);

struct State {
    objects: BTreeMap<String, KeyValue>,
    /// The revision the cache reflects: the last event applied, or the initial
    /// list's revision.
    revision: u64,
    window: VecDeque<Arc<WatchEvent>>,
    /// Live events; replaced (ending every client watch) when the cache restarts.
    live: broadcast::Sender<Arc<WatchEvent>>,
    ready: bool,
}

pub struct Cacher {
    inner: Arc<dyn Storage>,
    prefix: String,
    state: Arc<RwLock<State>>,
    ready: tokio::sync::watch::Receiver<bool>,
    /// Taken by the first read or watch the cache could serve: a resource
    /// nobody reads from memory costs no backend watch and no copy of its
    /// objects (a server registers some sixty kinds; most stay idle).
    start: std::sync::Mutex<Option<tokio::sync::watch::Sender<bool>>>,
}

impl Cacher {
    /// A cache of everything under `prefix` (ending in '/'), filled and kept up to
    /// date by a background task from its first use on.
    pub fn new(inner: Arc<dyn Storage>, prefix: &str) -> Arc<Self> {
        let (live, _) = broadcast::channel(WATCHER_BUFFER);
        let state = Arc::new(RwLock::new(State {
            objects: BTreeMap::new(),
            revision: 0,
            window: VecDeque::new(),
            live,
            ready: false,
        }));
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        Arc::new(Cacher {
            inner,
            prefix: prefix.to_string(),
            state,
            ready,
            start: std::sync::Mutex::new(Some(ready_tx)),
        })
    }

    /// Starts filling the cache, once.
    fn ensure_started(&self) {
        let taken = self.start.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(ready_tx) = taken {
            tokio::spawn(run(self.inner.clone(), self.prefix.clone(), self.state.clone(), ready_tx));
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
    fn serves(&self, freshness: Freshness) -> bool {
        let s = self.read();
        s.ready
            && match freshness {
                Freshness::Consistent => false,
                Freshness::Any => true,
                Freshness::NotOlderThan(rev) => s.revision >= rev,
            }
    }
}

/// Fills the cache and follows the backend; on any watch failure (compaction,
/// the backend going away) it ends every client watch, relists and starts over.
async fn run(
    inner: Arc<dyn Storage>,
    prefix: String,
    state: Arc<RwLock<State>>,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let list = match inner.list(&prefix, None, 0).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(prefix, "watch cache list failed: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut changes = match inner.watch(&prefix, list.revision).await {
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
            s.objects = list.items.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
            s.revision = list.revision;
            s.window.clear();
            s.ready = true;
        }
        let _ = ready.send(true);
        while let Some(event) = changes.next().await {
            let event = match event {
                Ok(e) => Arc::new(e),
                Err(e) => {
                    tracing::debug!(prefix, "watch cache lost its watch: {e}");
                    break;
                }
            };
            let mut s = state.write().unwrap_or_else(|e| e.into_inner());
            match event.event_type {
                EventType::Put => {
                    s.objects.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventType::Delete => {
                    s.objects.remove(&event.kv.key);
                }
            }
            s.revision = s.revision.max(event.revision());
            if s.window.len() == WINDOW {
                s.window.pop_front();
            }
            s.window.push_back(event.clone());
            // No receivers just means nobody is watching.
            let _ = s.live.send(event);
        }
        let mut s = state.write().unwrap_or_else(|e| e.into_inner());
        s.ready = false;
        let (live, _) = broadcast::channel(WATCHER_BUFFER);
        // Dropping the old sender ends every client watch; they resume.
        s.live = live;
        let _ = ready.send(false);
    }
}

#[async_trait]
impl Storage for Cacher {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        self.inner.list(prefix, start_after, limit).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        self.inner.create(key, value).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64> {
        self.inner.update(key, value, expected).await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        self.inner.delete(key, expected).await
    }

    async fn create_with_ttl(&self, key: &str, value: Bytes, ttl: Duration) -> Result<u64> {
        self.inner.create_with_ttl(key, value, ttl).await
    }

    async fn update_with_ttl(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64> {
        self.inner.update_with_ttl(key, value, expected, ttl).await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        if self.serves(Freshness::Any) && prefix.starts_with(&self.prefix) {
            let s = self.read();
            return Ok(s
                .objects
                .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .count() as u64);
        }
        self.inner.count(prefix).await
    }

    async fn current_revision(&self) -> Result<u64> {
        self.inner.current_revision().await
    }

    async fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: u64,
    ) -> Result<ListResult> {
        self.inner.list_at_revision(prefix, start_after, limit, revision).await
    }

    async fn get_at(&self, key: &str, freshness: Freshness) -> Result<Option<KeyValue>> {
        if freshness != Freshness::Consistent {
            self.ensure_started();
        }
        if key.starts_with(&self.prefix) && self.serves(freshness) {
            return Ok(self.read().objects.get(key).cloned());
        }
        self.inner.get(key).await
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        freshness: Freshness,
    ) -> Result<ListResult> {
        if freshness != Freshness::Consistent {
            self.ensure_started();
        }
        if !(prefix.starts_with(&self.prefix) && self.serves(freshness)) {
            return self.inner.list(prefix, start_after, limit).await;
        }
        let s = self.read();
        let start = match start_after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Included(prefix),
        };
        let mut items = Vec::new();
        let mut remaining = 0;
        for (k, kv) in s.objects.range::<str, _>((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if limit == 0 || items.len() < limit {
                items.push(kv.clone());
            } else {
                remaining += 1;
            }
        }
        Ok(ListResult { items, revision: s.revision, remaining })
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        if !prefix.starts_with(&self.prefix) || !self.wait_ready().await {
            return self.inner.watch(prefix, after).await;
        }
        let from_window = {
            let s = self.read();
            let oldest = s.window.front().map(|e| e.revision()).unwrap_or(s.revision + 1);
            // The window answers for every revision from oldest-1 on; anything
            // older is the backend's to replay (or to call compacted).
            if after + 1 < oldest && after < s.revision {
                None
            } else {
                let backlog: Vec<WatchEvent> = s
                    .window
                    .iter()
                    .filter(|e| e.revision() > after && e.kv.key.starts_with(prefix))
                    .map(|e| (**e).clone())
                    .collect();
                let last = s.revision.max(after);
                Some((backlog, s.live.subscribe(), last))
            }
        };
        let Some((backlog, live, last)) = from_window else {
            return self.inner.watch(prefix, after).await;
        };
        Ok(super::replay_then_follow(backlog, live, prefix, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::embedded::EmbeddedStorage;

    async fn ready(c: &Cacher) {
        assert!(c.wait_ready().await, "the cache never filled");
    }

    #[tokio::test]
    async fn idle_until_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        inner.create("/registry/cm/a/x", Bytes::from_static(b"1")).await.unwrap();
        let c = Cacher::new(inner.clone(), "/registry/cm/");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!c.read().ready && c.read().objects.is_empty(), "nothing is read before the cache is used");
        // A consistent read goes to the backend and does not start the cache.
        assert!(c.get_at("/registry/cm/a/x", Freshness::Consistent).await.unwrap().is_some());
        assert!(c.start.lock().unwrap().is_some());
        c.list_at("/registry/cm/", None, 0, Freshness::Any).await.unwrap();
        ready(&c).await;
        assert_eq!(c.read().objects.len(), 1);
    }

    #[tokio::test]
    async fn serves_reads_and_fans_out_watches() {
        let dir = tempfile::tempdir().unwrap();
        let inner: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let r1 = inner.create("/registry/cm/a/x", Bytes::from_static(b"1")).await.unwrap();
        inner.create("/registry/other/y", Bytes::from_static(b"-")).await.unwrap();
        let c = Cacher::new(inner.clone(), "/registry/cm/");
        ready(&c).await;
        let l = c.list_at("/registry/cm/", None, 0, Freshness::Any).await.unwrap();
        assert_eq!(l.items.len(), 1);
        assert_eq!(l.items[0].mod_revision, r1);

        let mut w1 = c.watch("/registry/cm/", l.revision).await.unwrap();
        let mut w2 = c.watch("/registry/cm/a/", l.revision).await.unwrap();
        let r2 = c.update("/registry/cm/a/x", Bytes::from_static(b"2"), r1).await.unwrap();
        for w in [&mut w1, &mut w2] {
            let e = w.next().await.unwrap().unwrap();
            assert_eq!((e.revision(), e.kv.value.as_ref()), (r2, b"2".as_ref()));
        }
        // Reads at a version the cache has reached come from memory and see the write.
        let got = c.get_at("/registry/cm/a/x", Freshness::NotOlderThan(r2)).await.unwrap().unwrap();
        assert_eq!(got.value.as_ref(), b"2");
        // A watch resuming from before the write replays it from the window.
        let mut w3 = c.watch("/registry/cm/", r1).await.unwrap();
        assert_eq!(w3.next().await.unwrap().unwrap().revision(), r2);
        let (_, r3) = c.delete("/registry/cm/a/x", None).await.unwrap();
        let e = w3.next().await.unwrap().unwrap();
        assert_eq!((e.event_type, e.revision()), (EventType::Delete, r3));
        // The cache follows the backend asynchronously: once it has reached the
        // delete's revision, its count agrees.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !c.serves(Freshness::NotOlderThan(r3)) {
            assert!(std::time::Instant::now() < deadline, "the cache never reached revision {r3}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(c.count("/registry/cm/").await.unwrap(), 0);
    }
}
