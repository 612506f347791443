//! The registry of namespaced Stores across every server in the chain, which
//! the namespace controller empties when a namespace goes away.

use std::sync::{Arc, RwLock};

use super::Store;

/// The namespaced Stores the controller empties. Servers register theirs
/// (apiextensions adds one per namespaced custom resource as CRDs come and
/// go).
#[derive(Default)]
pub struct StoreRegistry {
    stores: RwLock<Vec<Arc<Store>>>,
}

impl StoreRegistry {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Adds a Store; cluster-scoped ones are ignored. Re-registering the same
    /// key root replaces the earlier Store.
    pub fn register(&self, store: Arc<Store>) {
        if !store.info.namespaced {
            return;
        }
        let mut s = self.stores.write().unwrap_or_else(|e| e.into_inner());
        s.retain(|x| x.info.key_root != store.info.key_root);
        s.push(store);
    }

    pub fn unregister(&self, key_root: &str) {
        self.stores.write().unwrap_or_else(|e| e.into_inner()).retain(|x| x.info.key_root != key_root);
    }

    pub fn namespaced(&self) -> Vec<Arc<Store>> {
        self.stores.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
