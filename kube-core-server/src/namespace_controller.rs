//! The namespace controller (upstream pkg/controller/namespace): empties a
//! namespace that is being deleted, across every namespaced Store, then
//! removes the `kubernetes` finalizer so the namespace itself goes.
//!
//! It wakes when the namespace strategy announces a deletion and also sweeps
//! periodically, so nothing is missed across restarts. The sweep also deletes
//! objects whose namespace no longer exists at all (possible only if a
//! namespace was removed without finalization), re-checking the namespace
//! before each such delete so a namespace created meanwhile is left alone.
//! It learns the namespaces in use from one key of each per Store
//! ([`Store::namespaces_in_use`]): a sweep that read every object cost a
//! server with 100k objects a full scan of its storage every resync.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use generic_server::meta;
use generic_server::registry::store::{DeleteOptions, DeleteResult};
use generic_server::registry::{ListOptions, Store, StoreRegistry, WriteOptions};
use generic_server::status::StatusError;

use crate::registry::namespace::{spec_finalizers, FINALIZER_KUBERNETES};

pub struct NamespaceController {
    namespaces: Arc<Store>,
    registry: Arc<StoreRegistry>,
    resync: Duration,
}

fn items(list: &Value) -> Vec<Value> {
    list.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
}

impl NamespaceController {
    pub fn new(namespaces: Arc<Store>, registry: Arc<StoreRegistry>) -> Self {
        NamespaceController { namespaces, registry, resync: Duration::from_secs(30) }
    }

    pub fn with_resync(mut self, every: Duration) -> Self {
        self.resync = every;
        self
    }

    /// Runs until the notification channel closes.
    pub async fn run(self, mut wake: UnboundedReceiver<String>) {
        let mut tick = tokio::time::interval(self.resync);
        loop {
            tokio::select! {
                got = wake.recv() => match got {
                    Some(name) => {
                        // Give the delete that announced it a moment to commit.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if let Err(e) = self.sync_one(&name).await {
                            tracing::warn!(namespace = %name, error = %e, "namespace cleanup failed");
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        tracing::warn!(error = %e, "namespace sweep failed");
                    }
                }
            }
        }
    }

    /// Looks at one namespace: empties it if terminating or gone.
    pub async fn sync_one(&self, name: &str) -> Result<(), StatusError> {
        match self.namespaces.get("", name).await {
            Ok(ns) if meta::meta_str(&ns, "deletionTimestamp").is_empty() => Ok(()),
            Ok(ns) => self.finish(&ns).await,
            Err(e) if e.is_not_found() => {
                self.delete_content(name).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Everything the periodic pass does.
    pub async fn sweep(&self) -> Result<(), StatusError> {
        let all = items(&self.namespaces.list("", &ListOptions::default()).await?);
        let mut existing = HashSet::new();
        for ns in &all {
            existing.insert(meta::name(ns).to_string());
            if !meta::meta_str(ns, "deletionTimestamp").is_empty() {
                if let Err(e) = self.finish(ns).await {
                    tracing::warn!(namespace = %meta::name(ns), error = %e, "namespace cleanup failed");
                }
            }
        }
        let mut orphaned = HashSet::new();
        for store in self.registry.namespaced() {
            // From the keys alone: a sweep every resync decodes no object.
            for ns in store.namespaces_in_use().await? {
                if !existing.contains(&ns) {
                    orphaned.insert(ns);
                }
            }
        }
        for ns in orphaned {
            if let Err(e) = self.sync_one(&ns).await {
                tracing::warn!(namespace = %ns, error = %e, "orphan cleanup failed");
            }
        }
        Ok(())
    }

    /// Deletes everything in `namespace`; returns how many objects remain
    /// (those still held by their own finalizers).
    pub async fn delete_content(&self, namespace: &str) -> Result<usize, StatusError> {
        let mut remaining = 0;
        for store in self.registry.namespaced() {
            // Names from the keys: the objects are never decoded here, nor
            // all read at once.
            for name in store.names_in(namespace).await? {
                match store.delete(namespace, &name, &DeleteOptions::default()).await {
                    Ok(DeleteResult::Deleted(_)) => {}
                    Ok(DeleteResult::Pending(_)) => remaining += 1,
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(remaining)
    }

    /// For a namespace marked for deletion: mark it Terminating, empty it,
    /// and once empty drop the `kubernetes` finalizer so the Store removes it.
    async fn finish(&self, ns: &Value) -> Result<(), StatusError> {
        let name = meta::name(ns).to_string();
        if crate::registry::str_at(ns, "/status/phase") != "Terminating" {
            let mut marked = ns.clone();
            crate::registry::child(&mut marked, "status").insert("phase".into(), json!("Terminating"));
            let status = generic_server::registry::Subresource::Status;
            self.namespaces.update("", &name, marked, Some(&status), &WriteOptions::default()).await?;
        }
        if self.delete_content(&name).await? > 0 {
            return Ok(());
        }
        if !spec_finalizers(ns).iter().any(|f| f == FINALIZER_KUBERNETES) {
            return Ok(());
        }
        let finalize = generic_server::registry::Subresource::Finalize;
        let result = self
            .namespaces
            .update_with("", &name, Some(&finalize), &WriteOptions::default(), |current| {
                let mut next = current.cloned().ok_or_else(|| StatusError::not_found("", "namespaces", &name))?;
                let kept: Vec<Value> = spec_finalizers(&next)
                    .into_iter()
                    .filter(|f| f != FINALIZER_KUBERNETES)
                    .map(Value::String)
                    .collect();
                crate::registry::child(&mut next, "spec").insert("finalizers".into(), Value::Array(kept));
                meta::remove_meta(&mut next, "resourceVersion");
                Ok(next)
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
