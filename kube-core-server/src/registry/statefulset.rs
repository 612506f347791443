//! apps/v1 statefulsets (upstream pkg/registry/apps/statefulset): DNS-label
//! names, upstream's defaults (OrderedReady, RollingUpdate with partition 0,
//! Retain PVC retention, replicas 1, history 10), validation, and the rule
//! that an update may change only replicas, ordinals, template,
//! updateStrategy, persistentVolumeClaimRetentionPolicy and minReadySeconds.

use serde_json::{json, Value};

use k8s_openapi::api::apps::v1::StatefulSet;

use generic_server::meta::NameRule;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::workload::{
    at, clear_status, container_cells, default_template, int, non_negative, restart_always, status_counts,
    validate_int_or_percent, validate_selector,
};
use super::{age, child, default_field, invalid_raw, show};

pub struct StatefulSetStrategy;

pub fn registration() -> Registration {
    Registration::of::<StatefulSet>(StatefulSetStrategy).short_names(&["sts"]).categories(&["all"]).status().scale()
}

/// The spec fields an update may change.
const MUTABLE: &[&str] =
    &["replicas", "ordinals", "template", "updateStrategy", "persistentVolumeClaimRetentionPolicy", "minReadySeconds"];

const RETENTION: &[&str] = &["Retain", "Delete"];

