//! The Stores a subresource handler reads besides its own (a pod's node, a
//! service's endpoints, the PodDisruptionBudgets an eviction consults, the
//! pods a Binding assigns, the objects a ServiceAccount token names): bound
//! once the server has built every Store, and held weakly, as the Stores hold
//! their handlers.

use std::sync::{Arc, OnceLock, Weak};

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use serde_json::Value;

use generic_server::registry::Store;
use generic_server::status::StatusError;

#[derive(Default)]
pub struct Peers {
    nodes: OnceLock<Weak<Store>>,
    endpoints: OnceLock<Weak<Store>>,
    budgets: OnceLock<Weak<Store>>,
    pods: OnceLock<Weak<Store>>,
    secrets: OnceLock<Weak<Store>>,
    service_accounts: OnceLock<Weak<Store>>,
}

impl Peers {
    /// Remembers `store` if it is one the handlers read.
    pub fn bind(&self, store: &Arc<Store>) {
        let slot = if store.info.is::<Node>() {
            &self.nodes
        } else if store.info.is::<Endpoints>() {
            &self.endpoints
        } else if store.info.is::<PodDisruptionBudget>() {
            &self.budgets
        } else if store.info.is::<Pod>() {
            &self.pods
        } else if store.info.is::<Secret>() {
            &self.secrets
        } else if store.info.is::<ServiceAccount>() {
            &self.service_accounts
        } else {
            return;
        };
        let _ = slot.set(Arc::downgrade(store));
    }

    pub fn nodes(&self) -> Option<Arc<Store>> {
        self.nodes.get().and_then(Weak::upgrade)
    }

    pub fn endpoints(&self) -> Option<Arc<Store>> {
        self.endpoints.get().and_then(Weak::upgrade)
    }

    /// The PodDisruptionBudget Store; every server has one, so its absence is
    /// the server's fault.
    pub fn budgets(&self) -> Result<Arc<Store>, StatusError> {
        self.budgets
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| StatusError::internal("the poddisruptionbudgets store is not ready"))
    }

    /// The pod Store, for the `bindings` resource.
    pub fn pods(&self) -> Result<Arc<Store>, StatusError> {
        self.pods.get().and_then(Weak::upgrade).ok_or_else(|| StatusError::internal("the pods store is not ready"))
    }

    pub fn secrets(&self) -> Result<Arc<Store>, StatusError> {
        self.secrets
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| StatusError::internal("the secrets store is not ready"))
    }

    fn by_plural(&self, resource: &str) -> Option<Arc<Store>> {
        let slot = match resource {
            "serviceaccounts" => &self.service_accounts,
            "pods" => &self.pods,
            "secrets" => &self.secrets,
            "nodes" => &self.nodes,
            _ => return None,
        };
        slot.get().and_then(Weak::upgrade)
    }
}

/// What a ServiceAccount token's validation reads: the Stores themselves, so
/// a deleted or recreated object counts at once.
#[async_trait::async_trait]
impl generic_server::serviceaccount::ObjectLookup for Peers {
    async fn get(&self, resource: &str, namespace: &str, name: &str) -> Result<Option<Value>, String> {
        let store = self.by_plural(resource).ok_or_else(|| format!("the {resource} store is not ready"))?;
        match store.get(namespace, name).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.code == 404 => Ok(None),
            Err(e) => Err(e.message),
        }
    }
}
