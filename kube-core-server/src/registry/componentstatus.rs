//! core/v1 componentstatuses (upstream pkg/registry/core/componentstatus):
//! read-only and computed on every read, never stored. Upstream probes the
//! scheduler and controller-manager on their local ports and every etcd
//! server. This binary runs neither a scheduler nor a controller-manager and
//! is not told where any runs, so, like upstream's ComponentStatus REST when it
//! has no such servers to validate, it reports only the storage: `etcd-0`,
//! the etcd cluster or the embedded store it writes to, probed by reading its
//! current revision.
//!
//! Served as a [`ReadOnly`] kind (upstream's REST is a Getter and Lister
//! with no Store), with upstream's deprecation warning.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use k8s_openapi::api::core::v1::ComponentStatus;

use generic_server::registry::{ReadOnly, Reader, TableColumn};
use generic_server::status::StatusError;
use generic_server::storage::Storage;

/// Upstream's probe timeout for a component.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The name upstream gives the first etcd server.
const STORAGE_COMPONENT: &str = "etcd-0";

/// componentstatuses, reporting the health of `storage`.
pub fn read_only(storage: Arc<dyn Storage>) -> ReadOnly {
    ReadOnly::of::<ComponentStatus>(ComponentStatuses { storage })
        .short_names(&["cs"])
        .deprecated("v1 ComponentStatus is deprecated in v1.19+")
}

/// The computed componentstatuses.
pub struct ComponentStatuses {
    storage: Arc<dyn Storage>,
}

impl ComponentStatuses {
    /// Probes the storage.
    async fn storage_status(&self) -> Value {
        let probe = tokio::time::timeout(PROBE_TIMEOUT, self.storage.current_revision()).await;
        let condition = match probe {
            Ok(Ok(_)) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
            Ok(Err(e)) => json!({"type": "Healthy", "status": "False", "error": e.to_string()}),
            Err(_) => json!({"type": "Healthy", "status": "False", "error": "context deadline exceeded"}),
        };
        json!({
            "apiVersion": "v1",
            "kind": "ComponentStatus",
            "metadata": {"name": STORAGE_COMPONENT},
            "conditions": [condition],
        })
    }
}

#[async_trait]
impl Reader for ComponentStatuses {
    async fn get(&self, _namespace: &str, name: &str) -> Result<Option<Value>, StatusError> {
        if name != STORAGE_COMPONENT {
            return Ok(None);
        }
        Ok(Some(self.storage_status().await))
    }

    async fn list(&self, _namespace: &str) -> Result<Vec<Value>, StatusError> {
        Ok(vec![self.storage_status().await])
    }

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
        let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let cs = ComponentStatuses { storage };
        let obj = cs.get("", "etcd-0").await.unwrap().unwrap();
        assert_eq!(obj["conditions"][0], json!({"type": "Healthy", "status": "True", "message": "ok"}));
        assert_eq!(cs.table_row(&obj)[1], "Healthy");
        assert!(cs.get("", "scheduler").await.unwrap().is_none());
        assert_eq!(cs.list("").await.unwrap(), [obj]);
        let resource = read_only(cs.storage.clone());
        assert_eq!(
            (resource.info.verbs, resource.info.short_names.as_slice()),
            (&["get", "list"][..], &["cs".to_string()][..])
        );
        assert!(resource.info.storage_version_hash.is_empty());
    }
}
