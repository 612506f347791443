//! admissionregistration.k8s.io/v1 validatingwebhookconfigurations and
//! mutatingwebhookconfigurations (upstream pkg/registry/admissionregistration
//! and pkg/apis/admissionregistration/validation): webhook defaults (Fail,
//! Equivalent, 10 seconds, empty selectors, scope `*`, port 443, and for
//! mutating ones reinvocation Never), and upstream's checks of names, rules,
//! client config, side effects and review versions. Calling the webhooks is
//! admission's business, not this module's.
//!
//! matchConditions are checked for names and presence and compiled in the
//! shared CEL environment (cel-k8s).

use serde_json::{json, Map, Value};

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};

use generic_server::meta;
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::{age, arr_at, default_field, go_string_slice, invalid_raw, str_at};

/// The two kinds differ in mutating webhooks' reinvocationPolicy.
pub struct WebhookConfigurationStrategy {
    mutating: bool,
}

pub fn validating_registration() -> Registration {
    Registration::of::<ValidatingWebhookConfiguration>(WebhookConfigurationStrategy { mutating: false })
        .categories(&["api-extensions"])
}

pub fn mutating_registration() -> Registration {
    Registration::of::<MutatingWebhookConfiguration>(WebhookConfigurationStrategy { mutating: true })
        .categories(&["api-extensions"])
}

fn strings(list: &[Value]) -> Vec<&str> {
    list.iter().map(|v| v.as_str().unwrap_or("")).collect()
}

/// A NotSupported cause for a value upstream prints as a plain string.
fn not_supported(field: String, value: &str, allowed: &[&str]) -> Cause {
    Cause::not_supported(field, &json!(value), allowed)
}

/// Upstream's SetDefaults_Rule: every rule's scope defaults to `*`.
pub(crate) fn default_rules(rules: Option<&mut Value>) {
    for rule in rules.and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(r) = rule.as_object_mut() {
            default_field(r, "scope", json!("*"));
        }
    }
}

/// Upstream's validateResources (subresources allowed).
fn validate_resources(resources: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if resources.is_empty() {
        causes.push(Cause::required(path, ""));
    }
    let mut with_wild_sub = std::collections::HashSet::new();
    let mut sub_with_wild_res = std::collections::HashSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, r) in strings(resources).into_iter().enumerate() {
        if r.is_empty() {
            causes.push(Cause::required(format!("{path}[{i}]"), ""));
            continue;
        }
        double |= r == "*/*";
        single |= r == "*";
        let Some((res, sub)) = r.split_once('/') else {
            plain = r != "*";
            continue;
        };
        if with_wild_sub.contains(res) {
            causes.push(Cause::invalid(
                format!("{path}[{i}]"),
                &json!(r),
                &format!("if '{res}/*' is present, must not specify {r}"),
            ));
        }
        if sub_with_wild_res.contains(sub) {
            causes.push(Cause::invalid(
                format!("{path}[{i}]"),
                &json!(r),
                &format!("if '*/{sub}' is present, must not specify {r}"),
            ));
        }
        if sub == "*" {
            with_wild_sub.insert(res);
        }
        if res == "*" {
            sub_with_wild_res.insert(sub);
        }
    }
    if resources.len() > 1 && double {
        causes.push(invalid_raw(
            path,
            &go_string_slice(resources),
            "if '*/*' is present, must not specify other resources",
        ));
    }
    if single && plain {
        causes.push(invalid_raw(
            path,
            &go_string_slice(resources),
            "if '*' is present, must not specify other resources without subresources",
        ));
    }
}

