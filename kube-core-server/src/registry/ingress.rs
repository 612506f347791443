//! networking.k8s.io/v1 ingresses (upstream pkg/registry/networking/ingress):
//! rules, paths and backends validated with upstream's paths, generation
//! tracked, status subresource, stored under /registry/ingress, and the table.

use serde_json::{json, Value};

use k8s_openapi::api::networking::v1::Ingress;

use generic_server::meta::{is_dns1035_label, is_dns1123_subdomain};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::{age, arr_at, port_name_problems, str_at, valid_port, PORT_RANGE_MSG};

pub struct IngressStrategy;

pub fn registration() -> Registration {
    Registration::of::<Ingress>(IngressStrategy).short_names(&["ing"]).key_root("/registry/ingress").status()
}

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

/// Upstream's IsWildcardDNS1123Subdomain.
fn wildcard_problem(host: &str) -> Option<String> {
    let ok = host.strip_prefix("*.").is_some_and(|rest| is_dns1123_subdomain(rest).is_none());
    (!ok).then(|| "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string())
}

fn validate_backend(b: &Value, path: &str, causes: &mut Vec<Cause>) {
    let has = |k: &str| b.get(k).is_some_and(Value::is_object);
    match (has("resource"), has("service")) {
        (true, true) => causes.push(Cause::invalid(path, &json!(""), "cannot set both resource and service backends")),
        (true, false) => {
            for k in ["kind", "name"] {
                if str_at(b, &format!("/resource/{k}")).is_empty() {
                    causes.push(Cause::required(format!("{path}.resource.{k}"), ""));
                }
            }
        }
        (false, true) => {
            let name = str_at(b, "/service/name");
            if name.is_empty() {
                causes.push(Cause::required(format!("{path}.service.name"), ""));
            } else if let Some(p) = is_dns1035_label(name) {
                causes.push(Cause::invalid(format!("{path}.service.name"), &json!(name), &p));
            }
            let port_name = str_at(b, "/service/port/name");
            let number = b.pointer("/service/port/number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name.is_empty(), number) {
                (false, n) if n != 0 => {
                    causes.push(Cause::invalid(path, &json!(""), "cannot set both port name & port number"))
                }
                (false, _) => {
                    for p in port_name_problems(port_name) {
                        causes.push(Cause::invalid(format!("{path}.service.port.name"), &json!(port_name), &p));
                    }
                }
                (true, 0) => causes.push(Cause::required(path, "port name or number is required")),
                (true, n) if !valid_port(n) => {
                    causes.push(Cause::invalid(format!("{path}.service.port.number"), &json!(n), PORT_RANGE_MSG))
                }
                _ => {}
            }
        }
        (false, false) => causes.push(Cause::invalid(path, &json!(""), "resource or service backend is required")),
    }
}

fn validate_http_path(p: &Value, field: &str, causes: &mut Vec<Cause>) {
    let path = str_at(p, "/path");
    // The typed decoding turns a left-out pathType into "": both are unset.
    match p.get("pathType").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        None => {
            causes.push(Cause::required(format!("{field}.pathType"), "pathType must be specified"));
            return;
        }
        Some("Exact" | "Prefix") => {
            if !path.starts_with('/') {
                causes.push(Cause::invalid(format!("{field}.path"), &json!(path), "must be an absolute path"));
            }
            for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                if path.contains(seq) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(path),
                        &format!("must not contain '{seq}'"),
                    ));
                }
            }
            for suffix in ["/..", "/."] {
                if path.ends_with(suffix) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(path),
                        &format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !path.is_empty() && !path.starts_with('/') {
                causes.push(Cause::invalid(format!("{field}.path"), &json!(path), "must be an absolute path"));
            }
        }
        Some(other) => causes.push(Cause::not_supported(format!("{field}.pathType"), &json!(other), PATH_TYPES)),
    }
    validate_backend(p.get("backend").unwrap_or(&Value::Null), &format!("{field}.backend"), causes);
}

fn validate_host(host: &str, field: &str, causes: &mut Vec<Cause>) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        causes.push(Cause::invalid(field, &json!(host), "must be a DNS name, not an IP address"));
    }
    let problem = if host.contains('*') { wildcard_problem(host) } else { is_dns1123_subdomain(host) };
    if let Some(p) = problem {
        causes.push(Cause::invalid(field, &json!(host), &p));
    }
}

