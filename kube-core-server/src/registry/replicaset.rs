//! apps/v1 replicasets (upstream pkg/registry/apps/replicaset): replicas
//! defaulted to 1, the workload rules (selector, template, counts), an
//! immutable selector, status and scale subresources, the `status.replicas`
//! field selector and the table.

use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::ReplicaSet;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::workload::{
    clear_status, container_cells, default_template, immutable_selector, int, non_negative, status_counts,
    validate_replica_template, validate_selector,
};
use super::{age, child, default_field, format_label_selector};

pub struct ReplicaSetStrategy;

pub fn registration() -> Registration {
    Registration::of::<ReplicaSet>(ReplicaSetStrategy).short_names(&["rs"]).categories(&["all"]).status().scale()
}

/// The Desired/Current/Ready columns ReplicaSets and ReplicationControllers share.
pub(crate) fn replica_columns(selector_doc: &'static str) -> Vec<TableColumn> {
    vec![
        TableColumn::name_column(),
        TableColumn::new("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
        TableColumn::new("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller"),
        TableColumn::new("Ready", "integer", "The number of ready replicas for this replica set. A pod is counted as ready when it has a Ready condition."),
        TableColumn::age_column(),
        TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
        TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
        TableColumn::new("Selector", "string", selector_doc).wide(),
    ]
}

/// A row of [`replica_columns`], with the selector cell as the kind prints it.
pub(crate) fn replica_row(o: &Value, selector: String) -> Vec<Value> {
    let [names, images] = container_cells(o, "spec.template");
    vec![
        json!(generic_server::meta::name(o)),
        json!(int(o, "spec.replicas")),
        json!(int(o, "status.replicas")),
        json!(int(o, "status.readyReplicas")),
        age(o),
        names,
        images,
        json!(selector),
    ]
}

/// The replica controllers' status counts (ValidateReplicaSetStatus and the
/// ReplicationController's twin).
pub(crate) const REPLICA_STATUS: &[&str] =
    &["status.fullyLabeledReplicas", "status.readyReplicas", "status.availableReplicas"];

impl Strategy for ReplicaSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        clear_status(object, &["replicas"]);
    }

    fn default(&self, object: &mut Value) {
        default_field(child(object, "spec"), "replicas", json!(1));
        default_template(object, "spec.template");
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        non_negative(&mut causes, obj, &["spec.replicas", "spec.minReadySeconds"]);
        // Upstream's message says deployment here too.
        validate_selector(&mut causes, obj, "spec", Some("deployment"));
        validate_replica_template(&mut causes, obj, "spec.template", "ReplicaSet");
        status_counts(&mut causes, obj, REPLICA_STATUS, "readyReplicas");
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        immutable_selector(&mut causes, new, old, "spec.selector");
        causes
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        vec![("status.replicas", int(o, "status.replicas").to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        replica_columns("Selector is a label query over pods that should match the replica count. If the selector is empty, it is defaulted to the labels present on the pod template. Label keys and values that must match in order to be controlled by this replica set. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors")
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        replica_row(o, format_label_selector(o.pointer("/spec/selector")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(v: Value) -> Value {
        let mut v = generic_server::registry::typed::decode_as::<ReplicaSet>(v).unwrap().object;
        ReplicaSetStrategy.prepare_for_create(&mut v);
        ReplicaSetStrategy.default(&mut v);
        v
    }

    fn rs() -> Value {
        json!({"metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"app": "r"}},
            "template": {"metadata": {"labels": {"app": "r"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    }

    #[test]
    fn defaults_and_valid() {
        let r = created(rs());
        assert_eq!(r["spec"]["replicas"], 1);
        assert_eq!(r["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(ReplicaSetStrategy.validate(&r).is_empty(), "{:?}", ReplicaSetStrategy.validate(&r));
    }

    #[test]
    fn invalid_template_and_update() {
        let mut r = created(rs());
        r["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        r["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(5);
        let msgs: Vec<String> = ReplicaSetStrategy.validate(&r).iter().map(Cause::full_message).collect();
        assert!(
            msgs.contains(
                &"spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
                    .to_string()
            ),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported".to_string()), "{msgs:?}");
        let old = created(rs());
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["x"] = json!("y");
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let causes = ReplicaSetStrategy.validate_update(&new, &old);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].full_message().starts_with("spec.selector: Invalid value:"));
    }

    #[test]
    fn row_and_field_labels() {
        let mut r = created(rs());
        r["status"] = json!({"replicas": 2, "readyReplicas": 1});
        let row = ReplicaSetStrategy.table_row(&r);
        assert_eq!(row.len(), ReplicaSetStrategy.table_columns().len());
        assert_eq!(&row[..4], &[json!("r"), json!(1), json!(2), json!(1)]);
        assert_eq!(&row[5..], &[json!("c"), json!("nginx"), json!("app=r")]);
        assert_eq!(ReplicaSetStrategy.field_labels(&r), vec![("status.replicas", "2".to_string())]);
    }
}
