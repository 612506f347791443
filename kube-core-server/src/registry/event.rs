//! core/v1 events (upstream pkg/registry/core/event; also served as
//! events.k8s.io/v1, see [`super::event_v1`]): upstream's event validation
//! (pkg/apis/core/validation/events.go), the involvedObject/reason/source/type field selectors that
//! `kubectl describe` and `kubectl events` use, and the `kubectl get events`
//! table.

use serde_json::{json, Value};

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{go_struct, invalid_raw, since, str_at};

pub struct EventStrategy;

/// Events expire `ttl` after their last write (--event-ttl).
pub fn registration(ttl: std::time::Duration) -> Registration {
    Registration::of::<k8s_openapi::api::core::v1::Event>(EventStrategy).short_names(&["ev"]).ttl(ttl)
}

const FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// Upstream's length limits for events with an eventTime.
const LENGTH_LIMITS: [(&str, usize); 3] = [("reportingInstance", 128), ("action", 128), ("reason", 128)];
const NOTE_LENGTH_LIMIT: usize = 1024;

/// legacyValidateEvent, which every event passes whichever version wrote it:
/// the involved object's namespace rule, and for events with an eventTime
/// (written the events.k8s.io way) the reporting fields. Paths are core's,
/// except `reportingController`, upstream's internal name for
/// reportingComponent.
pub(crate) fn legacy_validate(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let ns = generic_server::meta::namespace(obj);
    let involved_ns = str_at(obj, "/involvedObject/namespace");
    let mismatch = || Cause::invalid("involvedObject.namespace", &json!(involved_ns), "does not match event.namespace");
    if str_at(obj, "/eventTime").is_empty() {
        // Events about cluster-scoped objects live in "default" (or nowhere).
        let ok = if involved_ns.is_empty() { ns.is_empty() || ns == "default" } else { ns == involved_ns };
        if !ok {
            causes.push(mismatch());
        }
        return causes;
    }
    if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
        causes.push(mismatch());
    }
    let controller = str_at(obj, "/reportingComponent");
    if controller.is_empty() {
        causes.push(Cause::required("reportingController", ""));
    } else if let Some(p) = generic_server::meta::qualified_name_problems(controller).into_iter().next() {
        causes.push(Cause::invalid("reportingController", &json!(controller), &p));
    }
    for (field, limit) in LENGTH_LIMITS {
        let v = str_at(obj, &format!("/{field}"));
        if v.is_empty() {
            causes.push(Cause::required(field, ""));
        }
        if v.len() > limit {
            causes.push(Cause::invalid(field, &json!(""), &format!("can have at most {limit} characters")));
        }
    }
    if str_at(obj, "/message").len() > NOTE_LENGTH_LIMIT {
        causes.push(Cause::invalid("message", &json!(""), &format!("can have at most {NOTE_LENGTH_LIMIT} characters")));
    }
    causes
}

/// validateV1EventSeries.
fn validate_series(obj: &Value, causes: &mut Vec<Cause>) {
    if let Some(series) = obj.get("series").filter(|s| s.is_object()) {
        if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
            causes.push(Cause::invalid("series.count", &json!(""), "should be at least 2"));
        }
        if str_at(series, "/lastObservedTime").is_empty() {
            causes.push(Cause::required("series.lastObservedTime", ""));
        }
    }
}

/// ValidateEventCreate: `strict` for events written through events.k8s.io/v1,
/// which must be new-style events.
pub(crate) fn validate(obj: &Value, strict: bool) -> Vec<Cause> {
    let mut causes = legacy_validate(obj);
    if !strict {
        return causes;
    }
    validate_series(obj, &mut causes);
    if str_at(obj, "/eventTime").is_empty() {
        causes.push(Cause::required("eventTime", ""));
    }
    let ty = str_at(obj, "/type");
    if ty != "Normal" && ty != "Warning" {
        causes.push(Cause::invalid("type", &json!(""), &format!("has invalid value: {ty}")));
    }
    for f in ["firstTimestamp", "lastTimestamp"] {
        if !str_at(obj, &format!("/{f}")).is_empty() {
            causes.push(Cause::invalid(f, &json!(""), "needs to be unset"));
        }
    }
    if obj.get("count").and_then(Value::as_i64).unwrap_or(0) != 0 {
        causes.push(Cause::invalid("count", &json!(""), "needs to be unset"));
    }
    if !str_at(obj, "/source/component").is_empty() || !str_at(obj, "/source/host").is_empty() {
        causes.push(Cause::invalid("source", &json!(""), "needs to be unset"));
    }
    causes
}

