//! One [`Strategy`](generic_server::registry::Strategy) per built-in resource,
//! laid out as upstream's pkg/registry/<group>/<resource>/strategy.go: each
//! module owns its resource's decoding, defaulting, validation, field selectors
//! and table printing. What pods and pod templates share (PodSpec defaults and
//! validation) lives in [`podspec`]; small JSON and validation helpers live here.
//!
//! Objects are `serde_json::Value`s that have already been decoded through their
//! k8s-openapi type, but every accessor here still tolerates any shape: a client
//! controls the content, so nothing may panic on it.

pub mod authentication;
pub mod authorization;
pub mod binding;
pub mod certificatesigningrequest;
pub mod componentstatus;
pub mod configmap;
pub mod connect;
pub mod controllerrevision;
pub mod cronjob;
pub mod csi;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod event;
pub mod event_v1;
pub mod eviction;
pub mod flowschema;
pub mod horizontalpodautoscaler;
pub mod horizontalpodautoscaler_v1;
pub mod ingress;
pub mod ingressclass;
pub mod job;
pub(crate) mod label_selector;
pub mod lease;
pub mod limitrange;
pub mod namespace;
pub mod networkpolicy;
pub mod node;
pub mod peers;
pub mod persistentvolume;
pub mod pod;
pub mod poddisruptionbudget;
pub mod podparts;
pub mod podspec;
pub mod podtemplate;
pub mod priorityclass;
pub mod prioritylevelconfiguration;
pub mod replicaset;
pub mod replicationcontroller;
pub mod resourcequota;
pub mod role;
pub mod rolebinding;
pub mod runtimeclass;
pub mod secret;
pub mod service;
pub mod serviceaccount;
pub mod servicecidr;
pub mod statefulset;
pub mod storageclass;
pub mod tokenrequest;
pub mod validatingadmissionpolicy;
pub mod validatingadmissionpolicybinding;
pub mod webhookconfiguration;
pub mod workload;

use serde_json::{Map, Value};

use generic_server::status::Cause;

/// The string at a JSON pointer, or "" when absent or not a string.
pub(crate) use generic_server::meta::str_at;

/// The array at a JSON pointer, or an empty slice.
pub(crate) fn arr_at<'a>(obj: &'a Value, pointer: &str) -> &'a [Value] {
    generic_server::meta::at(obj, pointer).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The object at a JSON pointer, if it is one.
pub(crate) fn map_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a Map<String, Value>> {
    generic_server::meta::at(obj, pointer).and_then(Value::as_object)
}

/// The child object `key` of `obj`, created (or replaced, if it is not an
/// object) so defaulting can write into it.
pub(crate) fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(map) = obj else { unreachable!("made an object above") };
    let entry = map.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Upstream's PrepareForCreate for kinds whose status is the server's: a new
/// object starts with an empty status, whatever the client sent.
pub(crate) fn clear_status(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), Value::Object(Map::new()));
    }
}

/// Sets `key` in `map` unless it already holds a non-null value.
pub(crate) fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

/// Cause for a field that names something that does not exist.
pub(crate) fn not_found_cause(field: impl Into<String>, value: &Value) -> Cause {
    Cause { reason: "FieldValueNotFound", message: format!("Not found: {}", show(value)), field: field.into() }
}

/// Cause for a value over a length limit.
pub(crate) fn too_long_cause(field: impl Into<String>, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooLong",
        message: format!("Too long: must have at most {max} bytes"),
        field: field.into(),
    }
}

/// Cause with a pre-rendered value, for values upstream prints in Go syntax
/// (`[]string{"10.0.0.5"}`), which `Cause::invalid`'s JSON rendering cannot.
pub(crate) fn invalid_raw(field: impl Into<String>, shown: &str, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", message: format!("Invalid value: {shown}: {detail}"), field: field.into() }
}

/// A value as field errors print it: strings quoted, the rest as JSON.
pub(crate) fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// A list of strings as Go's %#v prints a []string.
pub(crate) fn go_string_slice(items: &[Value]) -> String {
    let parts: Vec<String> = items.iter().map(show).collect();
    format!("[]string{{{}}}", parts.join(", "))
}

/// A map of strings as Go's %#v prints a map[string]string (keys sorted).
pub(crate) fn go_string_map(m: Option<&Map<String, Value>>) -> String {
    let mut parts: Vec<String> =
        m.map(|m| m.iter().map(|(k, v)| format!("{k:?}:{}", show(v))).collect()).unwrap_or_default();
    parts.sort();
    format!("map[string]string{{{}}}", parts.join(", "))
}

