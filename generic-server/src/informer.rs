//! A shared informer for in-process controllers (client-go's reflector and
//! informer, without a client): it lists a [`Store`], keeps the objects in
//! an in-memory cache, follows the Store's watch, and tells a handler about
//! every addition, change and removal. When the watch ends or fails it lists
//! again after a backoff and reports the difference, so a handler never
//! misses a deletion across a gap.
//!
//! Controllers built on it (kube-core-server's service account and root CA
//! publishers) read the cache rather than storage and queue work from the
//! callbacks; the namespace controller's hand-rolled loop could move onto it
//! the same way.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::meta;
use crate::registry::store::WatchStart;
use crate::registry::{ListOptions, Store, WatchEventType};

/// A change the informer observed.
#[derive(Debug)]
pub enum Change<'a> {
    Added(&'a Value),
    Updated { old: &'a Value, new: &'a Value },
    Deleted(&'a Value),
}

impl Change<'_> {
    /// The object as it is now (for a deletion, as it was last seen).
    pub fn object(&self) -> &Value {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Key = (String, String);
type Callback = dyn Fn(Change<'_>) + Send + Sync;

/// How long to wait before listing again after a failure: doubling from the
/// first to the last, reset once a watch delivers.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How many objects one list request of the informer reads: a resource of
/// a hundred thousand objects is listed in pages, never decoded all at once.
const LIST_PAGE: usize = 500;

pub struct Informer {
    store: Arc<Store>,
    /// Which objects it follows (its selectors); all by default.
    selection: ListOptions,
    /// The Store's own decoded objects, shared with its watch cache and every
    /// other reader rather than copied (the cache keeps them decoded while
    /// the informer holds them).
    cache: RwLock<HashMap<Key, Arc<Value>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

fn key_of(obj: &Value) -> Key {
    (meta::namespace(obj).to_string(), meta::name(obj).to_string())
}

/// Objects equal but for their resourceVersion are the same state.
fn revision(obj: &Value) -> &str {
    meta::resource_version(obj)
}

impl Informer {
    pub fn new(store: Arc<Store>) -> Arc<Informer> {
        Self::selecting(store, ListOptions::default())
    }

    /// An informer of the objects `selection`'s label and field selectors
    /// pick (a controller that cares about one name in every namespace
    /// keeps only those, not the whole resource).
    pub fn selecting(store: Arc<Store>, selection: ListOptions) -> Arc<Informer> {
        Arc::new(Informer { store, selection, cache: RwLock::default(), synced: tokio::sync::watch::channel(false).0 })
    }

    /// The cached object, if the informer has seen it.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.get(&(namespace.into(), name.into())).map(|o| Value::clone(o))
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<Value> {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).values().map(|o| Value::clone(o)).collect()
    }

    /// Waits until the first list is in the cache.
    pub async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Follows each Store with its own informer, telling `on_change` which
    /// source (`K`) changed, and returns once every first list is reported:
    /// the shape of an in-process index over several kinds (the authorizers').
    pub async fn follow_all<K: Copy + Send + Sync + 'static>(
        sources: Vec<(Arc<Store>, K)>,
        on_change: impl Fn(K, Change<'_>) + Send + Sync + 'static,
    ) {
        let on_change = Arc::new(on_change);
        let mut informers = Vec::new();
        for (store, source) in sources {
            let informer = Informer::new(store);
            let f = on_change.clone();
            informer.spawn(move |change| f(source, change));
            informers.push(informer);
        }
        for i in &informers {
            i.wait_synced().await;
        }
    }

    /// Runs the list and watch loop on the current runtime for as long as it
    /// runs, calling `on_change` for every change once it is in the cache.
    pub fn spawn(
        self: &Arc<Self>,
        on_change: impl Fn(Change<'_>) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let on_change: Arc<Callback> = Arc::new(on_change);
        tokio::spawn(async move {
            let mut backoff = BACKOFF_FIRST;
            loop {
                match me.list_and_watch(on_change.as_ref(), &mut backoff).await {
                    Ok(()) => tracing::debug!(resource = %me.store.info.plural, "informer watch ended; relisting"),
                    Err(e) => tracing::warn!(resource = %me.store.info.plural, error = %e, "informer failed; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        })
    }

    /// One list, the difference to the cache reported, then the watch from
    /// the list's revision until it ends.
    async fn list_and_watch(&self, on_change: &Callback, backoff: &mut Duration) -> Result<(), crate::StatusError> {
        let mut opts = ListOptions { limit: LIST_PAGE, ..self.selection.clone() };
        let mut items = Vec::new();
        let rev: u64 = loop {
            let page = self.store.list_objects("", &opts).await?;
            items.extend(page.values());
            // Later pages read the first one's snapshot, whose revision they report.
            match page.metadata.get("continue").and_then(Value::as_str) {
                Some(token) => opts.continue_token = Some(token.to_string()),
                None => {
                    let rv = page.metadata.get("resourceVersion").and_then(Value::as_str);
                    break rv.unwrap_or("0").parse().unwrap_or(0);
                }
            }
        };
        self.replace(items, on_change);
        self.synced.send_replace(true);
        let mut events = self.store.watch("", &self.selection, WatchStart::After(rev)).await?;
        while let Some(event) = events.next().await {
            match event.event_type {
                WatchEventType::Added | WatchEventType::Modified => self.upsert(event.object.value(), on_change),
                WatchEventType::Deleted => self.remove(&event.object.value(), on_change),
                WatchEventType::Bookmark => continue,
                // A compacted revision: relist.
                WatchEventType::Error => return Ok(()),
            }
            *backoff = BACKOFF_FIRST;
        }
        Ok(())
    }

    fn upsert(&self, obj: Arc<Value>, on_change: &Callback) {
        let key = key_of(&obj);
        let old = self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(key, obj.clone());
        match old {
            Some(old) if revision(&old) == revision(&obj) => {}
            Some(old) => on_change(Change::Updated { old: &old, new: &obj }),
            None => on_change(Change::Added(&obj)),
        }
    }

    fn remove(&self, obj: &Value, on_change: &Callback) {
        let old = self.cache.write().unwrap_or_else(|e| e.into_inner()).remove(&key_of(obj));
        if old.is_some() {
            on_change(Change::Deleted(obj));
        }
    }

    /// Makes the cache hold exactly `items`, reporting what changed.
    fn replace(&self, items: Vec<Arc<Value>>, on_change: &Callback) {
        let mut seen = std::collections::HashSet::new();
        for obj in items {
            seen.insert(key_of(&obj));
            self.upsert(obj, on_change);
        }
        let gone: Vec<Arc<Value>> = {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            cache.iter().filter(|(k, _)| !seen.contains(*k)).map(|(_, v)| v.clone()).collect()
        };
        for obj in gone {
            self.remove(&obj, on_change);
        }
    }
}
