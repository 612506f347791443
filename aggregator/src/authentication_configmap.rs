//! The extension-apiserver-authentication ConfigMap in kube-system (upstream's
//! ClusterAuthenticationTrust publisher): how an extension API server learns
//! which CA signs client certificates, and which CA, names and headers mark a
//! request that came through this aggregator. Written at start, created or
//! brought up to date.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use generic_server::meta;
use generic_server::registry::{Store, WriteOptions};

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "extension-apiserver-authentication";

/// The request-header authentication this server configures (the
/// --requestheader-* flags).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RequestHeaderConfig {
    pub client_ca_pem: String,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_headers_prefix: Vec<String>,
}

/// The ConfigMap's data: PEM bundles as they are, lists JSON-encoded.
pub fn data(client_ca_pem: &str, rh: &RequestHeaderConfig) -> Map<String, Value> {
    let list = |v: &Vec<String>| json!(serde_json::to_string(v).unwrap_or_else(|_| "[]".into()));
    let mut d = Map::new();
    if !client_ca_pem.is_empty() {
        d.insert("client-ca-file".into(), json!(client_ca_pem));
    }
    if !rh.client_ca_pem.is_empty() {
        d.insert("requestheader-client-ca-file".into(), json!(rh.client_ca_pem));
        d.insert("requestheader-allowed-names".into(), list(&rh.allowed_names));
        d.insert("requestheader-username-headers".into(), list(&rh.username_headers));
        d.insert("requestheader-group-headers".into(), list(&rh.group_headers));
        d.insert("requestheader-extra-headers-prefix".into(), list(&rh.extra_headers_prefix));
    }
    d
}

/// Creates the ConfigMap, or replaces its data when it differs.
pub async fn publish(configmaps: &Arc<Store>, data: Map<String, Value>) -> Result<(), String> {
    let data = Value::Object(data);
    match configmaps.get(NAMESPACE, NAME).await {
        Ok(cur) if cur.get("data") == Some(&data) => Ok(()),
        Ok(_) => configmaps
            .update_with(NAMESPACE, NAME, None, &WriteOptions::default(), |cur| {
                let mut cur =
                    cur.cloned().unwrap_or_else(|| json!({"metadata": {"name": NAME, "namespace": NAMESPACE}}));
                cur["data"] = data.clone();
                meta::remove_meta(&mut cur, "resourceVersion");
                Ok(cur)
            })
            .await
            .map(|_| ())
            .map_err(|e| e.message),
        Err(e) if e.is_not_found() => {
            let obj = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": NAME, "namespace": NAMESPACE},
                "data": data,
            });
            configmaps.create(NAMESPACE, obj, &WriteOptions::default()).await.map(|_| ()).map_err(|e| e.message)
        }
        Err(e) => Err(e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_json_encoded() {
        let rh = RequestHeaderConfig {
            client_ca_pem: "CA".into(),
            allowed_names: vec!["front-proxy-client".into()],
            username_headers: vec!["X-Remote-User".into()],
            group_headers: vec!["X-Remote-Group".into()],
            extra_headers_prefix: vec!["X-Remote-Extra-".into()],
        };
        let d = data("CLIENT", &rh);
        assert_eq!(d["client-ca-file"], "CLIENT");
        assert_eq!(d["requestheader-allowed-names"], "[\"front-proxy-client\"]");
        assert_eq!(d["requestheader-username-headers"], "[\"X-Remote-User\"]");
        assert_eq!(d["requestheader-extra-headers-prefix"], "[\"X-Remote-Extra-\"]");
    }
}
