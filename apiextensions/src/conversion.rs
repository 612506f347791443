//! Versions of one CRD share one storage key space, holding objects in the
//! storage version. Each version's Store converts at its codec seam through a
//! [`VersionConversion`]: what it writes to the storage version, what it
//! reads to its own version (None strategy: rewrite apiVersion; Webhook: a
//! ConversionReview to the CRD's webhook, one per page or watch event), then
//! defaults and prunes what it read by the version's schema, as upstream
//! does on read.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use generic_server::backend::Resolver;
use generic_server::registry::VersionConverter;
use generic_server::status::StatusError;
use generic_server::webhook;

use crate::crd::Conversion;
use crate::schema;

const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Converter {
    pub group: String,
    /// None: the None strategy, which rewrites apiVersion.
    webhook: Option<Webhook>,
    /// How a webhook Service is found: bound once the built-in Stores exist.
    resolver: Arc<OnceLock<Resolver>>,
}

/// The Webhook strategy, its clientConfig compiled once per CRD change.
struct Webhook {
    client: webhook::Client,
    review_versions: Vec<String>,
}

fn api_version_of(v: &Value) -> &str {
    v.get("apiVersion").and_then(Value::as_str).unwrap_or_default()
}

impl Converter {
    pub fn new(group: &str, conversion: &Conversion, resolver: Arc<OnceLock<Resolver>>) -> Converter {
        let webhook = match conversion {
            Conversion::Webhook { client_config, review_versions } => Some(Webhook {
                client: webhook::Client::from_client_config(client_config),
                review_versions: review_versions.clone(),
            }),
            Conversion::None => None,
        };
        Converter { group: group.to_string(), webhook, resolver }
    }

    /// Converts `objects` to `group/version`.
    pub async fn convert(&self, objects: Vec<Value>, version: &str) -> std::result::Result<Vec<Value>, String> {
        let desired = format!("{}/{version}", self.group);
        if objects.iter().all(|o| api_version_of(o) == desired) {
            return Ok(objects);
        }
        match &self.webhook {
            None => Ok(objects
                .into_iter()
                .map(|mut o| {
                    if let Some(m) = o.as_object_mut() {
                        m.insert("apiVersion".into(), json!(desired));
                    }
                    o
                })
                .collect()),
            Some(Webhook { client, review_versions }) => {
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
                let resp = client.post(self.resolver.get(), "", body, WEBHOOK_TIMEOUT).await?;
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
        let c = Converter::new("example.com", &Conversion::None, Arc::default());
        let out = c
            .convert(vec![json!({"apiVersion": "example.com/v1beta1", "kind": "W", "spec": {"a": 1}})], "v1")
            .await
            .unwrap();
        assert_eq!(out[0]["apiVersion"], json!("example.com/v1"));
        assert_eq!(out[0]["spec"]["a"], json!(1));
    }

    #[tokio::test]
    async fn webhook_without_ca_fails_cleanly() {
        let conversion = Conversion::Webhook {
            client_config: json!({"url": "https://127.0.0.1:1/convert"}),
            review_versions: vec!["v1".into()],
        };
        let c = Converter::new("example.com", &conversion, Arc::default());
        let e = c.convert(vec![json!({"apiVersion": "example.com/v1beta1"})], "v1").await.expect_err("no server");
        assert!(e.starts_with("Post \"https://127.0.0.1:1/convert\": "), "{e}");
        let by_service = Conversion::Webhook {
            client_config: json!({"service": {"namespace": "ns", "name": "conv", "port": 8443}}),
            review_versions: vec!["v1".into()],
        };
        let c = Converter::new("example.com", &by_service, Arc::default());
        let e = c.convert(vec![json!({"apiVersion": "example.com/v1beta1"})], "v1").await.expect_err("no resolver");
        assert_eq!(e, "Post \"https://conv.ns.svc:8443/\": no service resolver");
    }
}