/// Upstream's validateRuleWithOperations (shared by webhooks and policies).
pub(crate) fn validate_rule_with_operations(rule: &Value, path: &str, causes: &mut Vec<Cause>) {
    let ops = arr_at(rule, "/operations");
    if ops.is_empty() {
        causes.push(Cause::required(format!("{path}.operations"), ""));
    }
    if ops.len() > 1 && strings(ops).contains(&"*") {
        causes.push(invalid_raw(
            format!("{path}.operations"),
            &go_string_slice(ops),
            "if '*' is present, must not specify other operations",
        ));
    }
    for (i, op) in strings(ops).into_iter().enumerate() {
        if !["*", "CONNECT", "CREATE", "DELETE", "UPDATE"].contains(&op) {
            causes.push(not_supported(
                format!("{path}.operations[{i}]"),
                op,
                &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"],
            ));
        }
    }
    for (key, what) in [("apiGroups", "API groups"), ("apiVersions", "API versions")] {
        let list = arr_at(rule, &format!("/{key}"));
        if list.is_empty() {
            causes.push(Cause::required(format!("{path}.{key}"), ""));
        }
        if list.len() > 1 && strings(list).contains(&"*") {
            causes.push(invalid_raw(
                format!("{path}.{key}"),
                &go_string_slice(list),
                &format!("if '*' is present, must not specify other {what}"),
            ));
        }
    }
    for (i, v) in strings(arr_at(rule, "/apiVersions")).into_iter().enumerate() {
        if v.is_empty() {
            causes.push(Cause::required(format!("{path}.apiVersions[{i}]"), ""));
        }
    }
    validate_resources(arr_at(rule, "/resources"), &format!("{path}.resources"), causes);
    if let Some(scope) = rule.get("scope").and_then(Value::as_str) {
        if !["*", "Cluster", "Namespaced"].contains(&scope) {
            causes.push(not_supported(format!("{path}.scope"), scope, &["*", "Cluster", "Namespaced"]));
        }
    }
}

/// Upstream's validateMatchConditions: names, and expressions that compile.
/// Upstream's validateCELCondition: a compile error is an Invalid cause
/// carrying the compiler's text.
pub(crate) fn compile_at(src: &str, path: String, causes: &mut Vec<Cause>) {
    if let Err(e) = cel_k8s::compile(src) {
        causes.push(Cause::invalid(path, &json!(src), &e));
    }
}

pub(crate) fn validate_match_conditions(conditions: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if conditions.len() > 64 {
        causes.push(Cause {
            reason: "FieldValueTooMany",
            message: format!("Too many: {}: must have at most 64 items", conditions.len()),
            field: path.into(),
        });
    }
    let mut names = std::collections::HashSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let expression = str_at(c, "/expression");
        if expression.trim().is_empty() {
            causes.push(Cause::required(format!("{path}[{i}].expression"), ""));
        } else {
            compile_at(expression, format!("{path}[{i}].expression"), causes);
        }
        let name = str_at(c, "/name");
        if name.is_empty() {
            causes.push(Cause::required(format!("{path}[{i}].name"), ""));
        } else {
            for m in meta::qualified_name_problems(name) {
                causes.push(Cause::invalid(format!("{path}[{i}].name"), &json!(name), &m));
            }
        }
        if !name.is_empty() && !names.insert(name) {
            causes.push(Cause::duplicate(format!("{path}[{i}].name"), &json!(name)));
        }
    }
}

/// Upstream's IsFullyQualifiedName.
fn name_problem(name: &str, path: &str) -> Option<Cause> {
    if name.is_empty() {
        return Some(Cause::required(path, ""));
    }
    if let Some(m) = meta::is_dns1123_subdomain(name) {
        return Some(Cause::invalid(path, &json!(name), &m));
    }
    (name.split('.').count() < 3).then(|| {
        Cause::invalid(path, &json!(name), "should be a domain with at least three segments separated by dots")
    })
}

/// Upstream's ValidateWebhookURL with https required.
fn validate_url(url: &str, path: &str, causes: &mut Vec<Cause>) {
    const FORM: &str = "; desired format: https://host[/path]";
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = if url.contains("://") { rest.split('/').next().unwrap_or("") } else { "" };
    let (user, host) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
    if scheme != "https" {
        causes.push(Cause::invalid(path, &json!(scheme), &format!("'https' is the only allowed URL scheme{FORM}")));
    }
    if host.is_empty() {
        causes.push(Cause::invalid(path, &json!(host), &format!("host must be specified{FORM}")));
    }
    if let Some(u) = user {
        causes.push(Cause::invalid(path, &json!(u), "user information is not permitted in the URL"));
    }
    if !fragment.is_empty() {
        causes.push(Cause::invalid(path, &json!(fragment), "fragments are not permitted in the URL"));
    }
    if !query.is_empty() {
        causes.push(Cause::invalid(path, &json!(query), "query parameters are not permitted in the URL"));
    }
}

