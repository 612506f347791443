//! API Priority and Fairness configuration a cluster keeps (upstream's
//! k8s.io/apiserver pkg/apis/flowcontrol/bootstrap and the APF bootstrap
//! configuration ensurer, pkg/registry/flowcontrol/ensurer): the mandatory
//! `exempt` and `catch-all` objects and the suggested ones, created when
//! missing, at start and whenever one is deleted; a mandatory object always
//! gets its spec put back, a suggested one when its
//! `apf.kubernetes.io/autoupdate-spec` annotation is true (or, lacking it,
//! when nobody changed it since it was created); an object with the
//! annotation true that is no bootstrap object is removed. Classifying
//! requests by them is another matter (not done here).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use generic_server::informer::{Change, Informer};
use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
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

/// The mandatory objects (of either kind): operators' changes to them are
/// put back whatever their annotation says.
const MANDATORY: &[&str] = &["exempt", "catch-all"];

/// How upstream's ensurer records its writes.
fn write_options() -> WriteOptions {
    WriteOptions { field_manager: Some("api-priority-and-fairness-config-producer-v1".into()), ..Default::default() }
}

/// The auto-update annotation as a boolean (Go's strconv.ParseBool).
fn annotation(current: &Value) -> Option<bool> {
    let value = current.pointer("/metadata/annotations").and_then(|a| a.get(AUTO_UPDATE_ANNOTATION))?.as_str()?;
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Whether a suggested object's spec may be put back: the annotation says
/// so, or it is absent (or not a boolean) and nobody changed the object
/// since it was created (generation 1).
fn auto_update(current: &Value) -> bool {
    annotation(current).unwrap_or_else(|| current.pointer("/metadata/generation").and_then(Value::as_i64) == Some(1))
}

/// What upstream's ensure strategy makes of `current`: the object to write,
/// if any. A mandatory object always gets the bootstrap spec; either kind
/// gets the annotation stating whether it is kept up to date.
fn update_of(current: &Value, wanted: &Value) -> Option<Value> {
    let auto = MANDATORY.contains(&meta::name(wanted)) || auto_update(current);
    let fix_annotation = annotation(current) != Some(auto);
    let fix_spec = auto && current.get("spec") != wanted.get("spec");
    if !fix_annotation && !fix_spec {
        return None;
    }
    let mut next = current.clone();
    if fix_spec {
        next["spec"] = wanted["spec"].clone();
    }
    let annotations = meta::metadata_mut(&mut next).entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = annotations.as_object_mut() {
        a.insert(AUTO_UPDATE_ANNOTATION.into(), json!(auto.to_string()));
    }
    Some(next)
}

/// Creates `wanted` when missing (mandatory or suggested, as upstream
/// always recreates); otherwise writes what [`update_of`] asks for.
async fn ensure_one(store: &Store, wanted: &Value) -> Result<(), StatusError> {
    let name = meta::name(wanted).to_string();
    let current = match store.get("", &name).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => {
            return match store.create("", wanted.clone(), &write_options()).await {
                Ok(_) => Ok(()),
                // Another server of the same cluster got there first.
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    if update_of(&current, wanted).is_none() {
        return Ok(());
    }
    store
        .update_with("", &name, None, &write_options(), |cur| {
            let cur = cur.ok_or_else(|| StatusError::not_found(&store.info.group, &store.info.plural, &name))?;
            let mut next = update_of(cur, wanted).unwrap_or_else(|| cur.clone());
            meta::remove_meta(&mut next, "resourceVersion");
            Ok(next)
        })
        .await
        .map(drop)
}

/// Removes an object that is not (or no longer) part of the bootstrap
/// configuration but says it is kept up to date by it (upstream's
/// removeDanglingBootstrapConfiguration).
async fn remove_dangling(store: &Store, name: &str) -> Result<(), StatusError> {
    let current = match store.get("", name).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    if annotation(&current) != Some(true) {
        return Ok(());
    }
    let opts = DeleteOptions { precondition_uid: Some(meta::uid(&current).to_string()), ..Default::default() };
    match store.delete("", name, &opts).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() || e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// One kind's Store and its bootstrap objects.
struct Configuration {
    store: Arc<Store>,
    bootstrap: Vec<Value>,
}

impl Configuration {
    fn wanted(&self, name: &str) -> Option<&Value> {
        self.bootstrap.iter().find(|o| meta::name(o) == name)
    }

    /// Brings the object `name` in line: ensured if it is a bootstrap object,
    /// removed if it is a dangling one.
    async fn sync(&self, name: &str) -> Result<(), StatusError> {
        match self.wanted(name) {
            Some(wanted) => ensure_one(&self.store, wanted).await,
            None => remove_dangling(&self.store, name).await,
        }
    }

    /// Everything at once: the bootstrap objects, then the dangling ones.
    async fn sync_all(&self) -> Result<(), StatusError> {
        for wanted in &self.bootstrap {
            ensure_one(&self.store, wanted).await?;
        }
        let list = self.store.list("", &Default::default()).await?;
        for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
            if self.wanted(meta::name(item)).is_none() && annotation(item) == Some(true) {
                remove_dangling(&self.store, meta::name(item)).await?;
            }
        }
        Ok(())
    }
}

/// How long a sync that failed waits before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Ensures the bootstrap configuration now (priority levels first, which the
/// flow schemas name), then keeps it, as upstream's config producer does:
/// a deleted bootstrap object is recreated, a changed one updated as its
/// strategy says, and an annotated object that is no bootstrap object
/// removed, on every change the informers of both kinds report.
pub async fn ensure_and_follow(schemas: Arc<Store>, levels: Arc<Store>) -> Result<(), StatusError> {
    let kinds = [
        Arc::new(Configuration { store: levels, bootstrap: priority_levels() }),
        Arc::new(Configuration { store: schemas, bootstrap: flow_schemas() }),
    ];
    for kind in &kinds {
        kind.sync_all().await?;
    }
    for kind in kinds {
        let (tx, mut rx) = unbounded_channel::<String>();
        let retry = tx.clone();
        let watched = kind.clone();
        Informer::new(kind.store.clone()).spawn(move |change| {
            let obj = change.object();
            let relevant = match change {
                Change::Deleted(_) => watched.wanted(meta::name(obj)).is_some(),
                Change::Added(_) | Change::Updated { .. } => {
                    watched.wanted(meta::name(obj)).is_some() || annotation(obj) == Some(true)
                }
            };
            if relevant {
                let _ = tx.send(meta::name(obj).to_string());
            }
        });
        tokio::spawn(async move {
            while let Some(name) = rx.recv().await {
                if let Err(e) = kind.sync(&name).await {
                    tracing::warn!(name, resource = %kind.store.info.plural, error = %e, "APF bootstrap sync failed; retrying");
                    let retry = retry.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(RETRY_AFTER).await;
                        let _ = retry.send(name);
                    });
                }
            }
        });
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
    fn mandatory_objects_are_stomped_suggested_ones_follow_their_annotation() {
        let wanted = |name: &str| object("FlowSchema", name, json!({"priorityLevelConfiguration": {"name": name}}));
        let edited = |name: &str, annotation: Option<&str>, generation: i64| {
            let mut o = wanted(name);
            o["spec"]["matchingPrecedence"] = json!(42);
            o["metadata"]["generation"] = json!(generation);
            match annotation {
                Some(a) => o["metadata"]["annotations"][AUTO_UPDATE_ANNOTATION] = json!(a),
                None => o["metadata"]["annotations"] = json!({}),
            }
            o
        };
        // Mandatory: spec and annotation put back even when the annotation says false.
        let fixed = update_of(&edited("exempt", Some("false"), 3), &wanted("exempt")).unwrap();
        assert_eq!(
            (fixed["spec"].clone(), fixed["metadata"]["annotations"].clone()),
            (wanted("exempt")["spec"].clone(), json!({AUTO_UPDATE_ANNOTATION: "true"}))
        );
        // Suggested, annotated false: left alone.
        assert!(update_of(&edited("system-nodes", Some("False"), 3), &wanted("system-nodes")).is_none());
        // Suggested, annotated true (any Go boolean spelling): spec put back, annotation kept.
        let fixed = update_of(&edited("system-nodes", Some("1"), 3), &wanted("system-nodes")).unwrap();
        assert_eq!(fixed["spec"], wanted("system-nodes")["spec"]);
        assert_eq!(fixed["metadata"]["annotations"][AUTO_UPDATE_ANNOTATION], "true");
        // Suggested, unannotated: changed by someone (generation 2) -> only annotated false.
        let kept = update_of(&edited("system-nodes", None, 2), &wanted("system-nodes")).unwrap();
        assert_eq!(kept["spec"]["matchingPrecedence"], 42);
        assert_eq!(kept["metadata"]["annotations"][AUTO_UPDATE_ANNOTATION], "false");
        // Unchanged and annotated: nothing to write.
        assert!(update_of(&wanted("catch-all"), &wanted("catch-all")).is_none());
        assert!(auto_update(&json!({"metadata": {"generation": 1}})));
        assert!(!auto_update(
            &json!({"metadata": {"annotations": {AUTO_UPDATE_ANNOTATION: "maybe"}, "generation": 2}})
        ));
    }
}
