//! autoscaling/v1 HorizontalPodAutoscalers over the stored autoscaling/v2 form
//! (upstream pkg/apis/autoscaling/v1/conversion.go): v1's
//! targetCPUUtilizationPercentage is v2's Resource metric for cpu with a
//! Utilization target; what v1 cannot say (other metrics, their statuses,
//! conditions, behavior) travels in the `autoscaling.alpha.kubernetes.io/*`
//! annotations, so a round trip through v1 loses nothing.
//!
//! As upstream: the annotations hold v1's (v2beta1-shaped) metric forms and
//! the behavior in the field names of upstream's internal type (capitalised,
//! every field present, read back case-insensitively); a metric carried in
//! the annotation comes back before the cpu one; v1 without any metric means
//! upstream's default, 80% cpu.

use serde_json::{json, Map, Value};

use generic_server::registry::store::{get_path, set_path};

const METRIC_SPECS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const METRIC_STATUSES: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] = [METRIC_SPECS, BEHAVIOR, METRIC_STATUSES, CONDITIONS];

/// autoscaling.DefaultCPUUtilization.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// Which v1 field of a metric source is which v2 field, per source, in v1's
/// field order.
type FieldMap = &'static [(&'static str, &'static [(&'static str, &'static str)])];

const SPEC_FIELDS: FieldMap = &[
    (
        "object",
        &[
            ("target", "describedObject"),
            ("metricName", "metric.name"),
            ("targetValue", "target.value"),
            ("selector", "metric.selector"),
            ("averageValue", "target.averageValue"),
        ],
    ),
    (
        "pods",
        &[
            ("metricName", "metric.name"),
            ("targetAverageValue", "target.averageValue"),
            ("selector", "metric.selector"),
        ],
    ),
    (
        "resource",
        &[
            ("name", "name"),
            ("targetAverageUtilization", "target.averageUtilization"),
            ("targetAverageValue", "target.averageValue"),
        ],
    ),
    (
        "containerResource",
        &[
            ("name", "name"),
            ("targetAverageUtilization", "target.averageUtilization"),
            ("targetAverageValue", "target.averageValue"),
            ("container", "container"),
        ],
    ),
    (
        "external",
        &[
            ("metricName", "metric.name"),
            ("metricSelector", "metric.selector"),
            ("targetValue", "target.value"),
            ("targetAverageValue", "target.averageValue"),
        ],
    ),
];

const STATUS_FIELDS: FieldMap = &[
    (
        "object",
        &[
            ("target", "describedObject"),
            ("metricName", "metric.name"),
            ("currentValue", "current.value"),
            ("selector", "metric.selector"),
            ("averageValue", "current.averageValue"),
        ],
    ),
    (
        "pods",
        &[
            ("metricName", "metric.name"),
            ("currentAverageValue", "current.averageValue"),
            ("selector", "metric.selector"),
        ],
    ),
    (
        "resource",
        &[
            ("name", "name"),
            ("currentAverageUtilization", "current.averageUtilization"),
            ("currentAverageValue", "current.averageValue"),
        ],
    ),
    (
        "containerResource",
        &[
            ("name", "name"),
            ("currentAverageUtilization", "current.averageUtilization"),
            ("currentAverageValue", "current.averageValue"),
            ("container", "container"),
        ],
    ),
    (
        "external",
        &[
            ("metricName", "metric.name"),
            ("metricSelector", "metric.selector"),
            ("currentValue", "current.value"),
            ("currentAverageValue", "current.averageValue"),
        ],
    ),
];