/// Upstream's ValidateWebhookService.
fn validate_service(svc: &Value, path: &str, causes: &mut Vec<Cause>) {
    if str_at(svc, "/name").is_empty() {
        causes.push(Cause::required(format!("{path}.name"), "service name is required"));
    }
    if str_at(svc, "/namespace").is_empty() {
        causes.push(Cause::required(format!("{path}.namespace"), "service namespace is required"));
    }
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !super::valid_port(port) {
        causes.push(Cause::invalid(
            format!("{path}.port"),
            &json!(port),
            &format!("port is not valid: {}", super::PORT_RANGE_MSG),
        ));
    }
    let Some(url_path) = svc.get("path").and_then(Value::as_str) else { return };
    if url_path.is_empty() || url_path == "/" {
        return;
    }
    let field = format!("{path}.path");
    if url_path == "//" {
        causes.push(Cause::invalid(field, &json!(url_path), "segment[0] may not be empty"));
        return;
    }
    if !url_path.starts_with('/') {
        causes.push(Cause::invalid(field.clone(), &json!(url_path), "must start with a '/'"));
    }
    let trimmed = url_path.get(1..).unwrap_or("");
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    for (i, step) in trimmed.split('/').enumerate() {
        if step.is_empty() {
            causes.push(Cause::invalid(field.clone(), &json!(url_path), &format!("segment[{i}] may not be empty")));
        } else if let Some(m) = meta::is_dns1123_subdomain(step) {
            causes.push(Cause::invalid(field.clone(), &json!(url_path), &format!("segment[{i}]: {m}")));
        }
    }
}

