//! discovery.k8s.io/v1 endpointslices (upstream pkg/registry/discovery/
//! endpointslice): port defaults, validation (a required, immutable
//! addressType; addresses of that type that are not special IPs; unique port
//! names; protocols), generation tracking and the `kubectl get
//! endpointslices` table. The `kubernetes.io/service-name` label is an
//! ordinary label here, as upstream.

use std::net::IpAddr;

use serde_json::{json, Value};

use generic_server::meta;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::endpoints::non_special_ip;
use super::podspec::PROTOCOLS;
use super::{age, arr_at, default_field, str_at};

const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
/// How many ports or addresses a table cell shows before "+ N more...".
const SHOWN: usize = 3;

pub struct EndpointSliceStrategy;

pub fn registration() -> Registration {
    Registration::of::<EndpointSlice>(EndpointSliceStrategy)
}

fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Cause {
    Cause {
        reason: "FieldValueTooMany",
        message: format!("Too many: {actual}: must have at most {max} items"),
        field: field.into(),
    }
}

/// Upstream's IsFullyQualifiedDomainName.
fn fqdn_problems(field: &str, name: &str, causes: &mut Vec<Cause>) {
    if name.is_empty() {
        causes.push(Cause::required(field, ""));
        return;
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    if let Some(m) = meta::is_dns1123_subdomain(name) {
        causes.push(Cause::invalid(field, &json!(name), &m));
        return;
    }
    if name.split('.').count() < 2 {
        causes.push(Cause::invalid(
            field,
            &json!(name),
            "should be a domain with at least two segments separated by dots",
        ));
        return;
    }
    for label in name.split('.') {
        if let Some(m) = meta::is_dns1123_label(label) {
            causes.push(Cause::invalid(field, &json!(label), &m));
            return;
        }
    }
}

fn validate_address(address_type: &str, field: &str, address: &str, causes: &mut Vec<Cause>) {
    let (want_v4, msg) = match address_type {
        "IPv4" => (true, "must be a valid IPv4 address"),
        "IPv6" => (false, "must be a valid IPv6 address"),
        "FQDN" => return fqdn_problems(field, address, causes),
        // Unknown types are refused at addressType; their addresses are not judged.
        _ => return,
    };
    match address.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv4() == want_v4 => non_special_ip(field, address, causes),
        _ => causes.push(Cause::invalid(field, &json!(address), msg)),
    }
}

fn listed(shown: Vec<String>, more: bool, count: usize) -> String {
    let joined = shown.join(",");
    if more {
        return format!("{joined} + {} more...", count - SHOWN);
    }
    if joined.is_empty() {
        "<unset>".into()
    } else {
        joined
    }
}

/// Upstream's formatDiscoveryPorts: the number, else the name, else "*".
fn format_ports(obj: &Value) -> String {
    let ports = arr_at(obj, "/ports");
    let shown: Vec<String> = ports
        .iter()
        .take(SHOWN)
        .map(|p| match (p.get("port").and_then(Value::as_i64), p.get("name").and_then(Value::as_str)) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.to_string(),
            (None, None) => "*".into(),
        })
        .collect();
    listed(shown, ports.len() > SHOWN, ports.len())
}

/// Upstream's formatDiscoveryEndpoints: the first addresses of all endpoints.
fn format_addresses(obj: &Value) -> String {
    let all: Vec<&str> =
        arr_at(obj, "/endpoints").iter().flat_map(|e| arr_at(e, "/addresses")).filter_map(Value::as_str).collect();
    let shown = all.iter().take(SHOWN).map(|s| s.to_string()).collect();
    listed(shown, all.len() > SHOWN, all.len())
}

