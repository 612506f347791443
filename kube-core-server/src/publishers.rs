//! What kube-controller-manager puts in every namespace, done here because a
//! single binary has no controller manager: the `default` ServiceAccount
//! (upstream's serviceaccounts controller) and the `kube-root-ca.crt`
//! ConfigMap with the CA bundle pods verify the API server with (upstream's
//! root-ca-cert-publisher).
//!
//! Both follow one pattern on the shared [`Informer`]: a namespace that
//! appears or changes is queued; so is the namespace of its published object
//! when that object is deleted (or, for the ConfigMap, edited). A queued
//! namespace that exists and is not terminating gets the object created if
//! missing and, where upstream repairs edits, its content put back.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::{ListOptions, Store, WriteOptions};
use generic_server::selectors::FieldSelector;
use generic_server::status::StatusError;

use crate::registry::namespace::is_terminating;

/// The ConfigMap upstream publishes the root CA in, and its description.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// How long a namespace whose sync failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Writes are recorded as the controller manager's, as on a real cluster.
pub(crate) fn write_options() -> WriteOptions {
    WriteOptions { field_manager: Some("kube-controller-manager".into()), ..WriteOptions::default() }
}

type Desired = dyn Fn(&str) -> Value + Send + Sync;
type Repair = dyn Fn(&Value) -> Option<Value> + Send + Sync;

/// One object kept in every active namespace.
struct Publisher {
    name: &'static str,
    store: Arc<Store>,
    objects: Arc<Informer>,
    namespaces: Arc<Informer>,
    /// The object to create in a namespace.
    desired: Box<Desired>,
    /// The object an existing one should become, if it differs.
    repair: Box<Repair>,
    /// Whether edits (not only deletions) of the object are undone.
    watch_updates: bool,
}

impl Publisher {
    /// Starts the object informer and the worker; returns the queue the
    /// namespace informer feeds.
    fn start(self) -> UnboundedSender<String> {
        let me = Arc::new(self);
        let (tx, mut rx) = unbounded_channel::<String>();
        let queue = tx.clone();
        let (name, watch_updates) = (me.name, me.watch_updates);
        me.objects.spawn(move |change| {
            let obj = change.object();
            let wanted = match change {
                Change::Deleted(_) => true,
                Change::Updated { .. } => watch_updates,
                Change::Added(_) => false,
            };
            if wanted && meta::name(obj) == name {
                let _ = queue.send(meta::namespace(obj).to_string());
            }
        });
        let retry = tx.clone();
        tokio::spawn(async move {
            me.objects.wait_synced().await;
            while let Some(ns) = rx.recv().await {
                if let Err(e) = me.sync(&ns).await {
                    tracing::warn!(namespace = %ns, object = me.name, error = %e, "publishing failed; retrying");
                    let retry = retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry.send(ns);
                    });
                }
            }
        });
        tx
    }

    async fn sync(&self, namespace: &str) -> Result<(), StatusError> {
        match self.namespaces.get("", namespace) {
            Some(ns) if !is_terminating(&ns) => {}
            // Gone or going: nothing may be created there.
            _ => return Ok(()),
        }
        let current = match self.store.get(namespace, self.name).await {
            Ok(obj) => Some(obj),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let result = match current {
            None => self.store.create(namespace, (self.desired)(namespace), &write_options()).await,
            Some(obj) => match (self.repair)(&obj) {
                Some(next) => self.store.update(namespace, self.name, next, None, &write_options()).await,
                None => return Ok(()),
            },
        };
        match result {
            Ok(_) => Ok(()),
            // Created meanwhile (the retry compares again), or the namespace
            // started terminating after the check above.
            Err(e) if e.code == 409 => Err(e),
            Err(e) if e.code == 403 || e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The stores the publishers read and write.
pub struct PublisherStores {
    pub namespaces: Arc<Store>,
    pub service_accounts: Arc<Store>,
    pub configmaps: Arc<Store>,
}

/// Starts both publishers on one namespace informer. With an empty
/// `root_ca` (no CA known) only the ServiceAccount is published.
pub fn spawn(stores: PublisherStores, root_ca: &str) {
    let namespaces = Informer::new(stores.namespaces);
    let mut queues = vec![Publisher {
        name: "default",
        store: stores.service_accounts.clone(),
        objects: Informer::selecting(stores.service_accounts, named("default")),
        namespaces: namespaces.clone(),
        desired: Box::new(|_| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})),
        // Upstream only recreates a deleted account; edits are the user's.
        repair: Box::new(|_| None),
        watch_updates: false,
    }
    .start()];
    if !root_ca.is_empty() {
        let ca = root_ca.to_string();
        let repaired = ca.clone();
        queues.push(
            Publisher {
                name: ROOT_CA_CONFIGMAP,
                store: stores.configmaps.clone(),
                objects: Informer::selecting(stores.configmaps, named(ROOT_CA_CONFIGMAP)),
                namespaces: namespaces.clone(),
                desired: Box::new(move |_| root_ca_configmap(&ca)),
                repair: Box::new(move |cm| repair_root_ca(cm, &repaired)),
                watch_updates: true,
            }
            .start(),
        );
    }
    namespaces.spawn(move |change| {
        if let Change::Added(ns) | Change::Updated { new: ns, .. } = change {
            for q in &queues {
                let _ = q.send(meta::name(ns).to_string());
            }
        }
    });
}

/// The objects of one name in every namespace: all a publisher follows, so
/// a hundred thousand other ConfigMaps cost it nothing.
fn named(name: &str) -> ListOptions {
    let field_selector = FieldSelector(vec![("metadata.name".into(), true, name.into())]);
    ListOptions { field_selector, ..ListOptions::default() }
}

fn root_ca_configmap(ca: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ROOT_CA_CONFIGMAP, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
        "data": {"ca.crt": ca},
    })
}

/// Upstream's check: the data must be exactly the CA and the description
/// annotation present; otherwise both are put back and the rest kept.
fn repair_root_ca(cm: &Value, ca: &str) -> Option<Value> {
    let data_ok = cm.get("data") == Some(&json!({"ca.crt": ca}));
    let described = cm
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|d| !d.is_empty());
    if data_ok && described {
        return None;
    }
    let mut next = cm.clone();
    if let Some(m) = next.as_object_mut() {
        m.insert("data".into(), json!({"ca.crt": ca}));
    }
    let mut annotations = cm.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
    annotations.insert(DESCRIPTION_ANNOTATION.into(), json!(DESCRIPTION));
    meta::set_meta(&mut next, "annotations", Value::Object(annotations));
    Some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_is_repaired_as_upstream() {
        let good = root_ca_configmap("CA");
        assert_eq!(repair_root_ca(&good, "CA"), None);
        let mut edited = good.clone();
        edited["data"]["extra"] = json!("x");
        edited["metadata"]["labels"] = json!({"keep": "me"});
        let fixed = repair_root_ca(&edited, "CA").unwrap();
        assert_eq!(fixed["data"], json!({"ca.crt": "CA"}));
        assert_eq!(fixed["metadata"]["labels"], json!({"keep": "me"}));
        let mut bare = good.clone();
        bare["metadata"].as_object_mut().unwrap().remove("annotations");
        assert_eq!(
            repair_root_ca(&bare, "CA").unwrap()["metadata"]["annotations"][DESCRIPTION_ANNOTATION],
            DESCRIPTION
        );
    }
}