fn validate_update_strategy(causes: &mut Vec<Cause>, obj: &Value) {
    let strategy = at(obj, "spec.updateStrategy").cloned().unwrap_or(json!({}));
    match strategy.get("type").and_then(Value::as_str).unwrap_or("") {
        "" => causes.push(Cause::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(ru) = strategy.get("rollingUpdate").filter(|v| !v.is_null()) {
                causes.push(invalid_raw(
                    "spec.updateStrategy.rollingUpdate",
                    &show(ru),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            non_negative(causes, obj, &["spec.updateStrategy.rollingUpdate.partition"]);
            let path = "spec.updateStrategy.rollingUpdate.maxUnavailable";
            if let Some(v) = at(obj, path) {
                let before = causes.len();
                let n = validate_int_or_percent(causes, obj, path, true);
                if n == 0 && causes.len() == before {
                    causes.push(Cause::invalid(path, v, "cannot be 0"));
                }
            }
        }
        _ => causes.push(invalid_raw("spec.updateStrategy", &show(&strategy), "must be 'RollingUpdate' or 'OnDelete'")),
    }
}

impl Strategy for StatefulSetStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Label
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        clear_status(object, &["replicas", "availableReplicas"]);
    }

    fn default(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default_field(spec, "podManagementPolicy", json!("OrderedReady"));
        let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
        if let Value::Object(st) = strategy {
            if st.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
                st.insert("type".into(), json!("RollingUpdate"));
                default_field(st, "rollingUpdate", json!({}));
            }
            if st.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(Value::Object(ru)) = st.get_mut("rollingUpdate") {
                    default_field(ru, "partition", json!(0));
                }
            }
        }
        let retention = spec.entry("persistentVolumeClaimRetentionPolicy").or_insert_with(|| json!({}));
        if let Value::Object(r) = retention {
            default_field(r, "whenDeleted", json!("Retain"));
            default_field(r, "whenScaled", json!("Retain"));
        }
        default_field(spec, "replicas", json!(1));
        default_field(spec, "revisionHistoryLimit", json!(10));
        default_template(object, "spec.template");
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let policy = at(obj, "spec.podManagementPolicy").cloned().unwrap_or(json!(""));
        match policy.as_str() {
            Some("") => causes.push(Cause::required("spec.podManagementPolicy", "")),
            Some("OrderedReady" | "Parallel") => {}
            _ => {
                causes.push(Cause::invalid("spec.podManagementPolicy", &policy, "must be 'OrderedReady' or 'Parallel'"))
            }
        }
        validate_update_strategy(&mut causes, obj);
        for key in ["whenDeleted", "whenScaled"] {
            let path = format!("spec.persistentVolumeClaimRetentionPolicy.{key}");
            if at(obj, "spec.persistentVolumeClaimRetentionPolicy").is_some() {
                let v = at(obj, &path).cloned().unwrap_or(json!(""));
                if !v.as_str().is_some_and(|s| RETENTION.contains(&s)) {
                    causes.push(Cause::not_supported(path, &v, RETENTION));
                }
            }
        }
        non_negative(&mut causes, obj, &["spec.replicas", "spec.minReadySeconds"]);
        if let Some(start) = at(obj, "spec.ordinals.start").and_then(Value::as_i64).filter(|n| *n < 0) {
            causes.push(Cause::invalid("spec.ordinals.start", &json!(start), "must be greater than or equal to 0"));
        }
        // Upstream checks the template's labels and the selector here, not
        // the whole PodSpec.
        validate_selector(&mut causes, obj, "spec", Some("statefulset"));
        let spec = at(obj, "spec.template.spec").unwrap_or(&Value::Null);
        restart_always(&mut causes, spec, "spec.template.spec");
        if spec.get("activeDeadlineSeconds").is_some_and(|v| !v.is_null()) {
            causes.push(Cause::forbidden(
                "spec.template.spec.activeDeadlineSeconds",
                "activeDeadlineSeconds in StatefulSet is not Supported",
            ));
        }
        non_negative(&mut causes, obj, &["status.currentReplicas", "status.collisionCount"]);
        status_counts(
            &mut causes,
            obj,
            &["status.readyReplicas", "status.currentReplicas", "status.updatedReplicas", "status.availableReplicas"],
            "status.readyReplicas",
        );
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let rest = |o: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                m.retain(|k, v| !MUTABLE.contains(&k.as_str()) && !v.is_null());
            }
            spec
        };
        if rest(new) != rest(old) {
            causes.push(Cause::forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Ready", "string", "Number of the pod with ready state"),
            TableColumn::age_column(),
            TableColumn::new("Containers", "string", "Names of each container in the template.").wide(),
            TableColumn::new("Images", "string", "Images referenced by each container in the template.").wide(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        let [names, images] = container_cells(o, "spec.template");
        vec![
            json!(generic_server::meta::name(o)),
            json!(format!("{}/{}", int(o, "status.readyReplicas"), int(o, "spec.replicas"))),
            age(o),
            names,
            images,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created() -> Value {
        let v = json!({"metadata": {"name": "db"}, "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "postgres"}]}}}});
        let mut v = generic_server::registry::typed::decode_as::<StatefulSet>(v).unwrap().object;
        StatefulSetStrategy.prepare_for_create(&mut v);
        StatefulSetStrategy.default(&mut v);
        v
    }

    #[test]
    fn defaults() {
        let s = created();
        assert_eq!(s["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(s["spec"]["updateStrategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
        assert_eq!(
            s["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!((s["spec"]["replicas"].clone(), s["spec"]["revisionHistoryLimit"].clone()), (json!(1), json!(10)));
        assert!(StatefulSetStrategy.validate(&s).is_empty(), "{:?}", StatefulSetStrategy.validate(&s));
    }

    #[test]
    fn forbidden_updates() {
        let old = created();
        let mut ok = old.clone();
        ok["spec"]["replicas"] = json!(3);
        ok["spec"]["template"]["spec"]["containers"][0]["image"] = json!("postgres:16");
        assert!(StatefulSetStrategy.validate_update(&ok, &old).is_empty());
        let mut bad = old.clone();
        bad["spec"]["serviceName"] = json!("other");
        let causes = StatefulSetStrategy.validate_update(&bad, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(causes[0]
            .message
            .starts_with("Forbidden: updates to statefulset spec for fields other than 'replicas'"));
    }

    #[test]
    fn strategy_rules() {
        let mut s = created();
        s["spec"]["updateStrategy"] = json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        s["spec"]["podManagementPolicy"] = json!("Sometimes");
        let msgs: Vec<String> = StatefulSetStrategy.validate(&s).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, [
            "spec.podManagementPolicy: Invalid value: \"Sometimes\": must be 'OrderedReady' or 'Parallel'",
            "spec.updateStrategy.rollingUpdate: Invalid value: {\"partition\":1}: only allowed for updateStrategy 'RollingUpdate'",
        ]);
    }
}
