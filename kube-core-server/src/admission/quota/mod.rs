//! ResourceQuota (upstream plugin/pkg/admission/resourcequota, with the
//! evaluators of pkg/quota/v1/evaluator/core): a create or update that would
//! take a namespace's usage past a quota's hard limit is refused with
//! upstream's `exceeded quota` 403; a pod that leaves out a cpu or memory
//! figure a quota tracks with `failed quota`. An admitted change is charged
//! to the quotas' status.used at once, with optimistic concurrency, as
//! upstream's admission does (never on dry run).
//!
//! There is no controller-manager, so this server also runs upstream's quota
//! controller ([`controller`]): a quota's status is computed from the objects
//! present when it is created or its spec changes, recomputed after the
//! deletions that free usage, and periodically. Admission and the controller
//! take one lock, so their read-modify-writes of a quota do not interleave.

mod controller;
pub mod evaluator;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedSender;

use generic_server::meta;
use generic_server::registry::{
    AdmissionAttributes, BoundStore, ListOptions, Operation, Store, StoreRegistry, Subresource, Validating,
    WriteOptions,
};
use generic_server::status::StatusError;

use super::resources::{add, list_at, mask, pretty, to_json, Format, Quantity, ResourceList};
use evaluator::{counted, scopes, Evaluator, CORE_EVALUATED};

/// How often a write is retried when a quota changed under it.
const MAX_ATTEMPTS: usize = 5;

#[derive(Default)]
pub struct ResourceQuota {
    inner: Arc<Inner>,
}

struct Inner {
    quotas: BoundStore,
    registry: OnceLock<Weak<StoreRegistry>>,
    /// How many quotas each namespace holds, kept by the controller's
    /// informer: a write in a namespace with none costs nothing.
    namespaces: Mutex<HashMap<String, usize>>,
    /// Where namespaces to recompute are sent.
    queue: OnceLock<UnboundedSender<String>>,
    lock: tokio::sync::Mutex<()>,
}

impl ResourceQuota {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Reads quotas from `quotas` and the objects they count from
    /// `registry`, and starts the controller (only the first call counts;
    /// inside a tokio runtime).
    pub fn bind(&self, quotas: &Arc<Store>, registry: &Arc<StoreRegistry>) {
        if self.inner.registry.set(Arc::downgrade(registry)).is_ok() {
            self.inner.quotas.bind(quotas);
            controller::spawn(self.inner.clone(), quotas.clone(), registry);
        }
    }
}

fn keys(list: &ResourceList) -> Vec<String> {
    list.keys().cloned().collect()
}

/// Whether the quota's status does not yet reflect its spec.
fn needs_sync(quota: &Value) -> bool {
    quota.pointer("/spec/hard") != quota.pointer("/status/hard") || quota.pointer("/status/used").is_none()
}

/// Upstream's SubtractWithNonNegativeResult, for the names in `new`.
fn grown(new: &ResourceList, old: &ResourceList) -> ResourceList {
    new.iter()
        .filter_map(|(k, q)| {
            let d = match old.get(k) {
                Some(o) => q.sub(o).ok()?,
                None => q.clone(),
            };
            (d.sign() > 0).then(|| (k.clone(), d))
        })
        .collect()
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            quotas: BoundStore::new("resourcequotas"),
            registry: OnceLock::new(),
            namespaces: Mutex::default(),
            queue: OnceLock::new(),
            lock: tokio::sync::Mutex::default(),
        }
    }
}

impl Inner {
    fn quota_store(&self) -> Result<Arc<Store>, StatusError> {
        self.quotas.store()
    }

    fn store_for(&self, ev: &Evaluator) -> Option<Arc<Store>> {
        let registry = self.registry.get().and_then(Weak::upgrade)?;
        registry.of_resource(&ev.group, &ev.resource).filter(|s| s.info.namespaced)
    }

    fn holds_quotas(&self, namespace: &str) -> bool {
        self.namespaces.lock().unwrap_or_else(|e| e.into_inner()).contains_key(namespace)
    }

