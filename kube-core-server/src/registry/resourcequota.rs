//! core/v1 resourcequotas (upstream pkg/registry/core/resourcequota): resource
//! names and quantities of spec.hard, scopes, status subresource (cleared on
//! create: usage is the quota controller's), and the Request/Limit table.

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::ResourceQuota;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::podspec::parse_quantity;
use super::{age, arr_at, map_at};

pub struct ResourceQuotaStrategy;

pub fn registration() -> Registration {
    Registration::of::<ResourceQuota>(ResourceQuotaStrategy).short_names(&["quota"]).status().returns_deleted_object()
}

/// Upstream's standardQuotaResources.
const QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Resources counted in whole objects (upstream's integerResources).
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
    "VolumeAttributesClass",
];

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-") || name.starts_with("requests.hugepages-")
}

/// Upstream's ValidateResourceQuotaResourceName.
fn validate_resource_name(name: &str, field: &str, causes: &mut Vec<Cause>) {
    if let Some(p) = generic_server::meta::qualified_name_problem(name) {
        causes.push(Cause::invalid(field, &json!(name), &p));
        return;
    }
    if !name.contains('/') && !QUOTA_RESOURCES.contains(&name) && name != "storage" && !is_hugepages(name) {
        causes.push(Cause::invalid(field, &json!(name), "must be a standard resource type or fully qualified"));
        causes.push(Cause::invalid(field, &json!(name), "must be a standard resource for quota"));
    }
}

/// Upstream's ValidateResourceQuantityValue: never negative, whole for counts.
pub(crate) fn validate_quantity(name: &str, q: &Value, field: &str, causes: &mut Vec<Cause>) {
    let Some(n) = q.as_str().and_then(parse_quantity) else { return };
    if n < 0.0 {
        causes.push(Cause::invalid(field, q, "must be greater than or equal to 0"));
    }
    let counted = INTEGER_RESOURCES.contains(&name) || name.starts_with("count/");
    if counted && n.fract() != 0.0 {
        causes.push(Cause::invalid(field, q, "must be an integer"));
    }
}

/// "resource: used/hard" for each hard limit, split into the Request and
/// Limit columns by a `limits.` prefix, as upstream's printer does.
fn usage_cells(obj: &Value) -> (String, String) {
    let used = map_at(obj, "/status/used");
    let mut names: Vec<&String> = map_at(obj, "/status/hard").map(|m| m.keys().collect()).unwrap_or_default();
    names.sort();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for name in names {
        let hard = obj.pointer(&format!("/status/hard/{}", name.replace('~', "~0").replace('/', "~1")));
        let hard = hard.and_then(Value::as_str).unwrap_or("0");
        let used = used.and_then(|u| u.get(name)).and_then(Value::as_str).unwrap_or("0");
        let cell = format!("{name}: {used}/{hard}");
        if name.split('.').next() == Some("limits") && name.contains('.') {
            limits.push(cell);
        } else {
            requests.push(cell);
        }
    }
    (requests.join(", "), limits.join(", "))
}

impl Strategy for ResourceQuotaStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for section in ["spec", "status"] {
            let parts: &[&str] = if section == "spec" { &["hard"] } else { &["hard", "used"] };
            for part in parts {
                let mut entries: Vec<_> = map_at(obj, &format!("/{section}/{part}")).into_iter().flatten().collect();
                entries.sort_by_key(|(name, _)| name.as_str());
                for (name, q) in entries {
                    let field = format!("{section}.{part}[{name}]");
                    validate_resource_name(name, &field, &mut causes);
                    validate_quantity(name, q, &field, &mut causes);
                }
            }
        }
        let scopes = arr_at(obj, "/spec/scopes");
        if scopes.iter().any(|s| !s.as_str().is_some_and(|s| SCOPES.contains(&s))) {
            causes.push(super::invalid_raw(
                "spec.scopes",
                &format!(
                    "[]core.ResourceQuotaScope{{{}}}",
                    scopes.iter().map(super::show).collect::<Vec<_>>().join(", ")
                ),
                "unsupported scope",
            ));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Request", "string", "Request represents a minimum amount of cpu/memory that a container may consume."),
            TableColumn::new("Limit", "string", "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let (requests, limits) = usage_cells(obj);
        vec![json!(generic_server::meta::name(obj)), json!(requests), json!(limits), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_quantities_and_cells() {
        let s = ResourceQuotaStrategy;
        let q = json!({"spec": {"hard": {"pods": "1.5", "cpu": "-1", "bogus": "1", "example.com/gpu": "2"}}});
        let msgs: Vec<String> = s.validate(&q).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource type or fully qualified",
                "spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource for quota",
                "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.hard[pods]: Invalid value: \"1.5\": must be an integer",
            ]
        );
        let q = json!({"status": {"hard": {"limits.cpu": "2", "pods": "4", "cpu": "1"}, "used": {"pods": "1"}}});
        let (r, l) = usage_cells(&q);
        assert_eq!(r, "cpu: 0/1, pods: 1/4");
        assert_eq!(l, "limits.cpu: 0/2");
    }
}
