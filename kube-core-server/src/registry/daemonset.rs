//! apps/v1 daemonsets (upstream pkg/registry/apps/daemonset): RollingUpdate
//! (maxUnavailable 1, maxSurge 0) and history 10 by default, the workload
//! rules (a missing selector is reported only as the template mismatch, as
//! upstream), exactly one of maxSurge and maxUnavailable non-zero, an
//! immutable selector, the status subresource and the table.

use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::DaemonSet;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::workload::{
    at, clear_status, container_cells, default_template, immutable_selector, int, non_negative, selector_is_empty,
    template_matches, validate_int_or_percent, validate_replica_template,
};
use super::{age, child, default_field, format_label_selector, format_labels, invalid_raw, map_at, show};

pub struct DaemonSetStrategy;

pub fn registration() -> Registration {
    Registration::of::<DaemonSet>(DaemonSetStrategy).short_names(&["ds"]).categories(&["all"]).status()
}

const STATUS_COUNTS: &[&str] = &[
    "status.currentNumberScheduled",
    "status.numberMisscheduled",
    "status.desiredNumberScheduled",
    "status.numberReady",
    "status.observedGeneration",
    "status.updatedNumberScheduled",
    "status.numberAvailable",
    "status.numberUnavailable",
    "status.collisionCount",
];

/// ValidateDaemonSetUpdateStrategy.
fn validate_update_strategy(causes: &mut Vec<Cause>, obj: &Value) {
    let strategy = at(obj, "spec.updateStrategy").cloned().unwrap_or(json!({}));
    match strategy.get("type").and_then(Value::as_str).unwrap_or("") {
        "OnDelete" => {}
        "RollingUpdate" => {
            if at(obj, "spec.updateStrategy.rollingUpdate").is_none() {
                causes.push(Cause::required("spec.updateStrategy.rollingUpdate", ""));
                return;
            }
            let unavailable =
                validate_int_or_percent(causes, obj, "spec.updateStrategy.rollingUpdate.maxUnavailable", true);
            let surge = validate_int_or_percent(causes, obj, "spec.updateStrategy.rollingUpdate.maxSurge", true);
            match (unavailable != 0, surge != 0) {
                (true, true) => {
                    let v = at(obj, "spec.updateStrategy.rollingUpdate.maxSurge").cloned().unwrap_or(Value::Null);
                    causes.push(Cause::invalid(
                        "spec.updateStrategy.rollingUpdate.maxSurge",
                        &v,
                        "may not be set when maxUnavailable is non-zero",
                    ));
                }
                (false, false) => causes.push(Cause::required(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    "cannot be 0 when maxSurge is 0",
                )),
                _ => {}
            }
        }
        _ => {
            let quoted = "supported values: \"RollingUpdate\", \"OnDelete\"";
            causes.push(Cause {
                reason: "FieldValueNotSupported",
                message: format!("Unsupported value: {}: {quoted}", show(&strategy)),
                field: "spec.updateStrategy".into(),
            });
        }
    }
}

impl Strategy for DaemonSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        clear_status(
            object,
            &["currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady"],
        );
    }

    fn default(&self, object: &mut Value) {
        let spec = child(object, "spec");
        let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
        if let Value::Object(st) = strategy {
            default_field(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Value::Object(ru) = ru {
                    default_field(ru, "maxUnavailable", json!(1));
                    default_field(ru, "maxSurge", json!(0));
                }
            }
        }
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_template(object, "spec.template");
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let sel = at(obj, "spec.selector");
        if let Some(s) = sel {
            validate_label_selector(s, "spec.selector", &mut causes);
        }
        template_matches(&mut causes, obj, sel, "spec.template");
        if let Some(s) = sel.filter(|s| selector_is_empty(s)) {
            causes.push(invalid_raw("spec.selector", &show(s), "empty selector is invalid for daemonset"));
        }
        validate_replica_template(&mut causes, obj, "spec.template", "DaemonSet");
        non_negative(&mut causes, obj, &["spec.minReadySeconds"]);
        validate_update_strategy(&mut causes, obj);
        non_negative(&mut causes, obj, &["spec.revisionHistoryLimit"]);
        non_negative(&mut causes, obj, STATUS_COUNTS);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        immutable_selector(&mut causes, new, old, "spec.selector");
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            TableColumn::new("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
            TableColumn::new("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
            TableColumn::new("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod"),
            TableColumn::new("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            TableColumn::new("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
            TableColumn::age_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
            TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
            TableColumn::new("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors").wide(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let [names, images] = container_cells(o, "spec.template");
        vec![
            json!(generic_server::meta::name(o)),
            json!(int(o, "status.desiredNumberScheduled")),
            json!(int(o, "status.currentNumberScheduled")),
            json!(int(o, "status.numberReady")),
            json!(int(o, "status.updatedNumberScheduled")),
            json!(int(o, "status.numberAvailable")),
            json!(format_labels(map_at(o, "/spec/template/spec/nodeSelector"))),
            age(o),
            names,
            images,
            json!(format_label_selector(o.pointer("/spec/selector"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(v: Value) -> Value {
        let mut v = generic_server::registry::typed::decode_as::<DaemonSet>(v).unwrap().object;
        DaemonSetStrategy.prepare_for_create(&mut v);
        DaemonSetStrategy.default(&mut v);
        v
    }

    fn ds() -> Value {
        json!({"metadata": {"name": "agent"}, "spec": {"selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "agent:1"}]}}}})
    }

    #[test]
    fn defaults_and_row() {
        let d = created(ds());
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert!(DaemonSetStrategy.validate(&d).is_empty(), "{:?}", DaemonSetStrategy.validate(&d));
        let row = DaemonSetStrategy.table_row(&d);
        assert_eq!(row.len(), DaemonSetStrategy.table_columns().len());
        assert_eq!(row[6], json!("disk=ssd"));
        assert_eq!(row[10], json!("app=agent"));
    }

    #[test]
    fn surge_and_unavailable() {
        let mut d = created(ds());
        d["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 1, "maxSurge": "10%"});
        let msgs: Vec<String> = DaemonSetStrategy.validate(&d).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"10%\": may not be set when maxUnavailable is non-zero"]);
        d["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": 0});
        let msgs: Vec<String> = DaemonSetStrategy.validate(&d).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
    }

    #[test]
    fn missing_selector_is_a_mismatch() {
        let mut d = created(ds());
        d["spec"].as_object_mut().unwrap().remove("selector");
        let causes = DaemonSetStrategy.validate(&d);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }
}
