//! admissionregistration.k8s.io/v1 validatingadmissionpolicies (upstream
//! pkg/registry/admissionregistration/validatingadmissionpolicy and
//! pkg/apis/admissionregistration/validation): failurePolicy and match
//! constraints default as upstream, the structure is validated with
//! upstream's paths and messages, status is written through `/status`.
//!
//! Every CEL expression (validations, messages, variables, match
//! conditions, audit annotations) is compiled in cel-k8s's environment and a
//! compile error is upstream's Invalid cause at the expression's path.
//! Evaluating policies is admission's work (admission::policy).

use serde_json::{json, Map, Value};

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;

use generic_server::meta;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::webhookconfiguration::{
    compile_at, default_rules, validate_match_conditions, validate_rule_with_operations,
};
use super::{age, arr_at, default_field, str_at};

pub struct ValidatingAdmissionPolicyStrategy;

pub fn registration() -> Registration {
    Registration::of::<ValidatingAdmissionPolicy>(ValidatingAdmissionPolicyStrategy)
        .categories(&["api-extensions"])
        .status()
}

/// Upstream's SetDefaults_MatchResources (and the rules' scope).
pub(crate) fn default_match_resources(mr: Option<&mut Value>) {
    let Some(m) = mr.and_then(Value::as_object_mut) else { return };
    default_field(m, "matchPolicy", json!("Equivalent"));
    default_field(m, "namespaceSelector", Value::Object(Map::new()));
    default_field(m, "objectSelector", Value::Object(Map::new()));
    default_rules(m.get_mut("resourceRules"));
    default_rules(m.get_mut("excludeResourceRules"));
}

/// Upstream's validateMatchResources.
pub(crate) fn validate_match_resources(mr: &Value, path: &str, causes: &mut Vec<Cause>) {
    match mr.get("matchPolicy").and_then(Value::as_str) {
        None => causes.push(Cause::required(format!("{path}.matchPolicy"), "")),
        Some(p) if !["Equivalent", "Exact"].contains(&p) => {
            causes.push(Cause::not_supported(format!("{path}.matchPolicy"), &json!(p), &["Equivalent", "Exact"]))
        }
        Some(_) => {}
    }
    for key in ["namespaceSelector", "objectSelector"] {
        match mr.get(key).filter(|v| !v.is_null()) {
            None => causes.push(Cause::required(format!("{path}.{key}"), "")),
            Some(sel) => validate_label_selector(sel, &format!("{path}.{key}"), causes),
        }
    }
    for key in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in arr_at(mr, &format!("/{key}")).iter().enumerate() {
            let rpath = format!("{path}.{key}[{i}]");
            let mut seen = std::collections::HashSet::new();
            for (j, name) in arr_at(rule, "/resourceNames").iter().enumerate() {
                let n = name.as_str().unwrap_or("");
                if let Some(m) = meta::path_segment_problem(n) {
                    causes.push(Cause::invalid(format!("{rpath}.resourceNames[{j}]"), name, &m));
                }
                if !seen.insert(n) {
                    causes.push(Cause::duplicate(format!("{rpath}.resourceNames[{j}]"), name));
                }
            }
            validate_rule_with_operations(rule, &rpath, causes);
        }
    }
}

/// Upstream's validateParamKind.
fn validate_param_kind(pk: &Value, causes: &mut Vec<Cause>) {
    let path = "spec.paramKind";
    let api_version = str_at(pk, "/apiVersion");
    if api_version.is_empty() {
        causes.push(Cause::required(format!("{path}.apiVersion"), ""));
    } else if api_version.matches('/').count() > 1 {
        causes.push(Cause::invalid(
            format!("{path}.apiVersion"),
            &json!(api_version),
            &format!("unexpected GroupVersion string: {api_version}"),
        ));
    } else {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if let Some(m) = Some(group).filter(|g| !g.is_empty()).and_then(meta::is_dns1123_subdomain) {
            causes.push(Cause::invalid(format!("{path}.apiVersion"), &json!(group), &m));
        }
        if version.is_empty() {
            causes.push(Cause::invalid(format!("{path}.apiVersion"), &json!(api_version), "version must be specified"));
        } else if let Some(m) = meta::is_dns1035_label(version) {
            causes.push(Cause::invalid(format!("{path}.apiVersion"), &json!(version), &m));
        }
    }
    let kind = str_at(pk, "/kind");
    if kind.is_empty() {
        causes.push(Cause::required(format!("{path}.kind"), ""));
    } else if let Some(m) = meta::is_dns1035_label(&kind.to_lowercase()) {
        causes.push(Cause::invalid(
            format!("{path}.kind"),
            &json!(kind),
            &format!("may have mixed case, but should otherwise match: {m}"),
        ));
    }
}

