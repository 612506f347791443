//! pods/eviction (upstream pkg/registry/core/pod/storage/eviction.go): a
//! policy/v1 Eviction deletes the pod unless the one PodDisruptionBudget
//! selecting it allows no disruption. Pods that are not running (Pending,
//! Succeeded, Failed) or already terminating go without a budget check; an
//! unready pod goes when the budget is healthy anyway (or says AlwaysAllow);
//! otherwise the budget's `status.disruptionsAllowed` decides and is
//! decremented, recording the pod in `status.disruptedPods`, as upstream.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{
    ListOptions, Store, Subresource, SubresourceCall, SubresourceDiscovery, SubresourceHandler, SubresourceReply,
    WriteOptions,
};
use generic_server::status::StatusError;

use super::peers::Peers;
use super::workload::{at, int, selects};
use super::{arr_at, str_at};

pub struct EvictionHandler {
    pub peers: Arc<Peers>,
}

/// Upstream keeps at most this many unconfirmed evictions per budget.
const MAX_DISRUPTED_PODS: usize = 2000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(cause: String, retry_after: u64) -> StatusError {
    let mut e = StatusError::new(429, generic_server::status::Reason::TooManyRequests, VIOLATION);
    let mut details = json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]});
    if retry_after > 0 {
        details["retryAfterSeconds"] = json!(retry_after);
        e.retry_after = Some(retry_after);
    }
    e.details = Some(Box::new(details));
    e
}

fn still_processing(budget: &str) -> StatusError {
    too_many_requests(format!("The disruption budget {budget} is still being processed by the server."), 10)
}

fn phase(pod: &Value) -> &str {
    str_at(pod, "/status/phase")
}

fn terminating(pod: &Value) -> bool {
    !meta::meta_str(pod, "deletionTimestamp").is_empty()
}

/// Pods whose eviction causes no further disruption.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || terminating(pod)
}

fn is_ready(pod: &Value) -> bool {
    arr_at(pod, "/status/conditions").iter().any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
}

/// The Eviction's deleteOptions, dry run too when the request says so.
fn delete_options(eviction: &Value, request_dry_run: bool) -> Result<DeleteOptions, StatusError> {
    let body = eviction.get("deleteOptions").filter(|o| o.is_object()).unwrap_or(&Value::Null);
    let mut opts = DeleteOptions::from_body(body)?;
    opts.dry_run |= request_dry_run;
    Ok(opts)
}

fn success() -> SubresourceReply {
    SubresourceReply {
        code: 201,
        object: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    }
}

/// Upstream's checkAndDecrement on a budget's current state: refuses the
/// eviction or returns the budget with one disruption fewer allowed.
fn decrement(pdb: &Value, pod_name: &str) -> Result<Value, StatusError> {
    let name = meta::name(pdb);
    let generation = pdb.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
    if int(pdb, "status.observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = int(pdb, "status.disruptionsAllowed");
    if allowed < 0 {
        return Err(StatusError::forbidden(
            "policy",
            "poddisruptionbudget",
            name,
            "pdb disruptions allowed is negative",
        ));
    }
    if at(pdb, "status.disruptedPods").and_then(Value::as_object).is_some_and(|m| m.len() > MAX_DISRUPTED_PODS) {
        return Err(StatusError::forbidden(
            "policy",
            "poddisruptionbudget",
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(
            format!(
                "The disruption budget {name} needs {} healthy pods and has {} currently",
                int(pdb, "status.desiredHealthy"),
                int(pdb, "status.currentHealthy")
            ),
            0,
        ));
    }
    let mut new = pdb.clone();
    let status = super::child(&mut new, "status");
    status.insert("disruptionsAllowed".into(), json!(allowed - 1));
    let now = meta::now_rfc3339();
    if allowed - 1 == 0 {
        set_condition(status, &now);
    }
    let disrupted = status.entry("disruptedPods").or_insert_with(|| json!({}));
    if !disrupted.is_object() {
        *disrupted = json!({});
    }
    if let Value::Object(m) = disrupted {
        m.insert(pod_name.into(), json!(now));
    }
    Ok(new)
}

/// pdbhelper.UpdateDisruptionAllowedCondition for a budget with none left.
fn set_condition(status: &mut Map<String, Value>, now: &str) {
    let observed = status.get("observedGeneration").cloned().unwrap_or(json!(0));
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Value::Array(list) = conditions else { return };
    let fresh = json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "",
        "observedGeneration": observed, "lastTransitionTime": now});
    match list.iter_mut().find(|c| str_at(c, "/type") == "DisruptionAllowed") {
        Some(c) => {
            let changed = str_at(c, "/status") != "False";
            let since = if changed { json!(now) } else { c.get("lastTransitionTime").cloned().unwrap_or(json!(now)) };
            *c = fresh;
            c["lastTransitionTime"] = since;
        }
        None => list.push(fresh),
    }
}

impl EvictionHandler {
    /// The budgets in the pod's namespace whose non-empty selector selects it.
    async fn budgets_for(&self, pod: &Value) -> Result<Vec<Value>, StatusError> {
        let list = self.peers.budgets()?.list(meta::namespace(pod), &ListOptions::default()).await?;
        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
        Ok(arr_at(&list, "/items")
            .iter()
            .filter(|pdb| {
                let sel = at(pdb, "spec.selector");
                sel.is_some_and(|s| !super::workload::selector_is_empty(s)) && selects(sel, labels)
            })
            .cloned()
            .collect())
    }
}

