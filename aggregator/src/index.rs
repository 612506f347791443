//! The in-memory view of every APIService (upstream's APIService lister), kept
//! current by a watch on the APIService Store. The proxy, discovery and the
//! controllers read it; a change bumps a generation that they can wait on.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;

use generic_server::registry::store::WatchStart;
use generic_server::registry::{ListOptions, Store, WatchEventType};

use crate::apiservice::ApiService;

pub struct ApiServiceIndex {
    by_name: RwLock<BTreeMap<String, ApiService>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for ApiServiceIndex {
    fn default() -> Self {
        ApiServiceIndex { by_name: RwLock::default(), changed: tokio::sync::watch::channel(0).0 }
    }
}

impl ApiServiceIndex {
    pub fn all(&self) -> Vec<ApiService> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The APIService of a group-version.
    pub fn for_group_version(&self, group: &str, version: &str) -> Option<ApiService> {
        let by_name = self.by_name.read().unwrap_or_else(|e| e.into_inner());
        by_name.get(&crate::apiservice::name_for(group, version)).cloned()
    }

    /// The APIServices of a group.
    pub fn for_group(&self, group: &str) -> Vec<ApiService> {
        self.by_name.read().unwrap_or_else(|e| e.into_inner()).values().filter(|s| s.group == group).cloned().collect()
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn replace(&self, all: BTreeMap<String, ApiService>) {
        *self.by_name.write().unwrap_or_else(|e| e.into_inner()) = all;
        self.changed.send_modify(|g| *g += 1);
    }

    fn put(&self, s: ApiService) {
        self.by_name.write().unwrap_or_else(|e| e.into_inner()).insert(s.name.clone(), s);
        self.changed.send_modify(|g| *g += 1);
    }

    fn remove(&self, name: &str) {
        self.by_name.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        self.changed.send_modify(|g| *g += 1);
    }

    /// Loads the current state, so the index is complete before serving.
    pub async fn load(&self, store: &Store) {
        if let Ok(list) = store.list("", &ListOptions::default()).await {
            let items = list.get("items").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
            self.replace(items.iter().map(ApiService::parse).map(|s| (s.name.clone(), s)).collect());
        }
    }

    /// Follows the Store forever. Each (re)started watch begins with the full
    /// state, which replaces the index at its closing bookmark, so nothing
    /// deleted while the watch was down lingers.
    pub async fn run(self: Arc<Self>, store: Arc<Store>) {
        loop {
            let stream =
                store.watch("", &ListOptions::default(), WatchStart::WithInitialEvents { bookmark: true }).await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("watching APIServices: {}", e.message);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut initial: Option<BTreeMap<String, ApiService>> = Some(BTreeMap::new());
            while let Some(ev) = stream.next().await {
                match (ev.event_type, initial.as_mut()) {
                    (WatchEventType::Bookmark, Some(_)) => {
                        if let Some(all) = initial.take() {
                            self.replace(all);
                        }
                    }
                    (WatchEventType::Added, Some(all)) => {
                        let s = ApiService::parse(&ev.object.value());
                        all.insert(s.name.clone(), s);
                    }
                    (WatchEventType::Added | WatchEventType::Modified, None) => {
                        self.put(ApiService::parse(&ev.object.value()))
                    }
                    (WatchEventType::Deleted, None) => self.remove(generic_server::meta::name(&ev.object.value())),
                    (WatchEventType::Error, _) => break,
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
