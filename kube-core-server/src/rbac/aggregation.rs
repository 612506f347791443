//! Upstream's ClusterRole aggregation controller (pkg/controller/
//! clusterroleaggregation), run in the server as the controller manager
//! would: a ClusterRole with `aggregationRule.clusterRoleSelectors` has its
//! `rules` set to those of every other ClusterRole any selector matches, in
//! upstream's order (selector by selector, matching roles by name, each
//! role's rules in order, a rule equal to an earlier one left out), kept
//! current as roles come, change and go. Written by server-side apply as
//! `clusterrole-aggregation-controller`, as upstream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use generic_server::informer::Informer;
use generic_server::meta;
use generic_server::registry::{Store, WriteOptions};
use generic_server::selectors::LabelSelector;
use generic_server::status::StatusError;

use super::rules::{rules_of, PolicyRule};

const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// How long to wait before another pass after a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The selectors of an aggregated role; None for a plain one.
fn selectors(role: &Value) -> Option<Vec<LabelSelector>> {
    let rule = role.get("aggregationRule").filter(|r| !r.is_null())?;
    let list = rule.get("clusterRoleSelectors").and_then(Value::as_array).cloned().unwrap_or_default();
    Some(list.iter().map(LabelSelector::from_object).collect())
}

/// The rules `role` aggregates from `all` (every ClusterRole), or None when
/// it is not an aggregated role.
pub fn aggregated_rules(role: &Value, all: &[&Value]) -> Option<Vec<Value>> {
    let selectors = selectors(role)?;
    let name = meta::name(role);
    let mut rules: Vec<Value> = Vec::new();
    let mut seen: Vec<PolicyRule> = Vec::new();
    for selector in selectors {
        let mut matching: Vec<&Value> =
            all.iter().copied().filter(|r| meta::name(r) != name && selector.matches(&meta::labels(r))).collect();
        matching.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
        for other in matching {
            for rule in other.get("rules").and_then(Value::as_array).into_iter().flatten() {
                let parsed = PolicyRule::from_json(rule);
                if !seen.contains(&parsed) {
                    seen.push(parsed);
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

/// One pass over every aggregated role, by name; a role written in this
/// pass is seen with its new rules by the roles after it (admin after edit).
async fn sync_all(informer: &Informer, store: &Store) -> Result<(), StatusError> {
    let mut roles: HashMap<String, Value> =
        informer.list().into_iter().map(|r| (meta::name(&r).to_string(), r)).collect();
    let mut names: Vec<String> = roles.iter().filter(|(_, r)| selectors(r).is_some()).map(|(n, _)| n.clone()).collect();
    names.sort();
    for name in names {
        let all: Vec<&Value> = roles.values().collect();
        let Some(role) = roles.get(&name) else { continue };
        let Some(rules) = aggregated_rules(role, &all) else { continue };
        let wanted: Vec<PolicyRule> = rules.iter().map(PolicyRule::from_json).collect();
        if wanted == rules_of(role) {
            continue;
        }
        let mut config =
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}});
        // Upstream's apply configuration leaves an empty list out, which
        // drops the rules this manager owned.
        if !rules.is_empty() {
            config["rules"] = json!(rules);
        }
        let written = store.apply("", &name, None, config, FIELD_MANAGER, true, &WriteOptions::default()).await?;
        tracing::debug!(clusterrole = %name, rules = rules.len(), "aggregated clusterrole rules");
        roles.insert(name, written.object);
    }
    Ok(())
}

/// Starts the controller on its own informer over the ClusterRole Store.
pub fn spawn(cluster_roles: Arc<Store>) {
    let informer = Informer::new(cluster_roles.clone());
    let (tx, mut rx) = unbounded_channel::<()>();
    let changed = tx.clone();
    informer.spawn(move |_| {
        let _ = changed.send(());
    });
    tokio::spawn(async move {
        informer.wait_synced().await;
        while rx.recv().await.is_some() {
            // Every change so far is in the cache: one pass answers them all.
            while rx.try_recv().is_ok() {}
            if let Err(e) = sync_all(&informer, &cluster_roles).await {
                tracing::warn!(error = %e, "clusterrole aggregation failed; retrying");
                let retry = tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_AFTER).await;
                    let _ = retry.send(());
                });
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    #[test]
    fn rules_are_unioned_in_upstream_order() {
        let get = |r: &str| json!({"apiGroups": [""], "resources": [r], "verbs": ["get"]});
        let agg = json!({"metadata": {"name": "agg", "labels": {"x": "true"}}, "aggregationRule": {"clusterRoleSelectors": [
            {"matchLabels": {"a": "true"}}, {"matchLabels": {"b": "true"}}]}});
        let z = role("z", json!({"a": "true"}), json!([get("pods"), get("secrets")]));
        let y = role("y", json!({"a": "true", "b": "true"}), json!([get("secrets"), get("nodes")]));
        let w = role("w", json!({"b": "true"}), json!([get("events")]));
        let other = role("o", json!({}), json!([get("other")]));
        // The role itself matches its own selector when labelled so; it is skipped.
        let selfish = json!({"metadata": {"name": "agg", "labels": {"a": "true"}}, "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "true"}}]}, "rules": [get("mine")]});
        let all = [&agg, &z, &y, &w, &other];
        assert_eq!(aggregated_rules(&agg, &all), Some(vec![get("secrets"), get("nodes"), get("pods"), get("events")]));
        assert_eq!(aggregated_rules(&selfish, &[&selfish, &z]), Some(vec![get("pods"), get("secrets")]));
        assert_eq!(aggregated_rules(&z, &all), None);
    }
}
