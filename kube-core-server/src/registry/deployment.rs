//! apps/v1 deployments (upstream pkg/registry/apps/deployment): defaults
//! (replicas, RollingUpdate 25%/25%, history limit, progress deadline, and the
//! template's PodSpec defaults), validation (selector required, non-empty and
//! matching the template's labels, immutable once set; replicas >= 0; the
//! template's PodSpec), status and scale subresources, and the table.

use serde_json::{json, Map, Value};

use k8s_openapi::api::apps::v1::Deployment;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::selectors::LabelSelector;
use generic_server::status::Cause;

use super::podspec::{default_pod_spec, validate_pod_spec};
use super::{age, arr_at, child, default_field, format_label_selector, go_string_map, invalid_raw, map_at, show};

pub struct DeploymentStrategy;

pub fn registration() -> Registration {
    Registration::of::<Deployment>(DeploymentStrategy).short_names(&["deploy"]).categories(&["all"]).status().scale()
}

fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()).map(|n| (n, true)),
        _ => None,
    }
}

fn non_negative(causes: &mut Vec<Cause>, obj: &Value, pointer: &str, field: &str) {
    if let Some(n) = obj.pointer(pointer).and_then(Value::as_i64) {
        if n < 0 {
            causes.push(Cause::invalid(field, &json!(n), "must be greater than or equal to 0"));
        }
    }
}

impl DeploymentStrategy {
    fn validate_strategy(&self, obj: &Value, causes: &mut Vec<Cause>) {
        let kind = obj.pointer("/spec/strategy/type").cloned().unwrap_or(Value::Null);
        match kind.as_str() {
            Some("Recreate") => {
                if obj.pointer("/spec/strategy/rollingUpdate").is_some_and(|v| !v.is_null()) {
                    causes.push(Cause::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            Some("RollingUpdate") => {
                let mut zero = [false, false];
                for (i, key) in ["maxUnavailable", "maxSurge"].iter().enumerate() {
                    let field = format!("spec.strategy.rollingUpdate.{key}");
                    let Some(v) = obj.pointer(&format!("/spec/strategy/rollingUpdate/{key}")) else { continue };
                    match int_or_percent(v) {
                        Some((n, pct)) => {
                            zero[i] = n == 0;
                            if n < 0 {
                                causes.push(Cause::invalid(&field, v, "must be greater than or equal to 0"));
                            } else if pct && n > 100 && i == 0 {
                                causes.push(Cause::invalid(&field, v, "must not be greater than 100%"));
                            }
                        }
                        None => causes.push(Cause::invalid(&field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')")),
                    }
                }
                if zero == [true, true] {
                    let v = obj.pointer("/spec/strategy/rollingUpdate/maxUnavailable").cloned().unwrap_or(Value::Null);
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
}

/// Whether a metav1.LabelSelector selects the given labels.
fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let empty = Map::new();
    LabelSelector::from_object(sel).matches(labels.unwrap_or(&empty))
}

fn selector_is_empty(sel: &Value) -> bool {
    map_at(sel, "/matchLabels").is_none_or(Map::is_empty) && arr_at(sel, "/matchExpressions").is_empty()
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
        let template = child(object, "spec");
        let template = template.entry("template").or_insert_with(|| json!({}));
        default_pod_spec(child(template, "spec"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        non_negative(&mut causes, obj, "/spec/replicas", "spec.replicas");
        non_negative(&mut causes, obj, "/spec/minReadySeconds", "spec.minReadySeconds");
        non_negative(&mut causes, obj, "/spec/revisionHistoryLimit", "spec.revisionHistoryLimit");
        if let Some(p) = obj.pointer("/spec/progressDeadlineSeconds").and_then(Value::as_i64) {
            let min_ready = obj.pointer("/spec/minReadySeconds").and_then(Value::as_i64).unwrap_or(0);
            if p < 0 {
                causes.push(Cause::invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(p),
                    "must be greater than or equal to 0",
                ));
            } else if p <= min_ready {
                causes.push(Cause::invalid(
                    "spec.progressDeadlineSeconds",
                    &json!(p),
                    "must be greater than minReadySeconds",
                ));
            }
        }
        let labels = map_at(obj, "/spec/template/metadata/labels");
        match obj.pointer("/spec/selector").filter(|s| !s.is_null()) {
            None => causes.push(Cause::required("spec.selector", "")),
            Some(sel) if selector_is_empty(sel) => {
                causes.push(invalid_raw("spec.selector", &show(sel), "empty selector is invalid for deployment"))
            }
            Some(sel) => {
                for (i, e) in arr_at(sel, "/matchExpressions").iter().enumerate() {
                    let op = e.get("operator").cloned().unwrap_or(Value::Null);
                    let values = arr_at(e, "/values");
                    let field = format!("spec.selector.matchExpressions[{i}]");
                    match op.as_str() {
                        Some("In" | "NotIn") if values.is_empty() => causes.push(Cause::required(
                            format!("{field}.values"),
                            "must be specified when `operator` is 'In' or 'NotIn'",
                        )),
                        Some("Exists" | "DoesNotExist") if !values.is_empty() => causes.push(Cause::forbidden(
                            format!("{field}.values"),
                            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                        )),
                        Some("In" | "NotIn" | "Exists" | "DoesNotExist") => {}
                        _ => causes.push(Cause::invalid(
                            format!("{field}.operator"),
                            &op,
                            "not a valid selector operator",
                        )),
                    }
                }
                if !selector_matches(sel, labels) {
                    causes.push(invalid_raw(
                        "spec.template.metadata.labels",
                        &go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        let template_spec = obj.pointer("/spec/template/spec").unwrap_or(&Value::Null);
        causes.extend(validate_pod_spec(template_spec, "spec.template.spec"));
        // A controller's pods must keep running: only Always is allowed.
        if let Some(rp) = template_spec.get("restartPolicy") {
            if rp.as_str() != Some("Always") {
                causes.push(Cause::not_supported("spec.template.spec.restartPolicy", rp, &["Always"]));
            }
        }
        if template_spec.get("activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
            causes.push(Cause::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in ReplicaSet is not Supported",
            ));
        }
        self.validate_strategy(obj, &mut causes);
        for (pointer, field) in [
            ("/status/replicas", "status.replicas"),
            ("/status/updatedReplicas", "status.updatedReplicas"),
            ("/status/readyReplicas", "status.readyReplicas"),
            ("/status/availableReplicas", "status.availableReplicas"),
            ("/status/unavailableReplicas", "status.unavailableReplicas"),
        ] {
            non_negative(&mut causes, obj, pointer, field);
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        // apps/v1 made the selector immutable.
        let (ns, os) = (new.pointer("/spec/selector"), old.pointer("/spec/selector"));
        if ns.is_some() && os.is_some() && ns != os {
            let shown = ns.map(show).unwrap_or_default();
            causes.push(invalid_raw("spec.selector", &shown, "field is immutable"));
        }
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
        let containers = arr_at(d, "/spec/template/spec/containers");
        let names: Vec<&str> = containers.iter().map(|c| super::str_at(c, "/name")).collect();
        let images: Vec<&str> = containers.iter().map(|c| super::str_at(c, "/image")).collect();
        vec![
            json!(generic_server::meta::name(d)),
            json!(format!("{}/{desired}", int("/status/readyReplicas"))),
            json!(int("/status/updatedReplicas")),
            json!(int("/status/availableReplicas")),
            age(d),
            json!(names.join(",")),
            json!(images.join(",")),
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
        assert_eq!(causes[0].field, "spec.selector");
        assert!(causes[0].message.ends_with("field is immutable"));
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
