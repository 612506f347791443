//! The embedded backend: a single redb file holding the current objects and the
//! store revision. Every write is one ACID transaction, so a crash never leaves an
//! object half-written and the revision never goes backwards.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};

use super::{KeyValue, ListResult, Result, Storage, StorageError};

/// key -> (mod_revision, create_revision, value)
const OBJECTS: TableDefinition<&str, (u64, u64, &[u8])> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

#[derive(Clone)]
pub struct EmbeddedStorage {
    db: Arc<Database>,
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

impl EmbeddedStorage {
    pub fn open(path: &Path) -> Result<Self> {
        let db = Database::create(path).map_err(internal)?;
        let txn = db.begin_write().map_err(internal)?;
        {
            txn.open_table(OBJECTS).map_err(internal)?;
            txn.open_table(META).map_err(internal)?;
        }
        txn.commit().map_err(internal)?;
        Ok(EmbeddedStorage { db: Arc::new(db) })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db)).await.map_err(internal)?
    }

    /// Runs `f` in a write transaction that also bumps the store revision; `f`
    /// gets the new revision. The transaction commits only if `f` succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut redb::Table<&str, (u64, u64, &[u8])>, u64) -> Result<T> + Send + 'static,
    {
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(internal)?;
            let out = {
                let mut meta = txn.open_table(META).map_err(internal)?;
                let rev = meta.get(REVISION).map_err(internal)?.map(|g| g.value()).unwrap_or(0) + 1;
                let mut objects = txn.open_table(OBJECTS).map_err(internal)?;
                let out = f(&mut objects, rev)?;
                meta.insert(REVISION, rev).map_err(internal)?;
                out
            };
            txn.commit().map_err(internal)?;
            Ok(out)
        })
        .await
    }
}

fn kv(key: &str, v: (u64, u64, &[u8])) -> KeyValue {
    KeyValue { key: key.to_string(), mod_revision: v.0, create_revision: v.1, value: Bytes::copy_from_slice(v.2) }
}

#[async_trait]
impl Storage for EmbeddedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let t = txn.open_table(OBJECTS).map_err(internal)?;
            Ok(t.get(key.as_str()).map_err(internal)?.map(|g| kv(&key, g.value())))
        })
        .await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(internal)?;
            let revision = txn
                .open_table(META)
                .map_err(internal)?
                .get(REVISION)
                .map_err(internal)?
                .map(|g| g.value())
                .unwrap_or(0);
            let t = txn.open_table(OBJECTS).map_err(internal)?;
            let start = start_after.clone().unwrap_or_else(|| prefix.clone());
            let mut items = Vec::new();
            let mut remaining = 0u64;
            for entry in t.range(start.as_str()..).map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
                let key = k.value();
                if !key.starts_with(prefix.as_str()) {
                    break;
                }
                if start_after.as_deref() == Some(key) {
                    continue;
                }
                if limit == 0 || items.len() < limit {
                    items.push(kv(key, v.value()));
                } else {
                    remaining += 1;
                }
            }
            Ok(ListResult { items, revision, remaining })
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        let key = key.to_string();
        self.write(move |t, rev| {
            if t.get(key.as_str()).map_err(internal)?.is_some() {
                return Err(StorageError::AlreadyExists(key));
            }
            t.insert(key.as_str(), (rev, rev, value.as_ref())).map_err(internal)?;
            Ok(rev)
        })
        .await
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64> {
        let key = key.to_string();
        self.write(move |t, rev| {
            let current = t.get(key.as_str()).map_err(internal)?.map(|g| kv(&key, g.value()));
            let Some(current) = current else {
                return Err(StorageError::NotFound(key));
            };
            if current.mod_revision != expected {
                return Err(StorageError::Conflict { key, current: Some(current) });
            }
            t.insert(key.as_str(), (rev, current.create_revision, value.as_ref())).map_err(internal)?;
            Ok(rev)
        })
        .await
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        let key = key.to_string();
        self.write(move |t, rev| {
            let current = t.get(key.as_str()).map_err(internal)?.map(|g| kv(&key, g.value()));
            let Some(current) = current else {
                return Err(StorageError::NotFound(key));
            };
            if expected.is_some_and(|e| e != current.mod_revision) {
                return Err(StorageError::Conflict { key, current: Some(current) });
            }
            t.remove(key.as_str()).map_err(internal)?;
            Ok((current, rev))
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        Ok(self.list(prefix, None, 1).await.map(|l| l.items.len() as u64 + l.remaining)?)
    }

    async fn current_revision(&self) -> Result<u64> {
        self.blocking(|db| {
            let txn = db.begin_read().map_err(internal)?;
            let meta = txn.open_table(META).map_err(internal)?;
            Ok(meta.get(REVISION).map_err(internal)?.map(|g| g.value()).unwrap_or(0))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn crud_and_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        let r1 = s.create("/registry/a/x", Bytes::from_static(b"1")).await.unwrap();
        assert!(matches!(s.create("/registry/a/x", Bytes::new()).await, Err(StorageError::AlreadyExists(_))));
        let r2 = s.create("/registry/a/y", Bytes::from_static(b"2")).await.unwrap();
        assert!(r2 > r1);
        assert!(matches!(s.update("/registry/a/x", Bytes::new(), r2).await, Err(StorageError::Conflict { .. })));
        let r3 = s.update("/registry/a/x", Bytes::from_static(b"3"), r1).await.unwrap();
        let got = s.get("/registry/a/x").await.unwrap().unwrap();
        assert_eq!((got.mod_revision, got.create_revision, got.value.as_ref()), (r3, r1, b"3".as_ref()));
        let l = s.list("/registry/a/", None, 1).await.unwrap();
        assert_eq!((l.items.len(), l.remaining, l.revision), (1, 1, r3));
        let l2 = s.list("/registry/a/", Some("/registry/a/x"), 0).await.unwrap();
        assert_eq!(l2.items[0].key, "/registry/a/y");
        assert_eq!(s.count("/registry/a/").await.unwrap(), 2);
        let (old, r4) = s.delete("/registry/a/y", None).await.unwrap();
        assert_eq!(old.value.as_ref(), b"2");
        assert_eq!(s.current_revision().await.unwrap(), r4);
        drop(s);
        let s = EmbeddedStorage::open(&dir.path().join("db")).unwrap();
        assert_eq!(s.current_revision().await.unwrap(), r4);
        assert!(s.get("/registry/a/y").await.unwrap().is_none());
    }
}
