//! OpenAPI v2 (/openapi/v2) and v3 (/openapi/v3, /openapi/v3/<gv>) documents
//! for the served types.
//!
//! Servers contribute [`OpenApiPart`]s: component schemas per group-version
//! in v3 form ("#/components/schemas/<name>" references) plus the resources
//! served there. Built-in schemas come from [`builtin_schemas`] (generated
//! from the k8s-openapi types, completed from the [`facts`] table); a CRD
//! server contributes its own parts. The functions here are pure; the
//! [`OpenApiCache`] renders the documents once per distinct set of parts.

pub mod facts;
mod paths;
mod schemas;
pub mod v2proto;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::discovery::OpenApiPart;

pub use schemas::{
    add_closure, builtin_definitions, builtin_schemas, definition_for_kind, gv_path, list_schema, merge_facts,
    wrap_refs_with_siblings, COMMON_DEFINITIONS, REF_PREFIX_V3,
};

/// The version reported in the documents' info.
pub const KUBERNETES_VERSION: &str = "v1.33.0";

fn security_scheme() -> Value {
    json!({"type": "apiKey", "name": "authorization", "in": "header", "description": "Bearer Token authentication"})
}

/// The schemas of a part completed with every built-in definition its schemas
/// and paths refer to but do not carry (meta types, Scale, list kinds).
fn completed_schemas(part: &OpenApiPart) -> (Map<String, Value>, Vec<paths::PathItem>) {
    let mut schemas = part.schemas.clone();
    let mut items = Vec::new();
    let mut roots: Vec<String> = COMMON_DEFINITIONS.iter().map(|s| s.to_string()).collect();
    for r in &part.resources {
        let def = schemas::definition_name(r, &schemas);
        let list_def = format!("{def}List");
        if !schemas.contains_key(&list_def) && !builtin_definitions().contains_key(&list_def) {
            let mut l = list_schema(&r.kind, &format!("{REF_PREFIX_V3}{def}"));
            l["x-kubernetes-group-version-kind"] =
                json!([{"group": r.group, "kind": format!("{}List", r.kind), "version": r.version}]);
            schemas.insert(list_def.clone(), l);
        }
        let smp = facts::facts().get(&def).is_some();
        roots.push(def.clone());
        roots.push(list_def.clone());
        if r.subresources.iter().any(|s| matches!(s, crate::registry::Subresource::Scale(_))) {
            roots.push(schemas::SCALE.to_string());
        }
        items.extend(paths::resource_paths(r, &def, &list_def, smp));
    }
    add_closure(&mut schemas, &roots, builtin_definitions());
    (schemas, items)
}

fn group_version_of(part: &OpenApiPart) -> (String, String) {
    if let Some(r) = part.resources.first() {
        return (r.group.clone(), r.version.clone());
    }
    let segs: Vec<&str> = part.path.split('/').collect();
    match segs.as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => (String::new(), String::new()),
    }
}

/// The OpenAPI v3 document of one group-version (/openapi/v3/apis/apps/v1).
pub fn v3_document(part: &OpenApiPart) -> Value {
    let (group, version) = group_version_of(part);
    let tag = paths::tag(&group, &version);
    let (schemas, items) = completed_schemas(part);
    let mut out_paths = BTreeMap::new();
    let (root, root_v3, _) = paths::resources_path(&group, &version);
    out_paths.insert(root, root_v3);
    for item in &items {
        out_paths.insert(item.path.clone(), paths::path_item_v3(item, &tag));
    }
    let schemas: BTreeMap<String, Value> = schemas.into_iter().collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": out_paths,
        "components": {"schemas": schemas, "securitySchemes": {"BearerToken": security_scheme()}},
        "security": [{"BearerToken": []}],
    })
}

/// A content hash for cache-busting URLs and ETags: 16 upper-case hex digits.
pub fn content_hash(bytes: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let a = h.finish();
    // A second pass with a different prefix widens the hash to 128 bits.
    let mut h2 = DefaultHasher::new();
    0xA5u8.hash(&mut h2);
    bytes.hash(&mut h2);
    format!("{a:016X}{:016X}", h2.finish())
}

/// The /openapi/v3 index: each group-version path with the URL of its
/// document, carrying the document's hash (`hashes` maps path -> hash).
pub fn v3_index(hashes: &BTreeMap<String, String>) -> Value {
    let mut p = Map::new();
    for (path, hash) in hashes {
        p.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}));
    }
    json!({"paths": p})
}