/// A metric in the other version's form; `to_v2` picks the direction. A v2
/// spec's target type, which v1 does not carry, follows from the fields set
/// (upstream's rule per source).
fn convert_metric(metric: &Value, fields: FieldMap, to_v2: bool, spec: bool) -> Value {
    let mut out = json!({"type": metric.get("type").cloned().unwrap_or(Value::Null)});
    for (source, pairs) in fields {
        let Some(src) = metric.get(*source).filter(|s| s.is_object()) else { continue };
        let mut conv = json!({});
        if to_v2 && spec {
            let has = |k: &str| src.get(k).is_some_and(|v| !v.is_null());
            let target_type = match *source {
                "object" if !has("averageValue") => "Value",
                "resource" | "containerResource" if has("targetAverageUtilization") => "Utilization",
                "external" if has("targetValue") => "Value",
                _ => "AverageValue",
            };
            set_path(&mut conv, "target.type", json!(target_type));
        }
        for (v1, v2) in pairs.iter() {
            let (from, to) = if to_v2 { (v1, v2) } else { (v2, v1) };
            if let Some(v) = get_path(src, from).filter(|v| !v.is_null()) {
                set_path(&mut conv, to, v.clone());
            }
        }
        out[*source] = conv;
    }
    out
}

fn is_cpu_resource(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// The rule fields of upstream's internal HPAScalingRules, in order, with
/// their JSON names; the annotation uses the Go names (capitalised).
const RULE_FIELDS: [&str; 4] = ["stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"];
const POLICY_FIELDS: [&str; 3] = ["type", "value", "periodSeconds"];

fn go_name(json_name: &str) -> String {
    let mut c = json_name.chars();
    c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
}

/// v2's behavior as upstream marshals its internal type: Go field names,
/// every field present (null when unset).
fn behavior_to_annotation(behavior: &Value) -> String {
    let rules = |r: Option<&Value>| match r.filter(|r| r.is_object()) {
        None => Value::Null,
        Some(r) => {
            let mut m = Map::new();
            for f in RULE_FIELDS {
                let v = match (f, r.get(f)) {
                    ("policies", Some(Value::Array(ps))) => Value::Array(
                        ps.iter()
                            .map(|p| {
                                POLICY_FIELDS
                                    .iter()
                                    .map(|k| (go_name(k), p.get(*k).cloned().unwrap_or(Value::Null)))
                                    .collect::<Map<_, _>>()
                                    .into()
                            })
                            .collect(),
                    ),
                    (_, v) => v.cloned().unwrap_or(Value::Null),
                };
                m.insert(go_name(f), v);
            }
            Value::Object(m)
        }
    };
    json!({"ScaleUp": rules(behavior.get("scaleUp")), "ScaleDown": rules(behavior.get("scaleDown"))}).to_string()
}

/// The field of `obj` named `name`, matched case-insensitively as Go's
/// encoding/json matches; null counts as absent.
fn field_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v).filter(|v| !v.is_null())
}

/// The behavior annotation back in v2's form; None when malformed or empty
/// (upstream only moves well-formed data from the annotation).
fn behavior_from_annotation(raw: &str) -> Option<Value> {
    let parsed: Value = serde_json::from_str(raw).ok()?;
    let rules = |r: &Value| -> Value {
        let mut m = Map::new();
        for f in RULE_FIELDS {
            let Some(v) = field_ci(r, f) else { continue };
            let v = match v {
                Value::Array(ps) if f == "policies" => Value::Array(
                    ps.iter()
                        .map(|p| {
                            POLICY_FIELDS
                                .iter()
                                .filter_map(|k| field_ci(p, k).map(|v| (k.to_string(), v.clone())))
                                .collect::<Map<_, _>>()
                                .into()
                        })
                        .collect(),
                ),
                other => other.clone(),
            };
            m.insert(f.to_string(), v);
        }
        Value::Object(m)
    };
    let mut behavior = Map::new();
    for dir in ["scaleUp", "scaleDown"] {
        if let Some(r) = field_ci(&parsed, dir).filter(|r| r.is_object()) {
            behavior.insert(dir.into(), rules(r));
        }
    }
    (!behavior.is_empty()).then_some(Value::Object(behavior))
}

fn metadata_without_round_trip(obj: &Value) -> (Value, Map<String, Value>) {
    let mut metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut taken = Map::new();
    if let Some(m) = metadata.as_object_mut() {
        if let Some(Value::Object(a)) = m.get_mut("annotations") {
            for k in ROUND_TRIP {
                if let Some(v) = a.remove(k) {
                    taken.insert(k.into(), v);
                }
            }
            if a.is_empty() {
                m.remove("annotations");
            }
        }
    }
    (metadata, taken)
}

