//! flowcontrol.apiserver.k8s.io/v1 flowschemas (upstream
//! pkg/registry/flowcontrol/flowschema and pkg/apis/flowcontrol/validation):
//! matchingPrecedence defaults to 1000, subjects and rules follow upstream's
//! rules, status is written through `/status` only, and the table shows the
//! priority level and whether it is missing (the Dangling condition).

use serde_json::{json, Value};

use k8s_openapi::api::flowcontrol::v1::FlowSchema;

use generic_server::meta;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, arr_at, child, go_string_slice, invalid_raw, str_at};

pub struct FlowSchemaStrategy;

pub fn registration() -> Registration {
    Registration::of::<FlowSchema>(FlowSchemaStrategy).status()
}

/// Upstream's FlowSchemaMaxMatchingPrecedence.
const MAX_PRECEDENCE: i64 = 10000;
const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "proxy", "update", "watch"];
const NS_INTRO: &str = "each member of this list must be '*' or a DNS-1123 label; ";

fn strings(list: &[Value]) -> Vec<&str> {
    list.iter().map(|v| v.as_str().unwrap_or("")).collect()
}

/// A NotSupported cause whose value is a Go value upstream prints with %#v.
fn not_supported_raw(field: String, shown: &str, allowed: &[&str]) -> Cause {
    let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    Cause {
        reason: "FieldValueNotSupported",
        message: format!("Unsupported value: {shown}: supported values: {}", quoted.join(", ")),
        field,
    }
}

/// Verbs of a resource or non-resource rule: `*` alone, or known verbs.
fn validate_verbs(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    let verbs = arr_at(rule, "/verbs");
    let names = strings(verbs);
    if verbs.is_empty() {
        causes.push(Cause::required(format!("{path}.verbs"), "verbs must contain at least one value"));
    } else if names.contains(&"*") {
        if verbs.len() > 1 {
            causes.push(invalid_raw(
                format!("{path}.verbs"),
                &go_string_slice(verbs),
                "if '*' is present, must not specify other verbs",
            ));
        }
    } else if !names.iter().all(|v| VERBS.contains(v)) {
        causes.push(not_supported_raw(format!("{path}.verbs"), &go_string_slice(verbs), VERBS));
    }
}

/// A list that may be `*` alone but not `*` among others.
fn wildcard_alone(rule: &Value, key: &str, what: &str, path: &str, causes: &mut Vec<Cause>) -> bool {
    let list = arr_at(rule, &format!("/{key}"));
    let wild = strings(list).contains(&"*");
    if wild && list.len() > 1 {
        causes.push(invalid_raw(
            format!("{path}.{key}"),
            &go_string_slice(list),
            &format!("if '*' is present, must not specify other {what}"),
        ));
    }
    wild
}

fn validate_resource_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    validate_verbs(rule, path, causes);
    if arr_at(rule, "/apiGroups").is_empty() {
        causes.push(Cause::required(format!("{path}.apiGroups"), "resource rules must supply at least one api group"));
    } else {
        wildcard_alone(rule, "apiGroups", "api groups", path, causes);
    }
    if arr_at(rule, "/resources").is_empty() {
        causes.push(Cause::required(format!("{path}.resources"), "resource rules must supply at least one resource"));
    } else {
        wildcard_alone(rule, "resources", "resources", path, causes);
    }
    let namespaces = arr_at(rule, "/namespaces");
    let cluster = rule.get("clusterScope").and_then(Value::as_bool).unwrap_or(false);
    if namespaces.is_empty() && !cluster {
        causes.push(Cause::required(
            format!("{path}.namespaces"),
            "resource rules that are not cluster scoped must supply at least one namespace",
        ));
    } else if !wildcard_alone(rule, "namespaces", "namespaces", path, causes) {
        for (i, ns) in strings(namespaces).into_iter().enumerate() {
            if let Some(m) = meta::is_dns1123_label(ns) {
                causes.push(Cause::invalid(format!("{path}.namespaces[{i}]"), &json!(ns), &format!("{NS_INTRO}{m}")));
            }
        }
    }
}

