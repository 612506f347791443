//! core/v1 services (upstream pkg/registry/core/service): defaults (type,
//! session affinity, ports, IP families, traffic policies), validation, cluster
//! IP and node port allocation through the [`allocator`](crate::allocator)s,
//! the clusterIP immutability rule, field selectors and the table.
//!
//! Allocation happens in `prepare_for_create` (the uid is already set, and it
//! is the owner the allocators record); what failed there is remembered per
//! uid and reported by `validate` as upstream's 422. `after_create` commits,
//! `after_delete` releases. The IPAddress objects that record cluster IPs in
//! storage are the registration's write hooks ([`crate::service_ips`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{json, Value};

use generic_server::meta::{self, NameRule};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::{Cause, StatusError};

use super::connect::ServiceProxy;
use super::peers::Peers;
use super::{
    age, arr_at, child, default_field, format_labels, go_string_slice, invalid_raw, map_at, port_name_problems, str_at,
    valid_port, PORT_RANGE_MSG,
};
use crate::allocator::{AllocError, IpAllocator, IpFamily, PortAllocator, PENDING_TTL};
use crate::service_ips::IpRecords;

mod families;
use families::IpFields;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SINGLE_STACK: &str = "SingleStack";

pub struct ServiceStrategy {
    ips: Arc<IpAllocator>,
    ports: Arc<PortAllocator>,
    /// Allocation failures of in-flight writes, by uid, for validation to report.
    failures: Mutex<HashMap<String, (Instant, Vec<Cause>)>>,
}

/// Services live under `/registry/services/specs`, as upstream keeps them.
pub fn registration(strategy: Arc<ServiceStrategy>, peers: &Arc<Peers>, ips: Arc<IpRecords>) -> Registration {
    Registration::shared::<k8s_openapi::api::core::v1::Service>(strategy)
        .hooks(ips)
        .short_names(&["svc"])
        .categories(&["all"])
        .key_root("/registry/services/specs")
        .status()
        .returns_deleted_object()
        .handler(ServiceProxy::new(peers))
}

fn svc_type(obj: &Value) -> &str {
    match str_at(obj, "/spec/type") {
        "" => "ClusterIP",
        t => t,
    }
}

fn needs_cluster_ip(obj: &Value) -> bool {
    svc_type(obj) != "ExternalName"
}

/// The cluster IPs a stored service holds (none for ExternalName or headless).
pub(crate) fn cluster_ips(obj: &Value) -> Vec<IpAddr> {
    if !needs_cluster_ip(obj) {
        return Vec::new();
    }
    ServiceStrategy::allocated_values(obj).0
}

/// Upstream's refusal of a cluster IP that cannot be had.
pub(crate) fn ip_failure_cause(obj: &Value, ip: &str, detail: &str) -> Cause {
    let shown = go_string_slice(arr_at(obj, "/spec/clusterIPs"));
    invalid_raw("spec.clusterIPs", &shown, &format!("failed to allocate IP {ip}: {detail}"))
}

/// Upstream's detail for an address someone else holds.
pub(crate) const IP_ALLOCATED: &str = "provided IP is already allocated";

