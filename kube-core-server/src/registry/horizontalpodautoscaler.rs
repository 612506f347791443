//! autoscaling HorizontalPodAutoscalers (upstream
//! pkg/registry/autoscaling/horizontalpodautoscaler): stored as autoscaling/v2
//! and served as v2 and v1 (the conversion is [`super::horizontalpodautoscaler_v1`]).
//! The rules here are v2's, applied to v1 through the conversion as upstream
//! applies them to its internal form: v2's defaults (minReplicas 1, 80% cpu
//! when no metric, behavior's unset rules), pkg/apis/autoscaling/validation,
//! status kept on main-resource writes, and the `kubectl get hpa` table.

use serde_json::{json, Map, Value};

use k8s_openapi::api::autoscaling::{v1, v2};

use generic_server::meta::{is_dns1123_label, path_segment_problem};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::horizontalpodautoscaler_v1::{self as conversion, DEFAULT_CPU_UTILIZATION};
use super::podspec::parse_quantity;
use super::{age, arr_at, child, default_field, str_at};

pub struct HorizontalPodAutoscalerStrategy;

/// autoscaling/v2 (the stored version) first, then autoscaling/v1 over it.
pub fn registrations() -> Vec<Registration> {
    let v2 = Registration::of::<v2::HorizontalPodAutoscaler>(HorizontalPodAutoscalerStrategy)
        .short_names(&["hpa"])
        .categories(&["all"])
        .status();
    let v1 = v2.served_as::<v1::HorizontalPodAutoscaler>(conversion::to_v2, conversion::from_v2);
    vec![v2, v1]
}

/// upstream's MaxPeriodSeconds and MaxStabilizationWindowSeconds.
const MAX_PERIOD_SECONDS: i64 = 1800;
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
const METRIC_TYPES: &[&str] = &["ContainerResource", "External", "Object", "Pods", "Resource"];
const SELECT_POLICIES: &[&str] = &["Disabled", "Max", "Min"];
const POLICY_TYPES: &[&str] = &["Percent", "Pods"];

/// v2's default rules for a direction (GenerateHPAScaleUpRules /
/// GenerateHPAScaleDownRules): what the client left unset.
fn default_rules(rules: &mut Map<String, Value>, up: bool) {
    if up {
        default_field(rules, "stabilizationWindowSeconds", json!(0));
    }
    default_field(rules, "selectPolicy", json!("Max"));
    let policies = if up {
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}])
    } else {
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    };
    default_field(rules, "policies", policies);
}

/// HPAConfigurableTolerance is alpha and off in 1.33: a tolerance is dropped
/// unless the object already had one (upstream's dropDisabledFields).
fn drop_tolerance(new: &mut Value, old: Option<&Value>) {
    let in_use = |o: &Value| {
        ["scaleUp", "scaleDown"].iter().any(|d| o.pointer(&format!("/spec/behavior/{d}/tolerance")).is_some())
    };
    if old.is_some_and(in_use) {
        return;
    }
    for d in ["scaleUp", "scaleDown"] {
        if let Some(r) = new.pointer_mut(&format!("/spec/behavior/{d}")).and_then(Value::as_object_mut) {
            r.remove("tolerance");
        }
    }
}

fn quantity_positive(q: &Value) -> bool {
    q.as_str().and_then(parse_quantity).is_some_and(|n| n > 0.0)
}

/// A name that must be given and be a valid path segment; `detail` is the
/// Required message's.
fn segment(obj: &Value, field: &str, path: &str, detail: &str, causes: &mut Vec<Cause>) {
    let v = str_at(obj, &format!("/{field}"));
    if v.is_empty() {
        causes.push(Cause::required(format!("{path}.{field}"), detail));
    } else if let Some(p) = path_segment_problem(v) {
        causes.push(Cause::invalid(format!("{path}.{field}"), &json!(v), &p));
    }
}

fn validate_cross_version_ref(r: &Value, path: &str, causes: &mut Vec<Cause>) {
    segment(r, "kind", path, "", causes);
    segment(r, "name", path, "", causes);
}

fn validate_metric_identifier(m: &Value, path: &str, causes: &mut Vec<Cause>) {
    segment(m, "name", path, "must specify a metric name", causes);
}

fn validate_metric_target(t: &Value, path: &str, causes: &mut Vec<Cause>) {
    let ty = str_at(t, "/type");
    if ty.is_empty() {
        causes.push(Cause::required(format!("{path}.type"), "must specify a metric target type"));
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        causes.push(Cause::invalid(
            format!("{path}.type"),
            &json!(ty),
            "must be either Utilization, Value, or AverageValue",
        ));
    }
    for f in ["value", "averageValue"] {
        if let Some(q) = t.get(f).filter(|q| !q.is_null() && !quantity_positive(q)) {
            causes.push(Cause::invalid(format!("{path}.{f}"), q, "must be positive"));
        }
    }
    if let Some(u) = t.get("averageUtilization").and_then(Value::as_i64).filter(|u| *u < 1) {
        causes.push(Cause::invalid(format!("{path}.averageUtilization"), &json!(u), "must be greater than 0"));
    }
}