/// Upstream's ValidateNonResourceURLPath.
fn url_problem(url: &str) -> Option<&'static str> {
    if url.is_empty() {
        return Some("must not be empty");
    }
    if url == "/" {
        return None;
    }
    if !url.starts_with('/') {
        return Some("must start with slash");
    }
    if url.contains(' ') {
        return Some("must not contain white-space");
    }
    if url.contains("//") {
        return Some("must not contain double slash");
    }
    let stars = url.matches('*').count();
    if stars > 1 || (stars == 1 && !url.ends_with("/*")) {
        return Some("wildcard can only do suffix matching");
    }
    None
}

fn validate_non_resource_rule(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    validate_verbs(rule, path, causes);
    let urls = arr_at(rule, "/nonResourceURLs");
    if urls.is_empty() {
        causes.push(Cause::required(
            format!("{path}.nonResourceURLs"),
            "nonResourceURLs must contain at least one value",
        ));
    } else if !wildcard_alone(rule, "nonResourceURLs", "non-resource URLs", path, causes) {
        for (i, url) in strings(urls).into_iter().enumerate() {
            if let Some(m) = url_problem(url) {
                causes.push(Cause::invalid(format!("{path}.nonResourceURLs[{i}]"), &json!(url), m));
            }
        }
    }
}

/// Upstream's ValidateFlowSchemaSubject.
fn validate_subject(subject: &Value, path: &str, causes: &mut Vec<Cause>) {
    let present = |k: &str| subject.get(k).is_some_and(|v| !v.is_null());
    let forbid = |k: &str, what: &str, causes: &mut Vec<Cause>| {
        if present(k) {
            causes.push(Cause::forbidden(format!("{path}.{k}"), what));
        }
    };
    const NOT_USER: &str = "user is forbidden when subject kind is not 'User'";
    const NOT_GROUP: &str = "group is forbidden when subject kind is not 'Group'";
    const NOT_SA: &str = "serviceAccount is forbidden when subject kind is not 'ServiceAccount'";
    match str_at(subject, "/kind") {
        "ServiceAccount" => {
            let sa_path = format!("{path}.serviceAccount");
            if !present("serviceAccount") {
                causes
                    .push(Cause::required(sa_path, "serviceAccount is required when subject kind is 'ServiceAccount'"));
            } else {
                let name = str_at(subject, "/serviceAccount/name");
                if name.is_empty() {
                    causes.push(Cause::required(format!("{sa_path}.name"), ""));
                } else if let Some(m) = meta::is_dns1123_subdomain(name).filter(|_| name != "*") {
                    causes.push(Cause::invalid(format!("{sa_path}.name"), &json!(name), &m));
                }
                let ns = str_at(subject, "/serviceAccount/namespace");
                if ns.is_empty() {
                    causes.push(Cause::required(
                        format!("{sa_path}.namespace"),
                        "must specify namespace for service account",
                    ));
                } else if let Some(m) = meta::is_dns1123_label(ns) {
                    causes.push(Cause::invalid(format!("{sa_path}.namespace"), &json!(ns), &m));
                }
            }
            forbid("user", NOT_USER, causes);
            forbid("group", NOT_GROUP, causes);
        }
        kind @ ("User" | "Group") => {
            let key = if kind == "User" { "user" } else { "group" };
            if !present(key) {
                causes.push(Cause::required(
                    format!("{path}.{key}"),
                    &format!("{key} is required when subject kind is '{kind}'"),
                ));
            } else if str_at(subject, &format!("/{key}/name")).is_empty() {
                causes.push(Cause::required(format!("{path}.{key}.name"), ""));
            }
            forbid("serviceAccount", NOT_SA, causes);
            if kind == "User" {
                forbid("group", NOT_GROUP, causes);
            } else {
                forbid("user", NOT_USER, causes);
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{path}.kind"),
            &json!(other),
            &["Group", "ServiceAccount", "User"],
        )),
    }
}