#[async_trait]
impl SubresourceHandler for EvictionHandler {
    fn name(&self) -> &'static str {
        "eviction"
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery { kind: "Eviction", group: "policy", version: "v1", verbs: &["create"] }
    }

    async fn serve(&self, pods: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let eviction = call.body.unwrap_or(Value::Null);
        if meta::name(&eviction) != call.name {
            return Err(StatusError::bad_request("name in URL does not match name in Eviction object"));
        }
        let opts = delete_options(&eviction, call.options.dry_run)?;
        let (ns, name) = (call.namespace, call.name);
        let pod = pods.get(ns, name).await?;
        let rv_unset = opts.precondition_resource_version.is_none();
        let with_rv = |pod: &Value| DeleteOptions {
            precondition_resource_version: Some(meta::resource_version(pod).to_string()),
            ..opts.clone()
        };
        if can_ignore_budget(&pod) {
            // A pod that may still turn ready is deleted only as it was read.
            let enforce = !matches!(phase(&pod), "Succeeded" | "Failed") && !terminating(&pod) && rv_unset;
            let chosen = if enforce { with_rv(&pod) } else { opts.clone() };
            pods.delete(ns, name, &chosen).await?;
            return Ok(success());
        }
        let budgets = self.budgets_for(&pod).await?;
        if budgets.len() > 1 {
            return Ok(SubresourceReply {
                code: 500,
                object: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500}),
            });
        }
        let mut enforce_rv = false;
        if let Some(pdb) = budgets.first() {
            let budget = meta::name(pdb).to_string();
            let always_allow = str_at(pdb, "/spec/unhealthyPodEvictionPolicy") == "AlwaysAllow";
            let healthy_enough = int(pdb, "status.currentHealthy") >= int(pdb, "status.desiredHealthy")
                && int(pdb, "status.desiredHealthy") > 0;
            if !is_ready(&pod) && (always_allow || healthy_enough) {
                enforce_rv = true;
            } else if opts.dry_run {
                decrement(pdb, name)?;
            } else {
                let write = WriteOptions::default();
                self.peers
                    .budgets()?
                    .update_with(ns, &budget, Some(&Subresource::Status), &write, |current| {
                        let current =
                            current.ok_or_else(|| StatusError::not_found("policy", "poddisruptionbudgets", &budget))?;
                        // No resourceVersion: a concurrent write re-runs the check
                        // on the fresh budget, as upstream's retry does.
                        let mut next = decrement(current, name)?;
                        meta::remove_meta(&mut next, "resourceVersion");
                        Ok(next)
                    })
                    .await?;
            }
            if enforce_rv && rv_unset {
                return match pods.delete(ns, name, &with_rv(&pod)).await {
                    Err(e) if e.code == 409 => Err(still_processing(&budget)),
                    Err(e) => Err(e),
                    Ok(_) => Ok(success()),
                };
            }
        }
        pods.delete(ns, name, &opts).await?;
        Ok(success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(allowed: i64) -> Value {
        json!({"metadata": {"name": "b", "generation": 1}, "status": {"observedGeneration": 1, "disruptionsAllowed": allowed,
            "desiredHealthy": 2, "currentHealthy": 2}})
    }

    #[test]
    fn decrement_rules() {
        let next = decrement(&budget(1), "p").unwrap();
        assert_eq!(next["status"]["disruptionsAllowed"], 0);
        assert!(next["status"]["disruptedPods"]["p"].is_string());
        assert_eq!(next["status"]["conditions"][0]["reason"], "InsufficientPods");
        let refused = decrement(&budget(0), "p").unwrap_err();
        assert_eq!(
            (refused.code, refused.reason, refused.message.as_str()),
            (429, generic_server::status::Reason::TooManyRequests, VIOLATION)
        );
        assert_eq!(
            refused.to_status()["details"]["causes"][0],
            json!({"reason": "DisruptionBudget", "message": "The disruption budget b needs 2 healthy pods and has 2 currently"})
        );
        let mut unobserved = budget(1);
        unobserved["metadata"]["generation"] = json!(2);
        let e = decrement(&unobserved, "p").unwrap_err();
        assert_eq!((e.code, e.retry_after), (429, Some(10)));
        assert_eq!(decrement(&budget(-1), "p").unwrap_err().code, 403);
    }

    #[test]
    fn options_and_phases() {
        let o = delete_options(&json!({"deleteOptions": {"dryRun": ["All"], "preconditions": {"uid": "u"}}}), false)
            .unwrap();
        assert!(o.dry_run);
        assert_eq!(o.precondition_uid.as_deref(), Some("u"));
        assert!(delete_options(&json!({"deleteOptions": {"dryRun": ["Some"]}}), false).is_err());
        assert!(can_ignore_budget(&json!({"status": {"phase": "Pending"}})));
        assert!(!can_ignore_budget(&json!({"status": {"phase": "Running"}})));
        assert!(is_ready(&json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})));
    }
}
