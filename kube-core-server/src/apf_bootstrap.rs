//! API Priority and Fairness configuration a fresh cluster has (upstream's
//! k8s.io/apiserver pkg/apis/flowcontrol/bootstrap and the APF bootstrap
//! configuration ensurer): the mandatory `exempt` and `catch-all` objects and
//! the suggested ones, created when missing; an object whose
//! `apf.kubernetes.io/autoupdate-spec` annotation is "true" (or, lacking the
//! annotation, that nobody changed since it was created) gets its spec put back.
//! Classifying requests by them is another matter (not done here).

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::{Store, WriteOptions};
use generic_server::status::StatusError;

pub const AUTO_UPDATE_ANNOTATION: &str = "apf.kubernetes.io/autoupdate-spec";

const ALL_AUTHENTICATED: &str = "system:authenticated";
const ALL_UNAUTHENTICATED: &str = "system:unauthenticated";
const KCM: &str = "system:kube-controller-manager";
const SCHEDULER: &str = "system:kube-scheduler";
const NODES: &str = "system:nodes";

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "annotations": {AUTO_UPDATE_ANNOTATION: "true"}},
        "spec": spec,
    })
}

fn limited(name: &str, shares: i64, lendable: i64, queues: i64, hand: i64) -> Value {
    object(
        "PriorityLevelConfiguration",
        name,
        json!({"type": "Limited", "limited": {
            "nominalConcurrencyShares": shares,
            "lendablePercent": lendable,
            "limitResponse": {"type": "Queue", "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": 50}},
        }}),
    )
}

/// The priority levels, mandatory first.
pub fn priority_levels() -> Vec<Value> {
    vec![
        object(
            "PriorityLevelConfiguration",
            "exempt",
            json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
        ),
        object(
            "PriorityLevelConfiguration",
            "catch-all",
            json!({"type": "Limited", "limited": {"nominalConcurrencyShares": 5, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}),
        ),
        limited("system", 30, 33, 64, 6),
        limited("node-high", 40, 25, 64, 6),
        limited("leader-election", 10, 0, 16, 4),
        limited("workload-high", 40, 50, 128, 6),
        limited("workload-low", 100, 90, 128, 6),
        limited("global-default", 20, 50, 128, 6),
    ]
}

fn groups(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| json!({"kind": "Group", "group": {"name": n}})).collect()
}

fn users(names: &[&str]) -> Vec<Value> {
    names.iter().map(|n| json!({"kind": "User", "user": {"name": n}})).collect()
}

fn kube_system_accounts(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": "kube-system"}}))
        .collect()
}

fn resource_rule(verbs: &[&str], api_groups: &[&str], resources: &[&str], namespaces: &[&str], cluster: bool) -> Value {
    let mut rule = json!({"verbs": verbs, "apiGroups": api_groups, "resources": resources, "namespaces": namespaces});
    if cluster {
        rule["clusterScope"] = json!(true);
    }
    rule
}

/// Every verb on everything, resource or not.
fn everything(subjects: Vec<Value>) -> Value {
    json!({
        "subjects": subjects,
        "resourceRules": [resource_rule(&["*"], &["*"], &["*"], &["*"], true)],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    })
}

fn flow_schema(name: &str, level: &str, precedence: i64, method: Option<&str>, rule: Value) -> Value {
    let mut spec = json!({
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": [rule],
    });
    if let Some(m) = method {
        spec["distinguisherMethod"] = json!({"type": m});
    }
    object("FlowSchema", name, spec)
}

