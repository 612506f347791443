//! Quota evaluators (upstream pkg/quota/v1/evaluator/core and
//! apiserver/pkg/quota/v1/generic): for one resource, which quota resource
//! names it accounts for, the usage one object is charged, which quota
//! scopes it falls in, and the constraints a pod must meet under a quota.

use std::collections::BTreeSet;

use serde_json::Value;

use generic_server::registry::Operation;

use crate::admission::resources::{add, list_at, pod_totals, Quantity, ResourceList};
use crate::registry::{arr_at, str_at};

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The resources a pod's containers must state when a quota tracks them
/// (upstream's validationSet).
const MUST_STATE: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];
const SERVICE_RESOURCES: &[&str] = &["count/services", "services", "services.nodeports", "services.loadbalancers"];
const CLAIM_RESOURCES: &[&str] = &["count/persistentvolumeclaims", "persistentvolumeclaims", "requests.storage"];
/// The core resources with evaluators of their own (upstream's
/// NewEvaluators), whose deletions the controller watches.
pub const CORE_EVALUATED: &[&str] = &[
    "pods",
    "services",
    "persistentvolumeclaims",
    "configmaps",
    "secrets",
    "replicationcontrollers",
    "resourcequotas",
];

/// Core resources counted under a legacy name besides `count/<resource>`.
const LEGACY_COUNTED: &[&str] = &["configmaps", "secrets", "replicationcontrollers", "resourcequotas"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Pods,
    Services,
    Claims,
    /// Object count only: `count/<resource>[.<group>]`, and the legacy name
    /// for the core resources that have one.
    Count,
}

/// The evaluator of one group and resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluator {
    pub group: String,
    pub resource: String,
    pub kind: Kind,
}

/// A scope a quota restricts itself to (spec.scopes as Exists, and
/// spec.scopeSelector's expressions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub name: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// The scopes of a quota.
pub fn scopes(quota: &Value) -> Vec<Scope> {
    let exists = |s: &Value| Scope { name: s.as_str().unwrap_or("").into(), operator: "Exists".into(), values: vec![] };
    let mut out: Vec<Scope> = arr_at(quota, "/spec/scopes").iter().map(exists).collect();
    for e in arr_at(quota, "/spec/scopeSelector/matchExpressions") {
        out.push(Scope {
            name: str_at(e, "/scopeName").into(),
            operator: str_at(e, "/operator").into(),
            values: arr_at(e, "/values").iter().filter_map(Value::as_str).map(String::from).collect(),
        });
    }
    out
}

