//! Delegated authentication and authorization, for an aggregated API server
//! that leaves both to the kube-apiserver it extends (upstream's
//! DelegatingAuthenticationOptions and DelegatingAuthorizationOptions): a
//! bearer token is checked by a TokenReview and every request by a
//! SubjectAccessReview, both created on the server a kubeconfig names, and
//! both answers remembered for ten seconds as upstream's delegating clients
//! remember them (allowed and denied alike).
//!
//! As upstream's delegating authorizer, /healthz, /readyz and /livez and the
//! system:masters group are allowed without asking.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Map, Value};

use crate::authn::UserInfo;
use crate::authz::{Attributes, Authorizer, Decision, Verdict, PRIVILEGED_GROUP};
use crate::backend::{self, Target};
use crate::serviceaccount::Authenticated;

/// How long an answer is reused (upstream's delegating defaults for both
/// reviews, allowed and denied).
pub const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long one review may take.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);
/// Paths the delegating authorizer allows without a review.
const ALWAYS_ALLOWED_PATHS: &[&str] = &["/healthz", "/readyz", "/livez"];
/// The largest answer read.
const MAX_RESPONSE: usize = 4 << 20;

/// The kube-apiserver a kubeconfig points at, and how to call it.
pub struct RemoteApi {
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
}

impl RemoteApi {
    /// Reads the current context of the kubeconfig at `path`: the server's
    /// https URL and CA, and a client certificate or a bearer token.
    pub fn from_kubeconfig(path: &Path) -> Result<Self, String> {
        let kc = crate::kubeconfig::Context::read(path)?;
        let backend::HttpsUrl { host, port, path, .. } =
            backend::split_https_url(&kc.server).map_err(|e| format!("the kubeconfig's server: {e}"))?;
        if !matches!(path.as_str(), "" | "/") {
            return Err(format!(
                "the kubeconfig's server {:?} has a path; only a host and port are supported",
                kc.server
            ));
        }
        let client = match (&kc.client_cert_pem, &kc.client_key_pem) {
            (Some(c), Some(k)) => {
                let certs = CertificateDer::pem_slice_iter(c)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("the kubeconfig's client certificate: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(k).map_err(|e| format!("the kubeconfig's client key: {e}"))?;
                Some((certs, key))
            }
            _ => None,
        };
        let tls = backend::client_tls(
            &kc.ca_pem,
            kc.insecure_skip_tls_verify,
            client.as_ref().map(|(c, k)| (c.as_slice(), k)),
        )?;
        let token = kc.token;
        let target = Target { server_name: host.clone(), host, port };
        Ok(RemoteApi { target, tls, token })
    }

    /// POSTs `body` to `path` and returns the object created.
    async fn create(&self, path: &str, body: &Value) -> Result<Value, String> {
        let mut req = http::Request::post(path)
            .header(http::header::HOST, format!("{}:{}", self.target.host, self.target.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json");
        if let Some(t) = &self.token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).map_err(|e| e.to_string())?;
        let exchange = async {
            let resp = backend::send(&self.target, self.tls.clone(), req, Some(REVIEW_TIMEOUT)).await?;
            let status = resp.status();
            let bytes = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            let answer: Value = serde_json::from_slice(&bytes).map_err(|e| format!("decoding the answer: {e}"))?;
            if !status.is_success() {
                let message = answer.get("message").and_then(Value::as_str).unwrap_or("");
                return Err(format!("{status}: {message}"));
            }
            Ok(answer)
        };
        match tokio::time::timeout(REVIEW_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err("context deadline exceeded".into()),
        }
    }
}

/// Answers remembered for [`CACHE_TTL`], by the review's spec.
struct Cache<T> {
    entries: Mutex<HashMap<String, (Instant, T)>>,
}

impl<T: Clone> Cache<T> {
    fn new() -> Self {
        Cache { entries: Mutex::new(HashMap::new()) }
    }

    fn get(&self, key: &str) -> Option<T> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(key).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, v)| v.clone())
    }

    fn put(&self, key: String, value: T) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Stale entries go when the map has grown, not on every request.
        if entries.len() >= 4096 {
            entries.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        entries.insert(key, (Instant::now(), value));
    }
}