fn needs_node_ports(obj: &Value) -> bool {
    match svc_type(obj) {
        "NodePort" => true,
        "LoadBalancer" => obj.pointer("/spec/allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false),
        _ => false,
    }
}

fn port_key(p: &Value) -> (i64, String) {
    (p.get("port").and_then(Value::as_i64).unwrap_or(0), str_at(p, "/protocol").to_string())
}

impl ServiceStrategy {
    pub fn new(ips: Arc<IpAllocator>, ports: Arc<PortAllocator>) -> Self {
        ServiceStrategy { ips, ports, failures: Mutex::new(HashMap::new()) }
    }

    pub fn ip_allocator(&self) -> &Arc<IpAllocator> {
        &self.ips
    }

    pub fn port_allocator(&self) -> &Arc<PortAllocator> {
        &self.ports
    }

    fn record_failures(&self, uid: &str, causes: Vec<Cause>) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        f.retain(|_, (t, _)| t.elapsed() < PENDING_TTL);
        if causes.is_empty() {
            f.remove(uid);
        } else {
            f.insert(uid.to_string(), (Instant::now(), causes));
        }
    }

    fn failures_for(&self, uid: &str, take: bool) -> Vec<Cause> {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if take {
            f.remove(uid).map(|(_, c)| c).unwrap_or_default()
        } else {
            f.get(uid).map(|(_, c)| c.clone()).unwrap_or_default()
        }
    }

    fn ip_failure(&self, obj: &Value, ip: &str, err: AllocError) -> Cause {
        let detail = match err {
            AllocError::Allocated => IP_ALLOCATED.to_string(),
            AllocError::NotInRange => self.ips.not_in_range_message(ip),
            AllocError::Full => "range is full".to_string(),
        };
        ip_failure_cause(obj, ip, &detail)
    }

    /// Takes a cluster IP for each of the Service's families from index
    /// `from` on: the one asked for, or a free one (upstream's
    /// allocClusterIPs). `committed` is for updates, which have no after-hook.
    fn allocate_ips(&self, obj: &mut Value, from: usize, owner: &str, committed: bool, causes: &mut Vec<Cause>) {
        let mut f = IpFields::of(obj);
        if f.is_headless() {
            return;
        }
        let families: Vec<IpFamily> = f.families.iter().filter_map(|fam| IpFamily::parse(fam)).collect();
        for (i, family) in families.into_iter().enumerate().skip(from) {
            if i >= f.ips.len() {
                f.ips.push(String::new());
            }
            let taken = if f.ips[i].is_empty() {
                let next = if committed {
                    self.ips.allocate_next_committed(family, owner)
                } else {
                    self.ips.allocate_next(family, owner)
                };
                next.map(|ip| f.ips[i] = ip.to_string()).map_err(|e| (String::new(), e))
            } else {
                // Unparseable addresses were refused before allocation.
                let Ok(ip) = f.ips[i].parse::<IpAddr>() else { continue };
                self.ips.allocate(ip, owner).map_err(|e| (f.ips[i].clone(), e))
            };
            if let Err((ip, e)) = taken {
                causes.push(self.ip_failure(obj, &ip, e));
                return;
            }
        }
        if committed {
            self.ips.commit(owner);
        }
        f.write(obj);
    }

    fn allocate_node_ports(&self, obj: &mut Value, owner: &str, committed: bool, causes: &mut Vec<Cause>) {
        let Some(Value::Array(ports)) = obj.pointer_mut("/spec/ports") else { return };
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(pm) = p.as_object_mut() else { continue };
            match pm.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
                Some(n) => {
                    let r =
                        if committed { self.ports.allocate_committed(n, owner) } else { self.ports.allocate(n, owner) };
                    let detail = match r {
                        Ok(()) => continue,
                        Err(AllocError::Allocated) => "provided port is already allocated".to_string(),
                        Err(AllocError::NotInRange) => self.ports.not_in_range_message(),
                        Err(AllocError::Full) => "range is full".to_string(),
                    };
                    causes.push(Cause::invalid(format!("spec.ports[{i}].nodePort"), &json!(n), &detail));
                }
                None => {
                    let r = if committed {
                        self.ports.allocate_next_committed(owner)
                    } else {
                        self.ports.allocate_next(owner)
                    };
                    match r {
                        Ok(n) => {
                            pm.insert("nodePort".into(), json!(n));
                        }
                        Err(_) => causes.push(Cause::invalid(
                            format!("spec.ports[{i}].nodePort"),
                            &json!(0),
                            "failed to allocate a nodePort: range is full",
                        )),
                    }
                }
            }
        }
    }

    /// What was allocated to a stored service: (cluster IPs, node ports).
    fn allocated_values(obj: &Value) -> (Vec<IpAddr>, Vec<i64>) {
        let mut ips: Vec<IpAddr> =
            arr_at(obj, "/spec/clusterIPs").iter().filter_map(|v| v.as_str()?.parse().ok()).collect();
        if ips.is_empty() {
            ips.extend(str_at(obj, "/spec/clusterIP").parse::<IpAddr>().ok());
        }
        let mut ports: Vec<i64> =
            arr_at(obj, "/spec/ports").iter().filter_map(|p| p.get("nodePort")?.as_i64()).filter(|n| *n != 0).collect();
        ports.extend(obj.pointer("/spec/healthCheckNodePort").and_then(Value::as_i64).filter(|n| *n != 0));
        (ips, ports)
    }

    /// Learns the allocations of stored services (at startup, and from the
    /// periodic repair): everything committed is replaced by what they hold.
    pub fn seed(&self, services: &[Value]) {
        let mut ip_entries = Vec::new();
        let mut port_entries = Vec::new();
        for s in services {
            let uid = meta::uid(s).to_string();
            let (ips, ports) = Self::allocated_values(s);
            ip_entries.extend(ips.into_iter().map(|ip| (ip, uid.clone())));
            port_entries.extend(ports.into_iter().map(|p| (p, uid.clone())));
        }
        self.ips.reset(&ip_entries);
        self.ports.reset(&port_entries);
    }

    /// Lists every service in `store` and [`seed`](Self::seed)s from them.
    pub async fn seed_from_store(&self, store: &generic_server::registry::Store) -> Result<(), StatusError> {
        let list = store.list("", &Default::default()).await?;
        let items = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        self.seed(&items);
        Ok(())
    }

    /// The rules every write of a service is held to.
    fn validate_spec(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let ty = obj.pointer("/spec/type").cloned().unwrap_or(json!("ClusterIP"));
        if !ty.as_str().is_some_and(|t| TYPES.contains(&t)) {
            causes.push(Cause::not_supported("spec.type", &ty, TYPES));
        }
        let ty = svc_type(obj);
        let headless = IpFields::of(obj).is_headless();
        let ports = arr_at(obj, "/spec/ports");
        if ports.is_empty() && !headless && ty != "ExternalName" {
            causes.push(Cause::required("spec.ports", ""));
        }
        let mut names: Vec<&str> = Vec::new();
        let mut keys: Vec<(i64, String)> = Vec::new();
        for (i, p) in ports.iter().enumerate() {
            let f = format!("spec.ports[{i}]");
            let pname = str_at(p, "/name");
            if pname.is_empty() {
                if ports.len() > 1 {
                    causes.push(Cause::required(format!("{f}.name"), ""));
                }
            } else {
                if let Some(m) = generic_server::meta::is_dns1123_label(pname) {
                    causes.push(Cause::invalid(format!("{f}.name"), &json!(pname), &m));
                }
                if names.contains(&pname) {
                    causes.push(Cause::duplicate(format!("{f}.name"), &json!(pname)));
                }
                names.push(pname);
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !valid_port(port) {
                causes.push(Cause::invalid(format!("{f}.port"), &json!(port), PORT_RANGE_MSG));
            }
            match p.get("protocol") {
                Some(v) if v.as_str().is_some_and(|s| super::podspec::PROTOCOLS.contains(&s)) => {}
                Some(v) => causes.push(Cause::not_supported(format!("{f}.protocol"), v, super::podspec::PROTOCOLS)),
                None => causes.push(Cause::required(format!("{f}.protocol"), "")),
            }
            match p.get("targetPort") {
                Some(Value::Number(n)) => {
                    let n = n.as_i64().unwrap_or(0);
                    if !valid_port(n) {
                        causes.push(Cause::invalid(format!("{f}.targetPort"), &json!(n), PORT_RANGE_MSG));
                    }
                }
                Some(Value::String(s)) => {
                    for m in port_name_problems(s) {
                        causes.push(Cause::invalid(format!("{f}.targetPort"), &json!(s), &m));
                    }
                }
                _ => {}
            }
            if let Some(n) = p.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
                if !matches!(ty, "NodePort" | "LoadBalancer") {
                    causes.push(Cause::forbidden(
                        format!("{f}.nodePort"),
                        &format!("may not be used when `type` is '{ty}'"),
                    ));
                } else if !valid_port(n) {
                    causes.push(Cause::invalid(format!("{f}.nodePort"), &json!(n), PORT_RANGE_MSG));
                }
            }
            let key = port_key(p);
            if keys.contains(&key) {
                causes.push(Cause::duplicate(f.clone(), &json!({"port": key.0, "protocol": key.1})));
            }
            keys.push(key);
        }
        if let Some(v) = obj.pointer("/spec/sessionAffinity") {
            if !matches!(v.as_str(), Some("ClientIP" | "None")) {
                causes.push(Cause::not_supported("spec.sessionAffinity", v, &["ClientIP", "None"]));
            }
        }
        match ty {
            "ExternalName" => {
                let en = str_at(obj, "/spec/externalName");
                if en.is_empty() {
                    causes.push(Cause::required("spec.externalName", ""));
                } else if let Some(m) = generic_server::meta::is_dns1123_subdomain(en.trim_end_matches('.')) {
                    causes.push(Cause::invalid("spec.externalName", &json!(en), &m));
                }
                if !arr_at(obj, "/spec/clusterIPs").is_empty() {
                    causes.push(Cause::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
                }
                if !arr_at(obj, "/spec/ipFamilies").is_empty() {
                    causes.push(Cause::forbidden("spec.ipFamilies", "may not be set for ExternalName services"));
                }
                if obj.pointer("/spec/ipFamilyPolicy").is_some_and(|v| !v.is_null()) {
                    causes.push(Cause::forbidden("spec.ipFamilyPolicy", "may not be set for ExternalName services"));
                }
            }
            _ => {
                if headless && matches!(ty, "NodePort" | "LoadBalancer") {
                    causes.push(Cause::invalid(
                        "spec.clusterIPs[0]",
                        &json!("None"),
                        &format!("may not be set to 'None' for {ty} services"),
                    ));
                }
            }
        }
        for (field, allowed) in
            [("internalTrafficPolicy", &["Cluster", "Local"][..]), ("externalTrafficPolicy", &["Cluster", "Local"][..])]
        {
            if let Some(v) = obj.pointer(&format!("/spec/{field}")).filter(|v| !v.is_null()) {
                if !v.as_str().is_some_and(|s| allowed.contains(&s)) {
                    causes.push(Cause::not_supported(format!("spec.{field}"), v, allowed));
                }
            }
        }
        if obj.pointer("/spec/externalTrafficPolicy").is_some_and(|v| !v.is_null())
            && !matches!(ty, "NodePort" | "LoadBalancer")
        {
            let v = obj.pointer("/spec/externalTrafficPolicy").cloned().unwrap_or(Value::Null);
            causes.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &v,
                "may only be set when `type` is 'NodePort' or 'LoadBalancer'",
            ));
        }
        causes.extend(families::validate(obj));
        causes
    }
}