/// One metric source's own rules (validateObjectSource, validatePodsSource, ...).
fn validate_source(kind: &str, src: &Value, path: &str, causes: &mut Vec<Cause>) {
    let target = src.get("target").cloned().unwrap_or_else(|| json!({}));
    let has = |f: &str| target.get(f).is_some_and(|v| !v.is_null());
    let tpath = format!("{path}.target");
    match kind {
        "object" => validate_cross_version_ref(
            src.get("describedObject").unwrap_or(&json!({})),
            &format!("{path}.describedObject"),
            causes,
        ),
        "resource" | "containerResource" => {
            if str_at(src, "/name").is_empty() {
                causes.push(Cause::required(format!("{path}.name"), "must specify a resource name"));
            }
            if kind == "containerResource" {
                let c = str_at(src, "/container");
                if c.is_empty() {
                    causes.push(Cause::required(format!("{path}.container"), "must specify a container"));
                } else if let Some(p) = is_dns1123_label(c) {
                    causes.push(Cause::invalid(format!("{path}.container"), &json!(c), &p));
                }
            }
        }
        _ => {}
    }
    if matches!(kind, "object" | "pods" | "external") {
        validate_metric_identifier(src.get("metric").unwrap_or(&json!({})), &format!("{path}.metric"), causes);
    }
    validate_metric_target(&target, &tpath, causes);
    match kind {
        "object" if !has("value") && !has("averageValue") => causes
            .push(Cause::required(format!("{tpath}.averageValue"), "must set either a target value or averageValue")),
        "external" if !has("value") && !has("averageValue") => causes.push(Cause::required(
            format!("{tpath}.averageValue"),
            "must set either a target value for metric or a per-pod target",
        )),
        "external" if has("value") && has("averageValue") => causes.push(Cause::forbidden(
            format!("{tpath}.value"),
            "may not set both a target value for metric and a per-pod target",
        )),
        "pods" if !has("averageValue") => {
            causes.push(Cause::required(format!("{tpath}.averageValue"), "must specify a positive target averageValue"))
        }
        "resource" | "containerResource" if !has("averageUtilization") && !has("averageValue") => {
            causes.push(Cause::required(
                format!("{tpath}.averageUtilization"),
                "must set either a target raw value or a target utilization",
            ))
        }
        "resource" | "containerResource" if has("averageUtilization") && has("averageValue") => {
            causes.push(Cause::forbidden(
                format!("{tpath}.averageValue"),
                "may not set both a target raw value and a target utilization",
            ))
        }
        _ => {}
    }
}

/// The metric's JSON field for each source type.
const SOURCES: &[(&str, &str)] = &[
    ("Object", "object"),
    ("External", "external"),
    ("Pods", "pods"),
    ("Resource", "resource"),
    ("ContainerResource", "containerResource"),
];

fn validate_metric(m: &Value, path: &str, causes: &mut Vec<Cause>) {
    let ty = str_at(m, "/type");
    if ty.is_empty() {
        causes.push(Cause::required(format!("{path}.type"), "must specify a metric source type"));
    }
    if !METRIC_TYPES.contains(&ty) {
        causes.push(Cause::not_supported(format!("{path}.type"), &json!(ty), METRIC_TYPES));
    }
    let present: Vec<&str> =
        SOURCES.iter().map(|(_, f)| *f).filter(|f| m.get(*f).is_some_and(|v| !v.is_null())).collect();
    // Only the first source given is checked, as upstream.
    if let Some(first) = present.first() {
        validate_source(first, &m[*first], &format!("{path}.{first}"), causes);
    }
    let expected = SOURCES.iter().find(|(t, _)| *t == ty).map(|(_, f)| *f);
    match expected {
        Some(f) if !present.contains(&f) => {
            causes.push(Cause::required(format!("{path}.{f}"), "must populate information for the given metric source"))
        }
        Some(_) => {}
        None => causes.push(Cause::not_supported(format!("{path}.type"), &json!(ty), METRIC_TYPES)),
    }
    if present.len() != 1 {
        for f in present.iter().filter(|f| Some(**f) != expected) {
            causes.push(Cause::forbidden(format!("{path}.{f}"), "must populate the given metric source only"));
        }
    }
}

