//! LimitRanger (upstream plugin/pkg/admission/limitranger): the LimitRanges
//! of a namespace fill in a new pod's missing container requests and limits
//! (type Container's defaultRequest and default, recorded in the
//! `kubernetes.io/limit-ranger` annotation), then bound them: min, max and
//! maxLimitRequestRatio per Container and per Pod, and min and max storage
//! per PersistentVolumeClaim. A violation is a 403 in upstream's words.
//!
//! LimitRanges are read from an informer's cache, as upstream reads its
//! lister; LimitRanges apply in name order (upstream's lister order is
//! unspecified), each filling only what the ones before left unset.

use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use generic_server::informer::Informer;
use generic_server::registry::{AdmissionAttributes, Mutating, Operation, Store, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

use super::resources::{list_at, pod_totals, Quantity, ResourceList};
use crate::registry::{arr_at, str_at};

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

#[derive(Default)]
pub struct LimitRanger {
    ranges: OnceLock<Arc<Informer>>,
}

impl LimitRanger {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Follows the LimitRange Store (only the first call counts); must run
    /// inside a tokio runtime.
    pub fn bind(&self, store: &Arc<Store>) {
        let informer = Informer::new(store.clone());
        if self.ranges.set(informer.clone()).is_ok() {
            informer.spawn(|_| {});
        }
    }

    /// The namespace's LimitRanges, by name.
    fn ranges(&self, namespace: &str) -> Vec<Value> {
        let mut items: Vec<Value> = self
            .ranges
            .get()
            .map(|i| i.list())
            .unwrap_or_default()
            .into_iter()
            .filter(|r| generic_server::meta::namespace(r) == namespace)
            .collect();
        items.sort_by(|a, b| generic_server::meta::name(a).cmp(generic_server::meta::name(b)));
        items
    }

    /// Upstream's SupportsAttributes: new pods, and claims created or
    /// updated; never a subresource nor an object being deleted.
    fn handles(a: &AdmissionAttributes<'_>) -> bool {
        let deleting = a.old.is_some_and(|o| !generic_server::meta::meta_str(o, "deletionTimestamp").is_empty());
        !deleting
            && match a.operation {
                Operation::Create => a.is_main::<Pod>() || a.is_main::<PersistentVolumeClaim>(),
                Operation::Update => a.is_main::<PersistentVolumeClaim>(),
                _ => false,
            }
    }
}

/// The items of `range` of type `kind`.
fn items<'a>(range: &'a Value, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    arr_at(range, "/spec/limits").iter().filter(move |i| str_at(i, "/type") == kind)
}

/// Fills one container's missing requests and limits; returns the
/// annotation parts naming what was set.
fn default_container(c: &mut Value, requests: &ResourceList, limits: &ResourceList, what: &str) -> Vec<String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
    let resources = crate::registry::child(c, "resources");
    let mut notes = Vec::new();
    // Requests first, as upstream's annotation lists them.
    for (section, defaults) in [("requests", requests), ("limits", limits)] {
        let given = |k: &String| resources.get(section).and_then(|s| s.get(k)).is_some();
        let set: Vec<&String> = defaults.keys().filter(|k| !given(k)).collect();
        if !set.is_empty() {
            let have = resources.entry(section).or_insert_with(|| json!({}));
            if !have.is_object() {
                *have = json!({});
            }
            for k in &set {
                have[k.as_str()] = json!(defaults[*k].to_string());
            }
            let set: Vec<&str> = set.iter().map(|k| k.as_str()).collect();
            let singular = if section == "requests" { "request" } else { "limit" };
            notes.push(format!("{} {singular} for {what} {name}", set.join(", ")));
        }
    }
    notes
}

/// Applies one LimitRange's Container defaults to a pod.
fn default_pod(range: &Value, pod: &mut Value) {
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for item in items(range, "Container") {
        requests.extend(list_at(item, "/defaultRequest"));
        limits.extend(list_at(item, "/default"));
    }
    let mut notes = Vec::new();
    for (list, what) in [("containers", "container"), ("initContainers", "init container")] {
        if let Some(cs) = pod.pointer_mut(&format!("/spec/{list}")).and_then(Value::as_array_mut) {
            for c in cs {
                notes.extend(default_container(c, &requests, &limits, what));
            }
        }
    }
    if !notes.is_empty() {
        let meta = crate::registry::child(pod, "metadata");
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION.into(), json!(format!("LimitRanger plugin set: {}", notes.join("; "))));
        }
    }
}

/// Upstream's requestLimitEnforcedValues: values in thousandths, rounded up.
fn milli(q: Option<&Quantity>) -> i128 {
    q.map_or(0, Quantity::milli_value)
}

