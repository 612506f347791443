//! events.k8s.io/v1 Events: the core/v1 Events, in the same storage
//! (/registry/events), under events.k8s.io's field names (upstream
//! pkg/apis/events/v1/conversion.go): note is message, regarding is
//! involvedObject, reportingController is reportingComponent, the
//! deprecated* fields are core's source, firstTimestamp, lastTimestamp and
//! count. Written this way an event must be a new-style one (eventTime,
//! reporting fields; ValidateEventCreate's strict rules), and its field
//! selectors use the events.k8s.io names.

use serde_json::{Map, Value};

use k8s_openapi::api::events::v1::Event;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::event::{self, EventStrategy};
use super::str_at;

/// (core field, events.k8s.io/v1 field), in events.k8s.io/v1's field order.
const FIELDS: [(&str, &str); 14] = [
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("type", "type"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// core/v1's field order, for objects written in it.
const CORE_ORDER: [&str; 14] = [
    "involvedObject",
    "reason",
    "message",
    "source",
    "firstTimestamp",
    "lastTimestamp",
    "count",
    "type",
    "eventTime",
    "series",
    "action",
    "related",
    "reportingComponent",
    "reportingInstance",
];

fn header(api_version: &str, from: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("kind".into(), "Event".into());
    out.insert("apiVersion".into(), api_version.into());
    if let Some(m) = from.get("metadata") {
        out.insert("metadata".into(), m.clone());
    }
    out
}

/// core/v1 (stored) to events.k8s.io/v1.
pub fn from_core(core: Value) -> Value {
    let mut out = header("events.k8s.io/v1", &core);
    for (c, v1) in FIELDS {
        if let Some(v) = core.get(c) {
            out.insert(v1.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// events.k8s.io/v1 to core/v1 (stored).
pub fn to_core(v1: Value) -> Value {
    let mut out = header("v1", &v1);
    for c in CORE_ORDER {
        let name = FIELDS.iter().find(|(core, _)| *core == c).map_or(c, |(_, v1)| *v1);
        if let Some(v) = v1.get(name) {
            out.insert(c.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// events.k8s.io/v1 over the core Events' registration (storage, TTL, names).
pub fn registration(core: &Registration) -> Registration {
    core.served_as::<Event>(to_core, from_core).strategy(EventsV1Strategy)
}

/// upstream's AddFieldLabelConversionsForEvent for events.k8s.io/v1.
const FIELD_LABELS: &[&str] = &[
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "source",
    "type",
];

/// Core's rules in their strict form, seen through the conversion, with
/// events.k8s.io's field selectors.
pub struct EventsV1Strategy;

impl Strategy for EventsV1Strategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        event::validate(&to_core(obj.clone()), true)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        event::validate_strict_update(&to_core(new.clone()), &to_core(old.clone()))
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        FIELD_LABELS
            .iter()
            .map(|l| {
                let pointer = match *l {
                    "source" => "/deprecatedSource/component".to_string(),
                    other => format!("/{}", other.replace('.', "/")),
                };
                (*l, str_at(o, &pointer).to_string())
            })
            .collect()
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        FIELD_LABELS
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        EventStrategy.table_columns()
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        EventStrategy.table_row(&to_core(obj.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core() -> Value {
        json!({
            "kind": "Event", "apiVersion": "v1",
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u1"},
            "reason": "Started", "message": "Started container", "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:01:00Z", "count": 3,
            "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z",
            "series": {"count": 3, "lastObservedTime": "2026-01-01T00:01:00.000000Z"},
            "action": "Start", "related": {"kind": "Node", "name": "n1"},
            "reportingComponent": "kubelet", "reportingInstance": "n1"
        })
    }

    #[test]
    fn round_trips_lose_nothing() {
        let v1 = from_core(core());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["note"], "Started container");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["deprecatedSource"]["host"], "n1");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(to_core(v1.clone()), core());
        assert_eq!(from_core(to_core(v1.clone())), v1);
    }

    #[test]
    fn same_storage_and_ttl_as_core() {
        let ttl = std::time::Duration::from_secs(90);
        let r = registration(&event::registration(ttl));
        assert_eq!((r.info.group.as_str(), r.info.key_root.as_str()), ("events.k8s.io", "/registry/events"));
        assert_eq!((r.ttl, r.info.short_names.clone()), (Some(ttl), vec!["ev".to_string()]));
    }

    #[test]
    fn field_selectors_use_events_names() {
        let labels = EventsV1Strategy.field_labels(&from_core(core()));
        assert!(labels.contains(&("regarding.name", "web".into())));
        assert!(labels.contains(&("reportingController", "kubelet".into())));
        assert!(labels.contains(&("source", "kubelet".into())));
        assert_eq!(labels.len(), FIELD_LABELS.len());
    }

    #[test]
    fn strict_validation_on_create() {
        let v1 = json!({"metadata": {"name": "e", "namespace": "default"}, "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}, "type": "Bad"});
        let msgs: Vec<String> = EventsV1Strategy.validate(&v1).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, ["eventTime: Required value", "type: Invalid value: \"\": has invalid value: Bad"]);
    }
}
