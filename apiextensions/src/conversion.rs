//! Versions of one CRD share one storage key space, holding objects in the
//! storage version. Each version's Store converts at its codec seam through a
//! [`VersionConversion`]: what it writes to the storage version, what it
//! reads to its own version (None strategy: rewrite apiVersion; Webhook: a
//! ConversionReview to the CRD's webhook, one per page or watch event), then
//! defaults and prunes what it read by the version's schema, as upstream
//! does on read.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use generic_server::registry::VersionConverter;
use generic_server::status::StatusError;

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
                let uid = generic_server::meta::new_uuid().to_string();
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

/// One served version's conversion, at its Store's codec seam: what the
/// Store writes goes to the storage version, what it reads comes to this
/// version and is then defaulted and pruned by this version's schema, as
/// upstream does on read.
pub struct VersionConversion {
    pub converter: Arc<Converter>,
    pub version: String,
    pub storage_version: String,
    /// This version's schema, for defaulting and pruning on read.
    pub schema: Value,
}

#[async_trait]
impl VersionConverter for VersionConversion {
    async fn to_stored(&self, object: Value) -> Result<Value, StatusError> {
        let mut converted =
            self.converter.convert(vec![object], &self.storage_version).await.map_err(StatusError::internal)?;
        converted.pop().ok_or_else(|| StatusError::internal("conversion lost the object"))
    }

    async fn to_served(&self, objects: Vec<Value>) -> Result<Vec<Value>, StatusError> {
        let mut converted = self.converter.convert(objects, &self.version).await.map_err(StatusError::internal)?;
        for obj in &mut converted {
            schema::apply_defaults(obj, &self.schema);
            let mut pruned = Vec::new();
            schema::prune(obj, &self.schema, true, "", &mut pruned);
        }
        Ok(converted)
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