/// The flow schemas, mandatory first.
pub fn flow_schemas() -> Vec<Value> {
    const GCU: &[&str] = &["get", "create", "update"];
    let leader_rules = |lock_namespaces: &[&str]| {
        json!([
            resource_rule(GCU, &[""], &["endpoints", "configmaps"], lock_namespaces, false),
            resource_rule(GCU, &["coordination.k8s.io"], &["leases"], &["*"], false),
        ])
    };
    let by_user = Some("ByUser");
    let by_namespace = Some("ByNamespace");
    let everyone = || groups(&[ALL_UNAUTHENTICATED, ALL_AUTHENTICATED]);
    let mut system_leaders = users(&[KCM, SCHEDULER]);
    system_leaders.extend(kube_system_accounts(&["*"]));
    let mut endpoint_writers = users(&[KCM]);
    endpoint_writers.extend(kube_system_accounts(&["endpoint-controller", "endpointslicemirroring-controller"]));
    vec![
        flow_schema("exempt", "exempt", 1, None, everything(groups(&["system:masters"]))),
        flow_schema("catch-all", "catch-all", 10000, by_user, everything(everyone())),
        flow_schema("system-nodes", "system", 500, by_user, everything(groups(&[NODES]))),
        flow_schema(
            "system-node-high",
            "node-high",
            400,
            by_user,
            json!({"subjects": groups(&[NODES]), "resourceRules": [
                resource_rule(&["*"], &[""], &["nodes", "nodes/status"], &["*"], true),
                resource_rule(&["*"], &["coordination.k8s.io"], &["leases"], &["*"], false),
            ]}),
        ),
        flow_schema(
            "probes",
            "exempt",
            2,
            None,
            json!({"subjects": everyone(), "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}]}),
        ),
        flow_schema(
            "system-leader-election",
            "leader-election",
            100,
            by_user,
            json!({"subjects": system_leaders, "resourceRules": leader_rules(&["kube-system"])}),
        ),
        flow_schema(
            "workload-leader-election",
            "leader-election",
            200,
            by_user,
            json!({"subjects": kube_system_accounts(&["*"]), "resourceRules": leader_rules(&["*"])}),
        ),
        flow_schema(
            "endpoint-controller",
            "workload-high",
            150,
            by_user,
            json!({"subjects": endpoint_writers, "resourceRules": [resource_rule(GCU, &[""], &["endpoints"], &["*"], false)]}),
        ),
        flow_schema("kube-controller-manager", "workload-high", 800, by_namespace, everything(users(&[KCM]))),
        flow_schema("kube-scheduler", "workload-high", 800, by_namespace, everything(users(&[SCHEDULER]))),
        flow_schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            by_namespace,
            everything(kube_system_accounts(&["*"])),
        ),
        flow_schema("service-accounts", "workload-low", 9000, by_user, everything(groups(&["system:serviceaccounts"]))),
        flow_schema("global-default", "global-default", 9900, by_user, everything(everyone())),
    ]
}

/// Whether the ensurer may put the spec back: the annotation says so, or it
/// is absent and the object was never changed (generation 1).
fn auto_update(current: &Value) -> bool {
    let annotation = current.pointer("/metadata/annotations").and_then(|a| a.get(AUTO_UPDATE_ANNOTATION));
    match annotation.and_then(Value::as_str) {
        Some(v) => v == "true",
        None => current.pointer("/metadata/generation").and_then(Value::as_i64) == Some(1),
    }
}

/// Creates `wanted` when missing; otherwise puts its spec (and the
/// annotation) back when the stored object allows it.
async fn ensure_one(store: &Store, wanted: Value) -> Result<(), StatusError> {
    let name = meta::name(&wanted).to_string();
    let current = match store.get("", &name).await {
        Ok(c) => c,
        Err(e) if e.code == 404 => {
            return match store.create("", wanted, &WriteOptions::default()).await {
                Ok(_) => Ok(()),
                // Another server of the same cluster got there first.
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if !auto_update(&current) || current.get("spec") == wanted.get("spec") {
        return Ok(());
    }
    store
        .update_with("", &name, None, &WriteOptions::default(), |cur| {
            let mut next =
                cur.cloned().ok_or_else(|| StatusError::not_found(&store.info.group, &store.info.plural, &name))?;
            next["spec"] = wanted["spec"].clone();
            let annotations = meta::metadata_mut(&mut next).entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(AUTO_UPDATE_ANNOTATION.into(), json!("true"));
            }
            meta::remove_meta(&mut next, "resourceVersion");
            Ok(next)
        })
        .await
        .map(|_| ())
}

/// Ensures every bootstrap priority level, then every flow schema.
pub async fn ensure(flow_schemas_store: &Store, priority_levels_store: &Store) -> Result<(), StatusError> {
    for pl in priority_levels() {
        ensure_one(priority_levels_store, pl).await?;
    }
    for fs in flow_schemas() {
        ensure_one(flow_schemas_store, fs).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::flowschema::FlowSchemaStrategy;
    use crate::registry::prioritylevelconfiguration::PriorityLevelStrategy;
    use generic_server::registry::Strategy;

    /// Upstream checks that defaulting changes nothing in these objects and
    /// that they are valid; so do we.
    #[test]
    fn bootstrap_objects_are_valid_and_already_defaulted() {
        for (objects, strategy) in [
            (priority_levels(), &PriorityLevelStrategy as &dyn Strategy),
            (flow_schemas(), &FlowSchemaStrategy as &dyn Strategy),
        ] {
            for obj in objects {
                let mut defaulted = obj.clone();
                strategy.default(&mut defaulted);
                assert_eq!(defaulted, obj);
                assert!(strategy.validate(&obj).is_empty(), "{}: {:?}", meta::name(&obj), strategy.validate(&obj));
            }
        }
        assert_eq!(flow_schemas().len(), 13);
        assert_eq!(priority_levels().len(), 8);
    }

    #[test]
    fn only_unchanged_or_annotated_objects_are_updated() {
        assert!(auto_update(&json!({"metadata": {"annotations": {AUTO_UPDATE_ANNOTATION: "true"}, "generation": 4}})));
        assert!(!auto_update(
            &json!({"metadata": {"annotations": {AUTO_UPDATE_ANNOTATION: "false"}, "generation": 1}})
        ));
        assert!(auto_update(&json!({"metadata": {"generation": 1}})));
        assert!(!auto_update(&json!({"metadata": {"generation": 2}})));
    }
}
