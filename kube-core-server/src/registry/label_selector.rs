//! metav1.LabelSelector validation, one copy for every kind that holds a
//! selector (upstream's metav1validation.ValidateLabelSelector and
//! ValidateLabelSelectorRequirement): matchLabels as labels, each
//! requirement's operator and values, its key as a label name and its values
//! as label values.
//!
//! Upstream lets an update keep label values that were accepted before the
//! value check existed (AllowInvalidLabelValueInSelector); every selector
//! this server stored was checked, so there is nothing to keep and that
//! option does not exist here.

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::status::Cause;

use super::{arr_at, str_at};

/// Whether an operator this server does not know is refused.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnknownOperator {
    Refused,
    /// A newer client's, in an access review: passes.
    Allowed,
}

/// The selector at `path`.
pub(crate) fn validate_label_selector(sel: &Value, path: &str, causes: &mut Vec<Cause>) {
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        causes.extend(meta::validate_labels(labels, &format!("{path}.matchLabels")));
    }
    for (i, e) in arr_at(sel, "/matchExpressions").iter().enumerate() {
        validate_label_requirement(e, &format!("{path}.matchExpressions[{i}]"), UnknownOperator::Refused, causes);
    }
}

/// The requirement at `path`: operator and values, key, then each value.
pub(crate) fn validate_label_requirement(req: &Value, path: &str, unknown: UnknownOperator, causes: &mut Vec<Cause>) {
    let operator = str_at(req, "/operator");
    if !validate_operator_values(req, path, causes) && unknown == UnknownOperator::Refused {
        causes.push(Cause::invalid(format!("{path}.operator"), &json!(operator), "not a valid selector operator"));
    }
    let key = str_at(req, "/key");
    for m in meta::qualified_name_problems(key) {
        causes.push(Cause::invalid(format!("{path}.key"), &json!(key), &m));
    }
    for (j, v) in arr_at(req, "/values").iter().enumerate() {
        if let Some(problem) = v.as_str().and_then(meta::label_value_problem) {
            causes.push(Cause::invalid(format!("{path}.values[{j}]"), v, &problem));
        }
    }
}

/// What a label or field selector requirement's operator says of its
/// values: In and NotIn need some, Exists and DoesNotExist take none.
/// Whether the operator is one of those.
pub(crate) fn validate_operator_values(req: &Value, path: &str, causes: &mut Vec<Cause>) -> bool {
    let values = arr_at(req, "/values");
    match str_at(req, "/operator") {
        "In" | "NotIn" if values.is_empty() => causes
            .push(Cause::required(format!("{path}.values"), "must be specified when `operator` is 'In' or 'NotIn'")),
        "Exists" | "DoesNotExist" if !values.is_empty() => causes.push(Cause::forbidden(
            format!("{path}.values"),
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        )),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_keys_operators_and_values() {
        let sel = json!({
            "matchLabels": {"-bad": "ok", "app": "not ok"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a b"]},
                {"key": "x/y/z", "operator": "Exists"},
                {"key": "k", "operator": "Near", "values": ["v"]},
            ],
        });
        let mut causes = Vec::new();
        validate_label_selector(&sel, "spec.selector", &mut causes);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.selector.matchLabels",
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values[0]",
                "spec.selector.matchExpressions[1].key",
                "spec.selector.matchExpressions[2].operator",
            ],
            "{causes:?}"
        );
        assert!(causes[4].message.starts_with("Invalid value: \"Near\": not a valid selector operator"));
        let mut causes = Vec::new();
        validate_label_requirement(&sel["matchExpressions"][2], "r", UnknownOperator::Allowed, &mut causes);
        assert!(causes.is_empty(), "{causes:?}");
    }
}
