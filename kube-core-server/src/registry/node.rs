//! core/v1 nodes (upstream pkg/registry/core/node): allocatable defaulted
//! from capacity, taint and podCIDR validation, the podCIDR/providerID rules on
//! update, status subresource, the `spec.unschedulable` field selector, the
//! table, and `nodes/proxy`, which answers as upstream does when the kubelet
//! cannot be reached.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Node;

use generic_server::backend::dial_error;
use generic_server::meta::{label_value_problem, qualified_name_problem};
use generic_server::registry::{
    Registration, Store, Strategy, SubresourceCall, SubresourceDiscovery, SubresourceHandler, SubresourceReply,
    TableColumn,
};
use generic_server::status::{Cause, StatusError};

use super::{age, arr_at, child, map_at, str_at};

pub struct NodeStrategy;

pub fn registration() -> Registration {
    Registration::of::<Node>(NodeStrategy)
        .short_names(&["no"])
        .key_root("/registry/minions")
        .status()
        .handler(NodeProxy)
}

const TAINT_EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Upstream's validateNodeTaints. Upstream roots the path at `metadata`
/// (metadata.taints[i]), and clients see that path, so it is kept.
fn validate_taints(obj: &Value, causes: &mut Vec<Cause>) {
    let mut seen: Vec<(String, String)> = Vec::new();
    for (i, t) in arr_at(obj, "/spec/taints").iter().enumerate() {
        let path = format!("metadata.taints[{i}]");
        let key = t.get("key").and_then(Value::as_str).unwrap_or("");
        if let Some(p) = qualified_name_problem(key) {
            causes.push(Cause::invalid(format!("{path}.key"), &json!(key), &p));
        }
        let value = t.get("value").and_then(Value::as_str).unwrap_or("");
        if let Some(p) = label_value_problem(value) {
            causes.push(Cause::invalid(format!("{path}.value"), &json!(value), &p));
        }
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        if effect.is_empty() {
            causes.push(Cause::required(format!("{path}.effect"), ""));
        } else if !TAINT_EFFECTS.contains(&effect) {
            causes.push(Cause::not_supported(format!("{path}.effect"), &json!(effect), TAINT_EFFECTS));
        }
        let pair = (key.to_string(), effect.to_string());
        if seen.contains(&pair) {
            causes.push(Cause {
                reason: "FieldValueDuplicate",
                message: "Duplicate value: taints must be unique by key and effect pair".into(),
                field: path,
            });
            continue;
        }
        seen.push(pair);
    }
}

/// The IP family of a CIDR, if it is one.
fn cidr_family(cidr: &str) -> Option<bool> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(ip.is_ipv4())
}

