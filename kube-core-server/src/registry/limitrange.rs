//! core/v1 limitranges (upstream pkg/registry/core/limitrange): container
//! defaults filled from max/min, limit types and resource names validated,
//! min/max/default ordering checked. Upstream has no printer for it, so the
//! table is the apiserver's default one: Name and Created At.

use serde_json::{json, Map, Value};

use k8s_openapi::api::core::v1::LimitRange;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::podspec::parse_quantity;
use super::{arr_at, str_at};

pub struct LimitRangeStrategy;

pub fn registration() -> Registration {
    Registration::of::<LimitRange>(LimitRangeStrategy).short_names(&["limits"])
}

const LIMIT_TYPES: &[&str] = &["Pod", "Container", "PersistentVolumeClaim"];

/// Upstream's SetDefaults_LimitRangeItem for a Container item: default from
/// max, defaultRequest from default, then from min.
fn default_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let section =
        |item: &Map<String, Value>, k: &str| item.get(k).and_then(Value::as_object).cloned().unwrap_or_default();
    let (max, min) = (section(item, "max"), section(item, "min"));
    let mut default = section(item, "default");
    for (k, v) in &max {
        default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let mut request = section(item, "defaultRequest");
    for (k, v) in default.iter().chain(min.iter()) {
        request.entry(k.clone()).or_insert_with(|| v.clone());
    }
    item.insert("default".into(), Value::Object(default));
    item.insert("defaultRequest".into(), Value::Object(request));
}

fn quantity(item: &Value, section: &str, key: &str) -> Option<(String, f64)> {
    let q = item.get(section)?.get(key)?.as_str()?;
    Some((q.to_string(), parse_quantity(q)?))
}

fn validate_item(item: &Value, path: &str, causes: &mut Vec<Cause>) {
    let kind = str_at(item, "/type");
    if let Some(p) = generic_server::meta::qualified_name_problem(kind) {
        causes.push(Cause::invalid(path, &json!(kind), &p));
    } else if !kind.contains('/') && !LIMIT_TYPES.contains(&kind) {
        causes.push(Cause::invalid(path, &json!(kind), "must be a standard limit type or fully qualified"));
    }
    if kind == "Pod" {
        for section in ["default", "defaultRequest"] {
            if item.get(section).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
                causes.push(Cause::forbidden(format!("{path}.{section}"), "may not be specified when `type` is 'Pod'"));
            }
        }
    }
    let mut keys: Vec<&String> = ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"]
        .iter()
        .filter_map(|s| item.get(*s).and_then(Value::as_object))
        .flat_map(|m| m.keys())
        .collect();
    keys.sort();
    keys.dedup();
    // (lower section, upper section, message) pairs upstream checks in order.
    let orders = [
        ("min", "max", "min value {lo} is greater than max value {hi}", "min"),
        ("min", "defaultRequest", "min value {lo} is greater than default request value {hi}", "defaultRequest"),
        ("defaultRequest", "max", "default request value {lo} is greater than max value {hi}", "defaultRequest"),
        (
            "defaultRequest",
            "default",
            "default request value {lo} is greater than default limit value {hi}",
            "defaultRequest",
        ),
        ("default", "max", "default value {lo} is greater than max value {hi}", "default"),
        ("min", "default", "min value {lo} is greater than default value {hi}", "default"),
    ];
    for key in keys {
        for (lo_s, hi_s, msg, at) in orders {
            if let (Some((lo, l)), Some((hi, h))) = (quantity(item, lo_s, key), quantity(item, hi_s, key)) {
                if l > h {
                    let shown = if at == lo_s { &lo } else { &hi };
                    let detail = msg.replace("{lo}", &lo).replace("{hi}", &hi);
                    causes.push(super::invalid_raw(format!("{path}.{at}[{key}]"), shown, &detail));
                }
            }
        }
    }
}

impl Strategy for LimitRangeStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(limits) = obj.pointer_mut("/spec/limits").and_then(Value::as_array_mut) else { return };
        for item in limits.iter_mut().filter_map(Value::as_object_mut) {
            default_item(item);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (i, item) in arr_at(obj, "/spec/limits").iter().enumerate() {
            let path = format!("spec.limits[{i}]");
            validate_item(item, &path, &mut causes);
            let kind = str_at(item, "/type");
            if seen.contains(&kind) {
                causes.push(Cause::duplicate(format!("{path}.type"), &json!(kind)));
            }
            seen.push(kind);
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let created = generic_server::meta::meta_str(obj, "creationTimestamp");
        vec![json!(generic_server::meta::name(obj)), json!(created)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_defaults_and_order() {
        let s = LimitRangeStrategy;
        let mut lr =
            json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}});
        s.default(&mut lr);
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(lr["spec"]["limits"][0]["defaultRequest"], json!({"cpu": "2", "memory": "1Mi"}));
        let bad = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            {"type": "Container"},
            {"type": "Bogus"}
        ]}});
        let msgs: Vec<String> = s.validate(&bad).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.limits[0].min[cpu]: Invalid value: 2: min value 2 is greater than max value 1",
                "spec.limits[1].type: Duplicate value: \"Container\"",
                "spec.limits[2]: Invalid value: \"Bogus\": must be a standard limit type or fully qualified",
            ]
        );
    }
}
