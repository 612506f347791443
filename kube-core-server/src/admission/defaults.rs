//! The plugins that fill in what a new object left out.
//!
//! TaintNodesByCondition (upstream plugin/pkg/admission/nodetaint): a new
//! Node carries the `node.kubernetes.io/not-ready:NoSchedule` taint until
//! the node lifecycle controller sees it ready, so nothing is scheduled on a
//! node before its kubelet has reported.
//!
//! DefaultTolerationSeconds (plugin/pkg/admission/defaulttolerationseconds):
//! a pod that tolerates neither the not-ready nor the unreachable NoExecute
//! taint gets a toleration of each for a bounded time (300 s unless the
//! flags say otherwise), so its node's failure evicts it only after a while.
//!
//! DefaultIngressClass (plugin/pkg/admission/defaultingressclass): an
//! Ingress that names no class gets the default IngressClass.

use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::{AdmissionAttributes, Mutating, Operation};
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::networking::v1::Ingress;

use crate::registry::{child, str_at};
use generic_server::registry::BoundStore;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// The TaintNodesByCondition plugin; see the module doc.
pub struct TaintNodesByCondition;

#[async_trait::async_trait]
impl Mutating for TaintNodesByCondition {
    async fn admit(&self, a: &AdmissionAttributes<'_>, node: &mut Value) -> Result<(), StatusError> {
        if a.operation != Operation::Create || !a.is_main::<Node>() {
            return Ok(());
        }
        let spec = child(node, "spec");
        let taints = spec.entry("taints").or_insert_with(|| json!([]));
        if !taints.is_array() {
            *taints = json!([]);
        }
        let Value::Array(taints) = taints else { return Ok(()) };
        // Upstream's MatchTaint: the same key and effect, whatever the value.
        let tainted =
            taints.iter().any(|t| str_at(t, "/key") == TAINT_NOT_READY && str_at(t, "/effect") == "NoSchedule");
        if !tainted {
            taints.push(json!({"key": TAINT_NOT_READY, "effect": "NoSchedule"}));
        }
        Ok(())
    }
}

/// The DefaultTolerationSeconds plugin; see the module doc. The seconds are
/// the --default-not-ready-toleration-seconds and
/// --default-unreachable-toleration-seconds flags, set before the server
/// serves.
pub struct DefaultTolerationSeconds {
    not_ready: AtomicI64,
    unreachable: AtomicI64,
}

impl Default for DefaultTolerationSeconds {
    fn default() -> Self {
        DefaultTolerationSeconds { not_ready: AtomicI64::new(300), unreachable: AtomicI64::new(300) }
    }
}

impl DefaultTolerationSeconds {
    pub fn set_seconds(&self, not_ready: i64, unreachable: i64) {
        self.not_ready.store(not_ready, Ordering::Relaxed);
        self.unreachable.store(unreachable, Ordering::Relaxed);
    }