impl Strategy for IngressStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let rules = arr_at(obj, "/spec/rules");
        let default_backend = obj.pointer("/spec/defaultBackend").filter(|b| b.is_object());
        if rules.is_empty() && default_backend.is_none() {
            let shown = obj.pointer("/spec/rules").cloned().unwrap_or(Value::Null);
            causes.push(Cause::invalid("spec", &shown, "either `defaultBackend` or `rules` must be specified"));
        }
        if let Some(b) = default_backend {
            validate_backend(b, "spec.defaultBackend", &mut causes);
        }
        for (i, rule) in rules.iter().enumerate() {
            let host = str_at(rule, "/host");
            if !host.is_empty() {
                validate_host(host, &format!("spec.rules[{i}].host"), &mut causes);
            }
            if let Some(http) = rule.get("http").filter(|h| h.is_object()) {
                let paths = arr_at(http, "/paths");
                if paths.is_empty() {
                    causes.push(Cause::required(format!("spec.rules[{i}].http.paths"), ""));
                }
                for (j, p) in paths.iter().enumerate() {
                    validate_http_path(p, &format!("spec.rules[{i}].http.paths[{j}]"), &mut causes);
                }
            }
        }
        for (i, tls) in arr_at(obj, "/spec/tls").iter().enumerate() {
            for (j, h) in arr_at(tls, "/hosts").iter().enumerate() {
                let host = h.as_str().unwrap_or("");
                let problem = if host.contains('*') { wildcard_problem(host) } else { is_dns1123_subdomain(host) };
                if let Some(p) = problem {
                    causes.push(Cause::invalid(format!("spec.tls[{i}].hosts[{j}]"), h, &p));
                }
            }
        }
        let class = str_at(obj, "/spec/ingressClassName");
        if let Some(p) = (!class.is_empty()).then(|| is_dns1123_subdomain(class)).flatten() {
            causes.push(Cause::invalid("spec.ingressClassName", &json!(class), &p));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Class", "string", "The name of the IngressClass resource to use for this Ingress."),
            TableColumn::new(
                "Hosts",
                "string",
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            TableColumn::new("Address", "string", "Address is a list containing ingress points for the load-balancer"),
            TableColumn::new("Ports", "string", "Ports of TLS configurations that open"),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let class = obj.pointer("/spec/ingressClassName").and_then(Value::as_str).unwrap_or("<none>");
        vec![
            json!(generic_server::meta::name(obj)),
            json!(class),
            json!(hosts_cell(arr_at(obj, "/spec/rules"))),
            json!(address_cell(obj)),
            json!(if arr_at(obj, "/spec/tls").is_empty() { "80" } else { "80, 443" }),
            age(obj),
        ]
    }
}

/// Upstream's formatHosts: the first three hosts, and how many rules more
/// once a fourth rule follows them.
fn hosts_cell(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for r in rules {
        more |= hosts.len() == MAX;
        let host = str_at(r, "/host");
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".into();
    }
    let list = hosts.join(",");
    if more {
        format!("{list} + {} more...", rules.len() - MAX)
    } else {
        list
    }
}

/// The load balancer's IPs and hostnames, as the server prints them (wide).
fn address_cell(obj: &Value) -> String {
    let items: Vec<&str> = arr_at(obj, "/status/loadBalancer/ingress")
        .iter()
        .flat_map(|i| [str_at(i, "/ip"), str_at(i, "/hostname")])
        .filter(|s| !s.is_empty())
        .collect();
    items.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: Value) -> Vec<String> {
        IngressStrategy.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn rules_paths_and_backends() {
        assert_eq!(
            messages(json!({"spec": {}})),
            ["spec: Invalid value: null: either `defaultBackend` or `rules` must be specified"]
        );
        let ing = json!({"spec": {"rules": [{"host": "10.0.0.1", "http": {"paths": [
            {"path": "rel", "pathType": "Prefix", "backend": {"service": {"name": "svc"}}},
            {"path": "/a", "backend": {"service": {"name": "svc", "port": {"number": 80}}}},
            {"path": "/b", "pathType": "Regex", "backend": {}}
        ]}}]}});
        assert_eq!(
            messages(ing),
            [
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
                "spec.rules[0].http.paths[0].path: Invalid value: \"rel\": must be an absolute path",
                "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
                "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[2].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"",
                "spec.rules[0].http.paths[2].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
    }

    #[test]
    fn cells() {
        let rules = |hosts: &[&str]| hosts.iter().map(|h| json!({"host": h})).collect::<Vec<_>>();
        assert_eq!(hosts_cell(&rules(&["a", "", "c", "d"])), "a,c,d");
        assert_eq!(hosts_cell(&rules(&["a", "b", "c", "d"])), "a,b,c + 1 more...");
        assert_eq!(hosts_cell(&[]), "*");
    }
}