/// Status conditions of flowschemas and priority levels: typed, types unique.
pub(crate) fn status_condition_causes(obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, c) in arr_at(obj, "/status/conditions").iter().enumerate() {
        let t = str_at(c, "/type");
        if !seen.insert(t) {
            causes.push(Cause::duplicate(format!("status.conditions[{i}].type"), &json!(t)));
        }
        if t.is_empty() {
            causes.push(Cause::required(format!("status.conditions[{i}].type"), "must not be empty"));
        }
    }
    causes
}

impl Strategy for FlowSchemaStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::clear_status(obj);
    }

    fn default(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        if spec.get("matchingPrecedence").and_then(Value::as_i64).unwrap_or(0) == 0 {
            spec.insert("matchingPrecedence".into(), json!(1000));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let precedence = obj.pointer("/spec/matchingPrecedence").and_then(Value::as_i64).unwrap_or(0);
        let field = "spec.matchingPrecedence";
        if precedence <= 0 {
            causes.push(Cause::invalid(field, &json!(precedence), "must be a positive value"));
        }
        if precedence > MAX_PRECEDENCE {
            causes.push(Cause::invalid(
                field,
                &json!(precedence),
                &format!("must not be greater than {MAX_PRECEDENCE}"),
            ));
        }
        if precedence == 1 && meta::name(obj) != "exempt" {
            causes.push(Cause::invalid(
                field,
                &json!(precedence),
                "only the schema named 'exempt' may have matchingPrecedence 1",
            ));
        }
        if let Some(dm) = obj.pointer("/spec/distinguisherMethod").filter(|v| !v.is_null()) {
            let t = str_at(dm, "/type");
            if !matches!(t, "ByNamespace" | "ByUser") {
                causes.push(not_supported_raw(
                    "spec.distinguisherMethod.type".into(),
                    &format!("flowcontrol.FlowDistinguisherMethod{{Type:{t:?}}}"),
                    &["ByNamespace", "ByUser"],
                ));
            }
        }
        let pl = str_at(obj, "/spec/priorityLevelConfiguration/name");
        if pl.is_empty() {
            causes.push(Cause::required("spec.priorityLevelConfiguration.name", "must reference a priority level"));
        } else if let Some(m) = meta::is_dns1123_subdomain(pl) {
            causes.push(Cause::invalid("spec.priorityLevelConfiguration.name", &json!(pl), &m));
        }
        for (i, rule) in arr_at(obj, "/spec/rules").iter().enumerate() {
            let path = format!("spec.rules[{i}]");
            let subjects = arr_at(rule, "/subjects");
            if subjects.is_empty() {
                causes.push(Cause::required(format!("{path}.subjects"), "subjects must contain at least one value"));
            }
            for (j, s) in subjects.iter().enumerate() {
                validate_subject(s, &format!("{path}.subjects[{j}]"), &mut causes);
            }
            let (resource, non_resource) = (arr_at(rule, "/resourceRules"), arr_at(rule, "/nonResourceRules"));
            if resource.is_empty() && non_resource.is_empty() {
                causes.push(Cause::required(
                    path.clone(),
                    "at least one of resourceRules and nonResourceRules has to be non-empty",
                ));
            }
            for (j, r) in resource.iter().enumerate() {
                validate_resource_rule(r, &format!("{path}.resourceRules[{j}]"), &mut causes);
            }
            for (j, r) in non_resource.iter().enumerate() {
                validate_non_resource_rule(r, &format!("{path}.nonResourceRules[{j}]"), &mut causes);
            }
        }
        causes.extend(status_condition_causes(obj));
        causes
    }

    fn validate_subresource_update(&self, _subresource: &str, new: &Value, _old: &Value) -> Vec<Cause> {
        status_condition_causes(new)
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("PriorityLevel", "string", "`priorityLevelConfiguration` should reference a PriorityLevelConfiguration in the cluster. If the reference cannot be resolved, the FlowSchema will be ignored and marked as invalid in its status. Required."),
            TableColumn::new("MatchingPrecedence", "string", "`matchingPrecedence` is used to choose among the FlowSchemas that match a given request. The chosen FlowSchema is among those with the numerically lowest (which we take to be logically highest) MatchingPrecedence.  Each MatchingPrecedence value must be ranged in [1,10000]. Note that if the precedence is not specified, it will be set to 1000 as default."),
            TableColumn::new("DistinguisherMethod", "string", "`distinguisherMethod` defines how to compute the flow distinguisher for requests that match this schema. `nil` specifies that the distinguisher is disabled and thus will always be the empty string."),
            TableColumn::age_column(),
            TableColumn::new("MissingPL", "string", "indicates whether the priority level referenced by the flowschema is missing or not"),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let method = str_at(obj, "/spec/distinguisherMethod/type");
        let missing = arr_at(obj, "/status/conditions")
            .iter()
            .find(|c| str_at(c, "/type") == "Dangling")
            .map(|c| str_at(c, "/status"))
            .unwrap_or("?");
        vec![
            json!(meta::name(obj)),
            json!(str_at(obj, "/spec/priorityLevelConfiguration/name")),
            json!(obj.pointer("/spec/matchingPrecedence").and_then(Value::as_i64).unwrap_or(0)),
            json!(if method.is_empty() { "<none>" } else { method }),
            age(obj),
            json!(missing),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: Value) -> Vec<String> {
        FlowSchemaStrategy.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn precedence_defaults_and_rules_are_checked() {
        let mut fs = json!({"metadata": {"name": "f"}, "spec": {"priorityLevelConfiguration": {"name": "global-default"},
            "rules": [{"subjects": [{"kind": "Group", "group": {"name": "g"}}],
                       "resourceRules": [{"verbs": ["get"], "apiGroups": ["*"], "resources": ["*"], "clusterScope": true}]}]}});
        FlowSchemaStrategy.default(&mut fs);
        assert_eq!(fs["spec"]["matchingPrecedence"], 1000);
        assert!(messages(fs.clone()).is_empty(), "{:?}", messages(fs));

        let bad = json!({"metadata": {"name": "f"}, "spec": {"matchingPrecedence": 1, "distinguisherMethod": {"type": "ByMood"},
            "priorityLevelConfiguration": {"name": ""},
            "rules": [{"subjects": [{"kind": "User", "group": {"name": "g"}}],
                       "nonResourceRules": [{"verbs": ["*", "get"], "nonResourceURLs": ["healthz", "/a/*/b"]}]}]}});
        assert_eq!(
            messages(bad),
            [
                "spec.matchingPrecedence: Invalid value: 1: only the schema named 'exempt' may have matchingPrecedence 1",
                "spec.distinguisherMethod.type: Unsupported value: flowcontrol.FlowDistinguisherMethod{Type:\"ByMood\"}: supported values: \"ByNamespace\", \"ByUser\"",
                "spec.priorityLevelConfiguration.name: Required value: must reference a priority level",
                "spec.rules[0].subjects[0].user: Required value: user is required when subject kind is 'User'",
                "spec.rules[0].subjects[0].group: Forbidden: group is forbidden when subject kind is not 'Group'",
                "spec.rules[0].nonResourceRules[0].verbs: Invalid value: []string{\"*\", \"get\"}: if '*' is present, must not specify other verbs",
                "spec.rules[0].nonResourceRules[0].nonResourceURLs[0]: Invalid value: \"healthz\": must start with slash",
                "spec.rules[0].nonResourceRules[0].nonResourceURLs[1]: Invalid value: \"/a/*/b\": wildcard can only do suffix matching",
            ]
        );
    }

    #[test]
    fn table_shows_missing_priority_level() {
        let fs = json!({"metadata": {"name": "f"}, "spec": {"priorityLevelConfiguration": {"name": "p"}, "matchingPrecedence": 5},
            "status": {"conditions": [{"type": "Dangling", "status": "False"}]}});
        let row = FlowSchemaStrategy.table_row(&fs);
        assert_eq!((&row[2], &row[3], &row[5]), (&json!(5), &json!("<none>"), &json!("False")));
    }
}