/// A Go struct as %#v prints it: `pkg.Type{Field:value, ...}`, each value
/// already in Go's form.
pub(crate) fn go_struct(type_name: &str, fields: &[(&str, String)]) -> String {
    let parts: Vec<String> = fields.iter().map(|(f, v)| format!("{f}:{v}")).collect();
    format!("{type_name}{{{}}}", parts.join(", "))
}

/// A metav1.LabelSelector as Go's %#v prints one (upstream shows it so in
/// "field is immutable" errors): `null` for none, nil fields as typed nils.
pub(crate) fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else { return "null".into() };
    let labels = match sel.get("matchLabels").and_then(Value::as_object) {
        Some(m) => go_string_map(Some(m)),
        None => "map[string]string(nil)".into(),
    };
    let strings = |v: Option<&Value>| match v.and_then(Value::as_array) {
        Some(items) => go_string_slice(items),
        None => "[]string(nil)".into(),
    };
    let expressions = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".into(),
        Some(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|r| {
                    go_struct(
                        "v1.LabelSelectorRequirement",
                        &[
                            ("Key", format!("{:?}", str_at(r, "/key"))),
                            ("Operator", format!("{:?}", str_at(r, "/operator"))),
                            ("Values", strings(r.get("values"))),
                        ],
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    go_struct("v1.LabelSelector", &[("MatchLabels", labels), ("MatchExpressions", expressions)])
}

/// Labels as upstream's labels.FormatLabels prints them: "a=b,c=d" sorted by
/// key, "<none>" when empty.
pub(crate) fn format_labels(m: Option<&Map<String, Value>>) -> String {
    let mut parts: Vec<String> =
        m.map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect()).unwrap_or_default();
    if parts.is_empty() {
        return "<none>".into();
    }
    parts.sort();
    parts.join(",")
}

/// A metav1.LabelSelector object in selector string syntax, requirements sorted
/// by key as upstream's LabelSelectorAsSelector does.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in m {
            reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
        }
    }
    for e in sel.get("matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
        let mut values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        values.sort_unstable();
        let s = match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, s));
    }
    if reqs.is_empty() {
        // An empty selector selects everything; upstream prints it as "".
        return String::new();
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(",")
}

/// Keys of a ConfigMap or Secret: upstream's IsConfigMapKey.
pub(crate) fn config_key_problems(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    if key.len() > 253 {
        out.push("must be no more than 253 characters".to_string());
    }
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        out.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if key == "." {
        out.push("must not be '.'".to_string());
    } else if key == ".." {
        out.push("must not be '..'".to_string());
    } else if key.starts_with("..") {
        out.push("must not start with '..'".to_string());
    }
    out
}

/// Upstream's IsValidPortName (IANA_SVC_NAME), for named container ports and
/// string targetPorts.
pub(crate) fn port_name_problems(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    if name.is_empty() || name.len() > 15 {
        out.push("must be no more than 15 characters".to_string());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens".to_string());
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen".to_string());
    }
    out
}

pub(crate) const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

/// Whether `n` is a valid port number.
pub(crate) fn valid_port(n: i64) -> bool {
    (1..=65535).contains(&n)
}

/// The metadata.creationTimestamp-based age column value.
pub(crate) fn age(obj: &Value) -> Value {
    Value::String(generic_server::registry::table::age(obj))
}

/// Elapsed time since an RFC 3339 timestamp, as kubectl prints it, or
/// "<unknown>" when absent.
pub(crate) fn since(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => {
            generic_server::registry::table::human_duration(chrono::Utc::now().signed_duration_since(t).num_seconds())
        }
        Err(_) => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_strings_are_sorted() {
        let sel = json!({"matchLabels": {"tier": "web", "app": "x"}, "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]});
        assert_eq!(format_label_selector(Some(&sel)), "app=x,env in (dev,prod),tier=web");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_labels(Some(json!({"b": "2", "a": "1"}).as_object().unwrap())), "a=1,b=2");
        assert_eq!(format_labels(None), "<none>");
    }

    #[test]
    fn names_and_keys() {
        assert!(generic_server::meta::is_dns1035_label("my-svc").is_none());
        assert!(generic_server::meta::is_dns1035_label("1svc").is_some());
        assert!(config_key_problems("a.b_C-1").is_empty());
        assert_eq!(config_key_problems("a/b").len(), 1);
        assert!(port_name_problems("http").is_empty());
        assert!(!port_name_problems("8080").is_empty());
    }

    #[test]
    fn helpers_tolerate_any_shape() {
        let mut v = json!("not an object");
        child(&mut v, "spec").insert("x".into(), json!(1));
        assert_eq!(v, json!({"spec": {"x": 1}}));
        assert_eq!(str_at(&json!({"a": 1}), "/a"), "");
        assert!(arr_at(&json!({"a": {}}), "/a").is_empty());
    }
}
