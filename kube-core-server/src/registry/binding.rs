//! pods/binding and the create-only `bindings` resource (upstream
//! pkg/registry/core/pod/storage BindingREST, which serves both): a core/v1
//! Binding assigns a pod to a node once. The write is upstream's
//! setPodNodeAndMetadata: spec.nodeName, the Binding's annotations and the
//! PodScheduled condition, refused (409) for a pod already bound, being
//! deleted or still gated.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};

use generic_server::meta;
use k8s_openapi::api::core::v1::Binding;

use generic_server::registry::{
    CreateCall, CreateOnly, Creater, Store, SubresourceCall, SubresourceDiscovery, SubresourceHandler, SubresourceReply,
};
use generic_server::status::StatusError;

use super::peers::Peers;
use super::{arr_at, child, str_at};

pub struct BindingHandler;

/// The `bindings` resource: a Binding posted to the collection binds the pod
/// it names.
pub struct BindingCreater {
    pub peers: Arc<Peers>,
}

pub fn create_only(peers: &Arc<Peers>) -> Vec<CreateOnly> {
    vec![CreateOnly::of::<Binding>(BindingCreater { peers: peers.clone() })]
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

/// Validates `binding` and assigns the pod it names (in `namespace`).
async fn assign(pods: &Store, namespace: &str, binding: &Value, dry_run: bool) -> Result<(), StatusError> {
    validate(binding)?;
    let node = str_at(binding, "/target/name");
    pods.guaranteed_update(namespace, meta::name(binding), dry_run, |pod| bind(pod, binding, node)).await?;
    Ok(())
}

#[async_trait]
impl Creater for BindingCreater {
    async fn create(&self, call: CreateCall<'_>) -> Result<Value, StatusError> {
        let pods = self.peers.pods()?;
        assign(&pods, call.namespace, &call.object, call.dry_run).await?;
        Ok(success())
    }
}

/// 409 on pods/binding, as upstream wraps assignPod's plain errors.
fn refused(name: &str, why: String) -> StatusError {
    StatusError::conflict("", "pods/binding", name, &why)
}

/// ValidatePodBinding. Upstream returns these as a plain error, which the
/// API machinery answers as a 500 with no reason.
fn validate(binding: &Value) -> Result<(), StatusError> {
    let mut problems = Vec::new();
    let kind = str_at(binding, "/target/kind");
    if !kind.is_empty() && kind != "Node" {
        problems.push(format!("target.kind: Unsupported value: {kind:?}: supported values: \"Node\", \"<empty>\""));
    }
    if str_at(binding, "/target/name").is_empty() {
        problems.push("target.name: Required value".to_string());
    }
    match problems.len() {
        0 => Ok(()),
        1 => Err(StatusError::new(500, generic_server::status::Reason::Unknown, problems.remove(0))),
        _ => Err(StatusError::new(500, generic_server::status::Reason::Unknown, format!("[{}]", problems.join(", ")))),
    }
}

/// The pod bound to `node`, or why it cannot be.
fn bind(pod: &Value, binding: &Value, node: &str) -> Result<Value, StatusError> {
    let name = meta::name(pod);
    for (field, have) in [("uid", meta::uid(pod)), ("resourceVersion", meta::resource_version(pod))] {
        let want = meta::meta_str(binding, field);
        if !want.is_empty() && want != have {
            let what = if field == "uid" { "UID" } else { "ResourceVersion" };
            return Err(StatusError::conflict(
                "",
                "pods",
                name,
                &format!("Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"),
            ));
        }
    }
    if !meta::meta_str(pod, "deletionTimestamp").is_empty() {
        return Err(refused(name, format!("pod {name} is being deleted, cannot be assigned to a host")));
    }
    let bound = str_at(pod, "/spec/nodeName");
    if !bound.is_empty() {
        return Err(refused(name, format!("pod {name} is already assigned to node {bound:?}")));
    }
    if !arr_at(pod, "/spec/schedulingGates").is_empty() {
        return Err(refused(name, format!("pod {name} has non-empty .spec.schedulingGates")));
    }
    let mut pod = pod.clone();
    child(&mut pod, "spec").insert("nodeName".into(), json!(node));
    if let Some(annotations) = binding.pointer("/metadata/annotations").and_then(Value::as_object) {
        let meta = child(&mut pod, "metadata");
        let target = child_map(meta, "annotations");
        for (k, v) in annotations {
            target.insert(k.clone(), v.clone());
        }
    }
    let status = child(&mut pod, "status");
    let conditions = status.entry("conditions").or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    if let Value::Array(list) = conditions {
        let now = meta::now_rfc3339();
        match list.iter_mut().find(|c| str_at(c, "/type") == "PodScheduled") {
            Some(c) if str_at(c, "/status") == "True" => {}
            Some(c) => {
                *c = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now})
            }
            None => list.push(
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}),
            ),
        }
    }
    Ok(pod)
}

fn child_map<'a>(m: &'a mut serde_json::Map<String, Value>, key: &str) -> &'a mut serde_json::Map<String, Value> {
    let entry = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match entry {
        Value::Object(o) => o,
        _ => unreachable!("made an object above"),
    }
}

#[async_trait]
impl SubresourceHandler for BindingHandler {
    fn name(&self) -> &'static str {
        "binding"
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery { kind: "Binding", group: "", version: "", verbs: &["create"] }
    }

    async fn serve(&self, pods: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let binding = call.body.unwrap_or(Value::Null);
        if meta::name(&binding) != call.name {
            return Err(StatusError::bad_request("name in URL does not match name in Binding object"));
        }
        assign(pods, call.namespace, &binding, call.options.dry_run).await?;
        Ok(SubresourceReply { code: 201, object: success() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_once() {
        let pod =
            json!({"metadata": {"name": "p", "uid": "u"}, "spec": {"containers": []}, "status": {"phase": "Pending"}});
        let binding =
            json!({"metadata": {"name": "p", "annotations": {"a": "b"}}, "target": {"kind": "Node", "name": "n1"}});
        let bound = bind(&pod, &binding, "n1").unwrap();
        assert_eq!(bound["spec"]["nodeName"], "n1");
        assert_eq!(bound["metadata"]["annotations"]["a"], "b");
        assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
        let again = bind(&bound, &binding, "n2").unwrap_err();
        assert_eq!(again.code, 409);
        assert_eq!(
            again.message,
            "Operation cannot be fulfilled on pods/binding \"p\": pod p is already assigned to node \"n1\""
        );
        let stale = json!({"metadata": {"name": "p", "uid": "other"}, "target": {"name": "n1"}});
        assert_eq!(bind(&pod, &stale, "n1").unwrap_err().code, 409);
        assert_eq!(validate(&json!({"target": {"kind": "Pod"}})).unwrap_err().code, 500);
    }
}
