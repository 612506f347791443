//! The legacy tokens controller (upstream kube-controller-manager's
//! pkg/controller/serviceaccount/tokens_controller.go), here because a single
//! binary has no controller manager. A Secret of type
//! `kubernetes.io/service-account-token` whose annotation names an existing
//! ServiceAccount gets a non-expiring token for it, the root CA and its
//! namespace; one naming a ServiceAccount that does not exist (or no longer
//! has the recorded uid) is deleted, as are an account's token Secrets when
//! the account goes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::Store;
use generic_server::serviceaccount::{ObjectRef, ServiceAccountTokens};
use generic_server::status::StatusError;

use crate::publishers::write_options;

pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// How long a Secret whose sync failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str).unwrap_or("")
}

fn is_token_secret(obj: &Value) -> bool {
    obj.get("type").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_TOKEN_TYPE)
}

struct TokensController {
    secrets: Arc<Store>,
    /// The Secrets as the informer that queued them saw them.
    secret_cache: Arc<Informer>,
    accounts: Arc<Store>,
    tokens: Arc<ServiceAccountTokens>,
    root_ca: String,
}

/// Starts the controller on Secret and ServiceAccount informers.
pub fn spawn(secrets: Arc<Store>, accounts: Arc<Store>, tokens: Arc<ServiceAccountTokens>, root_ca: &str) {
    let secret_informer = Informer::new(secrets.clone());
    let account_informer = Informer::new(accounts.clone());
    let me = Arc::new(TokensController {
        secrets,
        secret_cache: secret_informer.clone(),
        accounts,
        tokens,
        root_ca: root_ca.to_string(),
    });
    let (tx, mut rx) = unbounded_channel::<(String, String)>();
    let queue = tx.clone();
    secret_informer.spawn(move |change| {
        let obj = change.object();
        if !matches!(change, Change::Deleted(_)) && is_token_secret(obj) {
            let _ = queue.send((meta::namespace(obj).to_string(), meta::name(obj).to_string()));
        }
    });
    let queue = tx.clone();
    let cached = secret_informer.clone();
    account_informer.spawn(move |change| {
        if let Change::Deleted(sa) = change {
            let (ns, name) = (meta::namespace(sa), meta::name(sa));
            for s in cached.list().iter().filter(|s| is_token_secret(s) && meta::namespace(s) == ns) {
                if annotation(s, NAME_ANNOTATION) == name {
                    let _ = queue.send((ns.to_string(), meta::name(s).to_string()));
                }
            }
        }
    });
    tokio::spawn(async move {
        secret_informer.wait_synced().await;
        while let Some((ns, name)) = rx.recv().await {
            if let Err(e) = me.sync(&ns, &name).await {
                tracing::warn!(namespace = %ns, secret = %name, error = %e, "token secret sync failed; retrying");
                let retry = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_AFTER).await;
                    let _ = retry.send((ns, name));
                });
            }
        }
    });
}

async fn get_opt(store: &Store, ns: &str, name: &str) -> Result<Option<Value>, StatusError> {
    match store.get(ns, name).await {
        Ok(o) => Ok(Some(o)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

impl TokensController {
    async fn sync(&self, ns: &str, name: &str) -> Result<(), StatusError> {
        // The Secret as the informer that queued it has it (upstream's
        // syncSecret reads its cache too): a queued Secret is always found
        // there, where a read could miss one a watch had just announced and
        // drop it unfilled for good. A stale copy is harmless: its
        // resourceVersion makes the update conflict and the retry look again.
        let Some(secret) = self.secret_cache.get(ns, name) else { return Ok(()) };
        if !is_token_secret(&secret) {
            return Ok(());
        }
        let sa_name = annotation(&secret, NAME_ANNOTATION);
        let sa_uid = annotation(&secret, UID_ANNOTATION);
        let sa = get_opt(&self.accounts, ns, sa_name).await?.filter(|sa| sa_uid.is_empty() || meta::uid(sa) == sa_uid);
        let Some(sa) = sa else {
            let opts = DeleteOptions { precondition_uid: Some(meta::uid(&secret).to_string()), ..Default::default() };
            return match self.secrets.delete(ns, name, &opts).await {
                Err(e) if e.is_not_found() || e.code == 409 => Ok(()),
                other => other.map(|_| ()),
            };
        };
        let b64 = |s: &str| json!(base64::engine::general_purpose::STANDARD.encode(s));
        let data = secret.get("data").and_then(Value::as_object).cloned().unwrap_or_default();
        let present = |k: &str| data.get(k).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
        let needs_ca = !self.root_ca.is_empty() && data.get("ca.crt") != Some(&b64(&self.root_ca));
        let needs_token = !present("token");
        if !needs_token && present("namespace") && !needs_ca {
            return Ok(());
        }
        let mut next = secret.clone();
        let mut data = data.clone();
        if needs_ca {
            data.insert("ca.crt".into(), b64(&self.root_ca));
        }
        data.insert("namespace".into(), b64(ns));
        if needs_token {
            let account = ObjectRef { name: sa_name.to_string(), uid: meta::uid(&sa).to_string() };
            let token = self.tokens.legacy_token(ns, &account, name).map_err(StatusError::internal)?;
            data.insert("token".into(), b64(&token));
            let mut annotations =
                secret.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
            annotations.insert(NAME_ANNOTATION.into(), json!(sa_name));
            annotations.insert(UID_ANNOTATION.into(), json!(meta::uid(&sa)));
            meta::set_meta(&mut next, "annotations", Value::Object(annotations));
        }
        if let Some(m) = next.as_object_mut() {
            m.insert("data".into(), Value::Object(data));
        }
        // The update carries the resourceVersion read: a concurrent change
        // makes it fail and the retry look again.
        self.secrets.update(ns, name, next, None, &write_options()).await.map(|_| ())
    }
}
