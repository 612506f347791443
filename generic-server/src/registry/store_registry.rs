//! The registry of Stores across every server in the chain: the namespace
//! controller empties the namespaced ones when a namespace goes away, and
//! admission finds a kind's Store in it (a policy's params).

use std::sync::{Arc, RwLock};

use super::Store;

/// The Stores of the chain, one per key root. Servers register theirs
/// (apiextensions adds one per custom resource as CRDs come and go).
#[derive(Default)]
pub struct StoreRegistry {
    stores: RwLock<Vec<Arc<Store>>>,
}

impl StoreRegistry {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Adds a Store. Re-registering the same key root replaces the earlier
    /// Store.
    pub fn register(&self, store: Arc<Store>) {
        let mut s = self.stores.write().unwrap_or_else(|e| e.into_inner());
        s.retain(|x| x.info.key_root != store.info.key_root);
        s.push(store);
    }

    pub fn unregister(&self, key_root: &str) {
        self.stores.write().unwrap_or_else(|e| e.into_inner()).retain(|x| x.info.key_root != key_root);
    }

    pub fn namespaced(&self) -> Vec<Arc<Store>> {
        self.stores.read().unwrap_or_else(|e| e.into_inner()).iter().filter(|s| s.info.namespaced).cloned().collect()
    }

    /// The Store of a kind, by group and kind (any served version).
    pub fn of_kind(&self, group: &str, kind: &str) -> Option<Arc<Store>> {
        let s = self.stores.read().unwrap_or_else(|e| e.into_inner());
        s.iter().find(|s| s.info.group == group && s.info.kind == kind).cloned()
    }

    /// The Store of a resource, by group and plural.
    pub fn of_resource(&self, group: &str, plural: &str) -> Option<Arc<Store>> {
        let s = self.stores.read().unwrap_or_else(|e| e.into_inner());
        s.iter().find(|s| s.info.group == group && s.info.plural == plural).cloned()
    }
}
