//! apps/v1 deployments (upstream pkg/registry/apps/deployment): defaults
//! (replicas, RollingUpdate 25%/25%, history limit, progress deadline, and the
//! template's PodSpec defaults), validation (selector required, non-empty and
//! matching the template's labels, immutable once set; replicas >= 0; the
//! template's PodSpec), status and scale subresources, and the table.

use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::Deployment;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::workload::{
    at, container_cells, default_template, immutable_selector, non_negative, status_counts, validate_int_or_percent,
    validate_replica_template, validate_selector,
};
use super::{age, child, default_field, format_label_selector};

pub struct DeploymentStrategy;

pub fn registration() -> Registration {
    Registration::of::<Deployment>(DeploymentStrategy).short_names(&["deploy"]).categories(&["all"]).status().scale()
}

/// ValidateDeploymentStrategy.
fn validate_strategy(obj: &Value, causes: &mut Vec<Cause>) {
    let kind = obj.pointer("/spec/strategy/type").cloned().unwrap_or(Value::Null);
    match kind.as_str() {
        Some("Recreate") => {
            if at(obj, "spec.strategy.rollingUpdate").is_some() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            let unavailable = validate_int_or_percent(causes, obj, "spec.strategy.rollingUpdate.maxUnavailable", true);
            let surge = validate_int_or_percent(causes, obj, "spec.strategy.rollingUpdate.maxSurge", false);
            if unavailable == 0 && surge == 0 {
                let v = at(obj, "spec.strategy.rollingUpdate.maxUnavailable").cloned().unwrap_or(Value::Null);
                causes.push(Cause::invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &v,
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        _ => causes.push(Cause::not_supported("spec.strategy.type", &kind, &["Recreate", "RollingUpdate"])),
    }
}

impl Strategy for DeploymentStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default_field(spec, "replicas", json!(1));
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_field(spec, "progressDeadlineSeconds", json!(600));
        let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
        if let Value::Object(st) = strategy {
            default_field(st, "type", json!("RollingUpdate"));
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Value::Object(ru) = ru {
                    default_field(ru, "maxUnavailable", json!("25%"));
                    default_field(ru, "maxSurge", json!("25%"));
                }
            }
        }
        default_template(object, "spec.template");
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        non_negative(&mut causes, obj, &["spec.replicas"]);
        validate_selector(&mut causes, obj, "spec", Some("deployment"));
        validate_replica_template(&mut causes, obj, "spec.template", "ReplicaSet");
        validate_strategy(obj, &mut causes);
        non_negative(&mut causes, obj, &["spec.minReadySeconds", "spec.revisionHistoryLimit"]);
        if let Some(p) = at(obj, "spec.progressDeadlineSeconds").and_then(Value::as_i64) {
            let min_ready = at(obj, "spec.minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
            if p < 0 {
                non_negative(&mut causes, obj, &["spec.progressDeadlineSeconds"]);
            } else if p <= min_ready {
                causes.push(Cause::invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(p),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        non_negative(&mut causes, obj, &["status.unavailableReplicas", "status.collisionCount"]);
        status_counts(
            &mut causes,
            obj,
            &["status.updatedReplicas", "status.readyReplicas", "status.availableReplicas"],
            "readyReplicas",
        );
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        // apps/v1 made the selector immutable.
        immutable_selector(&mut causes, new, old, "spec.selector");
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Ready", "string", "Number of the pod with ready state"),
            TableColumn::new("Up-to-date", "integer", "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            TableColumn::new("Available", "integer", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            TableColumn::age_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
            TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
            TableColumn::new("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.").wide(),
        ]
    }

    fn table_row(&self, d: &Value) -> Vec<Value> {
        let int = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        let desired = int("/spec/replicas");
        let [names, images] = container_cells(d, "spec.template");
        vec![
            json!(generic_server::meta::name(d)),
            json!(format!("{}/{desired}", int("/status/readyReplicas"))),
            json!(int("/status/updatedReplicas")),
            json!(int("/status/availableReplicas")),
            age(d),
            names,
            images,
            json!(format_label_selector(d.pointer("/spec/selector"))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}})
    }

    fn created(s: &DeploymentStrategy, v: Value) -> Value {
        let mut v =
            generic_server::registry::typed::decode_as::<k8s_openapi::api::apps::v1::Deployment>(v).unwrap().object;
        s.prepare_for_create(&mut v);
        s.default(&mut v);
        v
    }

    #[test]
    fn defaults() {
        let s = DeploymentStrategy;
        let d = created(&s, deployment());
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(s.validate(&d).is_empty(), "{:?}", s.validate(&d));
    }

    #[test]
    fn selector_rules() {
        let s = DeploymentStrategy;
        let mut d = created(&s, deployment());
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["replicas"] = json!(-1);
        let msgs: Vec<String> = s.validate(&d).iter().map(Cause::full_message).collect();
        assert!(
            msgs.contains(&"spec.replicas: Invalid value: -1: must be greater than or equal to 0".to_string()),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`".to_string()), "{msgs:?}");

        let mut missing = created(&s, deployment());
        missing["spec"].as_object_mut().unwrap().remove("selector");
        assert_eq!(s.validate(&missing)[0].full_message(), "spec.selector: Required value");

        let old = created(&s, deployment());
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "v": "2"});
        let causes = s.validate_update(&new, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].full_message(),
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        );
        let mut expr = old.clone();
        expr["spec"]["selector"] = json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]});
        assert_eq!(
            s.validate_update(&expr, &old)[0].full_message(),
            r#"spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"app", Operator:"In", Values:[]string{"web"}}}}: field is immutable"#
        );
    }

    #[test]
    fn table() {
        let s = DeploymentStrategy;
        let mut d = created(&s, deployment());
        d["spec"]["replicas"] = json!(3);
        d["status"] = json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let row = s.table_row(&d);
        assert_eq!(row.len(), s.table_columns().len());
        assert_eq!(&row[..4], &[json!("web"), json!("2/3"), json!(3), json!(2)]);
        assert_eq!(&row[5..], &[json!("nginx"), json!("nginx:1.25"), json!("app=web")]);
    }
}
