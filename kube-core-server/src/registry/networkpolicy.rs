//! networking.k8s.io/v1 networkpolicies (upstream pkg/registry/networking/
//! networkpolicy): policyTypes and port protocols defaulted, peers, ports and
//! IP blocks validated, generation tracked, and the table.

use serde_json::{json, Value};

use k8s_openapi::api::networking::v1::NetworkPolicy;

use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::label_selector::validate_label_selector;
use super::{age, arr_at, child, default_field, format_label_selector, port_name_problems, valid_port, PORT_RANGE_MSG};

pub struct NetworkPolicyStrategy;

pub fn registration() -> Registration {
    Registration::of::<NetworkPolicy>(NetworkPolicyStrategy).short_names(&["netpol"])
}

const POLICY_TYPES: &[&str] = &["Ingress", "Egress"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// A CIDR's address and prefix length, if it is one.
pub(crate) fn parse_cidr(cidr: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max && !bits.to_string().starts_with('+')).then_some((ip, bits))
}

pub(crate) const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

fn validate_ports(ports: &[Value], path: &str, causes: &mut Vec<Cause>) {
    for (i, p) in ports.iter().enumerate() {
        let field = format!("{path}[{i}]");
        if let Some(proto) = p.get("protocol").and_then(Value::as_str) {
            if !PROTOCOLS.contains(&proto) {
                causes.push(Cause::not_supported(format!("{field}.protocol"), &json!(proto), PROTOCOLS));
            }
        }
        match p.get("port") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                if !valid_port(n) {
                    causes.push(Cause::invalid(format!("{field}.port"), &json!(n), PORT_RANGE_MSG));
                }
            }
            Some(Value::String(name)) => {
                for m in port_name_problems(name) {
                    causes.push(Cause::invalid(format!("{field}.port"), &json!(name), &m));
                }
            }
            _ => {}
        }
    }
}

fn validate_peers(peers: &[Value], path: &str, causes: &mut Vec<Cause>) {
    for (i, peer) in peers.iter().enumerate() {
        let field = format!("{path}[{i}]");
        let has = |k: &str| peer.get(k).is_some_and(Value::is_object);
        for key in ["podSelector", "namespaceSelector"] {
            if let Some(sel) = peer.get(key).filter(|s| s.is_object()) {
                validate_label_selector(sel, &format!("{field}.{key}"), causes);
            }
        }
        let selectors = usize::from(has("podSelector")) + usize::from(has("namespaceSelector"));
        if selectors == 0 && !has("ipBlock") {
            causes.push(Cause::required(&field, "must specify a peer"));
        } else if selectors > 0 && has("ipBlock") {
            causes.push(Cause::forbidden(&field, "may not specify both ipBlock and another peer"));
        }
        if let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) {
            let cidr = block.get("cidr").and_then(Value::as_str).unwrap_or("");
            if cidr.is_empty() {
                causes.push(Cause::required(format!("{field}.ipBlock.cidr"), ""));
            } else if parse_cidr(cidr).is_none() {
                causes.push(Cause::invalid(format!("{field}.ipBlock.cidr"), &json!(cidr), CIDR_MSG));
            }
            for (j, e) in arr_at(block, "/except").iter().enumerate() {
                if parse_cidr(e.as_str().unwrap_or("")).is_none() {
                    causes.push(Cause::invalid(format!("{field}.ipBlock.except[{j}]"), e, CIDR_MSG));
                }
            }
        }
    }
}

impl Strategy for NetworkPolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        for (rules, ports) in [("ingress", "ports"), ("egress", "ports")] {
            for rule in spec.get_mut(rules).and_then(Value::as_array_mut).into_iter().flatten() {
                for port in rule.get_mut(ports).and_then(Value::as_array_mut).into_iter().flatten() {
                    if let Some(p) = port.as_object_mut() {
                        default_field(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
        // A policy naming no types is an Ingress policy, and an Egress one too
        // when it has egress rules.
        if spec.get("policyTypes").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            let egress = spec.get("egress").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
            let types = if egress { json!(["Ingress", "Egress"]) } else { json!(["Ingress"]) };
            spec.insert("policyTypes".into(), types);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(sel) = obj.pointer("/spec/podSelector") {
            validate_label_selector(sel, "spec.podSelector", &mut causes);
        }
        for (i, rule) in arr_at(obj, "/spec/ingress").iter().enumerate() {
            validate_ports(arr_at(rule, "/ports"), &format!("spec.ingress[{i}].ports"), &mut causes);
            validate_peers(arr_at(rule, "/from"), &format!("spec.ingress[{i}].from"), &mut causes);
        }
        for (i, rule) in arr_at(obj, "/spec/egress").iter().enumerate() {
            validate_ports(arr_at(rule, "/ports"), &format!("spec.egress[{i}].ports"), &mut causes);
            validate_peers(arr_at(rule, "/to"), &format!("spec.egress[{i}].to"), &mut causes);
        }
        let types = arr_at(obj, "/spec/policyTypes");
        if types.len() > POLICY_TYPES.len() {
            causes.push(super::invalid_raw(
                "spec.policyTypes",
                &super::go_string_slice(types),
                "may not specify more than two policyTypes",
            ));
            return causes;
        }
        for (i, t) in types.iter().enumerate() {
            if !t.as_str().is_some_and(|t| POLICY_TYPES.contains(&t)) {
                causes.push(Cause::not_supported(format!("spec.policyTypes[{i}]"), t, POLICY_TYPES));
            }
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Pod-Selector", "string", "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in this namespace."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        // metav1.FormatLabelSelector: an empty selector prints "<none>".
        let selector = format_label_selector(obj.pointer("/spec/podSelector"));
        let selector = if selector.is_empty() { "<none>".to_string() } else { selector };
        vec![json!(generic_server::meta::name(obj)), json!(selector), age(obj)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s = NetworkPolicyStrategy;
        let mut np = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        s.default(&mut np);
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(s.table_row(&np)[1], "<none>");
        let bad = json!({"spec": {"policyTypes": ["Sideways"], "ingress": [{"from": [{}, {"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}});
        let msgs: Vec<String> = s.validate(&bad).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            [
                "spec.ingress[0].from[0]: Required value: must specify a peer",
                "spec.ingress[0].from[1].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                "spec.policyTypes[0]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\"",
            ]
        );
    }
}
