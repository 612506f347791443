//! Helpers shared by generic-server's integration tests.
#![allow(dead_code)]

pub mod etcd;

use std::sync::Arc;
use std::time::Duration;

use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::etcd::EtcdStorage;
use generic_server::storage::Storage;

/// A backend under test and whatever must live as long as it (a temp dir, an
/// etcd process).
pub struct Backend {
    pub storage: Arc<dyn Storage>,
    pub etcd: Option<EtcdStorage>,
    pub server: Option<etcd::EtcdServer>,
    _dir: Option<tempfile::TempDir>,
}

pub fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = EmbeddedStorage::open(&dir.path().join("db")).expect("open embedded storage");
    Backend { storage: Arc::new(storage), etcd: None, server: None, _dir: Some(dir) }
}

/// Request timeout the etcd tests use: short, so that "fails within its timeout"
/// is quick to observe.
pub const ETCD_TEST_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn etcd() -> Backend {
    etcd_with_prefix("/registry").await
}

pub async fn etcd_with_prefix(prefix: &str) -> Backend {
    let server = tokio::task::spawn_blocking(etcd::EtcdServer::start).await.expect("starting etcd");
    let storage = EtcdStorage::connect_with_timeout(&[server.client_url()], prefix, None, ETCD_TEST_TIMEOUT)
        .await
        .expect("connect to etcd");
    Backend { storage: Arc::new(storage.clone()), etcd: Some(storage), server: Some(server), _dir: None }
}