impl Strategy for EndpointSliceStrategy {
    /// Upstream bumps the generation on any change outside metadata.
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(Value::Array(ports)) = obj.get_mut("ports") else { return };
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "name", json!(""));
            default_field(p, "protocol", json!("TCP"));
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let address_type = str_at(obj, "/addressType");
        if address_type.is_empty() {
            causes.push(Cause::required("addressType", ""));
        } else if !ADDRESS_TYPES.contains(&address_type) {
            causes.push(Cause::not_supported("addressType", &json!(address_type), ADDRESS_TYPES));
        }

        let endpoints = arr_at(obj, "/endpoints");
        if endpoints.len() > MAX_ENDPOINTS {
            causes.push(too_many("endpoints", endpoints.len(), MAX_ENDPOINTS));
        } else {
            for (i, e) in endpoints.iter().enumerate() {
                let path = format!("endpoints[{i}]");
                let addresses = arr_at(e, "/addresses");
                if addresses.is_empty() {
                    causes.push(Cause::required(format!("{path}.addresses"), "must contain at least 1 address"));
                } else if addresses.len() > MAX_ADDRESSES {
                    causes.push(too_many(format!("{path}.addresses"), addresses.len(), MAX_ADDRESSES));
                }
                for (j, a) in addresses.iter().enumerate() {
                    let field = format!("{path}.addresses[{j}]");
                    validate_address(address_type, &field, a.as_str().unwrap_or(""), &mut causes);
                }
                if let Some(node) = e.get("nodeName").and_then(Value::as_str) {
                    if let Some(m) = meta::is_dns1123_subdomain(node) {
                        causes.push(Cause::invalid(format!("{path}.nodeName"), &json!(node), &m));
                    }
                }
                if let Some(host) = e.get("hostname").and_then(Value::as_str) {
                    if let Some(m) = meta::is_dns1123_label(host) {
                        causes.push(Cause::invalid(format!("{path}.hostname"), &json!(host), &m));
                    }
                }
            }
        }

        let ports = arr_at(obj, "/ports");
        if ports.len() > MAX_PORTS {
            causes.push(too_many("ports", ports.len(), MAX_PORTS));
            return causes;
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let path = format!("ports[{i}]");
            let name = str_at(p, "/name");
            if !name.is_empty() {
                if let Some(m) = meta::is_dns1123_label(name) {
                    causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &m));
                }
            }
            if names.contains(&name) {
                causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
            } else {
                names.push(name);
            }
            match p.get("protocol").and_then(Value::as_str) {
                None => causes.push(Cause::required(format!("{path}.protocol"), "")),
                Some(proto) if PROTOCOLS.contains(&proto) => {}
                Some(proto) => causes.push(Cause::not_supported(format!("{path}.protocol"), &json!(proto), PROTOCOLS)),
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let (n, o) = (str_at(new, "/addressType"), str_at(old, "/addressType"));
        if n != o {
            causes.push(Cause::immutable("addressType", &json!(n)));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("AddressType", "string", "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name."),
            TableColumn::new("Ports", "string", "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. When ports is empty, it indicates that there are no defined ports. When a port is defined with a nil port value, it indicates \"all ports\". Each slice may include a maximum of 100 ports."),
            TableColumn::new("Endpoints", "string", "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(meta::name(obj)),
            json!(str_at(obj, "/addressType")),
            json!(format_ports(obj)),
            json!(format_addresses(obj)),
            age(obj),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: Value) -> Vec<String> {
        let s = EndpointSliceStrategy;
        let mut obj = generic_server::registry::typed::decode_as::<k8s_openapi::api::discovery::v1::EndpointSlice>(obj)
            .unwrap()
            .object;
        s.default(&mut obj);
        s.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn address_type_is_required_and_immutable() {
        assert_eq!(messages(json!({"metadata": {"name": "s"}, "endpoints": []})), vec!["addressType: Required value"]);
        assert_eq!(
            messages(json!({"addressType": "IP", "endpoints": []})),
            vec!["addressType: Unsupported value: \"IP\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""]
        );
        let s = EndpointSliceStrategy;
        let old = json!({"addressType": "IPv4", "endpoints": []});
        let new = json!({"addressType": "IPv6", "endpoints": []});
        assert_eq!(
            s.validate_update(&new, &old).iter().map(Cause::full_message).collect::<Vec<_>>(),
            vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
        );
    }

    #[test]
    fn addresses_follow_the_type() {
        let slice = |t: &str, a: &str| json!({"addressType": t, "endpoints": [{"addresses": [a]}]});
        assert!(messages(slice("IPv4", "10.1.2.3")).is_empty());
        assert!(messages(slice("IPv6", "fd00::1")).is_empty());
        assert!(messages(slice("FQDN", "example.com")).is_empty());
        assert_eq!(
            messages(slice("IPv4", "127.0.0.1")),
            vec!["endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
        assert_eq!(
            messages(slice("IPv4", "fd00::1")),
            vec!["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"]
        );
        assert_eq!(
            messages(slice("FQDN", "localhost")),
            vec!["endpoints[0].addresses[0]: Invalid value: \"localhost\": should be a domain with at least two segments separated by dots"]
        );
        assert_eq!(
            messages(json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]})),
            vec!["endpoints[0].addresses: Required value: must contain at least 1 address"]
        );
    }

    #[test]
    fn ports_are_defaulted_and_unique() {
        let s = EndpointSliceStrategy;
        let mut obj = json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]});
        s.default(&mut obj);
        assert_eq!(obj["ports"][0], json!({"port": 80, "name": "", "protocol": "TCP"}));
        assert_eq!(
            messages(
                json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}, {"port": 81}, {"name": "x", "protocol": "FOO"}]})
            ),
            vec![
                "ports[1].name: Duplicate value: \"\"",
                "ports[2].protocol: Unsupported value: \"FOO\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
    }

    #[test]
    fn table_cells_as_upstream() {
        let obj = json!({"addressType": "IPv4", "ports": [{"port": 80}, {"name": "all"}, {}, {"port": 9}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3", "10.0.0.4", "10.0.0.5"]}]});
        assert_eq!(format_ports(&obj), "80,all,* + 1 more...");
        assert_eq!(format_addresses(&obj), "10.0.0.1,10.0.0.2,10.0.0.3 + 2 more...");
        assert_eq!(format_ports(&json!({})), "<unset>");
        assert_eq!(format_addresses(&json!({"endpoints": []})), "<unset>");
    }
}
