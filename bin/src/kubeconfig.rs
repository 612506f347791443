//! The admin kubeconfig written next to the data: the real address, the CA and
//! the admin client certificate embedded, so kubectl verifies TLS fully.

use base64::Engine;
use serde_json::json;

pub fn render(server_url: &str, ca_pem: &str, client_cert_pem: &str, client_key_pem: &str) -> Result<String, String> {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kube-apiserver", "cluster": {"server": server_url, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(client_cert_pem), "client-key-data": b64(client_key_pem)}}],
        "contexts": [{"name": "admin@kube-apiserver", "context": {"cluster": "kube-apiserver", "user": "admin", "namespace": "default"}}],
        "current-context": "admin@kube-apiserver",
        "preferences": {},
    });
    serde_yaml::to_string(&config).map_err(|e| e.to_string())
}
