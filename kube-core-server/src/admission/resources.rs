//! Resource lists (upstream's corev1.ResourceList) as LimitRanger and
//! ResourceQuota compute with them: exact quantities by name, the sums and
//! maxima upstream's quota helpers take, and a pod's effective requests and
//! limits (upstream's resourcehelper.PodRequests / PodLimits).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use cel_k8s::quantity::{Format, Quantity};

use crate::registry::arr_at;

pub type ResourceList = BTreeMap<String, Quantity>;

/// The quantities of a JSON resource map at `pointer`; entries that do not
/// parse are left out (validation has refused them already).
pub fn list_at(obj: &Value, pointer: &str) -> ResourceList {
    obj.pointer(pointer).and_then(Value::as_object).map(from_map).unwrap_or_default()
}

pub fn from_map(m: &Map<String, Value>) -> ResourceList {
    m.iter().filter_map(|(k, v)| Some((k.clone(), Quantity::parse(v.as_str()?).ok()?))).collect()
}

/// The list as a JSON map of canonical quantities.
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(list.iter().map(|(k, q)| (k.clone(), Value::String(q.to_string()))).collect())
}

/// `a + b` for one quantity; a sum too large to hold keeps `a` (only
/// reachable with absurd quantities validation let through).
pub fn sum(a: &Quantity, b: &Quantity) -> Quantity {
    a.add(b).unwrap_or_else(|_| a.clone())
}

/// Upstream's quota.Add, in place: every key of `other` added to `into`.
pub fn add(into: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        let next = into.get(k).map_or_else(|| q.clone(), |have| sum(have, q));
        into.insert(k.clone(), next);
    }
}

/// Upstream's maxResourceList: the larger of each key.
pub fn max_into(into: &mut ResourceList, other: &ResourceList) {
    for (k, q) in other {
        if into.get(k).is_none_or(|have| q > have) {
            into.insert(k.clone(), q.clone());
        }
    }
}

/// Upstream's quota.Mask: only the keys in `names`.
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter().filter(|(k, _)| names.contains(k)).map(|(k, q)| (k.clone(), q.clone())).collect()
}

/// "name=quantity,..." sorted by name (upstream's quota prettyPrint).
pub fn pretty(list: &ResourceList) -> String {
    list.iter().map(|(k, q)| format!("{k}={q}")).collect::<Vec<_>>().join(",")
}

/// A pod's effective `section` ("requests" or "limits"): the sum of its
/// containers and sidecars, at least the largest of its init containers
/// (each with the sidecars started before it), as upstream's
/// resourcehelper; `overhead` adds spec.overhead (to requests, and to the
/// limits the pod sets).
pub fn pod_totals(spec: &Value, section: &str, overhead: bool) -> ResourceList {
    let of = |c: &Value| list_at(c, &format!("/resources/{section}"));
    let mut total = ResourceList::new();
    for c in arr_at(spec, "/containers") {
        add(&mut total, &of(c));
    }
    let (mut sidecars, mut init) = (ResourceList::new(), ResourceList::new());
    for c in arr_at(spec, "/initContainers") {
        let own = of(c);
        let peak = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut with = own;
            add(&mut with, &sidecars);
            with
        };
        max_into(&mut init, &peak);
    }
    max_into(&mut total, &init);
    if overhead {
        for (k, q) in list_at(spec, "/overhead") {
            if section == "requests" || total.contains_key(&k) {
                add(&mut total, &ResourceList::from([(k, q)]));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_totals_take_the_init_peak_and_sidecars() {
        let spec = json!({
            "containers": [{"resources": {"requests": {"cpu": "100m"}}}, {"resources": {"requests": {"cpu": "200m", "memory": "1Gi"}}}],
            "initContainers": [
                {"resources": {"requests": {"cpu": "1"}}},
                {"restartPolicy": "Always", "resources": {"requests": {"memory": "512Mi"}}}
            ],
            "overhead": {"cpu": "10m"}
        });
        let r = pod_totals(&spec, "requests", true);
        assert_eq!(pretty(&r), "cpu=1010m,memory=1536Mi");
        assert_eq!(pretty(&pod_totals(&spec, "requests", false)), "cpu=1,memory=1536Mi");
        assert!(pod_totals(&spec, "limits", true).is_empty(), "overhead adds only to limits the pod sets");
    }
}