/// Values that no longer apply after a type change are dropped when the
/// client left them as they were (upstream's dropTypeDependentFields): a
/// NodePort service patched to ClusterIP loses its node ports instead of
/// being refused for having them.
fn drop_type_dependent_fields(new: &mut Value, old: &Value) {
    let same = |new: &Value, pointer: &str| new.pointer(pointer) == old.pointer(pointer);
    let node_ports = |v: &Value| -> Vec<Option<Value>> {
        arr_at(v, "/spec/ports").iter().map(|p| p.get("nodePort").cloned()).collect()
    };
    let (old_ty, new_ty) = (svc_type(old).to_string(), svc_type(new).to_string());
    let external = |t: &str| matches!(t, "NodePort" | "LoadBalancer");
    let mut dropped: Vec<&str> = Vec::new();
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same(new, "/spec/clusterIPs") {
            dropped.extend(["clusterIP", "clusterIPs"]);
        }
        dropped.extend(["ipFamilies", "ipFamilyPolicy"].into_iter().filter(|f| same(new, &format!("/spec/{f}"))));
    }
    if external(&old_ty) && !external(&new_ty) {
        if node_ports(new) == node_ports(old) {
            if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
                ports.iter_mut().filter_map(Value::as_object_mut).for_each(|p| drop(p.remove("nodePort")));
            }
        }
        dropped.extend(
            ["externalTrafficPolicy", "healthCheckNodePort"].into_iter().filter(|f| same(new, &format!("/spec/{f}"))),
        );
    }
    if old_ty == "LoadBalancer" && new_ty != "LoadBalancer" {
        dropped.extend(
            ["allocateLoadBalancerNodePorts", "loadBalancerClass"]
                .into_iter()
                .filter(|f| same(new, &format!("/spec/{f}"))),
        );
    }
    let spec = child(new, "spec");
    for f in dropped {
        spec.remove(f);
    }
    // Whatever a load balancer reported is gone with it.
    if new_ty != "LoadBalancer" {
        child(new, "status").insert("loadBalancer".into(), json!({}));
    }
}