/// A v3-form schema rewritten for Swagger 2.0: references to
/// "#/definitions/", single-reference `allOf` unwrapped to `$ref` with
/// siblings, and keywords Swagger 2.0 lacks dropped.
pub fn schema_to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                match k.as_str() {
                    "nullable" | "oneOf" | "anyOf" | "not" => continue,
                    "$ref" => {
                        let r = val.as_str().unwrap_or_default();
                        let r = match r.strip_prefix(REF_PREFIX_V3) {
                            Some(name) => format!("#/definitions/{name}"),
                            None => r.to_string(),
                        };
                        out.insert(k.clone(), Value::String(r));
                    }
                    "allOf" => {
                        if let Value::Array(a) = val {
                            if a.len() == 1 && a[0].get("$ref").is_some() {
                                if let Value::Object(inner) = schema_to_v2(&a[0]) {
                                    out.extend(inner);
                                }
                                continue;
                            }
                        }
                        out.insert(k.clone(), schema_to_v2(val));
                    }
                    // Property names are data, not keywords: convert their schemas only.
                    "properties" | "patternProperties" => {
                        let props = match val {
                            Value::Object(p) => {
                                Value::Object(p.iter().map(|(n, s)| (n.clone(), schema_to_v2(s))).collect())
                            }
                            other => other.clone(),
                        };
                        out.insert(k.clone(), props);
                    }
                    _ => {
                        out.insert(k.clone(), schema_to_v2(val));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(schema_to_v2).collect()),
        other => other.clone(),
    }
}

/// The Swagger 2.0 document of everything served (/openapi/v2).
pub fn v2_document(parts: &[OpenApiPart]) -> Value {
    let mut definitions = BTreeMap::new();
    let mut out_paths = BTreeMap::new();
    for part in parts {
        let (group, version) = group_version_of(part);
        let tag = paths::tag(&group, &version);
        let (schemas, items) = completed_schemas(part);
        for (name, s) in schemas {
            definitions.entry(name).or_insert_with(|| schema_to_v2(&s));
        }
        let (root, _, root_v2) = paths::resources_path(&group, &version);
        out_paths.insert(root, root_v2);
        for item in &items {
            out_paths.insert(item.path.clone(), paths::path_item_v2(item, &tag));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION},
        "paths": out_paths,
        "definitions": definitions,
        "securityDefinitions": {"BearerToken": security_scheme()},
        "security": [{"BearerToken": []}],
    })
}

/// Every document, serialized, with its hash.
#[derive(Debug)]
pub struct Rendered {
    /// /openapi/v2 as JSON, and its ETag value (quoted).
    pub v2: Bytes,
    pub v2_etag: String,
    /// /openapi/v2 as gnostic's `openapi.v2.Document` protobuf (see
    /// [`v2proto`]; empty if the document could not be encoded), and its ETag
    /// value (quoted). Upstream reuses the JSON ETag (relying on `Vary:
    /// Accept`); a tag of its own keeps caches from mixing the forms.
    pub v2_protobuf: Bytes,
    pub v2_protobuf_etag: String,
    /// /openapi/v3 as JSON, and its ETag value (quoted).
    pub v3_index: Bytes,
    pub v3_index_etag: String,
    /// "api/v1" -> (document JSON, hash). The document's ETag is the quoted hash.
    pub v3: BTreeMap<String, (Bytes, String)>,
}

impl Rendered {
    /// The v3 document of a group-version path ("apis/apps/v1").
    pub fn v3_document(&self, path: &str) -> Option<&(Bytes, String)> {
        self.v3.get(path.trim_matches('/'))
    }
}

/// Renders the documents from parts, once per distinct set of parts: a cheap
/// structural fingerprint of the parts decides whether the cached rendering
/// still holds, so a changed CRD schema yields new documents and new hashes.
#[derive(Default)]
pub struct OpenApiCache {
    cached: Mutex<Option<(u64, Arc<Rendered>)>>,
}

impl OpenApiCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn render(&self, parts: &[OpenApiPart]) -> Arc<Rendered> {
        let fp = fingerprint(parts);
        if let Ok(guard) = self.cached.lock() {
            if let Some((f, r)) = guard.as_ref() {
                if *f == fp {
                    return r.clone();
                }
            }
        }
        let rendered = Arc::new(render(parts));
        if let Ok(mut guard) = self.cached.lock() {
            *guard = Some((fp, rendered.clone()));
        }
        rendered
    }
}