/// The name an object count is tracked under (upstream's
/// ObjectCountQuotaResourceNameFor).
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// The group and resource a `count/` name counts.
pub fn counted(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((resource, group)) => (group.to_string(), resource.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// A quota name for an extended resource's requests (upstream's
/// isExtendedResourceNameForQuota).
fn extended_request(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|r| {
        r.contains('/')
            && !r.starts_with("kubernetes.io/")
            && !r.contains(".kubernetes.io/")
            && !r.starts_with("requests.")
    })
}

fn one() -> Quantity {
    Quantity::from_int(1)
}

impl Evaluator {
    /// The evaluator upstream registers for a group and resource, or the
    /// object counter it creates on demand.
    pub fn of(group: &str, resource: &str) -> Evaluator {
        let kind = match (group, resource) {
            ("", "pods") => Kind::Pods,
            ("", "services") => Kind::Services,
            ("", "persistentvolumeclaims") => Kind::Claims,
            _ => Kind::Count,
        };
        Evaluator { group: group.into(), resource: resource.into(), kind }
    }

    /// Whether the operation can change usage (upstream's Handles).
    pub fn handles(&self, op: Operation) -> bool {
        match self.kind {
            Kind::Pods | Kind::Count => op == Operation::Create,
            Kind::Services | Kind::Claims => matches!(op, Operation::Create | Operation::Update),
        }
    }

    fn matches_name(&self, name: &str) -> bool {
        if name == count_name(&self.group, &self.resource) {
            return true;
        }
        match self.kind {
            Kind::Pods => {
                POD_RESOURCES.contains(&name)
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || extended_request(name)
            }
            Kind::Services => SERVICE_RESOURCES.contains(&name),
            Kind::Claims => {
                CLAIM_RESOURCES.contains(&name)
                    || name.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(class, res)| {
                        !class.is_empty() && (res == "requests.storage" || res == "persistentvolumeclaims")
                    })
            }
            Kind::Count => self.group.is_empty() && LEGACY_COUNTED.contains(&name) && name == self.resource,
        }
    }

    /// The names among `names` this evaluator accounts for.
    pub fn matching(&self, names: &[String]) -> Vec<String> {
        names.iter().filter(|n| self.matches_name(n)).cloned().collect()
    }

    /// Whether `obj` falls in every scope (upstream's Matches with the
    /// evaluator's scope function: only pods have scopes).
    pub fn in_scopes(&self, scopes: &[Scope], obj: &Value) -> bool {
        scopes.iter().all(|s| self.kind == Kind::Pods && pod_in_scope(s, obj))
    }

    /// What one object is charged (upstream's Usage).
    pub fn usage(&self, obj: &Value) -> ResourceList {
        let mut u = ResourceList::from([(count_name(&self.group, &self.resource), one())]);
        match self.kind {
            Kind::Pods => {
                // Pods that have finished hold no compute resources.
                if !matches!(str_at(obj, "/status/phase"), "Failed" | "Succeeded") {
                    let spec = obj.get("spec").unwrap_or(&Value::Null);
                    add(&mut u, &compute_usage(&pod_totals(spec, "requests", true), &pod_totals(spec, "limits", true)));
                }
            }
            Kind::Services => service_usage(obj, &mut u),
            Kind::Claims => claim_usage(obj, &mut u),
            Kind::Count => {
                if self.group.is_empty() && LEGACY_COUNTED.contains(&self.resource.as_str()) {
                    u.insert(self.resource.clone(), one());
                }
            }
        }
        u
    }

    /// Upstream's Constraints: under a quota that tracks cpu or memory, every
    /// container must state it; the message names what each one lacks.
    pub fn constraints(&self, required: &[String], obj: &Value) -> Result<(), String> {
        if self.kind != Kind::Pods {
            return Ok(());
        }
        let required: BTreeSet<&str> = required.iter().map(String::as_str).filter(|r| MUST_STATE.contains(r)).collect();
        let mut missing: std::collections::BTreeMap<&str, BTreeSet<String>> = Default::default();
        for c in arr_at(obj, "/spec/containers").iter().chain(arr_at(obj, "/spec/initContainers")) {
            let stated = compute_usage(&list_at(c, "/resources/requests"), &list_at(c, "/resources/limits"));
            for r in required.iter().filter(|r| !stated.contains_key(**r)) {
                missing.entry(r).or_default().insert(str_at(c, "/name").to_string());
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let parts: Vec<String> = missing
            .iter()
            .map(|(r, names)| format!("{r} for: {}", names.iter().cloned().collect::<Vec<_>>().join(",")))
            .collect();
        Err(format!("must specify {}", parts.join("; ")))
    }
}

/// Upstream's podComputeUsageHelper: what requests and limits charge.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut u = ResourceList::from([("pods".to_string(), one())]);
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(res) {
            u.insert(res.into(), q.clone());
            u.insert(format!("requests.{res}"), q.clone());
        }
        if let Some(q) = limits.get(res) {
            u.insert(format!("limits.{res}"), q.clone());
        }
    }
    for (res, q) in requests {
        if res.starts_with("hugepages-") {
            u.insert(res.clone(), q.clone());
        }
        if res.starts_with("hugepages-") || extended_request(&format!("requests.{res}")) {
            u.insert(format!("requests.{res}"), q.clone());
        }
    }
    u
}

fn service_usage(svc: &Value, u: &mut ResourceList) {
    let ports = arr_at(svc, "/spec/ports");
    let count = |n: usize| Quantity::from_int(i64::try_from(n).unwrap_or(i64::MAX));
    u.insert("services".into(), one());
    let (mut lbs, mut node_ports) = (count(0), count(0));
    match str_at(svc, "/spec/type") {
        "NodePort" => node_ports = count(ports.len()),
        "LoadBalancer" => {
            lbs = one();
            // Without node port allocation only the ports that name one count.
            node_ports = if svc.pointer("/spec/allocateLoadBalancerNodePorts") == Some(&Value::Bool(false)) {
                count(ports.iter().filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0).count())
            } else {
                count(ports.len())
            };
        }
        _ => {}
    }
    u.insert("services.loadbalancers".into(), lbs);
    u.insert("services.nodeports".into(), node_ports);
}

fn claim_usage(claim: &Value, u: &mut ResourceList) {
    u.insert("persistentvolumeclaims".into(), one());
    let class = match str_at(claim, "/spec/storageClassName") {
        "" => str_at(claim, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class").to_string(),
        c => c.to_string(),
    };
    if !class.is_empty() {
        u.insert(format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"), one());
    }
    // A claim is charged the larger of what it asks and what was allocated
    // (upstream's RecoverVolumeExpansionFailure, on by default).
    let asked = list_at(claim, "/spec/resources/requests").remove("storage");
    let allocated = list_at(claim, "/status/allocatedResources").remove("storage");
    let storage = match (asked, allocated) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let Some(q) = storage {
        if !class.is_empty() {
            u.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), q.clone());
        }
        u.insert("requests.storage".into(), q);
    }
}

