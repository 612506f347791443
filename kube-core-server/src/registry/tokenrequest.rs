//! serviceaccounts/token (upstream pkg/registry/core/serviceaccount/storage/
//! token.go): a TokenRequest gets a signed JWT for the ServiceAccount,
//! optionally bound to a Pod or Secret of its namespace or to a Node, for the requested
//! audiences (default: the API's) and duration (at least 10 minutes, clamped
//! to --service-account-max-token-expiration).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::{Store, SubresourceCall, SubresourceDiscovery, SubresourceHandler, SubresourceReply};
use generic_server::serviceaccount::{extended_expiration, ObjectRef, ServiceAccountTokens, TokenClaims};
use generic_server::status::{Cause, StatusError};

use super::peers::Peers;
use super::str_at;

pub struct TokenRequestHandler {
    /// `None` when the server signs no tokens (no issuer configured).
    pub tokens: Option<Arc<ServiceAccountTokens>>,
    pub peers: Arc<Peers>,
}

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
/// SetDefaults_TokenRequestSpec.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

fn invalid(name: &str, field: &str, value: &Value, detail: &str) -> StatusError {
    StatusError::invalid(GROUP, KIND, name, vec![Cause::invalid(field, value, detail)])
}

fn object_ref(obj: &Value) -> ObjectRef {
    ObjectRef { name: meta::name(obj).to_string(), uid: meta::meta_str(obj, "uid").to_string() }
}

impl TokenRequestHandler {
    /// The bound Pod, Secret or Node (and a Pod's Node), checked as upstream.
    async fn bind(&self, sa: &str, ns: &str, bound: &Value, claims: &mut TokenClaims) -> Result<(), StatusError> {
        let (api_version, kind, name) = (str_at(bound, "/apiVersion"), str_at(bound, "/kind"), str_at(bound, "/name"));
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let uid = match (group, kind) {
            ("", "Pod") => {
                let pod = self.peers.pods()?.get(ns, name).await?;
                if str_at(&pod, "/spec/serviceAccountName") != sa {
                    return Err(StatusError::bad_request(format!(
                        "cannot bind token for serviceaccount {sa:?} to pod running with different serviceaccount name."
                    )));
                }
                let node_name = str_at(&pod, "/spec/nodeName");
                if !node_name.is_empty() {
                    // A missing Node still names the pod's node, uid left out.
                    let node = match self.peers.nodes() {
                        Some(nodes) => nodes.get("", node_name).await.ok(),
                        None => None,
                    };
                    let uid = node.as_ref().map(|n| meta::meta_str(n, "uid").to_string()).unwrap_or_default();
                    claims.node = Some(ObjectRef { name: node_name.into(), uid });
                }
                claims.pod = Some(object_ref(&pod));
                meta::meta_str(&pod, "uid").to_string()
            }
            ("", "Secret") => {
                let secret = self.peers.secrets()?.get(ns, name).await?;
                claims.secret = Some(object_ref(&secret));
                meta::meta_str(&secret, "uid").to_string()
            }
            ("", "Node") => {
                let nodes = self.peers.nodes().ok_or_else(|| StatusError::internal("the nodes store is not ready"))?;
                let node = nodes.get("", name).await?;
                claims.node = Some(object_ref(&node));
                meta::meta_str(&node, "uid").to_string()
            }
            _ => {
                return Err(StatusError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )))
            }
        };
        let wanted = str_at(bound, "/uid");
        if !wanted.is_empty() && wanted != uid {
            return Err(StatusError::conflict(
                group,
                kind,
                name,
                &format!("the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl SubresourceHandler for TokenRequestHandler {
    fn name(&self) -> &'static str {
        "token"
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery { kind: KIND, group: GROUP, version: "v1", verbs: &["create"] }
    }

    async fn serve(&self, accounts: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let (ns, name) = (call.namespace, call.name);
        let mut req = call.body.filter(Value::is_object).unwrap_or_else(|| json!({}));
        let expiration = match req.pointer("/spec/expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(v) => {
                v.as_i64().ok_or_else(|| StatusError::bad_request("spec.expirationSeconds must be an integer"))?
            }
        };
        if expiration < MIN_EXPIRATION_SECONDS {
            return Err(invalid(
                "",
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if expiration > MAX_EXPIRATION_SECONDS {
            return Err(invalid(
                "",
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        let (body_name, body_ns) = (meta::name(&req).to_string(), meta::namespace(&req).to_string());
        if !body_name.is_empty() && body_name != name {
            return Err(invalid(
                name,
                "metadata.name",
                &json!(body_name),
                "must match the service account name if specified",
            ));
        }
        if !body_ns.is_empty() && body_ns != ns {
            return Err(invalid(
                name,
                "metadata.namespace",
                &json!(body_ns),
                "must match the service account namespace if specified",
            ));
        }
        let tokens = self
            .tokens
            .as_ref()
            .ok_or_else(|| StatusError::internal("no service account token issuer is configured"))?;
        let sa = accounts.get(ns, name).await?;
        let mut claims =
            TokenClaims { namespace: ns.to_string(), service_account: object_ref(&sa), ..Default::default() };
        if let Some(bound) = req.pointer("/spec/boundObjectRef").filter(|b| b.is_object()) {
            self.bind(name, ns, bound, &mut claims).await?;
        }
        let audiences: Vec<String> = req
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default();
        claims.audiences = if audiences.is_empty() { tokens.api_audiences.clone() } else { audiences };
        let mut expiration = expiration;
        let max = tokens.max_expiration_seconds;
        if max > 0 && expiration > max {
            call.options.notes.warn(format!("requested expiration of {expiration} seconds shortened to {max} seconds"));
            expiration = max;
        }
        // Only pod-bound tokens are extended (the kubelet's projected ones).
        (claims.expiration_seconds, claims.warn_after_seconds) = if claims.pod.is_some() {
            extended_expiration(tokens, expiration, &claims.audiences)
        } else {
            (expiration, 0)
        };
        let (token, _) =
            tokens.issue(&claims).map_err(|e| StatusError::internal(format!("failed to generate token: {e}")))?;
        let expires = chrono::Utc::now() + chrono::Duration::seconds(expiration);
        let spec = super::child(&mut req, "spec");
        spec.insert("audiences".into(), json!(claims.audiences));
        spec.insert("expirationSeconds".into(), json!(expiration));
        spec.entry("boundObjectRef").or_insert(Value::Null);
        let obj = req.as_object_mut().ok_or_else(|| StatusError::internal("TokenRequest is not an object"))?;
        obj.insert("kind".into(), json!(KIND));
        obj.insert("apiVersion".into(), json!(format!("{GROUP}/v1")));
        let metadata = obj.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = metadata.as_object_mut() {
            m.entry("creationTimestamp").or_insert(Value::Null);
        }
        obj.insert(
            "status".into(),
            json!({"token": token, "expirationTimestamp": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        );
        Ok(SubresourceReply { code: 201, object: req })
    }
}
