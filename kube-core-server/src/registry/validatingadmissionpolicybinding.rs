//! admissionregistration.k8s.io/v1 validatingadmissionpolicybindings
//! (upstream pkg/registry/admissionregistration/validatingadmissionpolicybinding):
//! a binding names its policy, optionally a parameter, the resources it
//! narrows to, and the actions taken on failure.

use serde_json::{json, Value};

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;

use generic_server::meta;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::validatingadmissionpolicy::{default_match_resources, validate_match_resources};
use super::{age, arr_at, format_label_selector, invalid_raw, str_at};

pub struct ValidatingAdmissionPolicyBindingStrategy;

pub fn registration() -> Registration {
    Registration::of::<ValidatingAdmissionPolicyBinding>(ValidatingAdmissionPolicyBindingStrategy)
        .categories(&["api-extensions"])
}

const MUTUALLY_EXCLUSIVE: &str = "name and selector are mutually exclusive";

/// Upstream's validateParamRef.
fn validate_param_ref(pr: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.paramRef";
    let name = str_at(pr, "/name");
    let selector = pr.get("selector").filter(|v| !v.is_null());
    if !name.is_empty() {
        if let Some(m) = meta::path_segment_problem(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &m));
        }
        if selector.is_some() {
            causes.push(Cause::forbidden(format!("{path}.name"), MUTUALLY_EXCLUSIVE));
        }
    }
    let ns = str_at(pr, "/namespace");
    if let Some(m) = Some(ns).filter(|n| !n.is_empty()).and_then(meta::is_dns1123_label) {
        causes.push(Cause::invalid(format!("{path}.namespace"), &json!(ns), &m));
    }
    if let Some(sel) = selector {
        validate_label_selector(sel, &format!("{path}.selector"), causes);
        if !name.is_empty() {
            causes.push(Cause::forbidden(format!("{path}.selector"), MUTUALLY_EXCLUSIVE));
        }
    }
    if name.is_empty() && selector.is_none() {
        causes.push(Cause::required(path, "one of name or selector must be specified"));
    }
    match str_at(pr, "/parameterNotFoundAction") {
        "" => causes.push(Cause::required(format!("{path}.parameterNotFoundAction"), "")),
        "Deny" | "Allow" => {}
        other => causes.push(Cause::not_supported(
            format!("{path}.parameterNotFoundAction"),
            &json!(other),
            &["Deny", "Allow"],
        )),
    }
}

impl Strategy for ValidatingAdmissionPolicyBindingStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_match_resources(obj.get_mut("spec").and_then(|s| s.get_mut("matchResources")));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let policy = str_at(obj, "/spec/policyName");
        if policy.is_empty() {
            causes.push(Cause::required("spec.policyName", ""));
        } else if let Some(m) = meta::is_dns1123_subdomain(policy) {
            causes.push(Cause::invalid("spec.policyName", &json!(policy), &m));
        }
        if let Some(pr) = obj.pointer("/spec/paramRef").filter(|v| !v.is_null()) {
            validate_param_ref(pr, &mut causes);
        }
        if let Some(mr) = obj.pointer("/spec/matchResources").filter(|v| !v.is_null()) {
            // Upstream's field path has this spelling.
            validate_match_resources(mr, "spec.matchResouces", &mut causes);
        }
        let actions = arr_at(obj, "/spec/validationActions");
        let mut seen = std::collections::HashSet::new();
        for (i, a) in actions.iter().enumerate() {
            let s = a.as_str().unwrap_or("");
            if !["Audit", "Deny", "Warn"].contains(&s) {
                causes.push(Cause::not_supported(
                    format!("spec.validationActions[{i}]"),
                    a,
                    &["Audit", "Deny", "Warn"],
                ));
            }
            if !seen.insert(s) {
                causes.push(Cause::duplicate(format!("spec.validationActions[{i}]"), a));
            }
        }
        if seen.contains("Deny") && seen.contains("Warn") {
            causes.push(invalid_raw(
                "spec.validationActions",
                &format!("[]admissionregistration.ValidationAction{{{}}}", actions.iter().map(super::show).collect::<Vec<_>>().join(", ")),
                "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ));
        }
        if seen.is_empty() {
            causes.push(Cause::required("spec.validationActions", "at least one validation action is required"));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("PolicyName", "string", "PolicyName references a ValidatingAdmissionPolicy name which the ValidatingAdmissionPolicyBinding binds to. If the referenced resource does not exist, this binding is considered invalid and will be ignored Required."),
            TableColumn::new("ParamRef", "string", "paramRef specifies the parameter resource used to configure the admission control policy. It should point to a resource of the type specified in ParamKind of the bound ValidatingAdmissionPolicy. If the policy specifies a ParamKind and the resource referred to by ParamRef does not exist, this binding is considered mis-configured and the FailurePolicy of the ValidatingAdmissionPolicy applied. If the policy does not specify a ParamKind then this field is ignored, and the rules are evaluated without a param."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let param = match obj.pointer("/spec/paramRef").filter(|v| !v.is_null()) {
            Some(pr) if !str_at(pr, "/name").is_empty() => {
                let ns = str_at(pr, "/namespace");
                format!("{}/{}", if ns.is_empty() { "*" } else { ns }, str_at(pr, "/name"))
            }
            Some(pr) if pr.get("selector").is_some_and(|s| !s.is_null()) => format_label_selector(pr.get("selector")),
            _ => "<unset>".into(),
        };
        vec![json!(meta::name(obj)), json!(str_at(obj, "/spec/policyName")), json!(param), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_validate_as_upstream() {
        let s = ValidatingAdmissionPolicyBindingStrategy;
        let ok = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Deny"],
            "paramRef": {"name": "cfg", "namespace": "default", "parameterNotFoundAction": "Deny"}}});
        assert!(s.validate(&ok).is_empty());
        assert_eq!(s.table_row(&ok)[2], "default/cfg");
        let bad =
            json!({"metadata": {"name": "b"}, "spec": {"validationActions": ["Deny", "Warn", "Deny"], "paramRef": {}}});
        let msgs: Vec<String> = s.validate(&bad).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.policyName: Required value",
                "spec.paramRef: Required value: one of name or selector must be specified",
                "spec.paramRef.parameterNotFoundAction: Required value",
                "spec.validationActions[2]: Duplicate value: \"Deny\"",
                "spec.validationActions: Invalid value: []admissionregistration.ValidationAction{\"Deny\", \"Warn\", \"Deny\"}: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ]
        );
    }
}
