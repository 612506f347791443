//! What the workload controllers' kinds share (Deployment, ReplicaSet,
//! ReplicationController, StatefulSet, DaemonSet, Job, CronJob), after
//! upstream's pkg/apis/apps/validation helpers: the label selector (required,
//! well-formed, non-empty, matching the pod template's labels, immutable once
//! set), ValidatePodTemplateSpecForReplicaSet, int-or-percent fields,
//! non-negative counts, the template's defaults and the Containers/Images
//! table cells.
//!
//! Fields are named by their dotted path ("spec.template"), which is both the
//! field path of a cause and, with dots as slashes, the JSON pointer.

use serde_json::{json, Map, Value};

use generic_server::selectors::LabelSelector;
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::podspec::{default_pod_spec, validate_pod_spec};
use super::{arr_at, child, go_label_selector, go_string_map, invalid_raw, map_at, show, str_at};

/// The JSON pointer of a dotted field path.
pub(crate) fn pointer(path: &str) -> String {
    format!("/{}", path.replace('.', "/"))
}

/// The value at a dotted field path, if present and not null.
pub(crate) fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(&pointer(path)).filter(|v| !v.is_null())
}

/// An integer at a dotted field path, 0 when absent (Go's zero value).
pub(crate) fn int(obj: &Value, path: &str) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// ValidateNonnegativeField for each dotted path that holds a number.
pub(crate) fn non_negative(causes: &mut Vec<Cause>, obj: &Value, paths: &[&str]) {
    for path in paths {
        if let Some(n) = at(obj, path).and_then(Value::as_i64) {
            if n < 0 {
                causes.push(Cause::invalid(*path, &json!(n), "must be greater than or equal to 0"));
            }
        }
    }
}

/// Status counts that may not exceed `status.replicas` (the replica
/// controllers' status validation), after the non-negative check; available
/// replicas may not exceed ready ones either (the message names the ready
/// count as `ready_name`, which differs between kinds upstream).
pub(crate) fn status_counts(causes: &mut Vec<Cause>, obj: &Value, counts: &[&str], ready_name: &str) {
    let mut all = vec!["status.replicas", "status.observedGeneration"];
    all.extend_from_slice(counts);
    non_negative(causes, obj, &all);
    let replicas = int(obj, "status.replicas");
    for path in counts {
        let n = int(obj, path);
        if n > replicas {
            causes.push(Cause::invalid(*path, &json!(n), "cannot be greater than status.replicas"));
        }
    }
    let (ready, available) = (int(obj, "status.readyReplicas"), int(obj, "status.availableReplicas"));
    if counts.contains(&"status.availableReplicas") && available > ready {
        causes.push(Cause::invalid(
            "status.availableReplicas",
            &json!(available),
            &format!("cannot be greater than {ready_name}"),
        ));
    }
}

/// An intstr.IntOrString as (value, is_percent); None when it is neither an
/// integer nor a valid percent string.
pub(crate) fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => s
            .strip_suffix('%')
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
            .map(|n| (n, true)),
        _ => None,
    }
}