    /// Adds the tolerations `tolerations` lacks.
    fn add_defaults(&self, tolerations: &mut Vec<Value>) {
        // A toleration with no key tolerates every taint, one with no effect
        // every effect.
        let tolerates = |key: &str| {
            tolerations.iter().any(|t| {
                let (k, effect) = (str_at(t, "/key"), str_at(t, "/effect"));
                (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
        };
        let missing: Vec<(&str, i64)> = [
            (TAINT_NOT_READY, self.not_ready.load(Ordering::Relaxed)),
            (TAINT_UNREACHABLE, self.unreachable.load(Ordering::Relaxed)),
        ]
        .into_iter()
        .filter(|(key, _)| !tolerates(key))
        .collect();
        for (key, seconds) in missing {
            tolerations
                .push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
}

#[async_trait::async_trait]
impl Mutating for DefaultTolerationSeconds {
    async fn admit(&self, a: &AdmissionAttributes<'_>, pod: &mut Value) -> Result<(), StatusError> {
        if !matches!(a.operation, Operation::Create | Operation::Update) || !a.is_main::<Pod>() {
            return Ok(());
        }
        let spec = child(pod, "spec");
        let mut tolerations = match spec.get("tolerations") {
            Some(Value::Array(t)) => t.clone(),
            _ => Vec::new(),
        };
        let before = tolerations.len();
        self.add_defaults(&mut tolerations);
        if tolerations.len() != before {
            spec.insert("tolerations".into(), Value::Array(tolerations));
        }
        Ok(())
    }
}

/// Of the classes `is_default` marks, the newest (upstream's order since
/// 1.28 for IngressClasses and StorageClasses alike: the latest
/// creationTimestamp, then the first name), so that adding a second default
/// takes over without refusing claims and Ingresses meanwhile.
pub fn newest_default(classes: Vec<Value>, is_default: impl Fn(&Value) -> bool) -> Option<Value> {
    let created = |c: &Value| {
        chrono::DateTime::parse_from_rfc3339(meta::meta_str(c, "creationTimestamp")).map(|t| t.timestamp()).unwrap_or(0)
    };
    classes
        .into_iter()
        .filter(|c| is_default(c))
        .min_by(|a, b| created(b).cmp(&created(a)).then_with(|| meta::name(a).cmp(meta::name(b))))
}

/// Whether annotation `key` of `obj` is "true".
pub fn annotation_true(obj: &Value, key: &str) -> bool {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str) == Some("true")
}

/// Whether `obj` has annotation `key`, whatever its value.
pub fn has_annotation(obj: &Value, key: &str) -> bool {
    obj.pointer("/metadata/annotations").and_then(|a| a.get(key)).is_some()
}

/// The DefaultIngressClass plugin; see the module doc.
pub struct DefaultIngressClass {
    pub classes: BoundStore,
}

impl Default for DefaultIngressClass {
    fn default() -> Self {
        DefaultIngressClass { classes: BoundStore::new("ingressclasses") }
    }
}

#[async_trait::async_trait]
impl Mutating for DefaultIngressClass {
    async fn admit(&self, a: &AdmissionAttributes<'_>, ingress: &mut Value) -> Result<(), StatusError> {
        if a.operation != Operation::Create || !a.is_main::<Ingress>() {
            return Ok(());
        }
        // An explicit class, even "", or the legacy annotation is the
        // client's choice.
        let named = ingress.pointer("/spec/ingressClassName").is_some_and(|c| !c.is_null());
        if named || has_annotation(ingress, "kubernetes.io/ingress.class") {
            return Ok(());
        }
        let classes = self.classes.list().await.map_err(|e| a.forbidden(&e.message))?;
        let Some(class) =
            newest_default(classes, |c| annotation_true(c, "ingressclass.kubernetes.io/is-default-class"))
        else {
            return Ok(());
        };
        child(ingress, "spec").insert("ingressClassName".into(), json!(meta::name(&class)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerations_added_only_where_missing() {
        let p = DefaultTolerationSeconds::default();
        p.set_seconds(60, 120);
        let mut none = Vec::new();
        p.add_defaults(&mut none);
        assert_eq!(
            none,
            [
                json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}),
                json!({"key": TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 120}),
            ]
        );
        // Its own not-ready toleration is kept; only unreachable is added.
        let own = json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"});
        let mut one = vec![own.clone()];
        p.add_defaults(&mut one);
        assert_eq!(one.len(), 2);
        assert_eq!((&one[0], str_at(&one[1], "/key")), (&own, TAINT_UNREACHABLE));
        // A toleration of every key with no effect tolerates both.
        let mut all = vec![json!({"operator": "Exists"})];
        p.add_defaults(&mut all);
        assert_eq!(all.len(), 1);
        // A NoSchedule toleration of the key does not count.
        let mut schedule = vec![json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoSchedule"})];
        p.add_defaults(&mut schedule);
        assert_eq!(schedule.len(), 3);
    }

    #[test]
    fn the_newest_default_wins_then_the_first_name() {
        let class = |name: &str, at: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": at,
                "annotations": {"d": if default { "true" } else { "false" }}}})
        };
        let is_default = |c: &Value| annotation_true(c, "d");
        let classes = vec![
            class("old", "2026-01-01T00:00:00Z", true),
            class("newer-b", "2026-01-02T00:00:00Z", true),
            class("newer-a", "2026-01-02T00:00:00Z", true),
            class("newest", "2026-01-03T00:00:00Z", false),
        ];
        assert_eq!(newest_default(classes, is_default).map(|c| meta::name(&c).to_string()).as_deref(), Some("newer-a"));
        assert!(newest_default(vec![class("x", "2026-01-01T00:00:00Z", false)], is_default).is_none());
    }
}
