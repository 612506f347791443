//! Discovery documents: the legacy forms (/api, /apis, APIResourceList) and
//! aggregated discovery (apidiscovery.k8s.io v2 and v2beta1), built from the
//! [`ApiGroup`]s the servers in the chain report.

use serde_json::{json, Value};

use crate::registry::{ResourceInfo, Subresource};

/// One API group as a server serves it: versions in preference order.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiGroup {
    pub name: String,
    pub versions: Vec<ApiVersion>,
    /// Upstream orders groups by APIService priority; lower sorts first.
    pub priority: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiVersion {
    pub version: String,
    pub resources: Vec<ResourceInfo>,
}

/// OpenAPI component schemas contributed by a server for one group-version.
#[derive(Debug, Clone)]
pub struct OpenApiPart {
    /// "api/v1" or "apis/<group>/<version>", the /openapi/v3 path suffix.
    pub path: String,
    /// components.schemas entries, keyed by definition name.
    pub schemas: serde_json::Map<String, Value>,
    /// The resources served at that group-version, for the paths section.
    pub resources: Vec<ResourceInfo>,
}

pub const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Kinds that are only created, never stored (the review kinds).
pub const CREATE_ONLY: &[&str] = &["create"];
pub const VERBS_NO_DELETECOLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Upstream's storageVersionHash: the first 8 bytes of the SHA-256 of
/// "group/version/kind" of the stored version, in base64. Clients compare it
/// to notice a storage migration, so it must equal upstream's.
pub fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest.as_ref()[..8])
}

/// A resource's subresources by name, as upstream's installer sorts its paths.
fn sorted_subresources(r: &ResourceInfo) -> Vec<&Subresource> {
    let mut subs: Vec<&Subresource> = r.subresources.iter().collect();
    subs.sort_by_key(|s| s.name());
    subs
}

/// /api/v1 or /apis/G/V as an APIResourceList: every path sorted, fields in
/// upstream's order (name, singularName, namespaced, group, version, kind,
/// verbs, shortNames, categories, storageVersionHash).
pub fn resource_list(group: &str, version: &ApiVersion) -> Value {
    let mut resources = Vec::new();
    for r in &version.resources {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        if !r.storage_version_hash.is_empty() {
            entry["storageVersionHash"] = json!(r.storage_version_hash);
        }
        resources.push(entry);
        for s in sorted_subresources(r) {
            let (name, kind, g, v, verbs) = subresource_facts(r, s);
            let mut e =
                json!({"name": format!("{}/{}", r.plural, name), "singularName": "", "namespaced": r.namespaced});
            if !g.is_empty() {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            e["kind"] = json!(kind);
            e["verbs"] = json!(verbs);
            resources.push(e);
        }
    }
    resources.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version(group, &version.version), "resources": resources})
}

/// The verbs a subresource serves, as discovery lists them.
pub(crate) fn subresource_verbs(r: &ResourceInfo, s: &Subresource) -> Vec<&'static str> {
    subresource_facts(r, s).4
}

/// (name, kind, group, version, verbs) of a subresource.
fn subresource_facts(
    r: &ResourceInfo,
    s: &Subresource,
) -> (&'static str, String, &'static str, &'static str, Vec<&'static str>) {
    match s {
        Subresource::Status => ("status", r.kind.clone(), "", "", vec!["get", "patch", "update"]),
        Subresource::Scale(_) => ("scale", "Scale".into(), "autoscaling", "v1", vec!["get", "patch", "update"]),
        Subresource::Finalize => ("finalize", r.kind.clone(), "", "", vec!["update"]),
        Subresource::Handler(h) => {
            let d = h.discovery();
            let kind = if d.kind.is_empty() { r.kind.clone() } else { d.kind.to_string() };
            (h.name(), kind, d.group, d.version, d.verbs.to_vec())
        }
    }
}

/// /api: the legacy core versions.
pub fn api_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

fn group_entry(g: &ApiGroup) -> Value {
    let versions: Vec<Value> = g
        .versions
        .iter()
        .map(|v| json!({"groupVersion": group_version(&g.name, &v.version), "version": v.version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": g.name, "versions": versions, "preferredVersion": preferred})
}

/// /apis: every named group.
pub fn group_list(groups: &[ApiGroup]) -> Value {
    let list: Vec<Value> = groups.iter().filter(|g| !g.name.is_empty()).map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
}

/// /apis/G: one group.
pub fn group(g: &ApiGroup) -> Value {
    let mut v = group_entry(g);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    v
}

/// Aggregated discovery (APIGroupDiscoveryList) of `groups`, in the version
/// (v2 or v2beta1) the client asked for.
pub fn aggregated(groups: &[ApiGroup], api_version: &str) -> Value {
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = v
                        .resources
                        .iter()
                        .map(|r| {
                            let mut e = json!({
                                "resource": r.plural,
                                "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                                "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": r.singular,
                                "verbs": r.verbs,
                            });
                            if !r.short_names.is_empty() {
                                e["shortNames"] = json!(r.short_names);
                            }
                            if !r.categories.is_empty() {
                                e["categories"] = json!(r.categories);
                            }
                            let subs: Vec<Value> = sorted_subresources(r)
                                .into_iter()
                                .map(|s| {
                                    let (name, kind, sg, sv, verbs) = subresource_facts(r, s);
                                    let (sg, sv) = if sg.is_empty() { (r.group.as_str(), r.version.as_str()) } else { (sg, sv) };
                                    json!({"subresource": name, "responseKind": {"group": sg, "version": sv, "kind": kind}, "verbs": verbs})
                                })
                                .collect();
                            if !subs.is_empty() {
                                e["subresources"] = json!(subs);
                            }
                            e
                        })
                        .collect();
                    json!({"version": v.version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g.name, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": format!("apidiscovery.k8s.io/{api_version}"), "metadata": {}, "items": items})
}