/// ValidatePositiveIntOrPercent (and, with `at_most_100`,
/// IsNotMoreThan100Percent) for the field at `path`; returns its numeric value
/// (0 when absent or invalid, as upstream's getIntOrPercentValue) for the
/// callers' zero checks.
pub(crate) fn validate_int_or_percent(causes: &mut Vec<Cause>, obj: &Value, path: &str, at_most_100: bool) -> i64 {
    let Some(v) = at(obj, path) else { return 0 };
    match int_or_percent(v) {
        Some((n, false)) if n < 0 => causes.push(Cause::invalid(path, v, "must be greater than or equal to 0")),
        Some((n, true)) if at_most_100 && n > 100 => causes.push(Cause::invalid(path, v, "must not be greater than 100%")),
        Some((n, _)) => return n,
        None => causes.push(Cause::invalid(path, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")),
    }
    0
}

pub(crate) fn selector_is_empty(sel: &Value) -> bool {
    map_at(sel, "/matchLabels").is_none_or(Map::is_empty) && arr_at(sel, "/matchExpressions").is_empty()
}

/// Whether a metav1.LabelSelector (None: a nil one, which selects nothing)
/// selects the given labels.
pub(crate) fn selects(sel: Option<&Value>, labels: Option<&Map<String, Value>>) -> bool {
    let empty = Map::new();
    sel.is_some_and(|s| LabelSelector::from_object(s).matches(labels.unwrap_or(&empty)))
}

/// The selector at `<spec>.selector`: required, well-formed and, when
/// `empty_kind` is given, not empty ("empty selector is invalid for
/// <empty_kind>"). Then, as upstream, the template's labels at
/// `<spec>.template` must match it: a missing selector matches nothing, so it
/// also reports the mismatch.
pub(crate) fn validate_selector(causes: &mut Vec<Cause>, obj: &Value, spec: &str, empty_kind: Option<&str>) {
    let path = format!("{spec}.selector");
    let sel = at(obj, &path);
    match sel {
        None => causes.push(Cause::required(&path, "")),
        Some(s) => {
            validate_label_selector(s, &path, causes);
            if let Some(kind) = empty_kind.filter(|_| selector_is_empty(s)) {
                causes.push(invalid_raw(&path, &show(s), &format!("empty selector is invalid for {kind}")));
            }
        }
    }
    template_matches(causes, obj, sel, &format!("{spec}.template"));
}

/// The template's labels must be selected by `sel`; an empty selector
/// selects everything, a missing one nothing.
pub(crate) fn template_matches(causes: &mut Vec<Cause>, obj: &Value, sel: Option<&Value>, template: &str) {
    let labels = map_at(obj, &pointer(&format!("{template}.metadata.labels")));
    if !selects(sel, labels) {
        causes.push(invalid_raw(
            format!("{template}.metadata.labels"),
            &go_string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
}

/// ValidatePodTemplateSpecForReplicaSet after the selector match: the
/// template's PodSpec, restartPolicy Always, no activeDeadlineSeconds (the
/// message names `kind`).
pub(crate) fn validate_replica_template(causes: &mut Vec<Cause>, obj: &Value, template: &str, kind: &str) {
    let spec_path = format!("{template}.spec");
    let spec = at(obj, &spec_path).unwrap_or(&Value::Null);
    causes.extend(validate_pod_spec(spec, &spec_path));
    restart_always(causes, spec, &spec_path);
    if spec.get("activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
        causes.push(Cause::forbidden(
            format!("{spec_path}.activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// A controller's pods must keep running: only restartPolicy Always.
pub(crate) fn restart_always(causes: &mut Vec<Cause>, spec: &Value, spec_path: &str) {
    let rp = spec.get("restartPolicy").cloned().unwrap_or(json!(""));
    if rp.as_str() != Some("Always") {
        causes.push(Cause::not_supported(format!("{spec_path}.restartPolicy"), &rp, &["Always"]));
    }
}

/// ValidateImmutableField for the value at a dotted path.
pub(crate) fn immutable(causes: &mut Vec<Cause>, new: &Value, old: &Value, path: &str) {
    immutable_shown(causes, new, old, path, |n| n.map(show).unwrap_or_else(|| "null".into()))
}

/// ValidateImmutableField for the label selector at a dotted path.
pub(crate) fn immutable_selector(causes: &mut Vec<Cause>, new: &Value, old: &Value, path: &str) {
    immutable_shown(causes, new, old, path, go_label_selector)
}

/// ValidateImmutableField, the new value printed by `shown` as Go prints
/// that field's type.
fn immutable_shown(
    causes: &mut Vec<Cause>,
    new: &Value,
    old: &Value,
    path: &str,
    shown: impl FnOnce(Option<&Value>) -> String,
) {
    let (n, o) = (at(new, path), at(old, path));
    if n != o {
        causes.push(invalid_raw(path, &shown(n), "field is immutable"));
    }
}

/// The PodSpec defaults of the pod template at a dotted path.
pub(crate) fn default_template(obj: &mut Value, template: &str) {
    let mut node = obj;
    for key in template.split('.') {
        node = node_child(node, key);
    }
    default_pod_spec(child(node, "spec"));
}

fn node_child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    child(obj, key);
    match obj.get_mut(key) {
        Some(v) => v,
        None => unreachable!("child() inserted it"),
    }
}

/// Status belongs to the controller: a create starts with an empty one,
/// which upstream serializes with its non-omitempty counts as 0.
pub(crate) fn clear_status(obj: &mut Value, zero_counts: &[&str]) {
    let status: Map<String, Value> = zero_counts.iter().map(|k| (k.to_string(), json!(0))).collect();
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), Value::Object(status));
    }
}

/// The Containers and Images cells (upstream's layoutContainerCells) of the
/// pod template at a dotted path.
pub(crate) fn container_cells(obj: &Value, template: &str) -> [Value; 2] {
    let containers = arr_at(obj, &pointer(&format!("{template}.spec.containers")));
    let names: Vec<&str> = containers.iter().map(|c| str_at(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(c, "/image")).collect();
    [json!(names.join(",")), json!(images.join(","))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: &[Cause]) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn missing_selector_is_required_and_mismatched() {
        let obj = json!({"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}});
        let mut causes = Vec::new();
        validate_selector(&mut causes, &obj, "spec", Some("deployment"));
        assert_eq!(
            messages(&causes),
            [
                "spec.selector: Required value",
                "spec.template.metadata.labels: Invalid value: map[string]string{\"a\":\"b\"}: `selector` does not match template `labels`"
            ]
        );
    }

    #[test]
    fn empty_selector_is_refused_but_matches() {
        let obj = json!({"spec": {"selector": {}, "template": {}}});
        let mut causes = Vec::new();
        validate_selector(&mut causes, &obj, "spec", Some("statefulset"));
        assert_eq!(messages(&causes), ["spec.selector: Invalid value: {}: empty selector is invalid for statefulset"]);
    }

    #[test]
    fn int_or_percent_rules() {
        let obj = json!({"a": "101%", "b": -1, "c": "x", "d": "50%", "e": 3});
        let mut causes = Vec::new();
        for p in ["a", "b", "c"] {
            validate_int_or_percent(&mut causes, &obj, p, true);
        }
        assert_eq!(validate_int_or_percent(&mut causes, &obj, "d", true), 50);
        assert_eq!(validate_int_or_percent(&mut causes, &obj, "e", true), 3);
        assert_eq!(validate_int_or_percent(&mut causes, &obj, "a", false), 101);
        assert_eq!(causes.len(), 3, "{causes:?}");
        assert!(causes[0].message.ends_with("must not be greater than 100%"));
        assert!(causes[1].message.ends_with("must be greater than or equal to 0"));
        assert!(causes[2].message.contains("a valid percent string"));
    }

    #[test]
    fn status_counts_bounded_by_replicas() {
        let obj = json!({"status": {"replicas": 1, "readyReplicas": 2, "availableReplicas": -1}});
        let mut causes = Vec::new();
        status_counts(&mut causes, &obj, &["status.readyReplicas", "status.availableReplicas"], "readyReplicas");
        assert_eq!(
            messages(&causes),
            [
                "status.availableReplicas: Invalid value: -1: must be greater than or equal to 0",
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas",
            ]
        );
    }

    #[test]
    fn template_defaults_at_a_nested_path() {
        let mut obj = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}}}}});
        default_template(&mut obj, "spec.jobTemplate.spec.template");
        assert_eq!(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"], "Always");
        let mut odd = json!({"spec": 3});
        default_template(&mut odd, "spec.template");
        assert_eq!(odd["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }
}