fn validate_rules(r: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(w) = r.get("stabilizationWindowSeconds").and_then(Value::as_i64) {
        if w < 0 {
            causes.push(Cause::invalid(
                format!("{path}.stabilizationWindowSeconds"),
                &json!(w),
                "must be greater than or equal to zero",
            ));
        }
        if w > MAX_STABILIZATION_WINDOW_SECONDS {
            causes.push(Cause::invalid(
                format!("{path}.stabilizationWindowSeconds"),
                &json!(w),
                &format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}"),
            ));
        }
    }
    if let Some(p) = r.get("selectPolicy").and_then(Value::as_str).filter(|p| !SELECT_POLICIES.contains(p)) {
        causes.push(Cause::not_supported(format!("{path}.selectPolicy"), &json!(p), SELECT_POLICIES));
    }
    let policies = arr_at(r, "/policies");
    if policies.is_empty() {
        causes.push(Cause::required(format!("{path}.policies"), "must specify at least one Policy"));
    }
    for (i, p) in policies.iter().enumerate() {
        let pp = format!("{path}.policies[{i}]");
        let ty = str_at(p, "/type");
        if !POLICY_TYPES.contains(&ty) {
            causes.push(Cause::not_supported(format!("{pp}.type"), &json!(ty), POLICY_TYPES));
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            causes.push(Cause::invalid(format!("{pp}.value"), &json!(value), "must be greater than zero"));
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        if period <= 0 {
            causes.push(Cause::invalid(format!("{pp}.periodSeconds"), &json!(period), "must be greater than zero"));
        }
        if period > MAX_PERIOD_SECONDS {
            causes.push(Cause::invalid(
                format!("{pp}.periodSeconds"),
                &json!(period),
                &format!("must be less than or equal to {MAX_PERIOD_SECONDS}"),
            ));
        }
    }
}

/// validateHorizontalPodAutoscalerSpec; minReplicas may be 0 only where
/// upstream allows it (HPAScaleToZero is off: an object that already has 0).
fn validate_spec(obj: &Value, min_lower_bound: i64) -> Vec<Cause> {
    let mut causes = Vec::new();
    let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
    let max = obj.pointer("/spec/maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if let Some(m) = min.filter(|m| *m < min_lower_bound) {
        causes.push(Cause::invalid(
            "spec.minReplicas",
            &json!(m),
            &format!("must be greater than or equal to {min_lower_bound}"),
        ));
    }
    if max < 1 {
        causes.push(Cause::invalid("spec.maxReplicas", &json!(max), "must be greater than 0"));
    }
    if min.is_some_and(|m| max < m) {
        causes.push(Cause::invalid("spec.maxReplicas", &json!(max), "must be greater than or equal to `minReplicas`"));
    }
    validate_cross_version_ref(
        obj.pointer("/spec/scaleTargetRef").unwrap_or(&json!({})),
        "spec.scaleTargetRef",
        &mut causes,
    );
    let metrics = arr_at(obj, "/spec/metrics");
    for (i, m) in metrics.iter().enumerate() {
        validate_metric(m, &format!("spec.metrics[{i}]"), &mut causes);
    }
    let object_or_external = metrics.iter().any(|m| matches!(str_at(m, "/type"), "Object" | "External"));
    if min == Some(0) && !object_or_external {
        causes.push(Cause::forbidden(
            "spec.metrics",
            "must specify at least one Object or External metric to support scaling to zero replicas",
        ));
    }
    if let Some(b) = obj.pointer("/spec/behavior").filter(|b| b.is_object()) {
        for d in ["scaleUp", "scaleDown"] {
            if let Some(r) = b.get(d).filter(|r| r.is_object()) {
                validate_rules(r, &format!("spec.behavior.{d}"), &mut causes);
            }
        }
    }
    causes
}

/// formatHPAMetrics: each target as "current/target", at most two, then
/// how many more.
fn format_metrics(obj: &Value) -> String {
    let specs = arr_at(obj, "/spec/metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = arr_at(obj, "/status/currentMetrics");
    let q = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let pct = |v: Option<&Value>| v.and_then(Value::as_i64).map(|n| format!("{n}%"));
    let unknown = || "<unknown>".to_string();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i);
            let cur = |source: &str, field: &str| {
                status.and_then(|s| s.get(source)).and_then(|s| s.pointer(&format!("/current/{field}")))
            };
            let target = |source: &str, field: &str| spec.pointer(&format!("/{source}/target/{field}"));
            match str_at(spec, "/type") {
                t @ ("External" | "Object") => {
                    let source = if t == "External" { "external" } else { "object" };
                    match q(target(source, "averageValue")) {
                        Some(avg) => format!("{}/{avg} (avg)", q(cur(source, "averageValue")).unwrap_or_else(unknown)),
                        None => format!(
                            "{}/{}",
                            q(cur(source, "value")).unwrap_or_else(unknown),
                            q(target(source, "value")).unwrap_or_default()
                        ),
                    }
                }
                "Pods" => format!(
                    "{}/{}",
                    q(cur("pods", "averageValue")).unwrap_or_else(unknown),
                    q(target("pods", "averageValue")).unwrap_or_default()
                ),
                t @ ("Resource" | "ContainerResource") => {
                    let source = if t == "Resource" { "resource" } else { "containerResource" };
                    let name = str_at(spec, &format!("/{source}/name"));
                    match q(target(source, "averageValue")) {
                        Some(avg) => {
                            format!("{name}: {}/{avg}", q(cur(source, "averageValue")).unwrap_or_else(unknown))
                        }
                        None => format!(
                            "{name}: {}/{}",
                            pct(cur(source, "averageUtilization")).unwrap_or_else(unknown),
                            pct(target(source, "averageUtilization")).unwrap_or_else(|| "<auto>".into())
                        ),
                    }
                }
                _ => "<unknown type>".into(),
            }
        })
        .collect();
    if list.len() > 2 {
        format!("{} + {} more...", list[..2].join(", "), list.len() - 2)
    } else {
        list.join(", ")
    }
}

impl Strategy for HorizontalPodAutoscalerStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"currentMetrics": null, "desiredReplicas": 0}));
        }
        drop_tolerance(obj, None);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Spelled out although the Store keeps the status too: through v1
        // the stored status is more than v1's fields carry.
        if let (Some(m), Some(s)) = (new.as_object_mut(), old.get("status")) {
            m.insert("status".into(), s.clone());
        }
        drop_tolerance(new, Some(old));
    }

    fn default(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        default_field(spec, "minReplicas", json!(1));
        if spec.get("metrics").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}}]),
            );
        }
        if let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
            for (d, up) in [("scaleUp", true), ("scaleDown", false)] {
                let r = b.entry(d).or_insert_with(|| json!({}));
                if !r.is_object() {
                    *r = json!({});
                }
                if let Some(r) = r.as_object_mut() {
                    default_rules(r, up);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate_spec(obj, 1)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let bound = if old.pointer("/spec/minReplicas").and_then(Value::as_i64) == Some(0) { 0 } else { 1 };
        let mut causes = validate_spec(new, bound);
        for f in ["currentReplicas", "desiredReplicas"] {
            if let Some(n) = new.pointer(&format!("/status/{f}")).and_then(Value::as_i64).filter(|n| *n < 0) {
                causes.push(Cause::invalid(format!("status.{f}"), &json!(n), "must be greater than or equal to 0"));
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
            TableColumn::new("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond."),
            TableColumn::new("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available."),
            TableColumn::new("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."),
            TableColumn::new("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let reference =
            format!("{}/{}", str_at(obj, "/spec/scaleTargetRef/kind"), str_at(obj, "/spec/scaleTargetRef/name"));
        let min = match obj.pointer("/spec/minReplicas").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => "<unset>".into(),
        };
        vec![
            json!(generic_server::meta::name(obj)),
            json!(reference),
            json!(format_metrics(obj)),
            json!(min),
            json!(obj.pointer("/spec/maxReplicas").and_then(Value::as_i64).unwrap_or(0)),
            json!(obj.pointer("/status/currentReplicas").and_then(Value::as_i64).unwrap_or(0)),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "maxReplicas": 5}})
    }

    #[test]
    fn defaults() {
        let s = HorizontalPodAutoscalerStrategy;
        let mut o = hpa();
        o["spec"]["behavior"] = json!({"scaleDown": {"selectPolicy": "Min"}});
        s.default(&mut o);
        assert_eq!(o["spec"]["minReplicas"], 1);
        assert_eq!(o["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        assert_eq!(o["spec"]["behavior"]["scaleUp"]["policies"].as_array().unwrap().len(), 2);
        assert_eq!(o["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Min");
        assert!(o["spec"]["behavior"]["scaleDown"].get("stabilizationWindowSeconds").is_none());
        assert!(s.validate(&o).is_empty(), "{:?}", s.validate(&o));
    }

    #[test]
    fn validation_messages() {
        let s = HorizontalPodAutoscalerStrategy;
        let mut o = hpa();
        o["spec"]["minReplicas"] = json!(0);
        o["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}]);
        let msgs: Vec<String> = s.validate(&o).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
                "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
                "spec.metrics: Forbidden: must specify at least one Object or External metric to support scaling to zero replicas",
            ]
        );
    }

    #[test]
    fn targets_cell() {
        let mut o = hpa();
        o["spec"]["metrics"] = json!([
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
            {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "AverageValue", "averageValue": "3"}}}
        ]);
        o["status"] = json!({"currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}]});
        assert_eq!(format_metrics(&o), "cpu: 12%/80%, <unknown>/10 + 1 more...");
        o["spec"]["metrics"] = json!([]);
        assert_eq!(format_metrics(&o), "<none>");
    }
}
