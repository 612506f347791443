//! Versions of one CRD share one storage key space, holding objects in the
//! storage version. [`VersionedStorage`] is the Storage a version's Store
//! sees: it converts what it writes to the storage version and what it reads
//! to its own version (None strategy: rewrite apiVersion; Webhook: a
//! ConversionReview to the CRD's webhook), then defaults and prunes what it
//! read by the version's schema, as upstream does on read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use generic_server::storage::{
    Freshness, KeyValue, ListResult, Result, Storage, StorageError, WatchEvent, WatchStream,
};

use crate::crd::Conversion;
use crate::schema;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Converter {
    pub group: String,
    pub conversion: Conversion,
}

fn api_version_of(v: &Value) -> &str {
    v.get("apiVersion").and_then(Value::as_str).unwrap_or_default()
}

impl Converter {
    /// Converts `objects` to `group/version`.
    pub async fn convert(&self, objects: Vec<Value>, version: &str) -> std::result::Result<Vec<Value>, String> {
        let desired = format!("{}/{version}", self.group);
        if objects.iter().all(|o| api_version_of(o) == desired) {
            return Ok(objects);
        }
        match &self.conversion {
            Conversion::None => Ok(objects
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.insert("apiVersion".into(), json!(desired));
                    }
                    o
                })
                .collect()),
            Conversion::Webhook { url, ca_bundle, review_versions } => {
                let (todo_idx, todo): (Vec<usize>, Vec<Value>) = objects
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| api_version_of(o) != desired)
                    .map(|(i, o)| (i, o.clone()))
                    .unzip();
                let review_version = if review_versions.iter().any(|v| v == "v1") { "v1" } else { "v1beta1" };
                let uid = uuid::Uuid::new_v4().to_string();
                let review = json!({
                    "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
                    "kind": "ConversionReview",
                    "request": {"uid": uid, "desiredAPIVersion": desired, "objects": todo},
                });
                let body = serde_json::to_vec(&review).map_err(|e| e.to_string())?;
                let resp = tokio::time::timeout(WEBHOOK_TIMEOUT, post(url, ca_bundle.as_deref(), body))
                    .await
                    .map_err(|_| "conversion webhook timed out".to_string())??;
                let resp: Value = serde_json::from_slice(&resp)
                    .map_err(|e| format!("conversion webhook response is not JSON: {e}"))?;
                let r = resp.get("response").ok_or("conversion webhook response has no response")?;
                if r.get("uid").and_then(Value::as_str) != Some(uid.as_str()) {
                    return Err("conversion webhook response uid does not match the request".into());
                }
                if r.pointer("/result/status").and_then(Value::as_str) != Some("Success") {
                    let msg = r.pointer("/result/message").and_then(Value::as_str).unwrap_or("conversion failed");
                    return Err(format!("conversion webhook for {}: {msg}", self.group));
                }
                let converted = r.get("convertedObjects").and_then(Value::as_array).cloned().unwrap_or_default();
                if converted.len() != todo.len() {
                    return Err(format!(
                        "conversion webhook returned {} objects, expected {}",
                        converted.len(),
                        todo.len()
                    ));
                }
                let mut out = objects;
                for (i, mut c) in todo_idx.into_iter().zip(converted) {
                    if api_version_of(&c) != desired {
                        return Err(format!(
                            "conversion webhook returned an object of {}, expected {desired}",
                            api_version_of(&c)
                        ));
                    }
                    // Only labels and annotations may change in metadata.
                    let original_meta = out[i].get("metadata").cloned().unwrap_or_else(|| json!({}));
                    let mut m = original_meta;
                    for f in ["labels", "annotations"] {
                        match c.pointer(&format!("/metadata/{f}")) {
                            Some(v) => m[f] = v.clone(),
                            None => {
                                if let Some(mm) = m.as_object_mut() {
                                    mm.remove(f);
                                }
                            }
                        }
                    }
                    c["metadata"] = m;
                    out[i] = c;
                }
                Ok(out)
            }
        }
    }
}

