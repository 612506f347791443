//! networking.k8s.io/v1 ingressclasses (upstream pkg/registry/networking/
//! ingressclass): parameters scoped to the cluster by default, a
//! domain-prefixed, immutable controller, and the table.

use serde_json::{json, Value};

use k8s_openapi::api::networking::v1::IngressClass;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, default_field, str_at, too_long_cause};

pub struct IngressClassStrategy;

pub fn registration() -> Registration {
    Registration::of::<IngressClass>(IngressClassStrategy)
}

const MAX_CONTROLLER_LEN: usize = 250;

/// Upstream's IsDomainPrefixedPath.
fn domain_prefixed_path(field: &str, path: &str) -> Vec<Cause> {
    if path.is_empty() {
        return vec![Cause::required(field, "")];
    }
    let Some((domain, rest)) = path.split_once('/') else {
        return vec![Cause::invalid(field, &json!(path), "must be a domain-prefixed path (such as \"acme.io/foo\")")];
    };
    let mut causes: Vec<Cause> = generic_server::meta::is_dns1123_subdomain(domain)
        .map(|p| Cause::invalid(field, &json!(domain), &p))
        .into_iter()
        .collect();
    let valid_path_chars = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c);
    if !rest.chars().all(valid_path_chars) {
        causes.push(Cause::invalid(field, &json!(rest), "Invalid path: must contain only alphanumeric characters, '-', '.', '_', '~', '%', '!', '$', '&', ''', '(', ')', '*', '+', ',', ';', '=', ':' or '/'"));
    }
    causes
}

impl Strategy for IngressClassStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(Value::Object(p)) = obj.pointer_mut("/spec/parameters") {
            default_field(p, "scope", json!("Cluster"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let controller = str_at(obj, "/spec/controller");
        let mut causes = Vec::new();
        if controller.len() > MAX_CONTROLLER_LEN {
            causes.push(too_long_cause("spec.controller", MAX_CONTROLLER_LEN));
        }
        causes.extend(domain_prefixed_path("spec.controller", controller));
        if let Some(p) = obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
            if str_at(p, "/kind").is_empty() {
                causes.push(Cause::required("spec.parameters.kind", ""));
            }
            if str_at(p, "/name").is_empty() {
                causes.push(Cause::required("spec.parameters.name", ""));
            }
            let scope = str_at(p, "/scope");
            match scope {
                "Cluster" if !str_at(p, "/namespace").is_empty() => {
                    causes.push(Cause::forbidden("spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'"))
                }
                "Namespace" if str_at(p, "/namespace").is_empty() => causes
                    .push(Cause::required("spec.parameters.namespace", "`parameters.scope` is set to 'Namespace'")),
                "Cluster" | "Namespace" => {}
                _ => {
                    causes.push(Cause::not_supported("spec.parameters.scope", &json!(scope), &["Cluster", "Namespace"]))
                }
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let controller = str_at(new, "/spec/controller");
        if controller != str_at(old, "/spec/controller") {
            causes.push(Cause::immutable("spec.controller", &json!(controller)));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Controller", "string", "controller refers to the name of the controller that should handle this class. This allows for different \"flavors\" that are controlled by the same controller. For example, you may have different parameters for the same implementing controller. This should be specified as a domain-prefixed path no more than 250 characters in length, e.g. \"acme.io/ingress-controller\". This field is immutable."),
            TableColumn::new("Parameters", "string", "parameters is a link to a custom resource containing additional configuration for the controller. This is optional if the controller does not require extra parameters."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let parameters = match obj.pointer("/spec/parameters").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let group = str_at(p, "/apiGroup");
                let kind = if group.is_empty() {
                    str_at(p, "/kind").to_string()
                } else {
                    format!("{}.{group}", str_at(p, "/kind"))
                };
                format!("{kind}/{}", str_at(p, "/name"))
            }
        };
        vec![
            json!(generic_server::meta::name(obj)),
            json!(str_at(obj, "/spec/controller")),
            json!(parameters),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_and_parameters() {
        let s = IngressClassStrategy;
        let msgs: Vec<String> =
            s.validate(&json!({"spec": {"controller": "nginx"}})).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
        let mut ic = json!({"spec": {"controller": "k8s.io/nginx", "parameters": {"kind": "Params", "name": "p", "apiGroup": "x.io"}}});
        s.default(&mut ic);
        assert_eq!(ic["spec"]["parameters"]["scope"], "Cluster");
        assert!(s.validate(&ic).is_empty());
        assert_eq!(s.table_row(&ic)[2], "Params.x.io/p");
    }
}