/// ValidateEventUpdate for events.k8s.io/v1: what an event says is fixed
/// once written; a changed series must be valid.
pub(crate) fn validate_strict_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = legacy_validate(new);
    if new.get("series") != old.get("series") {
        validate_series(new, &mut causes);
    }
    const IMMUTABLE: [(&str, &str); 13] = [
        ("involvedObject", "involvedObject"),
        ("reason", "reason"),
        ("message", "message"),
        ("source", "source"),
        ("firstTimestamp", "firstTimestamp"),
        ("lastTimestamp", "lastTimestamp"),
        ("count", "count"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ];
    for (field, path) in IMMUTABLE {
        let n = new.get(field).filter(|v| !v.is_null());
        if n != old.get(field).filter(|v| !v.is_null()) {
            causes.push(invalid_raw(path, &go_value(field, n), "field is immutable"));
        }
    }
    causes
}

/// An Event field as upstream's error shows its Go value: references and
/// sources as %#v structs, times as time.Time prints itself, absent values
/// as Go's zero values (a nil reference as null).
fn go_value(field: &str, v: Option<&Value>) -> String {
    let text = |k: &str| format!("{:?}", v.and_then(|v| v.get(k)).and_then(Value::as_str).unwrap_or(""));
    match field {
        "involvedObject" | "related" => {
            if field == "related" && v.is_none() {
                return "null".into();
            }
            let fields = ["Kind", "Namespace", "Name", "UID", "APIVersion", "ResourceVersion", "FieldPath"];
            let keys = ["kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"];
            let values: Vec<(&str, String)> = fields.into_iter().zip(keys).map(|(f, k)| (f, text(k))).collect();
            go_struct("core.ObjectReference", &values)
        }
        "source" => go_struct("core.EventSource", &[("Component", text("component")), ("Host", text("host"))]),
        "firstTimestamp" | "lastTimestamp" | "eventTime" => {
            let t = v.and_then(Value::as_str).and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
            let Some(t) = t.map(|t| t.with_timezone(&chrono::Utc)) else {
                return "0001-01-01 00:00:00 +0000 UTC".into();
            };
            let fraction = format!("{:09}", t.timestamp_subsec_nanos());
            let fraction = fraction.trim_end_matches('0');
            let dot = if fraction.is_empty() { "" } else { "." };
            format!("{}{dot}{fraction} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
        }
        "count" => v.and_then(Value::as_i64).unwrap_or(0).to_string(),
        _ => format!("{:?}", v.and_then(Value::as_str).unwrap_or("")),
    }
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        validate(obj, false)
    }

    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<Cause> {
        legacy_validate(new)
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        let s = |p: &str| str_at(o, p).to_string();
        vec![
            ("involvedObject.kind", s("/involvedObject/kind")),
            ("involvedObject.namespace", s("/involvedObject/namespace")),
            ("involvedObject.name", s("/involvedObject/name")),
            ("involvedObject.uid", s("/involvedObject/uid")),
            ("involvedObject.apiVersion", s("/involvedObject/apiVersion")),
            ("involvedObject.resourceVersion", s("/involvedObject/resourceVersion")),
            ("involvedObject.fieldPath", s("/involvedObject/fieldPath")),
            ("reason", s("/reason")),
            ("reportingComponent", s("/reportingComponent")),
            ("source", s("/source/component")),
            ("type", s("/type")),
        ]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        FIELDS
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        let mut name = TableColumn::name_column();
        name.priority = 1;
        vec![
            TableColumn::new("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded."),
            TableColumn::new("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future"),
            TableColumn::new("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            TableColumn::new("Object", "string", "The object that this event is about."),
            TableColumn::new("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.").wide(),
            TableColumn::new("Source", "string", "The component reporting this event. Should be a short machine understandable string.").wide(),
            TableColumn::new("Message", "string", "A human-readable description of the status of this operation."),
            TableColumn::new("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)").wide(),
            TableColumn::new("Count", "string", "The number of times this event has occurred.").wide(),
            name,
        ]
    }

    fn table_row(&self, e: &Value) -> Vec<Value> {
        let first_ts = str_at(e, "/firstTimestamp");
        let first = if first_ts.is_empty() { since(str_at(e, "/eventTime")) } else { since(first_ts) };
        let last_ts = str_at(e, "/lastTimestamp");
        let mut last = if last_ts.is_empty() { first.clone() } else { since(last_ts) };
        let mut count = e.get("count").and_then(Value::as_i64).unwrap_or(0);
        if let Some(series) = e.get("series").filter(|s| s.is_object()) {
            last = since(str_at(series, "/lastObservedTime"));
            count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
        } else if count == 0 {
            // Events written through events.k8s.io carry no count: one occurrence.
            count = 1;
        }
        let kind = str_at(e, "/involvedObject/kind").to_lowercase();
        let name = str_at(e, "/involvedObject/name");
        let target = if name.is_empty() { kind } else { format!("{kind}/{name}") };
        let component = first_non_empty(str_at(e, "/source/component"), str_at(e, "/reportingComponent"));
        let host = first_non_empty(str_at(e, "/source/host"), str_at(e, "/reportingInstance"));
        let source = if host.is_empty() { component.to_string() } else { format!("{component}, {host}") };
        vec![
            json!(last),
            json!(str_at(e, "/type")),
            json!(str_at(e, "/reason")),
            json!(target),
            json!(str_at(e, "/involvedObject/fieldPath")),
            json!(source),
            json!(str_at(e, "/message").trim()),
            json!(first),
            json!(count),
            json!(generic_server::meta::name(e)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({"metadata": {"name": "web.17", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec.containers{nginx}"},
            "reason": "Pulled", "type": "Normal", "message": " Pulled image \n",
            "source": {"component": "kubelet", "host": "node1"}, "count": 2})
    }

    #[test]
    fn row_and_columns() {
        let s = EventStrategy;
        let cols: Vec<String> =
            s.table_columns().into_iter().filter(|c| c.priority == 0).map(|c| c.name.into_owned()).collect();
        assert_eq!(cols, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        let row = s.table_row(&event());
        assert_eq!(row.len(), s.table_columns().len());
        assert_eq!(row[0], "<unknown>");
        assert_eq!(
            &row[1..7],
            &[
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{nginx}"),
                json!("kubelet, node1"),
                json!("Pulled image")
            ]
        );
        assert_eq!(&row[8..], &[json!(2), json!("web.17")]);
    }

    #[test]
    fn namespace_rule_and_fields() {
        let s = EventStrategy;
        assert!(s.validate(&event()).is_empty());
        let mut new_style = event();
        new_style["eventTime"] = json!("2026-01-01T00:00:00.000000Z");
        let msgs: Vec<String> = s.validate(&new_style).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            ["reportingController: Required value", "reportingInstance: Required value", "action: Required value"]
        );
        let strict: Vec<String> = validate(&event(), true).iter().map(Cause::full_message).collect();
        assert_eq!(
            strict,
            [
                "eventTime: Required value",
                "count: Invalid value: \"\": needs to be unset",
                "source: Invalid value: \"\": needs to be unset"
            ]
        );
        let mut bad = event();
        bad["involvedObject"]["namespace"] = json!("other");
        assert_eq!(
            s.validate(&bad)[0].full_message(),
            "involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"
        );
        let f = s.field_labels(&event());
        assert!(f.contains(&("involvedObject.name", "web".into())));
        assert!(f.contains(&("source", "kubelet".into())));
        assert_eq!(f.len(), FIELDS.len());
    }
}