/// Bearer tokens checked by TokenReviews (upstream's webhook token
/// authenticator as the delegating options build it).
pub struct TokenReviews {
    api: RemoteApi,
    cache: Cache<Result<Authenticated, String>>,
}

/// Names the server asked, never the tokens remembered.
impl std::fmt::Debug for TokenReviews {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviews").field("server", &self.api.target).finish_non_exhaustive()
    }
}

impl TokenReviews {
    pub fn new(api: RemoteApi) -> Self {
        TokenReviews { api, cache: Cache::new() }
    }

    /// The user the remote server says `token` is, for `audiences`; an
    /// error is the review's, or why it could not be asked.
    pub async fn authenticate(&self, token: &str, audiences: &[String]) -> Result<Authenticated, String> {
        let spec = json!({"token": token, "audiences": audiences});
        let key = spec.to_string();
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec});
        let answer = match self.api.create("/apis/authentication.k8s.io/v1/tokenreviews", &review).await {
            Ok(a) => a,
            // Not remembered: the next request asks again.
            Err(e) => return Err(e),
        };
        let status = answer.get("status").cloned().unwrap_or(Value::Null);
        let result = if status.get("authenticated").and_then(Value::as_bool) == Some(true) {
            let user = user_of(status.get("user").unwrap_or(&Value::Null));
            let audiences = strings(status.get("audiences"));
            Ok(Authenticated { user, audiences })
        } else {
            let error = status.get("error").and_then(Value::as_str).unwrap_or("");
            Err(if error.is_empty() { crate::authn::INVALID_BEARER_TOKEN.to_string() } else { error.to_string() })
        };
        self.cache.put(key, result.clone());
        result
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// authentication.k8s.io's UserInfo as this server's.
fn user_of(u: &Value) -> UserInfo {
    let extra = u
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(Some(v)))).collect())
        .unwrap_or_default();
    UserInfo {
        name: u.get("username").and_then(Value::as_str).unwrap_or("").to_string(),
        uid: u.get("uid").and_then(Value::as_str).unwrap_or("").to_string(),
        groups: strings(u.get("groups")),
        extra,
    }
}

/// Requests authorized by SubjectAccessReviews (upstream's webhook
/// authorizer behind the delegating options' always-allowed paths and
/// group).
pub struct SubjectAccessReviews {
    api: RemoteApi,
    cache: Cache<Verdict>,
}

impl SubjectAccessReviews {
    pub fn new(api: RemoteApi) -> Self {
        SubjectAccessReviews { api, cache: Cache::new() }
    }

    /// The review's spec for `a`, as upstream's webhook authorizer writes it.
    fn spec(a: &Attributes<'_>) -> Value {
        let mut spec = Map::new();
        let mut put = |k: &str, v: Value| {
            let empty = v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty);
            if !empty && !v.is_null() {
                spec.insert(k.into(), v);
            }
        };
        if a.resource_request {
            let mut r = Map::new();
            for (k, v) in [
                ("namespace", a.namespace),
                ("verb", a.verb),
                ("group", a.api_group),
                ("version", a.api_version),
                ("resource", a.resource),
                ("subresource", a.subresource),
                ("name", a.name),
            ] {
                if !v.is_empty() {
                    r.insert(k.into(), json!(v));
                }
            }
            put("resourceAttributes", Value::Object(r));
        } else {
            put("nonResourceAttributes", json!({"path": a.path, "verb": a.verb}));
        }
        put("user", json!(a.user.name));
        put("groups", json!(a.user.groups));
        if !a.user.extra.is_empty() {
            put("extra", json!(a.user.extra));
        }
        put("uid", json!(a.user.uid));
        Value::Object(spec)
    }

    async fn review(&self, spec: Value) -> Verdict {
        let review = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
        match self.api.create("/apis/authorization.k8s.io/v1/subjectaccessreviews", &review).await {
            Ok(answer) => {
                let status = answer.get("status").cloned().unwrap_or(Value::Null);
                let reason = status.get("reason").and_then(Value::as_str).unwrap_or("").to_string();
                let error = status.get("evaluationError").and_then(Value::as_str).filter(|e| !e.is_empty());
                let decision = if status.get("allowed").and_then(Value::as_bool) == Some(true) {
                    Decision::Allow
                } else if status.get("denied").and_then(Value::as_bool) == Some(true) {
                    Decision::Deny
                } else {
                    Decision::NoOpinion
                };
                Verdict { decision, reason, error: error.map(str::to_string) }
            }
            Err(e) => Verdict { decision: Decision::NoOpinion, reason: String::new(), error: Some(e) },
        }
    }
}