/// Upstream's minConstraint, maxConstraint and maxRequestConstraint: the
/// named figures, in the order upstream checks them, must not fall below
/// (`max` false) or exceed the enforced value; the first must be stated.
fn bound(
    max: bool,
    kind: &str,
    res: &str,
    enforced: &Quantity,
    figures: &[(&str, Option<&Quantity>)],
) -> Option<String> {
    let word = if max { "maximum" } else { "minimum" };
    let head = format!("{word} {res} usage per {kind} is {enforced}");
    let e = enforced.milli_value();
    let beyond = |q: &Quantity| if max { q.milli_value() > e } else { q.milli_value() < e };
    for (i, (what, q)) in figures.iter().enumerate() {
        match q {
            None if i == 0 => return Some(format!("{head}.  No {what} is specified")),
            Some(q) if beyond(q) => return Some(format!("{head}, but {what} is {q}")),
            _ => {}
        }
    }
    None
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: &Quantity,
    req: &ResourceList,
    lim: &ResourceList,
) -> Option<String> {
    let (r, l) = (milli(req.get(res)), milli(lim.get(res)));
    if r == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    }
    if l == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    }
    let observed = l as f64 / r as f64;
    (observed * 1000.0 > enforced.milli_value() as f64).then(|| {
        format!("{res} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}")
    })
}

/// Every min, max and ratio bound of `item` checked against one set of
/// requests and limits.
fn check_item(item: &Value, kind: &str, req: &ResourceList, lim: &ResourceList, errors: &mut Vec<String>) {
    for (res, q) in list_at(item, "/min") {
        errors.extend(bound(false, kind, &res, &q, &[("request", req.get(&res)), ("limit", lim.get(&res))]));
    }
    for (res, q) in list_at(item, "/max") {
        errors.extend(bound(true, kind, &res, &q, &[("limit", lim.get(&res)), ("request", req.get(&res))]));
    }
    for (res, q) in list_at(item, "/maxLimitRequestRatio") {
        errors.extend(ratio_constraint(kind, &res, &q, req, lim));
    }
}

/// Upstream's PodValidateLimitFunc.
fn validate_pod(range: &Value, pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    for item in arr_at(range, "/spec/limits") {
        match str_at(item, "/type") {
            "Container" => {
                for c in arr_at(spec, "/containers").iter().chain(arr_at(spec, "/initContainers")) {
                    let (req, lim) = (list_at(c, "/resources/requests"), list_at(c, "/resources/limits"));
                    check_item(item, "Container", &req, &lim, &mut errors);
                }
            }
            "Pod" => {
                let (req, lim) = (pod_totals(spec, "requests", false), pod_totals(spec, "limits", false));
                check_item(item, "Pod", &req, &lim, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

/// Upstream's PersistentVolumeClaimValidateLimitFunc.
fn validate_claim(range: &Value, claim: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let req = list_at(claim, "/spec/resources/requests");
    for item in items(range, "PersistentVolumeClaim") {
        // Only the request counts: a claim's limits are not its user's input.
        for (max, section) in [(false, "/min"), (true, "/max")] {
            for (res, q) in list_at(item, section) {
                errors.extend(bound(max, "PersistentVolumeClaim", &res, &q, &[("request", req.get(&res))]));
            }
        }
    }
    errors
}

/// Upstream's utilerrors.NewAggregate message.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[async_trait::async_trait]
impl Mutating for LimitRanger {
    async fn admit(&self, a: &AdmissionAttributes<'_>, object: &mut Value) -> Result<(), StatusError> {
        if Self::handles(a) && a.is_main::<Pod>() {
            for range in self.ranges(a.namespace) {
                default_pod(&range, object);
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for LimitRanger {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let Some(object) = a.object.filter(|_| Self::handles(a)) else { return Ok(()) };
        for range in self.ranges(a.namespace) {
            let errors = if a.is::<Pod>() { validate_pod(&range, object) } else { validate_claim(&range, object) };
            if !errors.is_empty() {
                return Err(a.forbidden(&aggregate(&errors)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(limits: Value) -> Value {
        json!({"spec": {"limits": limits}})
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let r = range(
            json!([{"type": "Container", "default": {"cpu": "500m", "memory": "1Gi"}, "defaultRequest": {"cpu": "100m"}}]),
        );
        let mut pod = json!({"spec": {
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}, {"name": "b", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i"}]
        }});
        default_pod(&r, &mut pod);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "100m"}})
        );
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container a; memory limit for container a; cpu request for init container i; cpu, memory limit for init container i"
        );
    }

    #[test]
    fn bounds_in_upstream_words() {
        let r = range(json!([
            {"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "10Mi"}, "maxLimitRequestRatio": {"cpu": "2"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}
        ]));
        let pod = json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "500m", "memory": "600Mi"}, "limits": {"cpu": "2", "memory": "600Mi"}}},
            {"name": "d", "resources": {"requests": {"cpu": "100m", "memory": "600Mi"}, "limits": {"cpu": "250m", "memory": "600Mi"}}}
        ]}});
        assert_eq!(
            validate_pod(&r, &pod),
            [
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 4.000000",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 2.500000",
                "maximum memory usage per Pod is 1Gi, but limit is 1200Mi",
            ]
        );
        assert_eq!(
            aggregate(&validate_pod(&r, &json!({"spec": {"containers": [{"name": "x"}]}}))[..1]),
            "minimum memory usage per Container is 10Mi.  No request is specified"
        );
        let claims =
            range(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]));
        let claim = |s: &str| json!({"spec": {"resources": {"requests": {"storage": s}}}});
        assert_eq!(
            validate_claim(&claims, &claim("3Gi")),
            ["maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 3Gi"]
        );
        assert_eq!(
            validate_claim(&claims, &claim("500Mi")),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert!(validate_claim(&claims, &claim("1536Mi")).is_empty());
    }
}