fn validate_pod_cidrs(obj: &Value, causes: &mut Vec<Cause>) {
    let cidrs = arr_at(obj, "/spec/podCIDRs");
    let mut families = Vec::new();
    for (i, c) in cidrs.iter().enumerate() {
        match cidr_family(c.as_str().unwrap_or("")) {
            Some(f) => families.push(f),
            None => causes.push(Cause::invalid(
                format!("spec.podCIDRs[{i}]"),
                c,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
        }
    }
    let dual = families.len() == 2 && families[0] != families[1];
    if cidrs.len() > 1 && families.len() == cidrs.len() && !dual {
        causes.push(super::invalid_raw(
            "spec.podCIDRs",
            &super::go_string_slice(cidrs),
            "may specify no more than one CIDR for each IP family",
        ));
    }
}

/// Upstream's printer Status cell: Ready/NotReady/Unknown, then
/// SchedulingDisabled for a cordoned node.
fn status_cell(obj: &Value) -> String {
    let ready = arr_at(obj, "/status/conditions").iter().rev().find(|c| c.get("type") == Some(&json!("Ready")));
    let mut parts = vec![match ready {
        Some(c) if c.get("status") == Some(&json!("True")) => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        parts.push("SchedulingDisabled");
    }
    parts.join(",")
}

/// Roles from `node-role.kubernetes.io/<role>` labels and `kubernetes.io/role`.
fn roles_cell(obj: &Value) -> String {
    let mut roles: Vec<&str> = Vec::new();
    for (k, v) in map_at(obj, "/metadata/labels").into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/").filter(|r| !r.is_empty()) {
            roles.push(role);
        } else if k == "kubernetes.io/role" {
            roles.extend(v.as_str().filter(|v| !v.is_empty()));
        }
    }
    roles.sort_unstable();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn address(obj: &Value, kind: &str) -> String {
    arr_at(obj, "/status/addresses")
        .iter()
        .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
        .and_then(|a| a.get("address").and_then(Value::as_str))
        .unwrap_or("<none>")
        .to_string()
}

fn or_unknown(s: &str) -> String {
    if s.is_empty() {
        "<unknown>".into()
    } else {
        s.into()
    }
}

impl Strategy for NodeStrategy {
    // "Nodes allow all fields, including status, to be set on create."
    fn keeps_status_on_create(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        // Upstream's SetDefaults_NodeStatus: allocatable is capacity when unset.
        let Some(capacity) = obj.pointer("/status/capacity").filter(|c| c.is_object()).cloned() else { return };
        let status = child(obj, "status");
        if status.get("allocatable").is_none_or(Value::is_null) {
            status.insert("allocatable".into(), capacity);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_taints(obj, &mut causes);
        validate_pod_cidrs(obj, &mut causes);
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let mut seen = Vec::new();
        for (i, a) in arr_at(new, "/status/addresses").iter().enumerate() {
            if seen.contains(&a) {
                causes.push(Cause::duplicate(format!("status.addresses[{i}]"), a));
            }
            seen.push(a);
        }
        let old_cidrs = arr_at(old, "/spec/podCIDRs");
        if !old_cidrs.is_empty() && old_cidrs != arr_at(new, "/spec/podCIDRs") {
            causes.push(Cause::forbidden(
                "spec.podCIDRs",
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = str_at(old, "/spec/providerID");
        if !old_provider.is_empty() && old_provider != str_at(new, "/spec/providerID") {
            causes.push(Cause::forbidden(
                "spec.providerID",
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
        if str_at(new, "/spec/externalID") != str_at(old, "/spec/externalID") {
            causes.push(Cause::forbidden("spec.externalID", "may not be updated"));
        }
        causes
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let unschedulable = obj.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
        vec![("spec.unschedulable", unschedulable.to_string())]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Status", "string", "The status of the node"),
            TableColumn::new("Roles", "string", "The roles of the node"),
            TableColumn::age_column(),
            TableColumn::new("Version", "string", "Kubelet Version reported by the node."),
            TableColumn::new("Internal-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).").wide(),
            TableColumn::new("External-IP", "string", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).").wide(),
            TableColumn::new("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
            TableColumn::new("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
            TableColumn::new("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(generic_server::meta::name(obj)),
            json!(status_cell(obj)),
            json!(roles_cell(obj)),
            age(obj),
            json!(str_at(obj, "/status/nodeInfo/kubeletVersion")),
            json!(address(obj, "InternalIP")),
            json!(address(obj, "ExternalIP")),
            json!(or_unknown(str_at(obj, "/status/nodeInfo/osImage"))),
            json!(or_unknown(str_at(obj, "/status/nodeInfo/kernelVersion"))),
            json!(or_unknown(str_at(obj, "/status/nodeInfo/containerRuntimeVersion"))),
        ]
    }
}

/// The kubelet's port when the node reports none (upstream's default).
const KUBELET_PORT: i64 = 10250;

/// Address types in upstream's default --kubelet-preferred-address-types order.
const PREFERRED_ADDRESS_TYPES: &[&str] = &["Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"];

/// How long to try reaching a kubelet before answering; upstream's dialer
/// gives up after 30s, a client is better served sooner.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// `nodes/{name}/proxy`: this server holds no kubelet client credentials, so
/// it proxies nothing, but resolves the kubelet as upstream does and reports
/// the failure upstream reports: the node's absence (404), no usable address
/// (500), or the dial error (503 ServiceUnavailable).
pub struct NodeProxy;

/// The kubelet's address as upstream picks it, or Go's rendering of the
/// addresses it had when none is preferred.
fn kubelet_address(node: &Value) -> Result<String, String> {
    let addresses = arr_at(node, "/status/addresses");
    let pick = PREFERRED_ADDRESS_TYPES.iter().find_map(|t| {
        addresses
            .iter()
            .find(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .and_then(|a| a.get("address").and_then(Value::as_str))
            .filter(|a| !a.is_empty())
    });
    let Some(host) = pick else {
        let known: Vec<String> =
            addresses.iter().map(|a| format!("{{{} {}}}", str_at(a, "/type"), str_at(a, "/address"))).collect();
        return Err(format!("no preferred addresses found; known addresses: [{}]", known.join(" ")));
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_i64)
        .filter(|p| *p > 0)
        .unwrap_or(KUBELET_PORT);
    Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

#[async_trait::async_trait]
impl SubresourceHandler for NodeProxy {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery {
            kind: "NodeProxyOptions",
            group: "",
            version: "",
            verbs: &["create", "delete", "get", "patch", "update"],
        }
    }

    // A connect subresource: the rest of the path is the kubelet's.
    fn connect(&self) -> bool {
        true
    }

    fn connect_options(&self) -> Option<generic_server::registry::ConnectOptions> {
        Some(super::connect::PROXY_OPTIONS)
    }

    async fn serve(&self, store: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let node = store.get("", call.name).await?;
        let target = kubelet_address(&node).map_err(StatusError::internal)?;
        let why = match tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
            Err(_) => "i/o timeout".to_string(),
            Ok(Err(e)) => dial_error(&e),
            // Reachable, but this server has no kubelet client identity to
            // speak to it with.
            Ok(Ok(_)) => "no kubelet client credentials are configured".to_string(),
        };
        Err(StatusError::service_unavailable(format!("error trying to reach service: dial tcp {target}: {why}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn taints_and_cidrs() {
        let s = NodeStrategy;
        let node = json!({"metadata": {"name": "n"}, "spec": {
            "taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "Sometimes"}, {"key": "c"}],
            "podCIDRs": ["10.0.0.0/24", "10.1.0.0/24"]}});
        assert_eq!(
            messages(s.validate(&node)),
            [
                "metadata.taints[1]: Duplicate value: taints must be unique by key and effect pair",
                "metadata.taints[2].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                "metadata.taints[3].effect: Required value",
                "spec.podCIDRs: Invalid value: []string{\"10.0.0.0/24\", \"10.1.0.0/24\"}: may specify no more than one CIDR for each IP family",
            ]
        );
        let dual = json!({"spec": {"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}});
        assert!(s.validate(&dual).is_empty());
    }

    #[test]
    fn pod_cidr_and_provider_are_set_once() {
        let s = NodeStrategy;
        let old = json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "providerID": "aws://1"}});
        let new = json!({"spec": {"podCIDRs": ["10.0.1.0/24"], "providerID": "aws://2"}});
        assert_eq!(
            messages(s.validate_update(&new, &old)),
            [
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid",
                "spec.providerID: Forbidden: node updates may not change providerID except from \"\" to valid",
            ]
        );
        assert!(s.validate_update(&new, &json!({"spec": {}})).is_empty());
    }

    #[test]
    fn printed_cells() {
        let node = json!({"metadata": {"name": "n", "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        assert_eq!(status_cell(&node), "NotReady,SchedulingDisabled");
        assert_eq!(status_cell(&json!({})), "Unknown");
        assert_eq!(roles_cell(&node), "control-plane,edge");
        assert_eq!(address(&node, "ExternalIP"), "<none>");
        assert_eq!(kubelet_address(&node), Ok("10.0.0.1:10250".to_string()));
        assert_eq!(
            kubelet_address(&json!({"status": {"addresses": [{"type": "Other", "address": "x"}]}})),
            Err("no preferred addresses found; known addresses: [{Other x}]".to_string())
        );
    }
}
