//! Autoregistration (upstream's autoregister controller and the
//! crdRegistrationController): a Local APIService (spec.service unset) for
//! every group-version the chain serves, built-ins with upstream's default
//! priorities and CRD groups with 1000/100, created and removed as the served
//! groups change (CRDs come and go at runtime). APIServices it did not make
//! (no automanaged label) are never touched, and a built-in group's
//! ("onstart") is made or corrected once, then left to its users. A pass
//! runs when what the chain serves or an APIService changes, not on a timer.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

use generic_server::handler::DynHandler;
use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{ListOptions, Store, WriteOptions};
use generic_server::status::StatusError;

use crate::apiservice::{self, AUTOMANAGED_LABEL};

/// How often the Local APIServices are synced when nothing prompts it.
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How soon a pass that failed is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The automanaged label's values: synced once when the server starts
/// (built-in groups), or for as long as the group is served (CRD groups).
const ON_START: &str = "onstart";
const CONTINUOUSLY: &str = "true";

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
        Some((_, _, g, v)) => (*g, *v, ON_START),
        None => (CRD_GROUP_PRIORITY, CRD_VERSION_PRIORITY, CONTINUOUSLY),
    };
    json!({
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": apiservice::name_for(group, version), "labels": {AUTOMANAGED_LABEL: managed}},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": gpm, "versionPriority": vp},
    })
}

pub struct AutoRegister {
    store: Arc<Store>,
    /// The chain whose groups get Local APIServices (this server included).
    served: Served,
    /// Names synced successfully at least once: an "onstart" APIService is
    /// only ever synced once, so a user may delete or change it for good.
    synced: Mutex<HashSet<String>>,
    /// The APIServices that existed when the first pass ran.
    at_start: OnceLock<HashSet<String>>,
}

/// The group-versions a chain serves.
pub type Served = Box<dyn Fn() -> Vec<(String, String)> + Send + Sync>;

impl AutoRegister {
    pub fn new(store: Arc<Store>, served: Served) -> Arc<AutoRegister> {
        Arc::new(AutoRegister { store, served, synced: Mutex::default(), at_start: OnceLock::new() })
    }

    pub fn served_by(chain: DynHandler, own: Vec<(String, String)>) -> Served {
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

    /// Syncs again whenever one of `prompts` changes (what the chain serves,
    /// the APIServices themselves), as upstream's informers and queue do, and
    /// every [`RESYNC_EVERY`] besides; a pass that failed is retried sooner.
    pub async fn run(self: Arc<Self>, prompts: Vec<tokio::sync::watch::Receiver<u64>>) {
        let prompt = Arc::new(tokio::sync::Notify::new());
        for mut changes in prompts {
            let prompt = prompt.clone();
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    prompt.notify_one();
                }
            });
        }
        let mut wait = RESYNC_EVERY;
        loop {
            let _ = tokio::time::timeout(wait, prompt.notified()).await;
            wait = if self.sync().await { RESYNC_EVERY } else { RETRY_AFTER };
        }
    }

    /// One pass over every APIService wanted or present; false when some
    /// step failed.
    pub async fn sync(&self) -> bool {
        let wanted: BTreeMap<String, Value> = (self.served)()
            .into_iter()
            .map(|(g, v)| (apiservice::name_for(&g, &v), local_apiservice(&g, &v)))
            .collect();
        let list = match self.store.list("", &ListOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing APIServices: {}", e.message);
                return false;
            }
        };
        let existing: BTreeMap<String, Value> = list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|i| (meta::name(i).to_string(), i.clone()))
            .collect();
        let at_start = self.at_start.get_or_init(|| existing.keys().cloned().collect());
        let names: BTreeSet<&String> = wanted.keys().chain(existing.keys()).collect();
        let mut ok = true;
        for name in names {
            match self.check(name, wanted.get(name), existing.get(name), at_start).await {
                Ok(()) => {
                    self.synced.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone());
                }
                Err(e) => {
                    tracing::warn!(apiservice = %name, "syncing the Local APIService: {}", e.message);
                    ok = false;
                }
            }
        }
        ok
    }

    /// Upstream's checkAPIService: what to do with one name, from what is
    /// wanted and what is there. An "onstart" APIService is created or
    /// corrected once, and then left to its users; a "true" one (a CRD
    /// group's) is kept as wanted for as long as it is served.
    async fn check(
        &self,
        name: &str,
        desired: Option<&Value>,
        current: Option<&Value>,
        at_start: &HashSet<String>,
    ) -> Result<(), StatusError> {
        let has_synced = self.synced.lock().unwrap_or_else(|e| e.into_inner()).contains(name);
        let on_start = |o: Option<&Value>| managed_as(o) == Some(ON_START);
        match (desired, current) {
            (None, None) => Ok(()),
            (Some(_), _) if on_start(desired) && has_synced => Ok(()),
            (Some(want), None) => match self.store.create("", want.clone(), &WriteOptions::default()).await {
                Err(e) if !e.is_already_exists() => Err(e),
                _ => Ok(()),
            },
            (_, Some(_)) if managed_as(current).is_none() => Ok(()),
            (_, Some(_)) if on_start(current) && (!at_start.contains(name) || has_synced) => Ok(()),
            (None, Some(_)) => match self.store.delete("", name, &DeleteOptions::default()).await {
                Err(e) if !e.is_not_found() => Err(e),
                _ => Ok(()),
            },
            (Some(want), Some(cur)) if cur.get("spec") == want.get("spec") => Ok(()),
            (Some(want), Some(_)) => {
                let spec = want.get("spec").cloned().unwrap_or_default();
                let opts = WriteOptions::default();
                let update = self.store.update_with("", name, None, &opts, |cur| {
                    let mut cur = cur.cloned().unwrap_or_default();
                    cur["spec"] = spec.clone();
                    meta::remove_meta(&mut cur, "resourceVersion");
                    Ok(cur)
                });
                update.await.map(|_| ())
            }
        }
    }
}

/// The automanaged label's value ("onstart" or "true"), if it has one of those.
fn managed_as(obj: Option<&Value>) -> Option<&str> {
    obj?.pointer("/metadata/labels")
        .and_then(|l| l.get(AUTOMANAGED_LABEL))
        .and_then(Value::as_str)
        .filter(|v| *v == CONTINUOUSLY || *v == ON_START)
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
