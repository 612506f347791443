//! The quota controller (upstream pkg/controller/resourcequota, which a
//! controller-manager would run): an informer on ResourceQuotas recomputes a
//! quota's status when it appears or its spec changes; watches on the
//! resources whose deletion frees usage (upstream's replenishment) recompute
//! the quotas of the namespace an object left; and every quota is
//! recomputed periodically, which also corrects a charge whose write then
//! failed and counts deletions of resources nobody watches.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::store::WatchStart;
use generic_server::registry::{ListOptions, Store, StoreRegistry, WatchEventType};
use generic_server::status::StatusError;

use super::evaluator::CORE_EVALUATED;
use super::{needs_sync, Inner};

/// How often every quota is recomputed (upstream's --resource-quota-sync-period
/// is 5 minutes, but its monitors see every resource's deletions; these
/// watches cover only the core evaluated ones).
const RESYNC_EVERY: Duration = Duration::from_secs(30);

pub(super) fn spawn(inner: Arc<Inner>, quotas: Arc<Store>, registry: &Arc<StoreRegistry>) {
    let (tx, rx) = unbounded_channel();
    let _ = inner.queue.set(tx);
    let informer = Informer::new(quotas);
    let on_change = {
        let inner = inner.clone();
        move |change: Change<'_>| {
            let ns = meta::namespace(change.object()).to_string();
            {
                let mut counts = inner.namespaces.lock().unwrap_or_else(|e| e.into_inner());
                match &change {
                    Change::Added(_) => *counts.entry(ns.clone()).or_default() += 1,
                    Change::Deleted(_) => {
                        if let Some(n) = counts.get_mut(&ns) {
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                counts.remove(&ns);
                            }
                        }
                    }
                    Change::Updated { .. } => {}
                }
            }
            let stale = match &change {
                Change::Added(_) => true,
                Change::Updated { new, .. } => needs_sync(new),
                Change::Deleted(_) => false,
            };
            if stale {
                queue(&inner, ns);
            }
        }
    };
    informer.spawn(on_change);
    for store in registry.namespaced().into_iter().filter(|s| s.info.group.is_empty()) {
        if CORE_EVALUATED.contains(&store.info.plural.as_str()) {
            tokio::spawn(replenish(inner.clone(), store));
        }
    }
    tokio::spawn(work(inner.clone(), rx));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let namespaces: Vec<String> =
                inner.namespaces.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
            for ns in namespaces {
                queue(&inner, ns);
            }
        }
    });
}

fn queue(inner: &Inner, namespace: String) {
    if let Some(tx) = inner.queue.get() {
        let _ = tx.send(namespace);
    }
}

/// Whether a change of pod `obj` frees usage: its deletion, or its finishing.
fn pod_frees_usage(event: WatchEventType, obj: &Value) -> bool {
    event == WatchEventType::Deleted
        || (event == WatchEventType::Modified
            && matches!(obj.pointer("/status/phase").and_then(Value::as_str), Some("Failed" | "Succeeded")))
}

/// Follows one Store's changes, queueing the namespaces where usage fell:
/// deletions, read from keys alone, and for pods the ones that finished.
async fn replenish(inner: Arc<Inner>, store: Arc<Store>) {
    let pods = store.info.is::<k8s_openapi::api::core::v1::Pod>();
    loop {
        match freed(&store, pods).await {
            Ok(mut namespaces) => {
                while let Some(ns) = namespaces.next().await {
                    if inner.holds_quotas(&ns) {
                        queue(&inner, ns);
                    }
                }
            }
            Err(e) => tracing::warn!(resource = %store.info.plural, error = %e, "quota replenishment watch failed"),
        }
        // The periodic resync covers what happened between watches.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The namespaces where `store`'s changes free usage, from now on.
async fn freed(store: &Arc<Store>, pods: bool) -> Result<BoxStream<'static, String>, StatusError> {
    if !pods {
        return store.deleted_namespaces().await;
    }
    let events = store.watch("", &ListOptions::default(), WatchStart::Now).await?;
    Ok(events
        .filter_map(|e| {
            let object = e.object.value();
            let ns = pod_frees_usage(e.event_type, &object).then(|| meta::namespace(&object).to_string());
            futures::future::ready(ns)
        })
        .boxed())
}

/// Recomputes the quotas of queued namespaces, each once per batch.
async fn work(inner: Arc<Inner>, mut rx: UnboundedReceiver<String>) {
    while let Some(first) = rx.recv().await {
        let mut batch = BTreeSet::from([first]);
        while let Ok(ns) = rx.try_recv() {
            batch.insert(ns);
        }
        for ns in batch.into_iter().filter(|ns| inner.holds_quotas(ns)) {
            if let Err(e) = sync_namespace(&inner, &ns).await {
                tracing::debug!(namespace = %ns, error = %e, "quota recalculation failed; retrying");
                let inner = inner.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    queue(&inner, ns);
                });
            }
        }
    }
}

async fn sync_namespace(inner: &Inner, namespace: &str) -> Result<(), generic_server::status::StatusError> {
    let store = inner.quota_store()?;
    let _serial = inner.lock.lock().await;
    for quota in Inner::list(&store, namespace).await? {
        inner.sync(&quota).await?;
    }
    Ok(())
}
