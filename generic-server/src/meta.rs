//! Reading and writing the `metadata` of objects held as JSON values, and the
//! ObjectMeta validation every resource shares.

use serde_json::{Map, Value};

use crate::status::Cause;

/// ObjectMeta's fields, in its Go struct's order (the order upstream writes
/// them in).
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

pub fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

/// The object's metadata map, created if absent or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    // Looked up by &str first: `entry` would allocate the key on every call,
    // and a create sets half a dozen fields.
    if !obj.get("metadata").is_some_and(Value::is_object) {
        if !obj.is_object() {
            *obj = Value::Object(Map::new());
        }
        let map = obj.as_object_mut().expect("made an object above");
        map.insert("metadata".into(), Value::Object(Map::new()));
    }
    obj.get_mut("metadata").and_then(Value::as_object_mut).expect("made an object above")
}

/// The string at a JSON pointer in `v`; empty when absent or not a string.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).and_then(Value::as_str).unwrap_or_default()
}

/// The value at a JSON pointer (RFC 6901), as `Value::pointer` finds it,
/// without that method's two strings per step: only a step holding an
/// escape (`~0`, `~1`) is unescaped.
pub fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(v);
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/').try_fold(v, |v, step| {
        let step: std::borrow::Cow<'_, str> =
            if step.contains('~') { step.replace("~1", "/").replace("~0", "~").into() } else { step.into() };
        match v {
            Value::Object(m) => m.get(step.as_ref()),
            Value::Array(items) => array_index(&step).and_then(|i| items.get(i)),
            _ => None,
        }
    })
}

/// An array step as RFC 6901 writes one: digits, no sign, no leading zero.
fn array_index(step: &str) -> Option<usize> {
    if step.starts_with('+') || (step.starts_with('0') && step.len() != 1) {
        return None;
    }
    step.parse().ok()
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    metadata(obj).and_then(|m| m.get(field)).and_then(Value::as_str).unwrap_or("")
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name")
}
pub fn namespace(obj: &Value) -> &str {
    meta_str(obj, "namespace")
}
pub fn uid(obj: &Value) -> &str {
    meta_str(obj, "uid")
}
pub fn resource_version(obj: &Value) -> &str {
    meta_str(obj, "resourceVersion")
}

pub fn set_meta(obj: &mut Value, field: &str, value: Value) {
    let meta = metadata_mut(obj);
    match meta.get_mut(field) {
        Some(slot) => *slot = value,
        None => {
            meta.insert(field.to_string(), value);
        }
    }
}

pub fn remove_meta(obj: &mut Value, field: &str) {
    metadata_mut(obj).remove(field);
}

