//! Discovery across the chain and the backends: /apis (legacy and aggregated)
//! lists the groups this process serves and those of remote APIServices,
//! ordered as upstream orders them (groups by the highest
//! groupPriorityMinimum of their APIServices, versions by versionPriority and
//! then Kubernetes version order). Remote groups' resources come from a cache
//! the availability controller fills from each backend's discovery; a backend
//! that stops answering keeps its last document marked Stale, one never heard
//! from is left out, and neither breaks the rest.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde_json::{json, Value};

use generic_server::discovery::{self as docs, ApiGroup};
use generic_server::endpoints::version_priority;

use crate::apiservice::ApiService;

/// The last discovery document of each remote APIService (by name), in the
/// aggregated form of one version.
#[derive(Default)]
pub struct RemoteDiscovery {
    cache: RwLock<HashMap<String, (Value, bool)>>,
}

impl RemoteDiscovery {
    /// Records a backend's APIResourceList for `api`.
    pub fn record(&self, api: &ApiService, resource_list: &Value) {
        let entry = aggregated_version(&api.group, &api.version, resource_list);
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(api.name.clone(), (entry, true));
    }

    /// Records one version entry of a backend's aggregated discovery.
    pub fn record_aggregated(&self, api: &ApiService, entry: Value) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).insert(api.name.clone(), (entry, true));
    }

    /// Keeps what `name` had, marked Stale.
    pub fn mark_stale(&self, name: &str) {
        if let Some(e) = self.cache.write().unwrap_or_else(|e| e.into_inner()).get_mut(name) {
            e.1 = false;
        }
    }

    /// Forgets APIServices not in `names`.
    pub fn retain(&self, names: &[String]) {
        self.cache.write().unwrap_or_else(|e| e.into_inner()).retain(|k, _| names.contains(k));
    }

    fn get(&self, name: &str) -> Option<Value> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        let (entry, fresh) = cache.get(name)?;
        let mut entry = entry.clone();
        entry["freshness"] = json!(if *fresh { "Current" } else { "Stale" });
        Some(entry)
    }
}

/// One version of a legacy APIResourceList in the aggregated discovery form.
pub fn aggregated_version(group: &str, version: &str, list: &Value) -> Value {
    let resources = list.get("resources").and_then(Value::as_array).cloned().unwrap_or_default();
    let text = |r: &Value, k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut out: Vec<Value> = Vec::new();
    for r in resources.iter().filter(|r| !text(r, "name").contains('/')) {
        let gv = |r: &Value| {
            let g = r.get("group").and_then(Value::as_str).unwrap_or(group);
            let v = r.get("version").and_then(Value::as_str).unwrap_or(version);
            (g.to_string(), v.to_string())
        };
        let (g, v) = gv(r);
        let mut e = json!({
            "resource": text(r, "name"),
            "responseKind": {"group": g, "version": v, "kind": text(r, "kind")},
            "scope": if r.get("namespaced").and_then(Value::as_bool) == Some(true) { "Namespaced" } else { "Cluster" },
            "singularResource": text(r, "singularName"),
            "verbs": r.get("verbs").cloned().unwrap_or_else(|| json!([])),
        });
        for k in ["shortNames", "categories"] {
            if let Some(v) = r.get(k).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                e[k] = v.clone();
            }
        }
        let prefix = format!("{}/", text(r, "name"));
        let subs: Vec<Value> = resources
            .iter()
            .filter_map(|s| {
                let name = text(s, "name");
                let sub = name.strip_prefix(&prefix)?;
                let (sg, sv) = gv(s);
                Some(json!({
                    "subresource": sub,
                    "responseKind": {"group": sg, "version": sv, "kind": text(s, "kind")},
                    "verbs": s.get("verbs").cloned().unwrap_or_else(|| json!([])),
                }))
            })
            .collect();
        if !subs.is_empty() {
            e["subresources"] = json!(subs);
        }
        out.push(e);
    }
    json!({"version": version, "resources": out, "freshness": "Current"})
}

