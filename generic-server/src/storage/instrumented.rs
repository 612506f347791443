//! A [`Storage`] decorator that times every call into the backend as upstream's
//! etcd_request_duration_seconds{operation,type} (upstream's name, kept for the
//! embedded backend too so that one dashboard serves both), and offers the
//! backend to apiserver_storage_objects. It changes no result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Freshness, KeyValue, ListResult, Result, Storage, WatchStream};
use crate::metrics;

pub struct InstrumentedStorage {
    inner: Arc<dyn Storage>,
}

impl InstrumentedStorage {
    /// Wraps `inner`; its objects are what /metrics counts.
    pub fn wrap(inner: Arc<dyn Storage>) -> Arc<dyn Storage> {
        metrics::global().count_objects_in(inner.clone());
        Arc::new(InstrumentedStorage { inner })
    }
}

fn observe(operation: &str, key: &str, started: Instant) {
    metrics::global().observe_storage(operation, key, started.elapsed());
}

/// Upstream's operation names (etcd3 store): a count is "listWithCount".
mod op {
    pub const GET: &str = "get";
    pub const LIST: &str = "list";
    pub const CREATE: &str = "create";
    pub const UPDATE: &str = "update";
    pub const DELETE: &str = "delete";
    pub const COUNT: &str = "listWithCount";
}

#[async_trait]
impl Storage for InstrumentedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get(key).await;
        observe(op::GET, key, t);
        r
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list(prefix, start_after, limit).await;
        observe(op::LIST, prefix, t);
        r
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.create(key, value).await;
        observe(op::CREATE, key, t);
        r
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.update(key, value, expected).await;
        observe(op::UPDATE, key, t);
        r
    }

    async fn create_with_ttl(&self, key: &str, value: Bytes, ttl: Duration) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.create_with_ttl(key, value, ttl).await;
        observe(op::CREATE, key, t);
        r
    }

    async fn update_with_ttl(&self, key: &str, value: Bytes, expected: u64, ttl: Duration) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.update_with_ttl(key, value, expected, ttl).await;
        observe(op::UPDATE, key, t);
        r
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        let t = Instant::now();
        let r = self.inner.delete(key, expected).await;
        observe(op::DELETE, key, t);
        r
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let t = Instant::now();
        let r = self.inner.count(prefix).await;
        observe(op::COUNT, prefix, t);
        r
    }

    // Not a request upstream times: it names no resource.
    async fn current_revision(&self) -> Result<u64> {
        self.inner.current_revision().await
    }

    // A watch lasts as long as its client; upstream times no watch either.
    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        self.inner.watch(prefix, after).await
    }

    async fn get_at(&self, key: &str, freshness: Freshness) -> Result<Option<KeyValue>> {
        let t = Instant::now();
        let r = self.inner.get_at(key, freshness).await;
        observe(op::GET, key, t);
        r
    }

    async fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: u64,
    ) -> Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list_at_revision(prefix, start_after, limit, revision).await;
        observe(op::LIST, prefix, t);
        r
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        freshness: Freshness,
    ) -> Result<ListResult> {
        let t = Instant::now();
        let r = self.inner.list_at(prefix, start_after, limit, freshness).await;
        observe(op::LIST, prefix, t);
        r
    }
}