/// POSTs `body` as JSON to an https URL, trusting `ca_bundle` (PEM).
async fn post(url: &str, ca_bundle: Option<&[u8]>, body: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    use http_body_util::{BodyExt, Full};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};

    let rest = url.strip_prefix("https://").ok_or("conversion webhook URL must be https")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h.trim_matches(|c| c == '[' || c == ']'), p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?)
        }
        _ => (authority.trim_matches(|c| c == '[' || c == ']'), 443),
    };
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_bundle {
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("caBundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("caBundle: {e}"))?;
        }
    }
    if roots.is_empty() {
        return Err("conversion webhook has no caBundle to verify it with".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("connecting to {url}: {e}"))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS to {url}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP to {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| format!("calling {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map_err(|e| format!("reading {url}: {e}"))?.to_bytes();
    if !status.is_success() {
        return Err(format!("conversion webhook {url} answered {status}"));
    }
    Ok(bytes.to_vec())
}

/// The Storage one version's Store works on.
pub struct VersionedStorage {
    pub inner: Arc<dyn Storage>,
    pub converter: Arc<Converter>,
    pub version: String,
    pub storage_version: String,
    /// This version's schema, for defaulting and pruning on read.
    pub schema: Value,
}

fn internal(e: impl std::fmt::Display) -> StorageError {
    StorageError::Internal(e.to_string())
}

impl VersionedStorage {
    fn parse(bytes: &[u8]) -> Result<Value> {
        serde_json::from_slice(bytes).map_err(internal)
    }

    async fn read_many(&self, kvs: Vec<KeyValue>) -> Result<Vec<KeyValue>> {
        if kvs.is_empty() {
            return Ok(kvs);
        }
        let objs: Vec<Value> = kvs.iter().map(|kv| Self::parse(&kv.value)).collect::<Result<_>>()?;
        let converted = self.converter.convert(objs, &self.version).await.map_err(internal)?;
        let mut out = Vec::with_capacity(kvs.len());
        for (mut kv, mut obj) in kvs.into_iter().zip(converted) {
            schema::apply_defaults(&mut obj, &self.schema);
            let mut pruned = Vec::new();
            schema::prune(&mut obj, &self.schema, true, "", &mut pruned);
            kv.value = Bytes::from(serde_json::to_vec(&obj).map_err(internal)?);
            out.push(kv);
        }
        Ok(out)
    }

    async fn read_one(&self, kv: KeyValue) -> Result<KeyValue> {
        let mut v = self.read_many(vec![kv]).await?;
        v.pop().ok_or_else(|| internal("conversion lost the object"))
    }

    async fn write(&self, value: Bytes) -> Result<Bytes> {
        let obj = Self::parse(&value)?;
        let mut converted = self.converter.convert(vec![obj], &self.storage_version).await.map_err(internal)?;
        let obj = converted.pop().ok_or_else(|| internal("conversion lost the object"))?;
        Ok(Bytes::from(serde_json::to_vec(&obj).map_err(internal)?))
    }
}

#[async_trait]
impl Storage for VersionedStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.inner.get(key).await? {
            Some(kv) => Ok(Some(self.read_one(kv).await?)),
            None => Ok(None),
        }
    }

    async fn get_at(&self, key: &str, freshness: Freshness) -> Result<Option<KeyValue>> {
        match self.inner.get_at(key, freshness).await? {
            Some(kv) => Ok(Some(self.read_one(kv).await?)),
            None => Ok(None),
        }
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListResult> {
        let mut l = self.inner.list(prefix, start_after, limit).await?;
        l.items = self.read_many(std::mem::take(&mut l.items)).await?;
        Ok(l)
    }

    async fn list_at(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        freshness: Freshness,
    ) -> Result<ListResult> {
        let mut l = self.inner.list_at(prefix, start_after, limit, freshness).await?;
        l.items = self.read_many(std::mem::take(&mut l.items)).await?;
        Ok(l)
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<u64> {
        let v = self.write(value).await?;
        self.inner.create(key, v).await
    }

    async fn update(&self, key: &str, value: Bytes, expected: u64) -> Result<u64> {
        let v = self.write(value).await?;
        self.inner.update(key, v, expected).await
    }

    async fn create_with_ttl(&self, key: &str, value: Bytes, ttl: std::time::Duration) -> Result<u64> {
        let v = self.write(value).await?;
        self.inner.create_with_ttl(key, v, ttl).await
    }

    async fn update_with_ttl(&self, key: &str, value: Bytes, expected: u64, ttl: std::time::Duration) -> Result<u64> {
        let v = self.write(value).await?;
        self.inner.update_with_ttl(key, v, expected, ttl).await
    }

    async fn list_at_revision(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: u64,
    ) -> Result<ListResult> {
        let mut l = self.inner.list_at_revision(prefix, start_after, limit, revision).await?;
        l.items = self.read_many(std::mem::take(&mut l.items)).await?;
        Ok(l)
    }

    async fn delete(&self, key: &str, expected: Option<u64>) -> Result<(KeyValue, u64)> {
        let (kv, rev) = self.inner.delete(key, expected).await?;
        // The deleted object is reported back in this version when possible.
        let kv = match self.read_one(kv.clone()).await {
            Ok(c) => c,
            Err(_) => kv,
        };
        Ok((kv, rev))
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        self.inner.count(prefix).await
    }

    async fn current_revision(&self) -> Result<u64> {
        self.inner.current_revision().await
    }

    async fn watch(&self, prefix: &str, after: u64) -> Result<WatchStream> {
        let stream = self.inner.watch(prefix, after).await?;
        let me = Arc::new(VersionedStorage {
            inner: self.inner.clone(),
            converter: self.converter.clone(),
            version: self.version.clone(),
            storage_version: self.storage_version.clone(),
            schema: self.schema.clone(),
        });
        Ok(stream
            .then(move |ev| {
                let me = me.clone();
                async move {
                    let ev = ev?;
                    let kv = me.read_one(ev.kv).await?;
                    let prev = match ev.prev {
                        Some(p) => Some(me.read_one(p).await?),
                        None => None,
                    };
                    Ok(WatchEvent { event_type: ev.event_type, kv, prev })
                }
            })
            .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn none_conversion_rewrites_api_version() {
        let c = Converter { group: "example.com".into(), conversion: Conversion::None };
        let out = c
            .convert(vec![json!({"apiVersion": "example.com/v1beta1", "kind": "W", "spec": {"a": 1}})], "v1")
            .await
            .unwrap();
        assert_eq!(out[0]["apiVersion"], json!("example.com/v1"));
        assert_eq!(out[0]["spec"]["a"], json!(1));
    }

    #[tokio::test]
    async fn webhook_without_ca_fails_cleanly() {
        let c = Converter {
            group: "example.com".into(),
            conversion: Conversion::Webhook {
                url: "https://127.0.0.1:1/convert".into(),
                ca_bundle: None,
                review_versions: vec!["v1".into()],
            },
        };
        assert!(c.convert(vec![json!({"apiVersion": "example.com/v1beta1"})], "v1").await.is_err());
    }
}
