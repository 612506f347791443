//! The Stores a subresource handler reads besides its own (a pod's node, a
//! service's endpoints, the PodDisruptionBudgets an eviction consults, the
//! pods a Binding assigns, the objects a ServiceAccount token names): bound
//! once the server has built every Store, and held weakly, as the Stores hold
//! their handlers.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use serde_json::Value;

use generic_server::registry::{BoundStore, Store};
use generic_server::serviceaccount::{ObjectLookup, TokenObject};
use generic_server::status::StatusError;
use generic_server::storage::Freshness;

pub struct Peers {
    nodes: BoundStore,
    endpoints: BoundStore,
    budgets: BoundStore,
    pods: BoundStore,
    secrets: BoundStore,
    service_accounts: BoundStore,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            nodes: BoundStore::new("nodes"),
            endpoints: BoundStore::new("endpoints"),
            budgets: BoundStore::new("poddisruptionbudgets"),
            pods: BoundStore::new("pods"),
            secrets: BoundStore::new("secrets"),
            service_accounts: BoundStore::new("serviceaccounts"),
        }
    }
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
        slot.bind(store);
    }

    pub fn nodes(&self) -> Option<Arc<Store>> {
        self.nodes.store().ok()
    }

    pub fn endpoints(&self) -> Option<Arc<Store>> {
        self.endpoints.store().ok()
    }

    /// The PodDisruptionBudget Store; every server has one, so its absence is
    /// the server's fault.
    pub fn budgets(&self) -> Result<Arc<Store>, StatusError> {
        self.budgets.store()
    }

    /// The pod Store, for the `bindings` resource.
    pub fn pods(&self) -> Result<Arc<Store>, StatusError> {
        self.pods.store()
    }

    pub fn secrets(&self) -> Result<Arc<Store>, StatusError> {
        self.secrets.store()
    }

    fn token_store(&self, kind: TokenObject) -> &BoundStore {
        match kind {
            TokenObject::ServiceAccount => &self.service_accounts,
            TokenObject::Pod => &self.pods,
            TokenObject::Secret => &self.secrets,
            TokenObject::Node => &self.nodes,
        }
    }
}

/// What a ServiceAccount token's validation reads: the watch cache's copy,
/// and storage when the cache has not seen the object yet (upstream's getter:
/// the informers' listers with a live read behind them), so a token is
/// checked without a storage read or a copy of the object.
#[async_trait::async_trait]
impl ObjectLookup for Peers {
    async fn get(&self, kind: TokenObject, namespace: &str, name: &str) -> Result<Option<Arc<Value>>, String> {
        let store = self.token_store(kind).store().map_err(|e| e.message)?;
        for freshness in [Freshness::Any, Freshness::Consistent] {
            match store.get_shared(namespace, name, freshness).await {
                Ok(obj) => return Ok(Some(obj)),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.message),
            }
        }
        Ok(None)
    }
}