impl WebhookConfigurationStrategy {
    fn validate_webhook(&self, hook: &Value, path: &str, causes: &mut Vec<Cause>) {
        causes.extend(name_problem(str_at(hook, "/name"), &format!("{path}.name")));
        for (i, rule) in arr_at(hook, "/rules").iter().enumerate() {
            validate_rule_with_operations(rule, &format!("{path}.rules[{i}]"), causes);
        }
        for (key, allowed) in [("failurePolicy", &["Fail", "Ignore"]), ("matchPolicy", &["Equivalent", "Exact"])] {
            if let Some(v) = hook.get(key).and_then(Value::as_str).filter(|v| !allowed.contains(v)) {
                causes.push(not_supported(format!("{path}.{key}"), v, allowed));
            }
        }
        const NO_SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
        match hook.get("sideEffects").and_then(Value::as_str) {
            None => {
                causes.push(Cause::required(format!("{path}.sideEffects"), "must specify one of None, NoneOnDryRun"))
            }
            Some(v) if !NO_SIDE_EFFECTS.contains(&v) => {
                causes.push(not_supported(format!("{path}.sideEffects"), v, NO_SIDE_EFFECTS))
            }
            Some(_) => {}
        }
        if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64).filter(|t| !(1..=30).contains(t)) {
            causes.push(Cause::invalid(
                format!("{path}.timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            ));
        }
        for key in ["namespaceSelector", "objectSelector"] {
            if let Some(sel) = hook.get(key) {
                validate_label_selector(sel, &format!("{path}.{key}"), causes);
            }
        }
        if self.mutating {
            if let Some(v) =
                hook.get("reinvocationPolicy").and_then(Value::as_str).filter(|v| !["IfNeeded", "Never"].contains(v))
            {
                causes.push(not_supported(format!("{path}.reinvocationPolicy"), v, &["IfNeeded", "Never"]));
            }
        }
        let cc = format!("{path}.clientConfig");
        let url = hook.pointer("/clientConfig/url").and_then(Value::as_str);
        let service = hook.pointer("/clientConfig/service").filter(|s| !s.is_null());
        match (url, service) {
            (Some(u), None) => validate_url(u, &format!("{cc}.url"), causes),
            (None, Some(s)) => validate_service(s, &format!("{cc}.service"), causes),
            _ => causes.push(Cause::required(cc, "exactly one of url or service is required")),
        }
        validate_match_conditions(arr_at(hook, "/matchConditions"), &format!("{path}.matchConditions"), causes);
        let versions = arr_at(hook, "/admissionReviewVersions");
        let vpath = format!("{path}.admissionReviewVersions");
        if versions.is_empty() {
            causes.push(Cause::required(vpath, "must specify one of v1, v1beta1"));
        } else {
            let mut seen = std::collections::HashSet::new();
            for (i, v) in strings(versions).into_iter().enumerate() {
                if !seen.insert(v) {
                    causes.push(Cause::invalid(format!("{vpath}[{i}]"), &json!(v), "duplicate version"));
                    continue;
                }
                if let Some(m) = meta::is_dns1035_label(v) {
                    causes.push(Cause::invalid(format!("{vpath}[{i}]"), &json!(v), &m));
                }
            }
            if !seen.contains("v1") && !seen.contains("v1beta1") {
                causes.push(invalid_raw(vpath, &go_string_slice(versions), "must include at least one of v1, v1beta1"));
            }
        }
    }
}

impl Strategy for WebhookConfigurationStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        for hook in obj.get_mut("webhooks").and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(h) = hook.as_object_mut() else { continue };
            default_field(h, "failurePolicy", json!("Fail"));
            default_field(h, "matchPolicy", json!("Equivalent"));
            default_field(h, "namespaceSelector", Value::Object(Map::new()));
            default_field(h, "objectSelector", Value::Object(Map::new()));
            default_field(h, "timeoutSeconds", json!(10));
            if self.mutating {
                default_field(h, "reinvocationPolicy", json!("Never"));
            }
            default_rules(h.get_mut("rules"));
            if let Some(svc) =
                h.get_mut("clientConfig").and_then(|c| c.get_mut("service")).and_then(Value::as_object_mut)
            {
                default_field(svc, "port", json!(443));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, hook) in arr_at(obj, "/webhooks").iter().enumerate() {
            let path = format!("webhooks[{i}]");
            self.validate_webhook(hook, &path, &mut causes);
            let name = str_at(hook, "/name");
            if !name.is_empty() && !names.insert(name) {
                causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new(
                "Webhooks",
                "integer",
                "Webhooks is a list of webhooks and the affected resources and operations.",
            ),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(meta::name(obj)), json!(arr_at(obj, "/webhooks").len()), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(s: &WebhookConfigurationStrategy, obj: &Value) -> Vec<String> {
        s.validate(obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn webhooks_default_as_upstream() {
        let s = WebhookConfigurationStrategy { mutating: true };
        let mut c = json!({"webhooks": [{"name": "a.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
            "clientConfig": {"service": {"name": "s", "namespace": "n"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]}]});
        s.default(&mut c);
        let h = &c["webhooks"][0];
        assert_eq!(
            (&h["failurePolicy"], &h["matchPolicy"], &h["timeoutSeconds"]),
            (&json!("Fail"), &json!("Equivalent"), &json!(10))
        );
        assert_eq!((&h["namespaceSelector"], &h["objectSelector"]), (&json!({}), &json!({})));
        assert_eq!((&h["reinvocationPolicy"], &h["rules"][0]["scope"]), (&json!("Never"), &json!("*")));
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
        assert!(messages(&s, &c).is_empty(), "{:?}", messages(&s, &c));
    }

    #[test]
    fn webhook_rules_are_checked() {
        let s = WebhookConfigurationStrategy { mutating: false };
        let c = json!({"webhooks": [
            {"name": "short.io", "sideEffects": "Some", "admissionReviewVersions": ["v2"], "timeoutSeconds": 31,
             "clientConfig": {"url": "http://hook.example.com/x?y=1#f"},
             "rules": [{"operations": ["CREATE", "*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["*", "pods"]}]},
            {"name": "b.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"], "clientConfig": {}}]});
        assert_eq!(
            messages(&s, &c),
            [
                "webhooks[0].name: Invalid value: \"short.io\": should be a domain with at least three segments separated by dots",
                "webhooks[0].rules[0].operations: Invalid value: []string{\"CREATE\", \"*\"}: if '*' is present, must not specify other operations",
                "webhooks[0].rules[0].resources: Invalid value: []string{\"*\", \"pods\"}: if '*' is present, must not specify other resources without subresources",
                "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
                "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
                "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
                "webhooks[0].clientConfig.url: Invalid value: \"f\": fragments are not permitted in the URL",
                "webhooks[0].clientConfig.url: Invalid value: \"y=1\": query parameters are not permitted in the URL",
                "webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1",
                "webhooks[1].clientConfig: Required value: exactly one of url or service is required",
            ]
        );
    }
}
