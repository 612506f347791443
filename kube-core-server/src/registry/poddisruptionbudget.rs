//! policy/v1 poddisruptionbudgets (upstream pkg/registry/policy/poddisruptionbudget):
//! minAvailable xor maxUnavailable, each an int or a percent, the selector,
//! unhealthyPodEvictionPolicy, status validation, and the table. The
//! eviction subresource that honours budgets is [`super::eviction`].

use serde_json::{json, Value};

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::workload::{at, clear_status, int, non_negative, validate_int_or_percent};
use super::{age, invalid_raw, show};

pub struct PodDisruptionBudgetStrategy;

pub fn registration() -> Registration {
    Registration::of::<PodDisruptionBudget>(PodDisruptionBudgetStrategy).short_names(&["pdb"]).status()
}

const EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// An intstr cell as Go's IntOrString.String() prints it, "N/A" when unset.
fn int_or_string_cell(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

impl Strategy for PodDisruptionBudgetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, object: &mut Value) {
        clear_status(object, &["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"]);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let (min, max) = (at(obj, "spec.minAvailable"), at(obj, "spec.maxUnavailable"));
        if min.is_some() && max.is_some() {
            let spec = obj.get("spec").map(show).unwrap_or_default();
            causes.push(invalid_raw("spec", &spec, "minAvailable and maxUnavailable cannot be both set"));
        }
        for path in ["spec.minAvailable", "spec.maxUnavailable"] {
            validate_int_or_percent(&mut causes, obj, path, true);
        }
        if let Some(sel) = at(obj, "spec.selector") {
            validate_label_selector(sel, "spec.selector", &mut causes);
        }
        if let Some(p) = at(obj, "spec.unhealthyPodEvictionPolicy") {
            if !p.as_str().is_some_and(|s| EVICTION_POLICIES.contains(&s)) {
                causes.push(Cause::not_supported("spec.unhealthyPodEvictionPolicy", p, EVICTION_POLICIES));
            }
        }
        non_negative(
            &mut causes,
            obj,
            &["status.disruptionsAllowed", "status.currentHealthy", "status.desiredHealthy", "status.expectedPods"],
        );
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Min Available", "string", "An eviction is allowed if at least \"minAvailable\" pods selected by \"selector\" will still be available after the eviction, i.e. even in the absence of the evicted pod.  So for example you can prevent all voluntary evictions by specifying \"100%\"."),
            TableColumn::new("Max Unavailable", "string", "An eviction is allowed if at most \"maxUnavailable\" pods selected by \"selector\" are unavailable after the eviction, i.e. even in absence of the evicted pod. For example, one can prevent all voluntary evictions by specifying 0. This is a mutually exclusive setting with \"minAvailable\"."),
            TableColumn::new("Allowed Disruptions", "integer", "Number of pod disruptions that are currently allowed."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, o: &Value) -> Vec<Value> {
        vec![
            json!(generic_server::meta::name(o)),
            json!(int_or_string_cell(at(o, "spec.minAvailable"))),
            json!(int_or_string_cell(at(o, "spec.maxUnavailable"))),
            json!(int(o, "status.disruptionsAllowed")),
            age(o),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_row() {
        let s = PodDisruptionBudgetStrategy;
        let ok = json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"a": "b"}}}});
        assert!(s.validate(&ok).is_empty());
        assert_eq!(s.table_row(&ok)[1..4], [json!("50%"), json!("N/A"), json!(0)]);
        let both =
            json!({"spec": {"minAvailable": 1, "maxUnavailable": "120%", "unhealthyPodEvictionPolicy": "Never"}});
        let msgs: Vec<String> = s.validate(&both).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, [
            "spec: Invalid value: {\"minAvailable\":1,\"maxUnavailable\":\"120%\",\"unhealthyPodEvictionPolicy\":\"Never\"}: minAvailable and maxUnavailable cannot be both set",
            "spec.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%",
            "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
        ]);
    }
}
