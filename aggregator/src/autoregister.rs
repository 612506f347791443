//! Autoregistration (upstream's autoregister controller and the
//! crdRegistrationController): a Local APIService (spec.service unset) for
//! every group-version the chain serves, built-ins with upstream's default
//! priorities and CRD groups with 1000/100, created and removed as the served
//! groups change (CRDs come and go at runtime). APIServices it did not make
//! (no automanaged label) are never touched.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use generic_server::handler::DynHandler;
use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{ListOptions, Store, WriteOptions};

use crate::apiservice::{self, AUTOMANAGED_LABEL};

/// How often the served groups are compared with the Local APIServices.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// Upstream's priorities of the built-in group-versions (group minimum,
/// version), from kube-apiserver's APIService defaults.
const BUILTIN_PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apiregistration.k8s.io", "v1", 18000, 15),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v2", 17500, 30),
    ("autoscaling", "v1", 17500, 15),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// What upstream gives CRD group-versions: low priority, ordered among
/// themselves by version name.
const CRD_GROUP_PRIORITY: i64 = 1000;
const CRD_VERSION_PRIORITY: i64 = 100;

/// The desired Local APIService of a group-version, and its automanaged
/// label value: "onstart" for built-ins, "true" for CRDs (as upstream).
pub fn local_apiservice(group: &str, version: &str) -> Value {
    let builtin = BUILTIN_PRIORITIES.iter().find(|(g, v, _, _)| *g == group && *v == version);
    let (gpm, vp, managed) = match builtin {
        Some((_, _, g, v)) => (*g, *v, "onstart"),
        None => (CRD_GROUP_PRIORITY, CRD_VERSION_PRIORITY, "true"),
    };
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": apiservice::name_for(group, version), "labels": {AUTOMANAGED_LABEL: managed}},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp},
    })
}

pub struct AutoRegister {
    pub store: Arc<Store>,
    /// The chain whose groups get Local APIServices (this server included).
    pub served: Box<dyn Fn() -> Vec<(String, String)> + Send + Sync>,
}

impl AutoRegister {
    pub fn served_by(
        chain: DynHandler,
        own: Vec<(String, String)>,
    ) -> Box<dyn Fn() -> Vec<(String, String)> + Send + Sync> {
        Box::new(move || {
            let mut gvs = own.clone();
            for g in chain.api_groups() {
                for v in g.versions {
                    gvs.push((g.name.clone(), v.version));
                }
            }
            gvs
        })
    }

    pub async fn run(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SYNC_EVERY).await;
            self.sync().await;
        }
    }

    /// One pass: create or fix the wanted Local APIServices, delete the
    /// automanaged ones nothing serves any more.
    pub async fn sync(&self) {
        let wanted: BTreeMap<String, Value> = (self.served)()
            .into_iter()
            .map(|(g, v)| (apiservice::name_for(&g, &v), local_apiservice(&g, &v)))
            .collect();
        let list = match self.store.list("", &ListOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing APIServices: {}", e.message);
                return;
            }
        };
        let existing: BTreeMap<String, Value> = list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| (meta::name(i).to_string(), i.clone()))
            .collect();
        for (name, want) in &wanted {
            match existing.get(name) {
                None => {
                    if let Err(e) = self.store.create("", want.clone(), &WriteOptions::default()).await {
                        if e.code != 409 {
                            tracing::warn!(apiservice = %name, "creating the Local APIService: {}", e.message);
                        }
                    }
                }
                Some(cur) if is_automanaged(cur) && cur.get("spec") != want.get("spec") => {
                    let spec = want.get("spec").cloned().unwrap_or_default();
                    let r = self
                        .store
                        .update_with("", name, None, &WriteOptions::default(), |cur| {
                            let mut cur = cur.cloned().unwrap_or_default();
                            cur["spec"] = spec.clone();
                            meta::remove_meta(&mut cur, "resourceVersion");
                            Ok(cur)
                        })
                        .await;
                    if let Err(e) = r {
                        tracing::warn!(apiservice = %name, "updating the Local APIService: {}", e.message);
                    }
                }
                Some(_) => {}
            }
        }
        for (name, cur) in &existing {
            if wanted.contains_key(name)
                || !is_automanaged(cur)
                || cur.pointer("/spec/service").is_some_and(|s| !s.is_null())
            {
                continue;
            }
            if let Err(e) = self.store.delete("", name, &DeleteOptions::default()).await {
                if e.code != 404 {
                    tracing::warn!(apiservice = %name, "deleting the Local APIService: {}", e.message);
                }
            }
        }
    }
}

fn is_automanaged(obj: &Value) -> bool {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(AUTOMANAGED_LABEL))
        .and_then(Value::as_str)
        .is_some_and(|v| v == "true" || v == "onstart")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_follow_upstream() {
        let core = local_apiservice("", "v1");
        assert_eq!(core["metadata"]["name"], "v1.");
        assert_eq!(core["spec"]["groupPriorityMinimum"], 18000);
        let apps = local_apiservice("apps", "v1");
        assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
        assert_eq!(apps["metadata"]["labels"][AUTOMANAGED_LABEL], "onstart");
        let crd = local_apiservice("stable.example.com", "v1");
        assert_eq!(crd["spec"]["groupPriorityMinimum"], 1000);
        assert_eq!(crd["spec"]["versionPriority"], 100);
        assert_eq!(crd["metadata"]["labels"][AUTOMANAGED_LABEL], "true");
        assert!(crate::apiservice::validate(&core).is_empty());
    }
}
