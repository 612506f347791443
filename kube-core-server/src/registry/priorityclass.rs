//! scheduling.k8s.io/v1 priorityclasses (upstream pkg/registry/scheduling/
//! priorityclass and pkg/apis/scheduling): the default preemption policy, the
//! reserved `system-` names, the user value ceiling, an immutable value and
//! policy, and the table. The built-in classes are created at start by
//! [`crate::bootstrap`]; that only one class is the global default is the
//! Priority admission plugin's rule ([`crate::admission::Priority`]).

use serde_json::{json, Value};

use k8s_openapi::api::scheduling::v1::PriorityClass;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, default_field};

pub struct PriorityClassStrategy;

pub fn registration() -> Registration {
    Registration::of::<PriorityClass>(PriorityClassStrategy).short_names(&["pc"])
}

/// Names starting with this are reserved for the built-in classes.
pub const SYSTEM_PREFIX: &str = "system-";

/// The highest value a class that is not built in may have.
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;

/// Upstream's SystemPriorityClasses: name, value, description.
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

pub const PREEMPTION_POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];

/// A built-in class as upstream's bootstrap creates it.
pub fn system_priority_class(name: &str, value: i64, description: &str) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "description": description,
    })
}

/// Upstream's IsKnownSystemPriorityClass, with its error.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    match SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) {
        Some((_, v, _)) if *v != value => Err(format!("value of {name} PriorityClass must be {v}")),
        Some(_) if global_default => Err(format!("globalDefault of {name} PriorityClass must be false")),
        Some(_) => Ok(()),
        None => Err(format!("{name} is not a known system priority class")),
    }
}

fn value(obj: &Value) -> i64 {
    obj.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn global_default(obj: &Value) -> bool {
    obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
}

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(m) = obj.as_object_mut() else { return };
        default_field(m, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = generic_server::meta::name(obj);
        if name.starts_with(SYSTEM_PREFIX) {
            if let Err(e) = known_system_class(name, value(obj), global_default(obj)) {
                causes.push(Cause::forbidden(
                    "metadata.name",
                    &format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {e}"),
                ));
            }
        } else if value(obj) > HIGHEST_USER_DEFINABLE_PRIORITY {
            causes.push(Cause::forbidden(
                "value",
                &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
            ));
        }
        if let Some(p) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
            if !p.as_str().is_some_and(|p| PREEMPTION_POLICIES.contains(&p)) {
                causes.push(Cause::not_supported("preemptionPolicy", p, PREEMPTION_POLICIES));
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        // Upstream checks only these on update (the create rules ran once).
        let mut causes = Vec::new();
        if value(new) != value(old) {
            causes.push(Cause::forbidden("value", "may not be changed in an update."));
        }
        let policy = |o: &Value| o.get("preemptionPolicy").filter(|p| !p.is_null()).cloned();
        if policy(new) != policy(old) {
            causes.push(Cause::immutable("preemptionPolicy", &policy(new).unwrap_or(Value::Null)));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Value", "integer", "Value is the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
            TableColumn::new("Global-Default", "boolean", "GlobalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class."),
            TableColumn::age_column(),
            TableColumn::new("PreemptionPolicy", "string", "PreemptionPolicy is the Policy for preempting pods with lower priority."),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let policy = obj.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("");
        vec![
            json!(generic_server::meta::name(obj)),
            json!(value(obj)),
            json!(global_default(obj)),
            age(obj),
            json!(policy),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn reserved_names_and_values() {
        let s = PriorityClassStrategy;
        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(s.validate(&pc("system-node-critical", 2_000_001_000)).is_empty());
        assert_eq!(
            messages(s.validate(&pc("system-node-critical", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        assert_eq!(
            messages(s.validate(&pc("system-mine", 5))),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        assert_eq!(
            messages(s.validate(&pc("high", 1_000_000_001))),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let mut bad = pc("p", 1);
        bad["preemptionPolicy"] = json!("Sometimes");
        assert_eq!(
            messages(s.validate(&bad)),
            ["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"Never\", \"PreemptLowerPriority\""]
        );
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let s = PriorityClassStrategy;
        let mut old = json!({"metadata": {"name": "p"}, "value": 1});
        s.default(&mut old);
        assert_eq!(old["preemptionPolicy"], "PreemptLowerPriority");
        let mut new = old.clone();
        new["value"] = json!(2);
        new["preemptionPolicy"] = json!("Never");
        assert_eq!(
            messages(s.validate_update(&new, &old)),
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable"
            ]
        );
        new["value"] = json!(1);
        new["preemptionPolicy"] = json!("PreemptLowerPriority");
        new["description"] = json!("changed");
        assert!(s.validate_update(&new, &old).is_empty());
    }
}