    async fn list(store: &Store, namespace: &str) -> Result<Vec<Value>, StatusError> {
        let list = store.list(namespace, &ListOptions::default()).await?;
        Ok(list.get("items").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// The namespace's usage of what `quota` tracks, from the objects present
    /// (upstream's CalculateUsage).
    async fn usage(&self, quota: &Value) -> Result<ResourceList, StatusError> {
        let hard = keys(&list_at(quota, "/spec/hard"));
        let scopes = scopes(quota);
        let mut evaluators: Vec<Evaluator> = CORE_EVALUATED.iter().map(|r| Evaluator::of("", r)).collect();
        for (group, resource) in hard.iter().filter_map(|n| counted(n)) {
            let ev = Evaluator::of(&group, &resource);
            if !evaluators.contains(&ev) {
                evaluators.push(ev);
            }
        }
        let mut used = ResourceList::new();
        for ev in evaluators {
            let matched = ev.matching(&hard);
            if matched.is_empty() {
                continue;
            }
            for name in &matched {
                used.entry(name.clone()).or_insert_with(|| Quantity::zero(Format::DecimalSI));
            }
            // A resource nobody serves (a CRD not yet there) counts nothing.
            let Some(store) = self.store_for(&ev) else { continue };
            for obj in Self::list(&store, meta::namespace(quota)).await? {
                if ev.in_scopes(&scopes, &obj) {
                    add(&mut used, &mask(&ev.usage(&obj), &matched));
                }
            }
        }
        Ok(used)
    }

    /// Writes `quota` with `used` (and hard from its spec) as its status
    /// unless that is what it holds; returns the quota as stored.
    async fn write_status(&self, quota: &Value, used: &ResourceList) -> Result<Value, StatusError> {
        let status = json!({"hard": quota.pointer("/spec/hard").cloned().unwrap_or(json!({})), "used": to_json(used)});
        if quota.get("status") == Some(&status) {
            return Ok(quota.clone());
        }
        let mut next = quota.clone();
        next["status"] = status;
        let store = self.quota_store()?;
        let written = store
            .update(
                meta::namespace(quota),
                meta::name(quota),
                next,
                Some(&Subresource::Status),
                &WriteOptions::default(),
            )
            .await?;
        Ok(written.object)
    }

    /// Recomputes one quota's status from the objects present.
    async fn sync(&self, quota: &Value) -> Result<Value, StatusError> {
        let used = self.usage(quota).await?;
        self.write_status(quota, &used).await
    }

    /// Upstream's CheckRequest for one admitted write, charging the quotas
    /// unless dry run.
    async fn check(&self, a: &AdmissionAttributes<'_>, ev: &Evaluator, obj: &Value) -> Result<(), StatusError> {
        let store = self.quota_store()?;
        let _serial = self.lock.lock().await;
        'attempt: for _ in 0..MAX_ATTEMPTS {
            let mut interesting = Vec::new();
            for quota in Self::list(&store, a.namespace).await? {
                let quota = match needs_sync(&quota) {
                    false => quota,
                    true => match self.sync(&quota).await {
                        Ok(q) => q,
                        // Changed while we computed: read it again.
                        Err(e) if e.code == 409 => continue 'attempt,
                        Err(e) => return Err(e),
                    },
                };
                let matched = ev.matching(&keys(&list_at(&quota, "/status/hard")));
                if matched.is_empty() || !ev.in_scopes(&scopes(&quota), obj) {
                    continue;
                }
                if let Err(why) = ev.constraints(&matched, obj) {
                    return Err(a.forbidden(&format!("failed quota: {}: {why}", meta::name(&quota))));
                }
                interesting.push(quota);
            }
            if interesting.is_empty() {
                return Ok(());
            }
            let mut delta = ev.usage(obj);
            if let Some(old) =
                a.old.filter(|o| a.operation == Operation::Update && !meta::resource_version(o).is_empty())
            {
                delta = grown(&delta, &ev.usage(old));
            }
            delta.retain(|_, q| !q.is_zero());
            if delta.is_empty() {
                return Ok(());
            }
            let mut charged = Vec::new();
            for mut quota in interesting {
                let (hard, used) = (list_at(&quota, "/status/hard"), list_at(&quota, "/status/used"));
                let requested = mask(&delta, &keys(&hard));
                let mut next = used.clone();
                add(&mut next, &requested);
                let exceeded: Vec<String> =
                    requested.keys().filter(|k| hard.get(*k).is_some_and(|h| next[*k] > *h)).cloned().collect();
                if !exceeded.is_empty() {
                    return Err(a.forbidden(&format!(
                        "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                        meta::name(&quota),
                        pretty(&mask(&requested, &exceeded)),
                        pretty(&mask(&used, &exceeded)),
                        pretty(&mask(&hard, &exceeded)),
                    )));
                }
                if !requested.is_empty() {
                    quota["status"]["used"] = to_json(&next);
                    charged.push(quota);
                }
            }
            if a.dry_run {
                return Ok(());
            }
            match self.charge(&store, charged).await {
                Err(e) if e.code == 409 => continue,
                other => return other,
            }
        }
        Err(StatusError::internal(format!(
            "resource quota evaluation for {} in {} kept conflicting",
            a.info.plural, a.namespace
        )))
    }

    /// Writes the charged quotas' status, each at the version it was read.
    async fn charge(&self, store: &Store, charged: Vec<Value>) -> Result<(), StatusError> {
        for quota in charged {
            let (ns, name) = (meta::namespace(&quota).to_string(), meta::name(&quota).to_string());
            store.update(&ns, &name, quota, Some(&Subresource::Status), &WriteOptions::default()).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for ResourceQuota {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let Some(obj) = a.object else { return Ok(()) };
        if !a.subresource.is_empty() || a.namespace.is_empty() || !self.inner.holds_quotas(a.namespace) {
            return Ok(());
        }
        let ev = Evaluator::of(&a.info.group, &a.info.plural);
        if !ev.handles(a.operation) {
            return Ok(());
        }
        self.inner.check(a, &ev, obj).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_counts_only_increases() {
        let l = |s: &[(&str, &str)]| -> ResourceList {
            s.iter().map(|(k, v)| (k.to_string(), Quantity::parse(v).expect("quantity"))).collect()
        };
        let d = grown(
            &l(&[("services", "1"), ("services.nodeports", "3"), ("services.loadbalancers", "0")]),
            &l(&[("services", "1"), ("services.nodeports", "1"), ("services.loadbalancers", "1")]),
        );
        assert_eq!(pretty(&d), "services.nodeports=2");
        assert!(needs_sync(&json!({"spec": {"hard": {"pods": "1"}}})));
        assert!(!needs_sync(
            &json!({"spec": {"hard": {"pods": "1"}}, "status": {"hard": {"pods": "1"}, "used": {"pods": "0"}}})
        ));
    }
}