/// Merges parts with the same path (several servers may serve one
/// group-version) so each group-version has one document.
fn merged_parts(parts: &[OpenApiPart]) -> Vec<OpenApiPart> {
    let mut out: Vec<OpenApiPart> = Vec::new();
    for p in parts {
        match out.iter_mut().find(|o| o.path == p.path) {
            Some(o) => {
                for (k, v) in &p.schemas {
                    o.schemas.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for r in &p.resources {
                    if !o.resources.iter().any(|x| x.plural == r.plural) {
                        o.resources.push(r.clone());
                    }
                }
            }
            None => out.push(p.clone()),
        }
    }
    out
}

fn render(parts: &[OpenApiPart]) -> Rendered {
    let parts = merged_parts(parts);
    let mut v3 = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    for p in &parts {
        let doc = serde_json::to_vec(&v3_document(p)).unwrap_or_default();
        let hash = content_hash(&doc);
        hashes.insert(p.path.clone(), hash.clone());
        v3.insert(p.path.clone(), (Bytes::from(doc), hash));
    }
    let index = serde_json::to_vec(&v3_index(&hashes)).unwrap_or_default();
    let v2_doc = v2_document(&parts);
    let v2 = serde_json::to_vec(&v2_doc).unwrap_or_default();
    let v2_protobuf = v2proto::encode_document(&v2_doc).unwrap_or_default();
    Rendered {
        v2_etag: format!("\"{}\"", content_hash(&v2)),
        v2_protobuf_etag: format!("\"{}\"", content_hash(&v2_protobuf)),
        v2_protobuf: Bytes::from(v2_protobuf),
        v2: Bytes::from(v2),
        v3_index_etag: format!("\"{}\"", content_hash(&index)),
        v3_index: Bytes::from(index),
        v3,
    }
}

fn hash_value(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            for (k, x) in m {
                k.hash(h);
                hash_value(x, h);
            }
        }
    }
}

fn fingerprint(parts: &[OpenApiPart]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.len().hash(&mut h);
    for p in parts {
        p.path.hash(&mut h);
        format!("{:?}", p.resources).hash(&mut h);
        p.schemas.len().hash(&mut h);
        for (k, v) in &p.schemas {
            k.hash(&mut h);
            hash_value(v, &mut h);
        }
    }
    h.finish()
}

