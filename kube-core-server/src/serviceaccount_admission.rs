//! The ServiceAccount admission plugin (upstream
//! plugin/pkg/admission/serviceaccount): a new pod runs as `default` unless it
//! names an account, the account must exist, its imagePullSecrets are the
//! pod's when the pod has none, and unless automounting is turned off (by the
//! pod, else the account) every container and init container mounts a
//! projected `kube-api-access-XXXXX` volume (a bound token, the root CA and
//! the namespace) at /var/run/secrets/kubernetes.io/serviceaccount.
//! Mirror pods are left alone.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};

use generic_server::registry::store::generated_name;
use generic_server::registry::{AdmissionAttributes, Mutating, Operation};
use generic_server::registry::{BoundStore, Store};
use generic_server::serviceaccount::WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS;
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::Pod;

use crate::publishers::ROOT_CA_CONFIGMAP;

const DEFAULT_SERVICE_ACCOUNT: &str = "default";
const VOLUME_PREFIX: &str = "kube-api-access-";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The `default` account is created by a controller just after its
/// namespace: upstream looks for it this many times before giving up.
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;
const RETRY_INTERVAL: Duration = Duration::from_millis(150);

pub struct ServiceAccountAdmission {
    accounts: BoundStore,
}

impl Default for ServiceAccountAdmission {
    fn default() -> Self {
        ServiceAccountAdmission { accounts: BoundStore::new("serviceaccounts") }
    }
}

impl ServiceAccountAdmission {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Sets the ServiceAccount Store (only the first call counts).
    pub fn bind(&self, store: &Arc<Store>) {
        self.accounts.bind(store);
    }

    async fn account(&self, namespace: &str, name: &str) -> Result<Option<Value>, StatusError> {
        let store = self.accounts.store()?;
        let attempts = if name == DEFAULT_SERVICE_ACCOUNT { DEFAULT_ACCOUNT_ATTEMPTS } else { 1 };
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(RETRY_INTERVAL).await;
            }
            match store.get(namespace, name).await {
                Ok(sa) => return Ok(Some(sa)),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// The projected volume upstream's TokenVolumeSource describes.
fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// The pod's choice, else the account's, else yes.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    let flag = |v: &Value| v.get("automountServiceAccountToken").and_then(Value::as_bool);
    pod.get("spec").and_then(flag).or_else(|| flag(sa)).unwrap_or(true)
}

/// Upstream's mountServiceAccountToken: containers without something at the
/// mount path get the mount; the volume is added if one of them needed it
/// and the pod has none of that name yet.
fn mount_token(pod: &mut Value) {
    let spec = crate::registry::child(pod, "spec");
    let existing = spec.get("volumes").and_then(Value::as_array).and_then(|vols| {
        vols.iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(str::to_string)
    });
    let volume_name = existing.clone().unwrap_or_else(|| generated_name(VOLUME_PREFIX));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(Value::Array(containers)) = spec.get_mut(list) else { continue };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Value::Array(mounts) = mounts else { continue };
            if !mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)) {
                mounts.push(mount.clone());
                needed = true;
            }
        }
    }
    if existing.is_none() && needed {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Value::Array(v) = volumes {
            v.push(token_volume(&volume_name));
        }
    }
}

#[async_trait]
impl Mutating for ServiceAccountAdmission {
    async fn admit(&self, a: &AdmissionAttributes<'_>, pod: &mut Value) -> Result<(), StatusError> {
        if !a.is_main::<Pod>() || a.operation != Operation::Create {
            return Ok(());
        }
        if pod.pointer("/metadata/annotations").and_then(|m| m.get(MIRROR_POD_ANNOTATION)).is_some() {
            return Ok(());
        }
        let spec = crate::registry::child(pod, "spec");
        // The deprecated serviceAccount names it when serviceAccountName does not.
        let named = ["serviceAccountName", "serviceAccount"]
            .iter()
            .find_map(|k| spec.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .unwrap_or("")
            .to_string();
        let name = if named.is_empty() { DEFAULT_SERVICE_ACCOUNT.to_string() } else { named };
        spec.insert("serviceAccountName".into(), json!(name));
        let Some(sa) = self.account(a.namespace, &name).await? else {
            return Err(a.forbidden(&format!(
                "error looking up service account {}/{name}: serviceaccount \"{name}\" not found",
                a.namespace
            )));
        };
        if should_automount(&sa, pod) {
            mount_token(pod);
        }
        let spec = crate::registry::child(pod, "spec");
        let has_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let from_account = sa.get("imagePullSecrets").and_then(Value::as_array).cloned().unwrap_or_default();
        if !has_pull_secrets && !from_account.is_empty() {
            let names: Vec<Value> =
                from_account.iter().map(|s| json!({"name": s.get("name").cloned().unwrap_or(json!(""))})).collect();
            spec.insert("imagePullSecrets".into(), Value::Array(names));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_container_mounts_one_volume() {
        let mut pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "volumeMounts": [{"name": "x", "mountPath": TOKEN_MOUNT_PATH}]}],
            "initContainers": [{"name": "i"}]}});
        mount_token(&mut pod);
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 1);
        let name = vols[0]["name"].as_str().unwrap();
        assert!(name.starts_with(VOLUME_PREFIX) && name.len() == VOLUME_PREFIX.len() + 5);
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0],
            json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH})
        );
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"].as_array().unwrap().len(), 1);
        assert_eq!(pod["spec"]["initContainers"][0]["volumeMounts"][0]["name"], name);
        assert_eq!(vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"], 3607);
    }

    #[test]
    fn automount_follows_pod_then_account() {
        let sa_off = json!({"automountServiceAccountToken": false});
        assert!(!should_automount(&sa_off, &json!({"spec": {}})));
        assert!(should_automount(&sa_off, &json!({"spec": {"automountServiceAccountToken": true}})));
        assert!(should_automount(&json!({}), &json!({"spec": {}})));
    }
}
