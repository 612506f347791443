//! The two subresources that write one part of a pod's spec (upstream's
//! podEphemeralContainersStrategy and podResizeStrategy): a write through
//! `pods/ephemeralcontainers` changes only `spec.ephemeralContainers` (they
//! may be added, never changed or removed); one through `pods/resize` changes
//! only the cpu and memory of the containers' resources (and their
//! resizePolicy), keeping the pod's QoS class.

use serde_json::{json, Value};

use generic_server::status::Cause;

use super::arr_at;
use super::podspec::{qos_class, validate_ephemeral_containers_update};

pub const EPHEMERAL: &str = "ephemeralcontainers";
pub const RESIZE: &str = "resize";

/// The stored pod with the part `subresource` may change taken from `new`.
pub fn prepare(subresource: &str, new: &mut Value, old: &Value) {
    let mut merged = old.clone();
    match subresource {
        EPHEMERAL => {
            let ephemeral = new.pointer("/spec/ephemeralContainers").cloned();
            if let Some(spec) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                match ephemeral {
                    Some(e) if !e.is_null() => spec.insert("ephemeralContainers".into(), e),
                    _ => spec.remove("ephemeralContainers"),
                };
            }
        }
        RESIZE => {
            for list in ["containers", "initContainers"] {
                let wanted = arr_at(new, &format!("/spec/{list}"));
                let Some(Value::Array(stored)) = merged.pointer_mut(&format!("/spec/{list}")) else { continue };
                for c in stored.iter_mut() {
                    let name = c.get("name").cloned();
                    let Some(w) = wanted.iter().find(|w| w.get("name") == name.as_ref()) else { continue };
                    for field in ["resources", "resizePolicy"] {
                        if let Some(m) = c.as_object_mut() {
                            match w.get(field) {
                                Some(v) => m.insert(field.into(), v.clone()),
                                None => m.remove(field),
                            };
                        }
                    }
                }
            }
        }
        _ => return,
    }
    // The metadata (managedFields included) is what the Store prepared.
    if let (Some(m), Some(meta)) = (merged.as_object_mut(), new.get("metadata")) {
        m.insert("metadata".into(), meta.clone());
    }
    *new = merged;
}

/// Upstream's ValidatePodEphemeralContainersUpdate and ValidatePodResize
/// beyond the pod's own rules.
pub fn validate(subresource: &str, new: &Value, old: &Value) -> Vec<Cause> {
    match subresource {
        EPHEMERAL => validate_ephemeral_containers_update(new, old),
        RESIZE => validate_resize(new, old),
        _ => Vec::new(),
    }
}

fn validate_resize(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.pointer("/metadata/annotations/kubernetes.io~1config.mirror").is_some() {
        return vec![Cause::forbidden("", "static pods cannot be resized")];
    }
    if old.pointer("/spec/os/name").and_then(Value::as_str) == Some("windows") {
        return vec![Cause::forbidden("spec.os.name", "windows pods cannot be resized")];
    }
    let (new_spec, old_spec) = (&new["spec"], &old["spec"]);
    if qos_class(new_spec) != qos_class(old_spec) {
        let shown = new.pointer("/status/qosClass").cloned().unwrap_or(json!(""));
        causes.push(Cause::invalid("spec", &shown, "Pod QOS Class may not change as a result of resizing"));
    }
    // Only cpu and memory may move: compare with those taken from the old pod.
    let mut rest = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let olds = arr_at(old_spec, &format!("/{list}"));
        let Some(Value::Array(cs)) = rest.get_mut(list) else { continue };
        for (c, o) in cs.iter_mut().zip(olds) {
            for kind in ["requests", "limits"] {
                let pointer = format!("/resources/{kind}");
                let old_amounts = o.pointer(&pointer).and_then(Value::as_object).cloned().unwrap_or_default();
                if let Some(Value::Object(amounts)) = c.pointer_mut(&pointer) {
                    for res in ["cpu", "memory"] {
                        match old_amounts.get(res) {
                            Some(v) => amounts.insert(res.into(), v.clone()),
                            None => amounts.remove(res),
                        };
                    }
                }
            }
            if let Some(m) = c.as_object_mut() {
                match o.get("resizePolicy") {
                    Some(v) => m.insert("resizePolicy".into(), v.clone()),
                    None => m.remove("resizePolicy"),
                };
            }
        }
    }
    if strip_empty_resources(rest) != strip_empty_resources(old_spec.clone()) {
        causes.push(Cause::forbidden("spec", "only cpu and memory resources are mutable"));
    }
    causes
}

/// Empty requests/limits maps compare equal to absent ones.
fn strip_empty_resources(mut spec: Value) -> Value {
    for list in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut() {
                if let Some(Value::Object(r)) = c.get_mut("resources") {
                    r.retain(|_, v| !v.as_object().is_some_and(|m| m.is_empty()));
                }
                if c.get("resources").is_some_and(|r| r.as_object().is_some_and(|m| m.is_empty())) {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("resources");
                    }
                }
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}}]}})
    }

    #[test]
    fn ephemeral_containers_are_added_never_changed() {
        let old = pod();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("changed");
        new["spec"]["ephemeralContainers"] = json!([{"name": "debug", "image": "busybox"}]);
        prepare(EPHEMERAL, &mut new, &old);
        assert_eq!(new["spec"]["containers"][0]["image"], "nginx", "only the ephemeral containers move");
        assert_eq!(new["spec"]["ephemeralContainers"][0]["name"], "debug");
        assert!(validate(EPHEMERAL, &new, &old).is_empty());
        let mut changed = new.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = json!("alpine");
        let msgs: Vec<String> = validate(EPHEMERAL, &changed, &new).iter().map(Cause::full_message).collect();
        assert_eq!(
            msgs,
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debug\" may not be changed\n"]
        );
        let mut removed = new.clone();
        removed["spec"]["ephemeralContainers"] = json!([]);
        assert_eq!(validate(EPHEMERAL, &removed, &new).len(), 1);
    }

    #[test]
    fn resize_moves_cpu_and_memory_only() {
        let old = pod();
        let mut new = old.clone();
        new["spec"]["containers"][0]["resources"]["requests"]["cpu"] = json!("200m");
        new["spec"]["containers"][0]["image"] = json!("changed");
        prepare(RESIZE, &mut new, &old);
        assert_eq!(new["spec"]["containers"][0]["image"], "nginx");
        assert_eq!(new["spec"]["containers"][0]["resources"]["requests"]["cpu"], "200m");
        assert!(validate(RESIZE, &new, &old).is_empty(), "{:?}", validate(RESIZE, &new, &old));
        let mut storage = new.clone();
        storage["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] = json!("2Gi");
        let msgs: Vec<String> = validate(RESIZE, &storage, &old).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, ["spec: Forbidden: only cpu and memory resources are mutable"]);
        let mut guaranteed = new.clone();
        guaranteed["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}});
        assert!(validate(RESIZE, &guaranteed, &old)
            .iter()
            .any(|c| c.message.contains("Pod QOS Class may not change as a result of resizing")));
    }
}
