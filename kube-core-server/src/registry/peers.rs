//! The Stores a subresource handler reads besides its own (a pod's node, a
//! service's endpoints, the PodDisruptionBudgets an eviction consults): bound
//! once the server has built every Store, and held weakly, as the Stores hold
//! their handlers.

use std::sync::{Arc, OnceLock, Weak};

use k8s_openapi::api::core::v1::{Endpoints, Node};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use generic_server::registry::Store;
use generic_server::status::StatusError;

#[derive(Default)]
pub struct Peers {
    nodes: OnceLock<Weak<Store>>,
    endpoints: OnceLock<Weak<Store>>,
    budgets: OnceLock<Weak<Store>>,
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
}
