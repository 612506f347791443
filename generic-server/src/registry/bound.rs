//! A Store that an admission plugin or subresource handler reads besides
//! its own (upstream's plugins read listers of shared informers): created
//! unbound, because the Stores are built with the chain that holds the
//! plugin, then bound once they exist and held weakly, so that no Store keeps
//! itself alive through its own admission chain or handlers.

use std::sync::{Arc, OnceLock, Weak};

use serde_json::Value;

use crate::registry::{ListOptions, Store};
use crate::status::StatusError;
use crate::storage::Freshness;

#[derive(Debug)]
pub struct BoundStore {
    store: OnceLock<Weak<Store>>,
    /// The resource, for the error of a plugin used before it was bound.
    resource: &'static str,
}

impl BoundStore {
    pub const fn new(resource: &'static str) -> Self {
        BoundStore { store: OnceLock::new(), resource }
    }

    /// Sets the Store (only the first call counts).
    pub fn bind(&self, store: &Arc<Store>) {
        let _ = self.store.set(Arc::downgrade(store));
    }

    /// The Store, or an internal error if it was never bound or is gone.
    pub fn store(&self) -> Result<Arc<Store>, StatusError> {
        self.store
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| StatusError::internal(format!("the {} store is not ready", self.resource)))
    }

    /// The cluster-scoped object `name`, None if there is none. Decoded once
    /// per version and shared: what these plugins look up (namespaces,
    /// classes) is few objects read by many requests.
    ///
    /// As upstream's plugins read their listers: from the watch cache, which
    /// may trail the latest write by a moment, and from storage only when
    /// the cache has no such object (one created just before the request
    /// that names it). A consistent read on every admission would put a
    /// revision read, and on etcd a quorum read, in front of every write.
    pub async fn find(&self, name: &str) -> Result<Option<Arc<Value>>, StatusError> {
        match self.read(name, Freshness::Any).await? {
            Some(obj) => Ok(Some(obj)),
            None => self.find_live(name).await,
        }
    }

    /// [`Self::find`] from the latest committed state, for a caller that
    /// knows the cached object may be out of date.
    pub async fn find_live(&self, name: &str) -> Result<Option<Arc<Value>>, StatusError> {
        self.read(name, Freshness::Consistent).await
    }

    async fn read(&self, name: &str, freshness: Freshness) -> Result<Option<Arc<Value>>, StatusError> {
        match self.store()?.get_shared("", name, freshness).await {
            Ok(obj) => Ok(Some(obj)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every object of the (cluster-scoped) resource.
    pub async fn list(&self) -> Result<Vec<Value>, StatusError> {
        let mut list = self.store()?.list("", &ListOptions::default()).await?;
        Ok(match list.get_mut("items").map(Value::take) {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        })
    }
}
