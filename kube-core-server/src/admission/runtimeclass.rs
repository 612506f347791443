//! RuntimeClass (upstream plugin/pkg/admission/runtimeclass): a new pod
//! that names a RuntimeClass gets the class's pod overhead and scheduling
//! (node selector and tolerations); a pod naming a class that does not exist
//! is refused, and so is an overhead the client set that the class does not
//! define, because the overhead is the class's to say.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use generic_server::registry::{AdmissionAttributes, Mutating, Operation, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::Pod;

use crate::registry::podspec::parse_quantity;
use crate::registry::{arr_at, child, map_at};
use generic_server::registry::BoundStore;

const OVERHEAD_MISMATCH: &str = "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

/// The RuntimeClass plugin; see the module doc.
pub struct RuntimeClass {
    pub classes: BoundStore,
}

impl Default for RuntimeClass {
    fn default() -> Self {
        RuntimeClass { classes: BoundStore::new("runtimeclasses") }
    }
}

impl RuntimeClass {
    /// The pod's RuntimeClass, if it names one.
    async fn class_of(&self, a: &AdmissionAttributes<'_>, pod: &Value) -> Result<Option<Arc<Value>>, StatusError> {
        let Some(name) = pod.pointer("/spec/runtimeClassName").and_then(Value::as_str) else { return Ok(None) };
        match self.classes.find(name).await? {
            Some(class) => Ok(Some(class)),
            None => Err(a.forbidden(&format!("pod rejected: RuntimeClass {name:?} not found"))),
        }
    }
}

fn applies(a: &AdmissionAttributes<'_>) -> bool {
    a.operation == Operation::Create && a.is_main::<Pod>()
}

/// The class's pod overhead: None when the class defines no overhead,
/// Some(Null) when it defines one without podFixed.
fn class_overhead(class: &Value) -> Option<Value> {
    class.get("overhead").filter(|o| !o.is_null()).map(|o| o.get("podFixed").cloned().unwrap_or(Value::Null))
}

/// Upstream's semantic equality of two resource lists: the same names with
/// equal quantities; absent and empty are the same.
fn same_resources(a: &Value, b: &Value) -> bool {
    let empty = Map::new();
    let (a, b) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let amount = |v: &Value| v.as_str().and_then(parse_quantity);
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| amount(v) == amount(w)))
}

/// A toleration's fields, for upstream's comparisons of tolerations.
#[derive(PartialEq)]
struct Toleration<'a> {
    key: &'a str,
    operator: &'a str,
    value: &'a str,
    effect: &'a str,
    seconds: Option<i64>,
}

impl<'a> Toleration<'a> {
    fn of(t: &'a Value) -> Self {
        let s = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
        Toleration {
            key: s("key"),
            operator: s("operator"),
            value: s("value"),
            effect: s("effect"),
            seconds: t.get("tolerationSeconds").and_then(Value::as_i64),
        }
    }

    /// Whether `self` tolerates everything `t` tolerates (upstream's
    /// isSuperset, quirks included: an empty operator on `t` counts as
    /// neither Equal nor Exists).
    fn covers(&self, t: &Toleration) -> bool {
        if self == t {
            return true;
        }
        let any_key = self.key.is_empty() && self.operator == "Exists";
        if t.key != self.key && !any_key {
            return false;
        }
        if t.effect != self.effect && !self.effect.is_empty() {
            return false;
        }
        if self.effect == "NoExecute" {
            if let Some(limit) = self.seconds {
                if t.seconds.is_none_or(|s| s > limit) {
                    return false;
                }
            }
        }
        match self.operator {
            "Equal" | "" => t.operator == "Equal" && t.value == self.value,
            "Exists" => true,
            _ => false,
        }
    }
}

/// Upstream's MergeTolerations: both lists, without the tolerations another
/// one covers (of two equal ones, the first stays).
fn merge_tolerations(first: &[Value], second: &[Value]) -> Vec<Value> {
    let all: Vec<&Value> = first.iter().chain(second).collect();
    let mut merged: Vec<&Value> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        let this = Toleration::of(t);
        let redundant = merged.iter().any(|m| Toleration::of(m).covers(&this))
            || all[i + 1..].iter().map(|later| Toleration::of(later)).any(|later| later != this && later.covers(&this));
        if !redundant {
            merged.push(t);
        }
    }
    merged.into_iter().cloned().collect()
}