/// Upstream's validateValidation.
fn validate_validation(v: &Value, path: &str, causes: &mut Vec<Cause>) {
    let expression = str_at(v, "/expression");
    if expression.trim().is_empty() {
        causes.push(Cause::required(format!("{path}.expression"), "expression is not specified"));
    } else {
        compile_at(expression, format!("{path}.expression"), causes);
    }
    let message_expression = str_at(v, "/messageExpression");
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        causes.push(Cause::invalid(
            format!("{path}.messageExpression"),
            &json!(message_expression),
            "must be non-empty if specified",
        ));
    } else if !message_expression.is_empty() {
        compile_at(message_expression, format!("{path}.messageExpression"), causes);
    }
    let message = str_at(v, "/message");
    if !message.is_empty() && message.trim().is_empty() {
        causes.push(Cause::invalid(
            format!("{path}.message"),
            &json!(message),
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains(['\n', '\r']) {
        causes.push(Cause::invalid(format!("{path}.message"), &json!(message), "message must not contain line breaks"));
    }
    if let Some(reason) = v.get("reason").and_then(Value::as_str) {
        const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];
        if !REASONS.contains(&reason) {
            causes.push(Cause::not_supported(format!("{path}.reason"), &json!(reason), REASONS));
        }
    }
}

/// Whether `name` is a CEL identifier (upstream's isCELIdentifier).
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Strategy for ValidatingAdmissionPolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::clear_status(obj);
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else { return };
        default_field(spec, "failurePolicy", json!("Fail"));
        default_match_resources(spec.get_mut("matchConstraints"));
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        match spec.get("failurePolicy").and_then(Value::as_str) {
            None => causes.push(Cause::required("spec.failurePolicy", "")),
            Some(p) if !["Fail", "Ignore"].contains(&p) => {
                causes.push(Cause::not_supported("spec.failurePolicy", &json!(p), &["Fail", "Ignore"]))
            }
            Some(_) => {}
        }
        if let Some(pk) = spec.get("paramKind").filter(|v| !v.is_null()) {
            validate_param_kind(pk, &mut causes);
        }
        match spec.get("matchConstraints").filter(|v| !v.is_null()) {
            None => causes.push(Cause::required("spec.matchConstraints", "")),
            Some(mc) => {
                validate_match_resources(mc, "spec.matchConstraints", &mut causes);
                if arr_at(mc, "/resourceRules").is_empty() {
                    causes.push(Cause::required("spec.matchConstraints.resourceRules", ""));
                }
            }
        }
        let conditions = arr_at(spec, "/matchConditions");
        validate_match_conditions(conditions, "spec.matchConditions", &mut causes);
        for (i, v) in arr_at(spec, "/variables").iter().enumerate() {
            let name = str_at(v, "/name");
            if name.trim().is_empty() {
                causes.push(Cause::required(format!("spec.variables[{i}].name"), "name is not specified"));
            } else if !is_cel_identifier(name) {
                causes.push(Cause::invalid(
                    format!("spec.variables[{i}].name"),
                    &json!(name),
                    "name is not a valid CEL identifier",
                ));
            }
            let expression = str_at(v, "/expression");
            if expression.trim().is_empty() {
                causes.push(Cause::required(format!("spec.variables[{i}].expression"), "expression is not specified"));
            } else {
                compile_at(expression, format!("spec.variables[{i}].expression"), &mut causes);
            }
        }
        let (validations, audits) = (arr_at(spec, "/validations"), arr_at(spec, "/auditAnnotations"));
        if validations.is_empty() && audits.is_empty() {
            let msg = "validations or auditAnnotations must contain at least one item";
            causes.push(Cause::required("spec.validations", msg));
            causes.push(Cause::required("spec.auditAnnotations", msg));
        }
        for (i, v) in validations.iter().enumerate() {
            validate_validation(v, &format!("spec.validations[{i}]"), &mut causes);
        }
        if audits.len() > 20 {
            causes.push(super::invalid_raw(
                "spec.auditAnnotations",
                &format!("{} items", audits.len()),
                "must not have more than 20 auditAnnotations",
            ));
        }
        let mut keys = std::collections::HashSet::new();
        for (i, a) in audits.iter().enumerate() {
            let path = format!("spec.auditAnnotations[{i}]");
            let key = str_at(a, "/key");
            if key.is_empty() {
                causes.push(Cause::required(format!("{path}.key"), ""));
            } else {
                let qualified = format!("{}/{key}", meta::name(obj));
                for m in meta::qualified_name_problems(&qualified) {
                    causes.push(Cause::invalid(format!("{path}.key"), &json!(qualified), &m));
                }
            }
            let value = str_at(a, "/valueExpression");
            if value.trim().is_empty() {
                causes.push(Cause::required(format!("{path}.valueExpression"), "valueExpression is not specified"));
            } else if value.len() > 5 * 1024 {
                causes.push(super::too_long_cause(format!("{path}.valueExpression"), 5 * 1024));
            } else {
                compile_at(value, format!("{path}.valueExpression"), &mut causes);
            }
            if !keys.insert(key) {
                causes.push(Cause::duplicate(format!("{path}.key"), &json!(key)));
            }
        }
        causes
    }

    fn validate_subresource_update(&self, _subresource: &str, _new: &Value, _old: &Value) -> Vec<Cause> {
        Vec::new()
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Validations", "integer", "Validations contain CEL expressions which is used to apply the validation. Validations and AuditAnnotations may not both be empty; a minimum of one Validations or AuditAnnotations is required."),
            TableColumn::new("ParamKind", "string", "ParamKind specifies the kind of resources used to parameterize this policy. If absent, there are no parameters for this policy and the param CEL variable will not be provided to validation expressions. If ParamKind refers to a non-existent kind, this policy definition is mis-configured and the FailurePolicy is applied. If paramKind is specified but paramRef is unset in ValidatingAdmissionPolicyBinding, the params variable will be null."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let param_kind = match obj.pointer("/spec/paramKind").filter(|v| !v.is_null()) {
            Some(pk) => format!("{}/{}", str_at(pk, "/apiVersion"), str_at(pk, "/kind")),
            None => "<unset>".into(),
        };
        vec![json!(meta::name(obj)), json!(arr_at(obj, "/spec/validations").len()), json!(param_kind), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: &Value) -> Vec<String> {
        ValidatingAdmissionPolicyStrategy.validate(obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn policies_default_and_validate() {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {
            "matchConstraints": {"resourceRules": [{"operations": ["CREATE"], "apiGroups": ["apps"], "apiVersions": ["v1"], "resources": ["deployments"]}]},
            "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        ValidatingAdmissionPolicyStrategy.default(&mut p);
        assert_eq!(p["spec"]["failurePolicy"], "Fail");
        let mc = &p["spec"]["matchConstraints"];
        assert_eq!(
            (&mc["matchPolicy"], &mc["namespaceSelector"], &mc["resourceRules"][0]["scope"]),
            (&json!("Equivalent"), &json!({}), &json!("*"))
        );
        assert!(messages(&p).is_empty(), "{:?}", messages(&p));
        assert_eq!(ValidatingAdmissionPolicyStrategy.table_row(&p)[1..3], [json!(1), json!("<unset>")]);

        let bad = json!({"metadata": {"name": "p"}, "spec": {"failurePolicy": "Maybe", "paramKind": {"apiVersion": "a/b/c", "kind": "Config"},
            "variables": [{"name": "1x", "expression": "1"}], "validations": [{"expression": " ", "reason": "Teapot"}]}});
        assert_eq!(
            messages(&bad),
            [
                "spec.failurePolicy: Unsupported value: \"Maybe\": supported values: \"Fail\", \"Ignore\"",
                "spec.paramKind.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
                "spec.matchConstraints: Required value",
                "spec.variables[0].name: Invalid value: \"1x\": name is not a valid CEL identifier",
                "spec.validations[0].expression: Required value: expression is not specified",
                "spec.validations[0].reason: Unsupported value: \"Teapot\": supported values: \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\"",
            ]
        );

        let mut bad_cel = p.clone();
        bad_cel["spec"]["validations"] =
            json!([{"expression": "object.spec.replicas <=", "messageExpression": "'x' +"}]);
        bad_cel["spec"]["variables"] = json!([{"name": "v", "expression": "1 +"}]);
        let msgs = messages(&bad_cel);
        let fields: Vec<&str> = msgs.iter().map(|m| m.split(':').next().unwrap_or("")).collect();
        assert_eq!(
            fields,
            ["spec.variables[0].expression", "spec.validations[0].expression", "spec.validations[0].messageExpression"]
        );
        assert!(msgs[1].contains("Invalid value: \"object.spec.replicas <=\": compilation failed: "), "{msgs:?}");
    }
}