/// One group as /apis lists it: its versions in preference order, each with
/// the local server's answer or the APIService that serves it remotely.
struct Merged {
    name: String,
    priority: i64,
    versions: Vec<MergedVersion>,
}

struct MergedVersion {
    version: String,
    priority: i64,
    remote: Option<ApiService>,
}

/// Groups in upstream's order: local groups (from the chain) and remote
/// APIServices, ranked by their APIServices' priorities.
fn merge(local: &[ApiGroup], apiservices: &[ApiService]) -> Vec<Merged> {
    let by_gv: HashMap<(String, String), &ApiService> =
        apiservices.iter().map(|a| ((a.group.clone(), a.version.clone()), a)).collect();
    let mut groups: BTreeMap<String, Merged> = BTreeMap::new();
    for g in local.iter().filter(|g| !g.name.is_empty()) {
        let m = groups.entry(g.name.clone()).or_insert_with(|| Merged {
            name: g.name.clone(),
            priority: 0,
            versions: Vec::new(),
        });
        for v in &g.versions {
            let priority = by_gv.get(&(g.name.clone(), v.version.clone())).map(|a| a.version_priority).unwrap_or(0);
            m.versions.push(MergedVersion { version: v.version.clone(), priority, remote: None });
        }
    }
    for a in apiservices.iter().filter(|a| !a.group.is_empty()) {
        let m = groups.entry(a.group.clone()).or_insert_with(|| Merged {
            name: a.group.clone(),
            priority: 0,
            versions: Vec::new(),
        });
        if a.is_local() {
            // Served here only while the chain actually serves it.
            if m.versions.iter().any(|v| v.version == a.version) {
                m.priority = m.priority.max(a.group_priority_minimum);
            }
            continue;
        }
        m.priority = m.priority.max(a.group_priority_minimum);
        m.versions.retain(|v| v.version != a.version);
        m.versions.push(MergedVersion {
            version: a.version.clone(),
            priority: a.version_priority,
            remote: Some(a.clone()),
        });
    }
    let mut out: Vec<Merged> = groups.into_values().filter(|g| !g.versions.is_empty()).collect();
    for g in &mut out {
        g.versions.sort_by(|a, b| {
            b.priority.cmp(&a.priority).then_with(|| version_priority(&b.version).cmp(&version_priority(&a.version)))
        });
    }
    out.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    out
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

fn legacy_entry(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": group_version(name, v), "version": v})).collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// /apis as an APIGroupList.
pub fn group_list(local: &[ApiGroup], apiservices: &[ApiService]) -> Value {
    let groups: Vec<Value> = merge(local, apiservices)
        .iter()
        .map(|g| legacy_entry(&g.name, &g.versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>()))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// /apis/<group> of a group served only remotely, from its APIServices.
pub fn remote_group(group: &str, apiservices: &[ApiService]) -> Option<Value> {
    let merged = merge(&[], apiservices);
    let g = merged.iter().find(|g| g.name == group)?;
    let mut v = legacy_entry(group, &g.versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>());
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// /apis in the aggregated form (`api_version` v2 or v2beta1).
pub fn aggregated(
    local: &[ApiGroup],
    apiservices: &[ApiService],
    remote: &RemoteDiscovery,
    api_version: &str,
) -> Value {
    let named: Vec<ApiGroup> = local.iter().filter(|g| !g.name.is_empty()).cloned().collect();
    let local_doc = docs::aggregated(&named, api_version);
    let mut local_versions: HashMap<(String, String), Value> = HashMap::new();
    for item in local_doc.get("items").and_then(Value::as_array).into_iter().flatten() {
        let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        for v in item.get("versions").and_then(Value::as_array).into_iter().flatten() {
            let version = v.get("version").and_then(Value::as_str).unwrap_or_default();
            local_versions.insert((name.to_string(), version.to_string()), v.clone());
        }
    }
    let items: Vec<Value> = merge(local, apiservices)
        .into_iter()
        .filter_map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .filter_map(|v| match &v.remote {
                    Some(a) => remote.get(&a.name),
                    None => local_versions.get(&(g.name.clone(), v.version.clone())).cloned(),
                })
                .collect();
            (!versions.is_empty())
                .then(|| json!({"metadata": {"name": g.name, "creationTimestamp": null}, "versions": versions}))
        })
        .collect();
    let mut doc = local_doc;
    doc["items"] = json!(items);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::discovery::ApiVersion;

    fn api(group: &str, version: &str, gpm: i64, vp: i64, remote: bool) -> ApiService {
        ApiService {
            name: crate::apiservice::name_for(group, version),
            group: group.into(),
            version: version.into(),
            group_priority_minimum: gpm,
            version_priority: vp,
            service: remote.then(|| crate::apiservice::ServiceRef {
                namespace: "ns".into(),
                name: "svc".into(),
                port: 443,
            }),
            ca_bundle: Vec::new(),
            insecure_skip_tls_verify: false,
            available: true,
            condition: None,
        }
    }

    fn local(name: &str, versions: &[&str]) -> ApiGroup {
        ApiGroup {
            name: name.into(),
            versions: versions.iter().map(|v| ApiVersion { version: v.to_string(), resources: Vec::new() }).collect(),
            priority: 0,
        }
    }

    #[test]
    fn groups_and_versions_follow_priorities() {
        let services = vec![
            api("apps", "v1", 17800, 15, false),
            api("apiextensions.k8s.io", "v1", 16700, 15, false),
            api("wardle.example.com", "v1alpha1", 17900, 10, true),
            api("wardle.example.com", "v1beta1", 100, 10, true),
            api("stable.example.com", "v1", 1000, 100, false),
            api("stable.example.com", "v2beta1", 1000, 100, false),
        ];
        let locals = vec![
            local("apps", &["v1"]),
            local("apiextensions.k8s.io", &["v1"]),
            local("stable.example.com", &["v1", "v2beta1"]),
        ];
        let list = group_list(&locals, &services);
        let names: Vec<&str> = list["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["wardle.example.com", "apps", "apiextensions.k8s.io", "stable.example.com"]);
        let wardle = &list["groups"][0];
        // Equal versionPriority: Kubernetes version order decides.
        assert_eq!(wardle["preferredVersion"]["version"], "v1beta1");
        assert_eq!(list["groups"][3]["preferredVersion"]["version"], "v1");
    }

    #[test]
    fn remote_versions_need_a_discovery_document() {
        let services = vec![api("wardle.example.com", "v1alpha1", 1000, 10, true)];
        let cache = RemoteDiscovery::default();
        let doc = aggregated(&[], &services, &cache, "v2");
        assert_eq!(doc["items"], json!([]));
        let list = json!({"resources": [
            {"name": "flunders", "singularName": "flunder", "namespaced": true, "kind": "Flunder", "verbs": ["get"], "shortNames": ["fl"]},
            {"name": "flunders/status", "singularName": "", "namespaced": true, "kind": "Flunder", "verbs": ["get"]},
        ]});
        cache.record(&services[0], &list);
        let doc = aggregated(&[], &services, &cache, "v2");
        let r = &doc["items"][0]["versions"][0]["resources"][0];
        assert_eq!(r["resource"], "flunders");
        assert_eq!(r["responseKind"]["group"], "wardle.example.com");
        assert_eq!(r["scope"], "Namespaced");
        assert_eq!(r["shortNames"], json!(["fl"]));
        assert_eq!(r["subresources"][0]["subresource"], "status");
        cache.mark_stale(&services[0].name);
        let doc = aggregated(&[], &services, &cache, "v2");
        assert_eq!(doc["items"][0]["versions"][0]["freshness"], "Stale");
    }
}