/// Upstream's setScheduling: the class's node selector joins the pod's (a
/// key both set differently is refused), its tolerations are merged in.
fn set_scheduling(a: &AdmissionAttributes<'_>, pod: &mut Value, scheduling: &Value) -> Result<(), StatusError> {
    let spec = child(pod, "spec");
    if let Some(wanted) = map_at(scheduling, "/nodeSelector").filter(|m| !m.is_empty()) {
        match spec.get_mut("nodeSelector") {
            Some(Value::Object(selector)) => {
                let mut keys: Vec<&String> = wanted.keys().collect();
                keys.sort();
                for key in keys {
                    let class_value = wanted[key].as_str().unwrap_or("");
                    if let Some(pod_value) = selector.get(key).and_then(Value::as_str) {
                        if pod_value != class_value {
                            return Err(a.forbidden(&format!("conflict: runtimeClass.scheduling.nodeSelector[{key}] = {class_value}; pod.spec.nodeSelector[{key}] = {pod_value}")));
                        }
                    }
                    selector.insert(key.clone(), json!(class_value));
                }
            }
            _ => {
                spec.insert("nodeSelector".into(), Value::Object(wanted.clone()));
            }
        }
    }
    let own = match spec.get("tolerations") {
        Some(Value::Array(t)) => t.clone(),
        _ => Vec::new(),
    };
    let merged = merge_tolerations(&own, arr_at(scheduling, "/tolerations"));
    if merged.is_empty() {
        spec.remove("tolerations");
    } else {
        spec.insert("tolerations".into(), Value::Array(merged));
    }
    Ok(())
}

#[async_trait::async_trait]
impl Mutating for RuntimeClass {
    async fn admit(&self, a: &AdmissionAttributes<'_>, pod: &mut Value) -> Result<(), StatusError> {
        if !applies(a) {
            return Ok(());
        }
        let Some(class) = self.class_of(a, pod).await? else { return Ok(()) };
        if let Some(fixed) = class_overhead(&class) {
            let spec = child(pod, "spec");
            if let Some(given) = spec.get("overhead").filter(|o| !o.is_null()) {
                if !same_resources(&fixed, given) {
                    return Err(a.forbidden(OVERHEAD_MISMATCH));
                }
            }
            if fixed.is_null() {
                spec.remove("overhead");
            } else {
                spec.insert("overhead".into(), fixed);
            }
        }
        if let Some(scheduling) = class.get("scheduling").filter(|s| !s.is_null()) {
            set_scheduling(a, pod, scheduling)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for RuntimeClass {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let Some(pod) = a.object.filter(|_| applies(a)) else { return Ok(()) };
        let class = self.class_of(a, pod).await?;
        let given = pod.pointer("/spec/overhead").filter(|o| !o.is_null());
        match class.as_deref().and_then(class_overhead) {
            Some(fixed) if !same_resources(&fixed, given.unwrap_or(&Value::Null)) => {
                Err(a.forbidden(OVERHEAD_MISMATCH))
            }
            Some(_) => Ok(()),
            None if given.is_some() => {
                Err(a.forbidden("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// merge_tolerations over lists of references, its result as a JSON list.
    fn merge(first: &[&Value], second: &[&Value]) -> Value {
        let owned = |l: &[&Value]| l.iter().map(|v| (*v).clone()).collect::<Vec<_>>();
        Value::Array(merge_tolerations(&owned(first), &owned(second)))
    }

    #[test]
    fn tolerations_merge_keeping_the_wider() {
        let exists_all = json!({"operator": "Exists"});
        let a = json!({"key": "a", "operator": "Equal", "value": "1", "effect": "NoSchedule"});
        let a_any_effect = json!({"key": "a", "operator": "Equal", "value": "1"});
        let b = json!({"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30});
        let b_longer = json!({"key": "b", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        // The class's wider toleration replaces the pod's narrower one.
        assert_eq!(merge(&[&a], &[&a_any_effect]), json!([a_any_effect]));
        // Of two NoExecute tolerations, the longer covers the shorter...
        assert_eq!(merge(&[&b_longer], &[&b]), json!([b_longer]));
        assert_eq!(merge(&[&b], &[&b_longer]), json!([b_longer]));
        // ...equal ones keep the first, and "tolerate everything" covers all.
        assert_eq!(merge(&[&a], &[&a]), json!([a]));
        assert_eq!(merge(&[&a, &b], &[&exists_all]), json!([exists_all]));
        // An empty operator on the covered side is neither Equal nor Exists.
        let bare = json!({"key": "a", "value": "1", "effect": "NoSchedule"});
        assert_eq!(merge(&[&bare], &[&a_any_effect]), json!([bare, a_any_effect]));
    }

    #[test]
    fn resource_lists_compare_by_quantity() {
        assert!(same_resources(&json!({"cpu": "100m", "memory": "1Gi"}), &json!({"cpu": "0.1", "memory": "1024Mi"})));
        assert!(!same_resources(&json!({"cpu": "100m"}), &json!({"cpu": "100m", "memory": "1Gi"})));
        assert!(same_resources(&json!({}), &Value::Null));
    }
}
