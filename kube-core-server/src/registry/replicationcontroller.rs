//! core/v1 replicationcontrollers (upstream pkg/registry/core/replicationcontroller),
//! kept under /registry/controllers as upstream. Unlike a ReplicaSet the
//! selector is a plain label map: defaulted from the template's labels (as
//! are the object's own labels), required non-empty, and mutable.

use serde_json::{json, Map, Value};

use k8s_openapi::api::core::v1::ReplicationController;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::replicaset::{replica_columns, replica_row, REPLICA_STATUS};
use super::workload::{
    at, clear_status, default_template, int, non_negative, status_counts, validate_replica_template,
};
use super::{child, default_field, format_labels, go_string_map, invalid_raw, map_at};

pub struct ReplicationControllerStrategy;

pub fn registration() -> Registration {
    Registration::of::<ReplicationController>(ReplicationControllerStrategy)
        .short_names(&["rc"])
        .categories(&["all"])
        .key_root("/registry/controllers")
        .status()
        .scale()
}

fn selector(o: &Value) -> Option<&Map<String, Value>> {
    map_at(o, "/spec/selector").filter(|m| !m.is_empty())
}

impl Strategy for ReplicationControllerStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        clear_status(object, &["replicas"]);
    }

    fn default(&self, object: &mut Value) {
        if let Some(labels) = map_at(object, "/spec/template/metadata/labels").cloned() {
            if selector(object).is_none() {
                child(object, "spec").insert("selector".into(), Value::Object(labels.clone()));
            }
            if map_at(object, "/metadata/labels").is_none_or(Map::is_empty) {
                child(object, "metadata").insert("labels".into(), Value::Object(labels));
            }
        }
        default_field(child(object, "spec"), "replicas", json!(1));
        if at(object, "spec.template").is_some() {
            default_template(object, "spec.template");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        non_negative(&mut causes, obj, &["spec.minReadySeconds"]);
        let sel = selector(obj);
        if sel.is_none() {
            causes.push(Cause::required("spec.selector", ""));
        }
        non_negative(&mut causes, obj, &["spec.replicas"]);
        if at(obj, "spec.template").is_none() {
            causes.push(Cause::required("spec.template", ""));
        } else {
            // An empty selector skips the match: it was reported above.
            let labels = map_at(obj, "/spec/template/metadata/labels");
            let empty = Map::new();
            let matches =
                sel.is_none_or(|s| s.iter().all(|(k, v)| labels.unwrap_or(&empty).get(k).is_some_and(|l| l == v)));
            if !matches {
                causes.push(invalid_raw(
                    "spec.template.metadata.labels",
                    &go_string_map(labels),
                    "`selector` does not match template `labels`",
                ));
            }
            validate_replica_template(&mut causes, obj, "spec.template", "ReplicationController");
        }
        status_counts(&mut causes, obj, REPLICA_STATUS, "readyReplicas");
        causes
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        vec![("status.replicas", int(o, "status.replicas").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        replica_columns("Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors")
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        replica_row(o, format_labels(map_at(o, "/spec/selector")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(v: Value) -> Value {
        let mut v = generic_server::registry::typed::decode_as::<ReplicationController>(v).unwrap().object;
        ReplicationControllerStrategy.prepare_for_create(&mut v);
        ReplicationControllerStrategy.default(&mut v);
        v
    }

    #[test]
    fn selector_and_labels_default_from_the_template() {
        let rc =
            created(json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}));
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(rc["spec"]["replicas"], 1);
        assert!(ReplicationControllerStrategy.validate(&rc).is_empty());
        assert_eq!(ReplicationControllerStrategy.table_row(&rc)[7], json!("app=x"));
    }

    #[test]
    fn missing_template_and_selector() {
        let rc = created(json!({"metadata": {"name": "rc"}, "spec": {}}));
        let msgs: Vec<String> = ReplicationControllerStrategy.validate(&rc).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, ["spec.selector: Required value", "spec.template: Required value"]);
        let mut other = created(json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "y"},
            "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}));
        other["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(3);
        let msgs: Vec<String> =
            ReplicationControllerStrategy.validate(&other).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, [
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`",
            "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicationController is not Supported",
        ]);
    }
}