pub fn labels(obj: &Value) -> Map<String, Value> {
    metadata(obj).and_then(|m| m.get("labels")).and_then(Value::as_object).cloned().unwrap_or_default()
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// A random (v4) UUID from the thread's generator, which the OS seeds,
/// rather than a getrandom system call per UUID: every request takes one
/// for its audit ID and every create one for its uid.
pub fn new_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

/// RFC 3339 with second precision in UTC, as metav1.Time serializes.
/// Formatted once per second per thread: every create and every managed
/// fields entry stamps one.
pub fn now_rfc3339() -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = chrono::Utc::now();
    LAST.with_borrow_mut(|(second, text)| {
        if *second != now.timestamp() {
            *second = now.timestamp();
            *text = now.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        }
        text.clone()
    })
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

pub fn is_dns1123_label(s: &str) -> Option<String> {
    let ok_chars = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric();
    if s.len() > DNS1123_LABEL_MAX {
        return Some(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    if !ok_chars {
        return Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    None
}

pub fn is_dns1035_label(s: &str) -> Option<String> {
    if s.len() > DNS1123_LABEL_MAX {
        return Some(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    let b = s.as_bytes();
    let ok = !s.is_empty()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_lowercase()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Some("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into());
    }
    None
}

pub fn is_dns1123_subdomain(s: &str) -> Option<String> {
    dns1123_subdomain_problems(s).into_iter().next()
}

/// Upstream's IsDNS1123Subdomain: the length and the form, each reported.
pub fn dns1123_subdomain_problems(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        problems.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    let ok = !s.is_empty()
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
        });
    if !ok {
        problems.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    problems
}

/// A name for a path segment: upstream's path-segment check shared by all names.
pub fn path_segment_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    for bad in ["/", "%"] {
        if name.contains(bad) {
            return Some(format!("may not contain '{bad}'"));
        }
    }
    None
}

const QUALIFIED_NAME_RULE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// The first of [`qualified_name_problems`], for rules that report one.
pub fn qualified_name_problem(key: &str) -> Option<String> {
    qualified_name_problems(key).into_iter().next()
}

/// Upstream's IsQualifiedName: an optional DNS subdomain prefix and '/', then
/// a name part; every problem found, each its own message.
pub fn qualified_name_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts[..] {
        [name] => name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                problems.extend(dns1123_subdomain_problems(prefix).into_iter().map(|m| format!("prefix part {m}")));
            }
            name
        }
        _ => {
            return vec![format!(
                "a qualified name {QUALIFIED_NAME_RULE} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )]
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".into());
    }
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        problems.push(format!("name part {QUALIFIED_NAME_RULE}"));
    }
    problems
}

/// Upstream's ValidateFinalizers: every name qualified, and not both of the
/// garbage collector's opposite policies.
pub fn validate_finalizers(finalizers: &[String], field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for f in finalizers {
        for p in qualified_name_problems(f) {
            causes.push(Cause::invalid(field, &Value::String(f.clone()), &p));
        }
    }
    if finalizers.iter().any(|f| f == "orphan") && finalizers.iter().any(|f| f == "foregroundDeletion") {
        causes.push(Cause {
            reason: "FieldValueInvalid",
            message: format!(
                "Invalid value: {}: finalizer orphan and foregroundDeletion cannot be both set",
                go_string_slice(finalizers)
            ),
            field: field.into(),
        });
    }
    causes
}

/// Upstream's ValidateNoNewFinalizers: once deletion has begun, finalizers may
/// only be removed.
pub fn validate_no_new_finalizers(new: &Value, old: &Value) -> Vec<Cause> {
    if meta_str(old, "deletionTimestamp").is_empty() {
        return Vec::new();
    }
    let before = finalizers(old);
    let mut extra: Vec<String> = finalizers(new).into_iter().filter(|f| !before.contains(f)).collect();
    extra.sort();
    extra.dedup();
    if extra.is_empty() {
        return Vec::new();
    }
    let detail = format!(
        "no new finalizers can be added if the object is being deleted, found new finalizers {}",
        go_string_slice(&extra)
    );
    vec![Cause::forbidden("metadata.finalizers", &detail)]
}

/// A string slice as Go's `%#v` prints it, which upstream's messages embed.
fn go_string_slice(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

pub fn label_value_problem(v: &str) -> Option<String> {
    if v.is_empty() {
        return None;
    }
    if v.len() > 63 {
        return Some("must be no more than 63 characters".into());
    }
    let b = v.as_bytes();
    let ok = b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric();
    if !ok {
        return Some("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    None
}

/// Upstream's ValidateLabels: each key a qualified name, each value a
/// label value, both reported at `path` (metadata.labels, or a selector's
/// matchLabels).
pub fn validate_labels(labels: &Map<String, Value>, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in labels {
        for p in qualified_name_problems(k) {
            causes.push(Cause::invalid(path, &Value::String(k.clone()), &p));
        }
        match v.as_str() {
            Some(s) => {
                if let Some(p) = label_value_problem(s) {
                    causes.push(Cause::invalid(path, v, &p));
                }
            }
            None if v.is_null() => {}
            None => causes.push(Cause::invalid(path, v, "must be a string")),
        }
    }
    causes
}

/// How a resource's names are checked: most use DNS subdomains, some labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1123Label,
    /// RFC 1035 labels: as DNS-1123 labels, but starting with a letter (services).
    Dns1035Label,
    /// Only the path-segment rule (names such as those of RBAC objects).
    PathSegment,
}

impl NameRule {
    pub fn problem(self, name: &str) -> Option<String> {
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameRule::Dns1123Label => is_dns1123_label(name),
            NameRule::Dns1035Label => is_dns1035_label(name),
            NameRule::PathSegment => None,
        }
        .or_else(|| path_segment_problem(name))
    }
}

/// ObjectMeta validation shared by all resources (upstream's ValidateObjectMeta).
pub fn validate_object_meta(obj: &Value, namespaced: bool, rule: NameRule) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = name(obj);
    let generate_name = meta_str(obj, "generateName");
    if name.is_empty() {
        if generate_name.is_empty() {
            causes.push(Cause::required("metadata.name", "name or generateName is required"));
        }
    } else if let Some(m) = rule.problem(name) {
        causes.push(Cause::invalid("metadata.name", &Value::String(name.into()), &m));
    }
    let ns = namespace(obj);
    if namespaced {
        if ns.is_empty() {
            causes.push(Cause::required("metadata.namespace", ""));
        } else if let Some(m) = is_dns1123_label(ns) {
            causes.push(Cause::invalid("metadata.namespace", &Value::String(ns.into()), &m));
        }
    } else if !ns.is_empty() {
        causes.push(Cause::forbidden("metadata.namespace", "not allowed on this type"));
    }
    if let Some(m) = metadata(obj) {
        if let Some(labels) = m.get("labels") {
            match labels.as_object() {
                Some(l) => causes.extend(validate_labels(l, "metadata.labels")),
                None if labels.is_null() => {}
                None => causes.push(Cause::invalid("metadata.labels", labels, "must be a map of strings")),
            }
        }
        if let Some(ann) = m.get("annotations").and_then(Value::as_object) {
            let mut total = 0usize;
            for (k, v) in ann {
                // Annotation keys are qualified names in which case does not matter.
                for p in qualified_name_problems(&k.to_lowercase()) {
                    causes.push(Cause::invalid("metadata.annotations", &Value::String(k.clone()), &p));
                }
                total += k.len() + v.as_str().map(str::len).unwrap_or(0);
            }
            if total > 256 * 1024 {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    message: "Too long: must have at most 262144 bytes".into(),
                    field: "metadata.annotations".into(),
                });
            }
        }
    }
    causes.extend(validate_finalizers(&finalizers(obj), "metadata.finalizers"));
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_meta_makes_room_and_keeps_order() {
        // A field already there keeps its place; a new one goes last.
        let mut o = json!({"kind": "ConfigMap", "metadata": {"name": "a", "uid": "u"}});
        set_meta(&mut o, "name", json!("b"));
        set_meta(&mut o, "resourceVersion", json!("7"));
        let keys: Vec<&str> = o["metadata"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "uid", "resourceVersion"]);
        assert_eq!(o["metadata"]["name"], "b");
        // Metadata that is not an object is replaced in its place; a value
        // that is not an object becomes one.
        let mut o = json!({"metadata": "x", "data": {}});
        set_meta(&mut o, "name", json!("n"));
        assert_eq!(o, json!({"metadata": {"name": "n"}, "data": {}}));
        assert_eq!(serde_json::to_string(&o).unwrap(), r#"{"metadata":{"name":"n"},"data":{}}"#);
        let mut o = json!([1]);
        set_meta(&mut o, "name", json!("n"));
        assert_eq!(o, json!({"metadata": {"name": "n"}}));
    }

    #[test]
    fn pointers_find_what_value_pointer_finds() {
        let v = json!({
            "a/b": {"c~d": 1, "": 2},
            "list": [10, {"x": "y"}],
            "metadata": {"annotations": {"example.com/k": "v"}},
            "0": "zero",
        });
        for p in [
            "",
            "/",
            "/a~1b",
            "/a~1b/c~0d",
            "/a~1b/",
            "/list/0",
            "/list/1/x",
            "/list/01",
            "/list/+1",
            "/list/2",
            "/list/-",
            "/metadata/annotations/example.com~1k",
            "/0",
            "nope",
            "/missing/x",
            "/a~1b/c~0d/deeper",
            "/~01",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p:?}");
        }
        assert_eq!(str_at(&v, "/list/1/x"), "y");
        assert_eq!(str_at(&v, "/list/0"), "");
    }

    #[test]
    fn the_time_is_formatted_as_metav1_time() {
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-12-04T22:58:00Z".len(), "{t}");
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
        let again = now_rfc3339();
        assert!(again >= t, "{again} after {t}");
    }

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("my-app.example").is_none());
        assert!(is_dns1123_subdomain("My-App").is_some());
        assert!(is_dns1123_label("a.b").is_some());
        assert!(NameRule::PathSegment.problem("a/b").is_some());
    }

    #[test]
    fn object_meta() {
        let ok = json!({"metadata": {"name": "x", "namespace": "default", "labels": {"app": "web", "example.com/tier": "a_b"}}});
        assert!(validate_object_meta(&ok, true, NameRule::Dns1123Subdomain).is_empty());
        let bad = json!({"metadata": {"name": "X_", "labels": {"-bad": "v"}}});
        let causes = validate_object_meta(&bad, true, NameRule::Dns1123Subdomain);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["metadata.name", "metadata.namespace", "metadata.labels"]);
    }

    #[test]
    fn finalizer_names_are_qualified_names() {
        let with = |f: Value| json!({"metadata": {"name": "x", "namespace": "d", "finalizers": f}});
        let messages = |obj: &Value| -> Vec<String> {
            validate_object_meta(obj, true, NameRule::Dns1123Subdomain).iter().map(Cause::full_message).collect()
        };
        assert!(messages(&with(json!(["example.com/cleanup", "kubernetes", "orphan"]))).is_empty());
        let rule = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        assert_eq!(
            messages(&with(json!(["é", "a b", "x/y/z"]))),
            vec![
                format!("metadata.finalizers: Invalid value: \"é\": name part {rule}"),
                format!("metadata.finalizers: Invalid value: \"a b\": name part {rule}"),
                format!("metadata.finalizers: Invalid value: \"x/y/z\": a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"),
            ]
        );
        // An empty name part is reported twice, as upstream does.
        assert_eq!(messages(&with(json!(["example.com/"]))).len(), 2);
        assert_eq!(
            messages(&with(json!(["orphan", "foregroundDeletion"]))),
            ["metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set"]
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let old = json!({"metadata": {"finalizers": ["a/x"], "deletionTimestamp": "2020-01-01T00:00:00Z"}});
        let new = json!({"metadata": {"finalizers": ["a/x", "b/y"]}});
        let causes = validate_no_new_finalizers(&new, &old);
        assert_eq!(causes[0].full_message(), "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b/y\"}");
        assert!(validate_no_new_finalizers(&json!({"metadata": {}}), &old).is_empty());
        assert!(validate_no_new_finalizers(&new, &json!({"metadata": {}})).is_empty());
    }

    #[test]
    fn annotation_keys_ignore_case() {
        let obj = json!({"metadata": {"name": "x", "annotations": {"Example.COM/Key": "v"}}});
        assert!(validate_object_meta(&obj, false, NameRule::Dns1123Subdomain).is_empty());
    }
}
