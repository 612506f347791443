//! core/v1 componentstatuses (upstream pkg/registry/core/componentstatus):
//! read-only and computed on every read, never stored. Upstream probes the
//! scheduler and controller-manager on their local ports and every etcd
//! server. This binary runs neither a scheduler nor a controller-manager and
//! is not told where any runs, so, like upstream's ComponentStatus REST when it
//! has no such servers to validate, it reports only the storage: `etcd-0`,
//! the etcd cluster or the embedded store it writes to, probed by reading its
//! current revision.
//!
//! The computing is a [`Storage`] of its own that the Store reads through, so
//! the Store's get/list, tables and output work unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use k8s_openapi::api::core::v1::ComponentStatus;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::storage::{
    GetOptions, KeyValue, ListOptions, ListResult, PutOptions, Result, Storage, StorageError, WatchOptions, WatchStream,
};

pub struct ComponentStatusStrategy;

pub fn registration() -> Registration {
    Registration::of::<ComponentStatus>(ComponentStatusStrategy)
        .short_names(&["cs"])
        .verbs(generic_server::discovery::VERBS_GET_LIST)
}

/// Upstream's probe timeout for a component.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The name upstream gives the first etcd server.
const STORAGE_COMPONENT: &str = "etcd-0";

/// The computed componentstatuses, read through as if stored under `root`.
pub struct ComponentStatuses {
    backend: Arc<dyn Storage>,
    root: String,
}

impl ComponentStatuses {
    /// `root` is the resource's key root ("/registry/componentstatuses").
    pub fn new(backend: Arc<dyn Storage>, root: &str) -> Self {
        ComponentStatuses { backend, root: format!("{}/", root.trim_end_matches('/')) }
    }

    /// Probes the storage; the object and the revision it was read at.
    async fn storage_status(&self) -> (Value, u64) {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, self.backend.current_revision()).await;
        let (condition, revision) = match probe {
            Ok(Ok(rev)) => (json!({"type": "Healthy", "status": "True", "message": "ok"}), rev),
            Ok(Err(e)) => (json!({"type": "Healthy", "status": "False", "error": e.to_string()}), 0),
            Err(_) => (json!({"type": "Healthy", "status": "False", "error": "context deadline exceeded"}), 0),
        };
        let obj = json!({
            "apiVersion": "v1",
            "kind": "ComponentStatus",
            "metadata": {"name": STORAGE_COMPONENT},
            "conditions": [condition],
        });
        (obj, revision)
    }

    async fn computed(&self) -> Result<KeyValue> {
        let (obj, revision) = self.storage_status().await;
        let value = serde_json::to_vec(&obj).map_err(|e| StorageError::Internal(e.to_string()))?;
        Ok(KeyValue {
            key: format!("{}{STORAGE_COMPONENT}", self.root),
            value: Bytes::from(value),
            mod_revision: revision,
            create_revision: revision,
        })
    }
}

fn read_only() -> StorageError {
    StorageError::Internal("componentstatuses are computed, not stored".into())
}

#[async_trait]
impl Storage for ComponentStatuses {
    async fn get(&self, key: &str, _opts: GetOptions) -> Result<Option<KeyValue>> {
        if key.strip_prefix(&self.root) != Some(STORAGE_COMPONENT) {
            return Ok(None);
        }
        Ok(Some(self.computed().await?))
    }

    async fn list(&self, prefix: &str, opts: ListOptions<'_>) -> Result<ListResult> {
        let kv = self.computed().await?;
        let revision = kv.mod_revision;
        let wanted = kv.key.starts_with(prefix) && opts.start_after.is_none_or(|after| kv.key.as_str() > after);
        Ok(ListResult { items: if wanted { vec![kv] } else { Vec::new() }, revision, remaining: 0 })
    }

    async fn create(&self, _key: &str, _value: Bytes, _opts: PutOptions) -> Result<u64> {
        Err(read_only())
    }

    async fn update(&self, _key: &str, _value: Bytes, _expected: u64, _opts: PutOptions) -> Result<u64> {
        Err(read_only())
    }

    async fn delete(&self, _key: &str, _expected: Option<u64>) -> Result<(KeyValue, u64)> {
        Err(read_only())
    }

    async fn count(&self, _prefix: &str) -> Result<u64> {
        Ok(1)
    }

    async fn current_revision(&self) -> Result<u64> {
        self.backend.current_revision().await
    }

    async fn watch(&self, _prefix: &str, _opts: WatchOptions) -> Result<WatchStream> {
        Err(read_only())
    }
}

impl Strategy for ComponentStatusStrategy {
    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Status", "string", "Status of the component conditions"),
            TableColumn::new("Message", "string", "Message of the component conditions"),
            TableColumn::new("Error", "string", "Error of the component conditions"),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let healthy = super::arr_at(obj, "/conditions").iter().find(|c| c.get("type") == Some(&json!("Healthy")));
        let (status, message, error) = match healthy {
            Some(c) => (
                if c.get("status") == Some(&json!("True")) { "Healthy" } else { "Unhealthy" },
                super::str_at(c, "/message"),
                super::str_at(c, "/error"),
            ),
            None => ("Unknown", "", ""),
        };
        vec![json!(generic_server::meta::name(obj)), json!(status), json!(message), json!(error)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::storage::embedded::EmbeddedStorage;

    #[tokio::test]
    async fn storage_health_is_computed() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let cs = ComponentStatuses::new(backend, "/registry/componentstatuses");
        let kv = cs.get("/registry/componentstatuses/etcd-0", GetOptions::default()).await.unwrap().unwrap();
        let obj: Value = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(obj["conditions"][0], json!({"type": "Healthy", "status": "True", "message": "ok"}));
        assert_eq!(ComponentStatusStrategy.table_row(&obj)[1], "Healthy");
        assert!(cs.get("/registry/componentstatuses/scheduler", GetOptions::default()).await.unwrap().is_none());
        assert_eq!(cs.list("/registry/componentstatuses/", ListOptions::default()).await.unwrap().items.len(), 1);
        assert!(cs.create("/registry/componentstatuses/x", Bytes::new(), PutOptions::default()).await.is_err());
    }
}