impl Authorizer for SubjectAccessReviews {
    fn authorize(&self, a: &Attributes<'_>) -> Verdict {
        if a.user.groups.iter().any(|g| g == PRIVILEGED_GROUP)
            || (!a.resource_request && ALWAYS_ALLOWED_PATHS.contains(&a.path))
        {
            return Verdict::allow("");
        }
        let spec = Self::spec(a);
        let key = spec.to_string();
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        // Authorizers answer synchronously, as upstream's do; the review is
        // a network call, so the worker steps out of the runtime for it.
        let handle = tokio::runtime::Handle::current();
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Verdict {
                decision: Decision::NoOpinion,
                reason: String::new(),
                error: Some("delegated authorization needs a multi-threaded runtime".into()),
            };
        }
        let verdict = tokio::task::block_in_place(|| handle.block_on(self.review(spec)));
        // A review that could not be made is asked again next time.
        if verdict.error.is_none() || verdict.decision != Decision::NoOpinion {
            self.cache.put(key, verdict.clone());
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn review_specs_name_what_is_asked() {
        let user = UserInfo {
            name: "alice".into(),
            uid: "u-1".into(),
            groups: vec!["dev".into()],
            extra: [("scopes".to_string(), vec!["a".to_string()])].into_iter().collect(),
        };
        let list = Attributes {
            api_version: "v1alpha1",
            ..Attributes::resource(&user, "list", "wardle.example.com", "flunders", "default", "")
        };
        assert_eq!(
            SubjectAccessReviews::spec(&list),
            json!({
                "resourceAttributes": {"namespace": "default", "verb": "list", "group": "wardle.example.com", "version": "v1alpha1", "resource": "flunders"},
                "user": "alice", "groups": ["dev"], "extra": {"scopes": ["a"]}, "uid": "u-1",
            })
        );
        let path = Attributes::non_resource(&user, "get", "/openapi/v2");
        assert_eq!(
            SubjectAccessReviews::spec(&path)["nonResourceAttributes"],
            json!({"path": "/openapi/v2", "verb": "get"})
        );
    }

    #[test]
    fn kubeconfigs_name_the_server_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = crate::pki::ca_and_serving(dir.path(), "ca", "srv", &["localhost".into()], &[]).unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let config = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts: [{{name: c, context: {{cluster: k, user: u}}}}]\nclusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:6443', certificate-authority-data: {}}}}}]\nusers: [{{name: u, user: {{token: secret}}}}]\n",
            b64(&ca.cert)
        );
        let path = dir.path().join("kubeconfig");
        std::fs::write(&path, config).unwrap();
        let api = RemoteApi::from_kubeconfig(&path).unwrap();
        assert_eq!(
            (api.target.host.as_str(), api.target.port, api.token.as_deref()),
            ("127.0.0.1", 6443, Some("secret"))
        );
        std::fs::write(&path, "current-context: none\n").unwrap();
        let missing = RemoteApi::from_kubeconfig(&path).err().unwrap_or_default();
        assert!(missing.contains("no context \"none\""), "{missing}");
    }
}
