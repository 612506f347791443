//! Reading a kubeconfig's current context as client-go's loader reads the
//! fields a server or a benchmark needs to call the kube-apiserver it names:
//! the server URL, its CA, and the user's client certificate or token, each
//! given inline (`*-data`) or as a file relative to the kubeconfig.

use std::path::Path;

use base64::Engine;
use serde_json::Value;

/// The current context's cluster and user.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// As written, e.g. `https://127.0.0.1:6443`.
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub insecure_skip_tls_verify: bool,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
}

/// A field that is inline data or a file it names.
fn data_or_file(entry: &Value, data: &str, file: &str, base: &Path) -> Result<Option<Vec<u8>>, String> {
    if let Some(d) = entry.get(data).and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD
            .decode(d.trim())
            .map(Some)
            .map_err(|e| format!("the kubeconfig's {data}: {e}"));
    }
    match entry.get(file).and_then(Value::as_str) {
        Some(f) => std::fs::read(base.join(f)).map(Some).map_err(|e| format!("reading {f}: {e}")),
        None => Ok(None),
    }
}

/// The `inner` of the entry of `list` (clusters, users, contexts) named `name`.
fn named<'v>(config: &'v Value, list: &str, name: &str, inner: &str) -> Result<&'v Value, String> {
    config
        .get(list)
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|e| e.get("name").and_then(Value::as_str) == Some(name)))
        .and_then(|e| e.get(inner))
        .ok_or_else(|| format!("the kubeconfig has no {inner} {name:?}"))
}

impl Context {
    /// The current context of the kubeconfig at `path`.
    pub fn read(path: &Path) -> Result<Context, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let config: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let current = config.get("current-context").and_then(Value::as_str).unwrap_or("");
        let context = named(&config, "contexts", current, "context")?;
        let field = |k: &str| context.get(k).and_then(Value::as_str).unwrap_or("");
        let cluster = named(&config, "clusters", field("cluster"), "cluster")?;
        let user = named(&config, "users", field("user"), "user")?;
        let token = match (user.get("token").and_then(Value::as_str), user.get("tokenFile").and_then(Value::as_str)) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(f)) => {
                Some(std::fs::read_to_string(base.join(f)).map_err(|e| format!("reading {f}: {e}"))?.trim().to_string())
            }
            (None, None) => None,
        };
        Ok(Context {
            server: cluster.get("server").and_then(Value::as_str).unwrap_or("").to_string(),
            ca_pem: data_or_file(cluster, "certificate-authority-data", "certificate-authority", base)?
                .unwrap_or_default(),
            insecure_skip_tls_verify: cluster.get("insecure-skip-tls-verify").and_then(Value::as_bool).unwrap_or(false),
            client_cert_pem: data_or_file(user, "client-certificate-data", "client-certificate", base)?,
            client_key_pem: data_or_file(user, "client-key-data", "client-key", base)?,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_data_and_files_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.crt"), "CA").expect("ca");
        std::fs::write(dir.path().join("token"), "secret\n").expect("token");
        let kc = dir.path().join("kc");
        std::fs::write(
            &kc,
            "current-context: b\ncontexts:\n- {name: a, context: {cluster: x, user: x}}\n- {name: b, context: {cluster: c, user: u}}\n\
             clusters:\n- {name: c, cluster: {server: 'https://h:1', certificate-authority: ca.crt}}\n\
             users:\n- {name: u, user: {tokenFile: token, client-key-data: S0VZ}}\n",
        )
        .expect("kubeconfig");
        let c = Context::read(&kc).expect("read");
        assert_eq!(c.server, "https://h:1");
        assert_eq!(c.ca_pem, b"CA");
        assert_eq!(c.token.as_deref(), Some("secret"));
        assert_eq!((c.client_cert_pem, c.client_key_pem.as_deref()), (None, Some(&b"KEY"[..])));
        std::fs::write(&kc, "current-context: gone\ncontexts: []\n").expect("kubeconfig");
        assert_eq!(Context::read(&kc).expect_err("no context"), "the kubeconfig has no context \"gone\"");
    }
}