impl Strategy for ServiceStrategy {
    /// Services are DNS-1035 labels, which `validate` checks; the Store's own
    /// rule is the weakest so it does not report the name twice.
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035Label
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".into(), json!({"loadBalancer": {}}));
        }
        let uid = meta::uid(obj).to_string();
        let mut causes = families::init(obj, None, &self.ips);
        if causes.is_empty() && needs_cluster_ip(obj) {
            self.allocate_ips(obj, 0, &uid, false, &mut causes);
        }
        if causes.is_empty() && needs_node_ports(obj) {
            self.allocate_node_ports(obj, &uid, false, &mut causes);
        }
        self.record_failures(&uid, causes);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Values the server allocated stay unless the client changes them
        // (upstream's patchAllocatedValues): a client that omits them keeps them.
        if needs_cluster_ip(old) && needs_cluster_ip(new) {
            let spec = child(new, "spec");
            if spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").is_empty() {
                if let Some(v) = old.pointer("/spec/clusterIP") {
                    spec.insert("clusterIP".into(), v.clone());
                }
            }
            if spec.get("clusterIPs").and_then(Value::as_array).is_none_or(Vec::is_empty) {
                if let Some(v) = old.pointer("/spec/clusterIPs") {
                    spec.insert("clusterIPs".into(), v.clone());
                }
            }
        }
        if needs_node_ports(old) && needs_node_ports(new) {
            let old_ports = arr_at(old, "/spec/ports");
            if let Some(Value::Array(ports)) = new.pointer_mut("/spec/ports") {
                for p in ports.iter_mut() {
                    if p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0 {
                        continue;
                    }
                    let key = port_key(p);
                    let name = str_at(p, "/name").to_string();
                    let matching = old_ports
                        .iter()
                        .find(|o| port_key(o) == key)
                        .or_else(|| old_ports.iter().find(|o| !name.is_empty() && str_at(o, "/name") == name));
                    if let (Some(pm), Some(np)) = (p.as_object_mut(), matching.and_then(|o| o.get("nodePort"))) {
                        pm.insert("nodePort".into(), np.clone());
                    }
                }
            }
        }
        drop_type_dependent_fields(new, old);
        // A type change or a move to dual-stack may need values the old
        // service did not have. Updates have no after-hook, so these are
        // committed right away; if the write then fails, the periodic repair
        // gives them back. What a downgrade gives up is released when the
        // update is stored (the IpRecords hooks).
        let uid = meta::uid(old).to_string();
        let mut causes = families::init(new, Some(old), &self.ips);
        if causes.is_empty() && needs_cluster_ip(new) && !IpFields::of(old).is_headless() {
            let (before, after) = (IpFields::of(old).families.len(), IpFields::of(new).families.len());
            let from = if !needs_cluster_ip(old) { Some(0) } else { (before == 1 && after == 2).then_some(1) };
            if let Some(from) = from {
                self.allocate_ips(new, from, &uid, true, &mut causes);
            }
        }
        if causes.is_empty() && needs_node_ports(new) {
            self.allocate_node_ports(new, &uid, true, &mut causes);
        }
        self.record_failures(&uid, causes);
    }

    fn default(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        default_field(spec, "type", json!("ClusterIP"));
        default_field(spec, "sessionAffinity", json!("None"));
        let ty = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                default_field(p, "protocol", json!("TCP"));
                let unset = match p.get("targetPort") {
                    None | Some(Value::Null) => true,
                    Some(Value::Number(n)) => n.as_i64() == Some(0),
                    Some(Value::String(s)) => s.is_empty(),
                    _ => false,
                };
                if unset {
                    let port = p.get("port").cloned().unwrap_or(json!(0));
                    p.insert("targetPort".into(), port);
                }
            }
        }
        if ty != "ExternalName" {
            default_field(spec, "internalTrafficPolicy", json!("Cluster"));
            // clusterIP and clusterIPs mirror each other.
            let single = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
            let list_empty = spec.get("clusterIPs").and_then(Value::as_array).is_none_or(Vec::is_empty);
            if !single.is_empty() && list_empty {
                spec.insert("clusterIPs".into(), json!([single]));
            } else if single.is_empty() && !list_empty {
                let first = spec.get("clusterIPs").and_then(|v| v.get(0)).cloned().unwrap_or(json!(""));
                spec.insert("clusterIP".into(), first);
            }
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            default_field(spec, "externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
        }
        if let Some(m) = obj.as_object_mut() {
            if m.get("status").is_none_or(|s| !s.is_object()) {
                m.insert("status".into(), json!({"loadBalancer": {}}));
            }
        }
    }

    /// What allocation refused is the whole answer, as upstream's
    /// BeginCreate fails before the object is validated.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let failures = self.failures_for(meta::uid(obj), false);
        if !failures.is_empty() {
            return failures;
        }
        self.validate_spec(obj)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let failures = self.failures_for(meta::uid(old), true);
        if !failures.is_empty() {
            return failures;
        }
        let mut causes = families::validate_update(new, old);
        causes.extend(self.validate_spec(new));
        causes
    }

    fn after_create(&self, obj: &Value) {
        let uid = meta::uid(obj);
        self.ips.commit(uid);
        self.ports.commit(uid);
        self.record_failures(uid, Vec::new());
    }

    fn after_delete(&self, obj: &Value) {
        let uid = meta::uid(obj);
        self.ips.release_owner(uid);
        self.ports.release_owner(uid);
    }

    fn abort_create(&self, obj: &Value) {
        // A dry run or failed create hands back what prepare_for_create took.
        self.after_delete(obj);
    }

    fn field_labels(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![
            ("spec.clusterIP", str_at(obj, "/spec/clusterIP").to_string()),
            ("spec.type", str_at(obj, "/spec/type").to_string()),
        ]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &["spec.clusterIP", "spec.type"]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
            TableColumn::new("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly."),
            TableColumn::new("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            TableColumn::new("Port(s)", "string", "The list of ports that are exposed by this service."),
            TableColumn::age_column(),
            TableColumn::new("Selector", "string", "Route service traffic to pods with label keys and values matching this selector.").wide(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let cluster_ip = arr_at(obj, "/spec/clusterIPs").first().and_then(Value::as_str).unwrap_or("<none>");
        let ports: Vec<String> = arr_at(obj, "/spec/ports")
            .iter()
            .map(|p| {
                let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
                let proto = str_at(p, "/protocol");
                match p.get("nodePort").and_then(Value::as_i64).filter(|n| *n > 0) {
                    Some(np) => format!("{port}:{np}/{proto}"),
                    None => format!("{port}/{proto}"),
                }
            })
            .collect();
        let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
        vec![
            json!(meta::name(obj)),
            json!(str_at(obj, "/spec/type")),
            json!(cluster_ip),
            json!(external_ip(obj)),
            json!(ports),
            age(obj),
            json!(format_labels(map_at(obj, "/spec/selector"))),
        ]
    }
}

/// The EXTERNAL-IP cell (upstream's getServiceExternalIP, wide form).
fn external_ip(obj: &Value) -> String {
    let external: Vec<&str> = arr_at(obj, "/spec/externalIPs").iter().filter_map(Value::as_str).collect();
    match str_at(obj, "/spec/type") {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut lb: Vec<&str> = arr_at(obj, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| {
                    let ip = str_at(i, "/ip");
                    if ip.is_empty() {
                        str_at(i, "/hostname")
                    } else {
                        ip
                    }
                })
                .filter(|s| !s.is_empty())
                .collect();
            lb.sort_unstable();
            lb.dedup();
            lb.extend(external);
            if lb.is_empty() {
                "<pending>".into()
            } else {
                lb.join(",")
            }
        }
        "ExternalName" => str_at(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy() -> ServiceStrategy {
        ServiceStrategy::new(
            Arc::new(IpAllocator::new("10.0.0.0/24").unwrap()),
            Arc::new(PortAllocator::parse("30000-32767").unwrap()),
        )
    }

    fn create(s: &ServiceStrategy, v: Value, uid: &str) -> (Value, Vec<Cause>) {
        let mut v =
            generic_server::registry::typed::decode_as::<k8s_openapi::api::core::v1::Service>(v).unwrap().object;
        meta::set_meta(&mut v, "uid", json!(uid));
        // As the Store runs them.
        s.default(&mut v);
        s.prepare_for_create(&mut v);
        s.default(&mut v);
        let causes = s.validate(&v);
        if causes.is_empty() {
            s.after_create(&v);
        }
        (v, causes)
    }

    fn svc(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}})
    }

    #[test]
    fn defaults_and_allocation() {
        let s = strategy();
        let (v, causes) = create(&s, svc("web"), "u1");
        assert!(causes.is_empty(), "{causes:?}");
        let spec = &v["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["ports"][0], json!({"port": 80, "protocol": "TCP", "targetPort": 80}));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(v["status"], json!({"loadBalancer": {}}));
        let ip = spec["clusterIP"].as_str().unwrap();
        assert_eq!(spec["clusterIPs"], json!([ip]));
        assert_ne!(ip, "10.0.0.1");
        assert!(s.ip_allocator().is_allocated(ip.parse().unwrap()));
        s.after_delete(&v);
        assert!(!s.ip_allocator().is_allocated(ip.parse().unwrap()));
    }

    #[test]
    fn requested_ip_conflicts_and_range() {
        let s = strategy();
        let mut a = svc("a");
        a["spec"]["clusterIP"] = json!("10.0.0.10");
        let (_, causes) = create(&s, a.clone(), "u1");
        assert!(causes.is_empty());
        let mut b = svc("b");
        b["spec"]["clusterIP"] = json!("10.0.0.10");
        let (_, causes) = create(&s, b, "u2");
        assert_eq!(
            causes[0].full_message(),
            "spec.clusterIPs: Invalid value: []string{\"10.0.0.10\"}: failed to allocate IP 10.0.0.10: provided IP is already allocated"
        );
        let mut c = svc("c");
        c["spec"]["clusterIP"] = json!("192.168.1.1");
        let (_, causes) = create(&s, c, "u3");
        assert!(
            causes[0].message.ends_with(
                "the provided IP (192.168.1.1) is not in the valid range. The range of valid IPs is 10.0.0.0/24"
            ),
            "{causes:?}"
        );
        let mut h = svc("h");
        h["spec"]["clusterIP"] = json!("None");
        let (v, causes) = create(&s, h, "u4");
        assert!(causes.is_empty());
        assert_eq!(v["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(s.table_row(&v)[2], "None");
    }

    #[test]
    fn node_ports_and_table() {
        let s = strategy();
        let mut n = svc("np");
        n["spec"]["type"] = json!("NodePort");
        n["spec"]["ports"] = json!([{"name": "http", "port": 80, "nodePort": 30080}, {"name": "https", "port": 443, "targetPort": "https"}]);
        let (v, causes) = create(&s, n, "u1");
        assert!(causes.is_empty(), "{causes:?}");
        assert_eq!(v["spec"]["externalTrafficPolicy"], "Cluster");
        let np2 = v["spec"]["ports"][1]["nodePort"].as_i64().unwrap();
        assert!((30000..=32767).contains(&np2));
        let row = s.table_row(&v);
        assert_eq!(row[1], "NodePort");
        assert_eq!(row[3], "<none>");
        assert_eq!(row[4], json!(format!("80:30080/TCP,443:{np2}/TCP")));
        assert_eq!(row[6], "app=np");
        let mut m = svc("m");
        m["spec"]["type"] = json!("NodePort");
        m["spec"]["ports"][0]["nodePort"] = json!(30080);
        let (_, causes) = create(&s, m, "u2");
        assert_eq!(
            causes[0].full_message(),
            "spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
        let mut lb = svc("lb");
        lb["spec"]["type"] = json!("LoadBalancer");
        let (v, _) = create(&s, lb, "u3");
        assert_eq!(s.table_row(&v)[3], "<pending>");
        assert_eq!(v["spec"]["allocateLoadBalancerNodePorts"], true);
    }

    #[test]
    fn validation_causes() {
        let s = strategy();
        let bad = json!({"metadata": {"name": "1bad", "namespace": "default"},
            "spec": {"type": "Weird", "ports": [{"port": 0, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]}});
        // The name is checked by the Store through name_rule, as for every resource.
        assert!(s.name_rule().problem("1bad").is_some_and(|m| m.starts_with("a DNS-1035 label")));
        let msgs: Vec<String> = s.validate_spec(&bad).iter().map(Cause::full_message).collect();
        assert!(msgs.contains(&"spec.type: Unsupported value: \"Weird\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".to_string()), "{msgs:?}");
        assert!(msgs.contains(&"spec.ports[0].name: Required value".to_string()), "{msgs:?}");
        assert!(
            msgs.contains(&"spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".to_string()),
            "{msgs:?}"
        );
        let no_ports = json!({"metadata": {"name": "x"}, "spec": {"type": "ClusterIP"}});
        assert_eq!(s.validate_spec(&no_ports)[0].full_message(), "spec.ports: Required value");
    }

    #[test]
    fn cluster_ip_is_immutable_and_kept() {
        let s = strategy();
        let (old, _) = create(&s, svc("web"), "u1");
        let mut new = svc("web");
        meta::set_meta(&mut new, "uid", json!("u1"));
        s.prepare_for_update(&mut new, &old);
        s.default(&mut new);
        assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
        assert!(s.validate_update(&new, &old).is_empty(), "{:?}", s.validate_update(&new, &old));
        let mut changed = old.clone();
        changed["spec"]["clusterIP"] = json!("10.0.0.99");
        changed["spec"]["clusterIPs"] = json!(["10.0.0.99"]);
        let causes = s.validate_update(&changed, &old);
        assert_eq!(
            causes[0].full_message(),
            "spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.99\"}: may not change once set"
        );
    }

    #[test]
    fn seeding_learns_stored_allocations() {
        let s = strategy();
        let stored = json!({"metadata": {"name": "k", "uid": "k1"}, "spec": {"clusterIPs": ["10.0.0.1"], "ports": [{"port": 1, "nodePort": 30001}]}});
        s.seed(&[stored]);
        assert!(s.ip_allocator().is_allocated("10.0.0.1".parse().unwrap()));
        assert!(s.port_allocator().is_allocated(30001));
        assert_eq!(
            s.field_labels(&json!({"spec": {"clusterIP": "10.0.0.1", "type": "ClusterIP"}})),
            vec![("spec.clusterIP", "10.0.0.1".to_string()), ("spec.type", "ClusterIP".to_string())]
        );
    }
}