fn copy(from: &Value, to: &mut Map<String, Value>, fields: &[&str]) {
    for f in fields {
        if let Some(v) = present(from.get(*f)) {
            to.insert(f.to_string(), v.clone());
        }
    }
}

/// autoscaling/v2 (stored) to autoscaling/v1.
pub fn from_v2(v2: Value) -> Value {
    let (mut metadata, _) = metadata_without_round_trip(&v2);
    let spec2 = v2.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status2 = v2.get("status").cloned().unwrap_or_else(|| json!({}));
    let metrics = spec2.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let current = status2.get("currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
    let conditions = status2.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();

    let mut spec = Map::new();
    copy(&spec2, &mut spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_resource(m)) {
        if let Some(u) = present(cpu.pointer("/resource/target/averageUtilization")) {
            spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
        }
    }
    let mut status = Map::new();
    copy(&status2, &mut status, &["observedGeneration", "lastScaleTime"]);
    status.insert("currentReplicas".into(), status2.get("currentReplicas").cloned().unwrap_or(json!(0)));
    status.insert("desiredReplicas".into(), status2.get("desiredReplicas").cloned().unwrap_or(json!(0)));
    // The last cpu status wins, as upstream's loop without a break.
    if let Some(u) = current
        .iter()
        .rev()
        .filter(|m| is_cpu_resource(m))
        .find_map(|m| present(m.pointer("/resource/current/averageUtilization")))
    {
        status.insert("currentCPUUtilizationPercentage".into(), u.clone());
    }

    let mut notes = Map::new();
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !(is_cpu_resource(m) && present(m.pointer("/resource/target/averageUtilization")).is_some()))
        .map(|m| convert_metric(m, SPEC_FIELDS, false, true))
        .collect();
    if !others.is_empty() {
        notes.insert(METRIC_SPECS.into(), json!(Value::Array(others).to_string()));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(|m| convert_metric(m, STATUS_FIELDS, false, false)).collect();
        notes.insert(METRIC_STATUSES.into(), json!(Value::Array(v1).to_string()));
    }
    if let Some(b) = present(spec2.get("behavior")) {
        notes.insert(BEHAVIOR.into(), json!(behavior_to_annotation(b)));
    }
    if !conditions.is_empty() {
        notes.insert(CONDITIONS.into(), json!(Value::Array(conditions).to_string()));
    }
    if !notes.is_empty() {
        if let Some(m) = metadata.as_object_mut() {
            let a = m.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = a.as_object_mut() {
                a.extend(notes);
            }
        }
    }
    json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

fn parse_list(raw: Option<&Value>) -> Option<Vec<Value>> {
    serde_json::from_str::<Vec<Value>>(raw?.as_str()?).ok()
}

/// autoscaling/v1 to autoscaling/v2 (stored).
pub fn to_v2(v1: Value) -> Value {
    let (metadata, notes) = metadata_without_round_trip(&v1);
    let spec1 = v1.get("spec").cloned().unwrap_or_else(|| json!({}));

    let mut spec = Map::new();
    copy(&spec1, &mut spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
    let mut metrics: Vec<Value> = parse_list(notes.get(METRIC_SPECS))
        .unwrap_or_default()
        .iter()
        .map(|m| convert_metric(m, SPEC_FIELDS, true, true))
        .collect();
    let cpu = present(spec1.get("targetCPUUtilizationPercentage")).cloned();
    let cpu = cpu.or_else(|| metrics.is_empty().then_some(json!(DEFAULT_CPU_UTILIZATION)));
    if let Some(u) = cpu {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": u}}}));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = notes.get(BEHAVIOR).and_then(Value::as_str).and_then(behavior_from_annotation) {
        spec.insert("behavior".into(), b);
    }

    let mut out = json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v2",
        "metadata": metadata,
        "spec": spec,
    });
    if let Some(status1) = v1.get("status").filter(|s| s.is_object()) {
        let mut status = Map::new();
        copy(status1, &mut status, &["observedGeneration", "lastScaleTime"]);
        if let Some(n) = status1.get("currentReplicas").filter(|n| n.as_i64().is_some_and(|n| n != 0)) {
            status.insert("currentReplicas".into(), n.clone());
        }
        status.insert("desiredReplicas".into(), status1.get("desiredReplicas").cloned().unwrap_or(json!(0)));
        let current = match parse_list(notes.get(METRIC_STATUSES)) {
            Some(list) => Value::Array(list.iter().map(|m| convert_metric(m, STATUS_FIELDS, true, false)).collect()),
            None => match present(status1.get("currentCPUUtilizationPercentage")) {
                Some(u) => {
                    json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}}])
                }
                None => Value::Null,
            },
        };
        status.insert("currentMetrics".into(), current);
        if let Some(c) = parse_list(notes.get(CONDITIONS)) {
            status.insert("conditions".into(), Value::Array(c));
        }
        out["status"] = Value::Object(status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_full() -> Value {
        json!({
            "kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
            "metadata": {"name": "web", "namespace": "default", "annotations": {"team": "a"}},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Object", "object": {"describedObject": {"kind": "Ingress", "name": "main", "apiVersion": "networking.k8s.io/v1"}, "metric": {"name": "rps", "selector": {"matchLabels": {"a": "b"}}}, "target": {"type": "Value", "value": "2k"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
                ],
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                    "scaleDown": {"selectPolicy": "Min", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}
                }
            },
            "status": {
                "observedGeneration": 3, "lastScaleTime": "2026-01-01T00:00:00Z", "currentReplicas": 3, "desiredReplicas": 4,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "120m", "averageUtilization": 55}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "7"}}}
                ],
                "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "ReadyForNewScale", "message": "ok"}]
            }
        })
    }

    #[test]
    fn v2_round_trips_through_v1() {
        let v2 = v2_full();
        let v1 = from_v2(v2.clone());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 55);
        let notes = &v1["metadata"]["annotations"];
        assert_eq!(notes["team"], "a");
        for k in ROUND_TRIP {
            assert!(notes[k].is_string(), "{k} missing");
        }
        assert!(notes[BEHAVIOR].as_str().unwrap().starts_with("{\"ScaleUp\":{\"StabilizationWindowSeconds\":0,"));
        assert!(notes[METRIC_SPECS].as_str().unwrap().contains("\"targetAverageValue\":\"10\""));
        assert_eq!(to_v2(v1), v2);
    }

    #[test]
    fn v1_round_trips_through_v2() {
        let v1 = json!({
            "kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v1",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 50},
            "status": {"currentReplicas": 1, "desiredReplicas": 2}
        });
        let v2 = to_v2(v1.clone());
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert_eq!(from_v2(v2), v1);
        // The current cpu utilisation comes back, with the v2 status it
        // stands for kept in its annotation (as upstream).
        let mut with_cpu = v1.clone();
        with_cpu["status"]["currentCPUUtilizationPercentage"] = json!(40);
        let v2 = to_v2(with_cpu);
        assert_eq!(v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"], 40);
        let back = from_v2(v2.clone());
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 40);
        assert_eq!(to_v2(back), v2);
    }

    #[test]
    fn v1_without_target_means_the_default_cpu_target() {
        let v2 = to_v2(json!({"spec": {"maxReplicas": 3}}));
        assert_eq!(v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], DEFAULT_CPU_UTILIZATION);
        assert!(v2.get("status").is_none());
    }

    #[test]
    fn stale_or_malformed_annotations_are_dropped() {
        let v1 = json!({"metadata": {"annotations": {METRIC_SPECS: "not json", BEHAVIOR: "{}"}}, "spec": {"maxReplicas": 1, "targetCPUUtilizationPercentage": 10}});
        let v2 = to_v2(v1);
        assert!(v2["metadata"].get("annotations").is_none());
        assert_eq!(v2["spec"]["metrics"].as_array().unwrap().len(), 1);
        assert!(v2["spec"].get("behavior").is_none());
        // A client's stale round-trip annotation never survives into v1 output.
        let mut stored = v2_full();
        stored["metadata"]["annotations"][METRIC_SPECS] = json!("[]");
        stored["spec"]["metrics"] = json!([]);
        assert!(from_v2(stored)["metadata"]["annotations"].get(METRIC_SPECS).is_none());
    }
}