/// The definition names a document refers to but does not define (for
/// checking documents are self-contained).
pub fn dangling_refs(doc: &Value) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    schemas::collect_refs(doc, &mut refs);
    let defined = doc.pointer("/components/schemas").and_then(Value::as_object);
    refs.into_iter().filter(|r| !defined.is_some_and(|d| d.contains_key(r))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{ResourceInfo, ScalePaths, Subresource};

    fn res(group: &str, kind: &str, plural: &str, namespaced: bool, subresources: Vec<Subresource>) -> ResourceInfo {
        ResourceInfo {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            key_root: format!("/registry/{plural}"),
            subresources,
            verbs: crate::discovery::VERBS,
            storage_version_hash: String::new(),
        }
    }

    fn served() -> Vec<ResourceInfo> {
        let scale = ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".status.selector".into()),
        };
        vec![
            res("", "Namespace", "namespaces", false, vec![Subresource::Status]),
            res("", "ConfigMap", "configmaps", true, vec![]),
            res("", "Secret", "secrets", true, vec![]),
            res("", "Service", "services", true, vec![Subresource::Status]),
            res("", "ServiceAccount", "serviceaccounts", true, vec![]),
            res("", "Pod", "pods", true, vec![Subresource::Status]),
            res("", "Event", "events", true, vec![]),
            res("apps", "Deployment", "deployments", true, vec![Subresource::Status, Subresource::Scale(scale)]),
        ]
    }

    fn apps_part() -> OpenApiPart {
        builtin_schemas(&served()).into_iter().find(|p| p.path == "apis/apps/v1").expect("apps part")
    }

    #[test]
    fn builtin_schemas_group_by_group_version() {
        let parts = builtin_schemas(&served());
        let paths: Vec<&str> = parts.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["api/v1", "apis/apps/v1"]);
        let core = &parts[0];
        for name in [
            "io.k8s.api.core.v1.Pod",
            "io.k8s.api.core.v1.PodList",
            "io.k8s.api.core.v1.Namespace",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
            "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
        ] {
            assert!(core.schemas.contains_key(name), "{name}");
        }
        let apps = &parts[1];
        assert!(apps.schemas.contains_key("io.k8s.api.autoscaling.v1.Scale"));
        assert!(!apps.schemas.contains_key("io.k8s.api.core.v1.Namespace"));
    }

    #[test]
    fn v3_apps_document_has_kinds_extensions_and_field_validation() {
        let doc = v3_document(&apps_part());
        let s = &doc["components"]["schemas"];
        let d = &s["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(d["description"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(d.get("required").is_none(), "upstream requires nothing on Deployment");
        assert_eq!(
            d["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        let containers = &s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-list-type"], "map");
        assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(
            s["io.k8s.api.apps.v1.DeploymentList"]["x-kubernetes-group-version-kind"][0]["kind"],
            "DeploymentList"
        );

        let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        let names: Vec<&str> = patch["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .filter_map(|p| p["name"].as_str())
            .collect();
        for n in ["fieldValidation", "dryRun", "fieldManager", "force"] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some());
        // Every PATCH operation for Deployment (main and status) offers fieldValidation.
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let Some(p) = item.get("patch") else { continue };
            let has = p["parameters"].as_array().into_iter().flatten().any(|x| x["name"] == "fieldValidation");
            assert!(has, "{path}");
        }
        let scale = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"];
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(doc["paths"].get("/apis/apps/v1/deployments").is_some());
        assert!(doc["paths"].get("/apis/apps/v1/").is_some());
        assert_eq!(dangling_refs(&doc), BTreeSet::new());
    }

    #[test]
    fn v2_document_has_the_same_definitions() {
        let parts = builtin_schemas(&served());
        let v2 = v2_document(&parts);
        assert_eq!(v2["swagger"], "2.0");
        let defs = &v2["definitions"];
        let d = &defs["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(d["x-kubernetes-group-version-kind"][0]["kind"], "Deployment");
        assert_eq!(
            d["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["x-kubernetes-patch-merge-key"],
            "name"
        );
        for name in v3_document(&parts[1])["components"]["schemas"].as_object().into_iter().flatten().map(|(k, _)| k) {
            assert!(defs.get(name).is_some(), "{name} missing from v2");
        }
        let text = serde_json::to_string(&v2).unwrap_or_default();
        assert!(!text.contains("#/components/schemas/"));
        let patch = &v2["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert!(patch["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == "fieldValidation"));
        assert!(patch["consumes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c == "application/strategic-merge-patch+json"));
    }

    #[test]
    fn index_points_at_hashed_documents_and_cache_follows_content() {
        let cache = OpenApiCache::new();
        let parts = builtin_schemas(&served());
        let r1 = cache.render(&parts);
        let index: Value = serde_json::from_slice(&r1.v3_index).unwrap_or_default();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap_or_default();
        let (_, hash) = r1.v3_document("apis/apps/v1").expect("apps doc");
        assert_eq!(url, format!("/openapi/v3/apis/apps/v1?hash={hash}"));
        assert!(index["paths"].get("api/v1").is_some());
        // Same parts: the same rendering.
        assert!(Arc::ptr_eq(&r1, &cache.render(&parts)));
        // A changed schema (as a CRD update would make): new hash for that document only.
        let mut changed = parts.clone();
        if let Some(Value::Object(d)) = changed[1].schemas.get_mut("io.k8s.api.apps.v1.Deployment") {
            d.insert("description".into(), json!("changed"));
        }
        let r2 = cache.render(&changed);
        assert_ne!(r2.v3_document("apis/apps/v1").map(|d| &d.1), Some(hash));
        assert_eq!(r2.v3_document("api/v1").map(|d| &d.1), r1.v3_document("api/v1").map(|d| &d.1));
        assert_ne!(r1.v2_etag, r2.v2_etag);
    }

    #[test]
    fn custom_resource_part_gets_paths_and_meta_types() {
        let r = ResourceInfo {
            group: "stable.example.com".into(),
            version: "v1".into(),
            kind: "CronTab".into(),
            plural: "crontabs".into(),
            singular: "crontab".into(),
            namespaced: true,
            short_names: vec![],
            categories: vec![],
            key_root: "/registry/stable.example.com/crontabs".into(),
            subresources: vec![],
            verbs: crate::discovery::VERBS,
            storage_version_hash: String::new(),
        };
        let mut schemas = Map::new();
        schemas.insert(
            "com.example.stable.v1.CronTab".into(),
            json!({"type": "object", "properties": {"metadata": {"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}},
                   "x-kubernetes-group-version-kind": [{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}]}),
        );
        let part = OpenApiPart { path: "apis/stable.example.com/v1".into(), schemas, resources: vec![r] };
        let doc = v3_document(&part);
        assert!(doc["components"]["schemas"].get("com.example.stable.v1.CronTabList").is_some());
        assert!(doc["components"]["schemas"].get("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").is_some());
        let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchStableExampleComV1NamespacedCronTab");
        assert!(patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_none());
        assert_eq!(dangling_refs(&doc), BTreeSet::new());
    }
}
