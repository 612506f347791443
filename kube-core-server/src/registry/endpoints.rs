//! core/v1 endpoints (upstream pkg/registry/core/endpoint): the protocol
//! default, validation of subsets (addresses that are real IPs and not
//! loopback, link-local or unspecified; named, numbered ports) and the
//! `kubectl get endpoints` table. What EndpointSlices share (the special IP
//! check) lives here too.

use std::net::IpAddr;

use serde_json::{json, Value};

use generic_server::meta;
use k8s_openapi::api::core::v1::Endpoints;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::podspec::PROTOCOLS;
use super::{age, arr_at, default_field, str_at, valid_port, PORT_RANGE_MSG};

/// Upstream's IsValidIP message.
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// How many addresses a table cell shows before "+ N more...".
const SHOWN: usize = 3;

pub struct EndpointsStrategy;

pub fn registration() -> Registration {
    Registration::of::<Endpoints>(EndpointsStrategy)
        .short_names(&["ep"])
        .key_root("/registry/services/endpoints")
        .deprecated("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
}

/// Upstream's ValidateNonSpecialIP: addresses a client may not name as an
/// endpoint (unspecified, loopback, link-local unicast and multicast), with
/// the field path of the address.
pub(crate) fn non_special_ip(field: &str, ip: &str, causes: &mut Vec<Cause>) {
    let Ok(parsed) = ip.parse::<IpAddr>() else {
        causes.push(Cause::invalid(field, &json!(ip), "must be a valid IP address"));
        return;
    };
    // Go's net.IP checks look through IPv4-mapped IPv6 addresses.
    let parsed = match parsed {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(parsed),
        v4 => v4,
    };
    let (unspecified, loopback, link_local, link_local_multicast) = match parsed {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (v4.is_unspecified(), v4.is_loopback(), v4.is_link_local(), o[0] == 224 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (v6.is_unspecified(), v6.is_loopback(), s[0] & 0xffc0 == 0xfe80, s[0] & 0xff0f == 0xff02)
        }
    };
    if unspecified {
        causes.push(Cause::invalid(field, &json!(ip), &format!("may not be unspecified ({ip})")));
    }
    if loopback {
        causes.push(Cause::invalid(field, &json!(ip), "may not be in the loopback range (127.0.0.0/8, ::1/128)"));
    }
    if link_local {
        causes.push(Cause::invalid(
            field,
            &json!(ip),
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if link_local_multicast {
        causes.push(Cause::invalid(
            field,
            &json!(ip),
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
}

fn validate_address(addr: &Value, path: &str, causes: &mut Vec<Cause>) {
    let ip = str_at(addr, "/ip");
    let ip_path = format!("{path}.ip");
    if ip.parse::<IpAddr>().is_err() {
        causes.push(Cause::invalid(&ip_path, &json!(ip), IP_MSG));
    }
    let hostname = str_at(addr, "/hostname");
    if !hostname.is_empty() {
        if let Some(m) = meta::is_dns1123_label(hostname) {
            causes.push(Cause::invalid(format!("{path}.hostname"), &json!(hostname), &m));
        }
    }
    if let Some(node) = addr.get("nodeName").and_then(Value::as_str) {
        if let Some(m) = meta::is_dns1123_subdomain(node) {
            causes.push(Cause::invalid(format!("{path}.nodeName"), &json!(node), &m));
        }
    }
    non_special_ip(&ip_path, ip, causes);
}

fn validate_port(port: &Value, require_name: bool, path: &str, causes: &mut Vec<Cause>) {
    let name = str_at(port, "/name");
    if require_name && name.is_empty() {
        causes.push(Cause::required(format!("{path}.name"), ""));
    } else if !name.is_empty() {
        if let Some(m) = meta::is_dns1123_label(name) {
            causes.push(Cause::invalid(format!("{path}.name"), &json!(name), &m));
        }
    }
    let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
    if !valid_port(number) {
        causes.push(Cause::invalid(format!("{path}.port"), &json!(number), PORT_RANGE_MSG));
    }
    match port.get("protocol").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(format!("{path}.protocol"), "")),
        Some(p) if PROTOCOLS.contains(&p) => {}
        Some(p) => causes.push(Cause::not_supported(format!("{path}.protocol"), &json!(p), PROTOCOLS)),
    }
}

/// Upstream's formatEndpoints: up to three "ip:port" (or bare ip for a
/// subset without ports), then "+ N more...", or "<none>".
fn format_endpoints(obj: &Value) -> String {
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0usize;
    let mut more = false;
    for subset in arr_at(obj, "/subsets") {
        let addresses = arr_at(subset, "/addresses");
        let ports = arr_at(subset, "/ports");
        if ports.is_empty() {
            count += addresses.len();
            for a in addresses {
                if shown.len() == SHOWN {
                    more = true;
                    break;
                }
                shown.push(str_at(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            let number = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            for a in addresses {
                if shown.len() == SHOWN {
                    more = true;
                    break;
                }
                let ip = str_at(a, "/ip");
                // Go's net.JoinHostPort brackets anything with a colon.
                shown.push(if ip.contains(':') { format!("[{ip}]:{number}") } else { format!("{ip}:{number}") });
            }
        }
    }
    let joined = shown.join(",");
    if more {
        return format!("{joined} + {} more...", count - SHOWN);
    }
    if joined.is_empty() {
        "<none>".into()
    } else {
        joined
    }
}

impl Strategy for EndpointsStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(Value::Array(subsets)) = obj.get_mut("subsets") else { return };
        for s in subsets.iter_mut() {
            let Some(Value::Array(ports)) = s.get_mut("ports") else { continue };
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default_field(p, "protocol", json!("TCP"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for (i, subset) in arr_at(obj, "/subsets").iter().enumerate() {
            let path = format!("subsets[{i}]");
            let ready = arr_at(subset, "/addresses");
            let not_ready = arr_at(subset, "/notReadyAddresses");
            if ready.is_empty() && not_ready.is_empty() {
                causes.push(Cause::required(&path, "must specify `addresses` or `notReadyAddresses`"));
            }
            for (j, a) in ready.iter().enumerate() {
                validate_address(a, &format!("{path}.addresses[{j}]"), &mut causes);
            }
            for (j, a) in not_ready.iter().enumerate() {
                validate_address(a, &format!("{path}.notReadyAddresses[{j}]"), &mut causes);
            }
            let ports = arr_at(subset, "/ports");
            for (j, p) in ports.iter().enumerate() {
                validate_port(p, ports.len() > 1, &format!("{path}.ports[{j}]"), &mut causes);
            }
        }
        causes
    }

    /// Controllers write endpoints with PUT whether or not they exist yet.
    fn allow_create_on_update(&self) -> bool {
        true
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![json!(meta::name(obj)), json!(format_endpoints(obj)), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(obj: Value) -> Vec<String> {
        let s = EndpointsStrategy;
        let mut obj =
            generic_server::registry::typed::decode_as::<k8s_openapi::api::core::v1::Endpoints>(obj).unwrap().object;
        s.default(&mut obj);
        s.validate(&obj).iter().map(Cause::full_message).collect()
    }

    #[test]
    fn special_addresses_are_refused() {
        let ep = |ip: &str| json!({"metadata": {"name": "e"}, "subsets": [{"addresses": [{"ip": ip}], "ports": [{"port": 80}]}]});
        assert!(messages(ep("10.1.2.3")).is_empty());
        assert_eq!(
            messages(ep("127.0.0.1")),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
        assert_eq!(
            messages(ep("::1")),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"::1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"]
        );
        assert!(messages(ep("169.254.1.1"))[0].contains("link-local range"));
        assert!(messages(ep("fe80::1"))[0].contains("link-local range"));
        assert!(messages(ep("224.0.0.5"))[0].contains("link-local multicast"));
        assert!(messages(ep("ff02::1"))[0].contains("link-local multicast"));
        assert_eq!(
            messages(ep("0.0.0.0")),
            vec!["subsets[0].addresses[0].ip: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)"]
        );
        assert_eq!(
            messages(ep("nope")),
            vec![
                "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address",
            ]
        );
    }

    #[test]
    fn subsets_and_ports() {
        assert_eq!(
            messages(json!({"subsets": [{"ports": [{"port": 80}]}]})),
            vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
        );
        let two = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}, {"name": "b", "port": 70000, "protocol": "FOO"}]}]});
        assert_eq!(
            messages(two),
            vec![
                "subsets[0].ports[0].name: Required value",
                "subsets[0].ports[1].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "subsets[0].ports[1].protocol: Unsupported value: \"FOO\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ]
        );
        let s = EndpointsStrategy;
        let mut obj = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        s.default(&mut obj);
        assert_eq!(obj["subsets"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn table_cell_as_upstream() {
        let cell = |v: Value| format_endpoints(&v);
        assert_eq!(cell(json!({})), "<none>");
        assert_eq!(cell(json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]})), "10.0.0.1");
        assert_eq!(
            cell(json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}], "ports": [{"port": 80}]}]})),
            "10.0.0.1:80,[fd00::1]:80"
        );
        let many = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}, {"ip": "10.0.0.3"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(cell(many), "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 3 more...");
    }
}