/// Upstream's podMatchesScopeFunc.
fn pod_in_scope(scope: &Scope, pod: &Value) -> bool {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let terminating = spec.get("activeDeadlineSeconds").and_then(Value::as_i64).is_some_and(|s| s >= 0);
    let best_effort = crate::registry::podspec::qos_class(spec) == "BestEffort";
    match scope.name.as_str() {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            // Upstream matches a label selector against {PriorityClass: name},
            // so the key exists even for a pod with no class.
            let class = str_at(spec, "/priorityClassName");
            match scope.operator.as_str() {
                "In" => scope.values.iter().any(|v| v == class),
                "NotIn" => !scope.values.iter().any(|v| v == class),
                "Exists" => true,
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
            ["requiredDuringSchedulingIgnoredDuringExecution", "preferredDuringSchedulingIgnoredDuringExecution"]
                .iter()
                .flat_map(|when| arr_at(spec, &format!("/affinity/{kind}/{when}")))
                .map(|t| t.get("podAffinityTerm").unwrap_or(t))
                .any(|t| {
                    !arr_at(t, "/namespaces").is_empty() || t.get("namespaceSelector").is_some_and(|s| !s.is_null())
                })
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::resources::pretty;
    use serde_json::json;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pods_charge_requests_limits_and_counts() {
        let e = Evaluator::of("", "pods");
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi", "example.com/gpu": "1"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}}
        ]}});
        assert_eq!(
            pretty(&e.usage(&pod)),
            "count/pods=1,cpu=500m,limits.cpu=500m,memory=64Mi,pods=1,requests.cpu=500m,requests.example.com/gpu=1,requests.memory=64Mi"
        );
        let done = json!({"spec": pod["spec"], "status": {"phase": "Succeeded"}});
        assert_eq!(pretty(&e.usage(&done)), "count/pods=1");
        assert_eq!(
            e.matching(&names(&[
                "pods",
                "requests.storage",
                "limits.memory",
                "count/pods",
                "requests.example.com/gpu",
                "secrets"
            ])),
            names(&["pods", "limits.memory", "count/pods", "requests.example.com/gpu"])
        );
        assert_eq!(
            e.constraints(&names(&["pods", "limits.cpu", "requests.cpu", "limits.memory"]), &pod),
            Err("must specify limits.cpu for: b; limits.memory for: a,b".to_string())
        );
        assert_eq!(e.constraints(&names(&["pods", "requests.cpu"]), &pod), Ok(()));
    }

    #[test]
    fn scopes_select_pods() {
        let e = Evaluator::of("", "pods");
        let quota = json!({"spec": {"scopes": ["BestEffort"], "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let s = scopes(&quota);
        let pod = |class: &str, cpu: Option<&str>| {
            let res = cpu.map_or(json!({}), |c| json!({"requests": {"cpu": c}}));
            json!({"spec": {"priorityClassName": class, "containers": [{"name": "c", "resources": res}]}})
        };
        assert!(e.in_scopes(&s, &pod("high", None)));
        assert!(!e.in_scopes(&s, &pod("low", None)));
        assert!(!e.in_scopes(&s, &pod("high", Some("1"))));
        assert!(!Evaluator::of("", "configmaps").in_scopes(&s, &json!({})));
        assert!(Evaluator::of("", "configmaps").in_scopes(&[], &json!({})));
    }

    #[test]
    fn services_claims_and_counts() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443, "nodePort": 30001}], "allocateLoadBalancerNodePorts": false}});
        assert_eq!(
            pretty(&Evaluator::of("", "services").usage(&svc)),
            "count/services=1,services=1,services.loadbalancers=1,services.nodeports=1"
        );
        let claim = json!({"spec": {"storageClassName": "fast", "resources": {"requests": {"storage": "1Gi"}}}, "status": {"allocatedResources": {"storage": "2Gi"}}});
        assert_eq!(
            pretty(&Evaluator::of("", "persistentvolumeclaims").usage(&claim)),
            "count/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/persistentvolumeclaims=1,fast.storageclass.storage.k8s.io/requests.storage=2Gi,persistentvolumeclaims=1,requests.storage=2Gi"
        );
        let cm = Evaluator::of("", "configmaps");
        assert_eq!(pretty(&cm.usage(&json!({}))), "configmaps=1,count/configmaps=1");
        assert_eq!(
            cm.matching(&names(&["configmaps", "count/configmaps", "secrets"])),
            names(&["configmaps", "count/configmaps"])
        );
        let deploy = Evaluator::of("apps", "deployments");
        assert_eq!(
            deploy.matching(&names(&["count/deployments.apps", "deployments"])),
            names(&["count/deployments.apps"])
        );
        assert_eq!(counted("count/deployments.apps"), Some(("apps".into(), "deployments".into())));
        assert!(!deploy.handles(Operation::Update) && Evaluator::of("", "services").handles(Operation::Update));
    }
}
