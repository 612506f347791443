//! Component schemas of the built-in types, generated from the k8s-openapi
//! types (their `schemars` schemas carry upstream's descriptions) and
//! completed with the facts table's extensions, in upstream's OpenAPI v3 form:
//! definitions named as upstream ("io.k8s.api.core.v1.Pod"), references as
//! "#/components/schemas/<name>", a reference with siblings (a description)
//! wrapped in `allOf`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use k8s_openapi::schemars::generate::SchemaSettings;
use k8s_openapi::schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use super::facts::facts;
use crate::discovery::OpenApiPart;
use crate::registry::{ResourceInfo, Subresource};

pub const REF_PREFIX_V3: &str = "#/components/schemas/";

pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";

/// Definitions every group-version document refers to from its paths.
pub const COMMON_DEFINITIONS: &[&str] = &[DELETE_OPTIONS, STATUS, WATCH_EVENT, PATCH, API_RESOURCE_LIST];

macro_rules! generate_all {
    ($gen:ident; $($t:ty),* $(,)?) => {
        $( let _ = $gen.subschema_for::<$t>(); )*
    };
}

/// Every built-in definition this server knows, in v3 form with the facts
/// merged in. Built once.
pub fn builtin_definitions() -> &'static Map<String, Value> {
    static DEFS: OnceLock<Map<String, Value>> = OnceLock::new();
    DEFS.get_or_init(generate)
}

fn generate() -> Map<String, Value> {
    use k8s_openapi::api::{
        admissionregistration::v1 as admreg, apps::v1 as apps, authentication::v1 as authn, authorization::v1 as authz,
        autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
        certificates::v1 as certs, coordination::v1 as coord, core::v1 as core, discovery::v1 as disc,
        events::v1 as events, flowcontrol::v1 as flowcontrol, networking::v1 as net, node::v1 as nodev1,
        policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as sched, storage::v1 as storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apireg;

    let settings = SchemaSettings::openapi3().with(|s| {
        s.transforms.clear();
        s.meta_schema = None;
        s.definitions_path = "/components/schemas".into();
    });
    let mut gen: SchemaGenerator = settings.into_generator();
    generate_all!(gen;
        meta::DeleteOptions, meta::Status, meta::WatchEvent<core::Pod>, meta::Patch, meta::APIResourceList,
        meta::APIGroup, meta::APIGroupList, meta::APIVersions, meta::ListMeta,
        core::Namespace, core::ConfigMap, core::Secret, core::Service, core::ServiceAccount, core::Pod,
        core::Event, core::Node, core::Endpoints, core::PersistentVolume, core::PersistentVolumeClaim,
        core::ReplicationController, core::LimitRange, core::ResourceQuota, core::PodTemplate,
        core::Binding, core::ComponentStatus,
        apps::Deployment, apps::ReplicaSet, apps::StatefulSet, apps::DaemonSet, apps::ControllerRevision,
        autoscaling1::Scale, autoscaling1::HorizontalPodAutoscaler, autoscaling2::HorizontalPodAutoscaler,
        batch::Job, batch::CronJob,
        rbac::Role, rbac::RoleBinding, rbac::ClusterRole, rbac::ClusterRoleBinding,
        coord::Lease, net::Ingress, net::IngressClass, net::NetworkPolicy, policy::PodDisruptionBudget,
        policy::Eviction, events::Event, disc::EndpointSlice, storage::StorageClass, storage::CSIDriver,
        storage::CSINode, storage::VolumeAttachment, storage::CSIStorageCapacity, net::IPAddress, net::ServiceCIDR,
        nodev1::RuntimeClass, sched::PriorityClass, certs::CertificateSigningRequest,
        admreg::ValidatingWebhookConfiguration, admreg::MutatingWebhookConfiguration,
        admreg::ValidatingAdmissionPolicy, admreg::ValidatingAdmissionPolicyBinding,
        flowcontrol::FlowSchema, flowcontrol::PriorityLevelConfiguration,
        apiext::CustomResourceDefinition, apireg::APIService,
        authn::TokenReview, authn::SelfSubjectReview, authz::SubjectAccessReview, authz::LocalSubjectAccessReview,
        authz::SelfSubjectAccessReview, authz::SelfSubjectRulesReview,
    );
    let mut defs = gen.take_definitions(false);
    // Upstream's definitions for special string types and the Patch body.
    if let Some(Value::Object(s)) = defs.get_mut("io.k8s.apimachinery.pkg.util.intstr.IntOrString") {
        s.insert("type".into(), json!("string"));
        s.insert("format".into(), json!("int-or-string"));
        s.remove("x-kubernetes-int-or-string");
    }
    if let Some(Value::Object(s)) = defs.get_mut("io.k8s.apimachinery.pkg.api.resource.Quantity") {
        s.insert("type".into(), json!("string"));
        s.remove("x-kubernetes-int-or-string");
    }
    defs.insert(
        PATCH.into(),
        json!({"description": "The body of a PATCH request; its form depends on the request's Content-Type.", "type": "object"}),
    );

    // Lists of every kind that has a group-version-kind.
    type Gvk = (String, String, String);
    let kinds: Vec<(String, Vec<Gvk>)> = defs
        .keys()
        .filter_map(|name| facts().get(name).map(|f| (name.clone(), f.group_version_kinds())))
        .filter(|(_, gvks)| gvks.len() == 1)
        .collect();
    for (name, gvks) in kinds {
        let list_name = format!("{name}List");
        if defs.contains_key(&list_name) || facts().get(&list_name).is_none() {
            continue;
        }
        let (_, _, kind) = &gvks[0];
        defs.insert(list_name, list_schema(kind, &format!("{REF_PREFIX_V3}{name}")));
    }

    for (name, schema) in defs.iter_mut() {
        merge_facts(name, schema);
        wrap_refs_with_siblings(schema);
    }
    defs
}

/// A `<Kind>List` schema whose items are `item_ref`.
pub fn list_schema(kind: &str, item_ref: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"},
            "items": {"description": format!("List of {kind} objects."), "type": "array", "items": {"$ref": item_ref}},
            "kind": {"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX_V3}{LIST_META}")}], "description": "Standard list metadata."},
        },
        "required": ["items"],
    })
}

/// Adds the facts' extensions for the type and its properties, and takes
/// upstream's required list.
pub fn merge_facts(name: &str, schema: &mut Value) {
    let Some(tf) = facts().get(name) else { return };
    let Value::Object(s) = schema else { return };
    for (k, v) in &tf.extensions {
        s.insert(k.clone(), v.clone());
    }
    match &tf.required {
        Some(req) => {
            s.insert("required".into(), json!(req));
        }
        None => {
            s.remove("required");
        }
    }
    if let Some(Value::Object(props)) = s.get_mut("properties") {
        for (field, ff) in &tf.fields {
            if let Some(Value::Object(p)) = props.get_mut(field) {
                for (k, v) in &ff.extensions {
                    p.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// `{"$ref": X, "description": D}` -> `{"allOf": [{"$ref": X}], "description": D}`,
/// everywhere in the schema, as upstream's v3 documents write it.
pub fn wrap_refs_with_siblings(v: &mut Value) {
    match v {
        Value::Object(m) => {
            // Only a string is a reference: a `properties` map may hold a
            // property named "$ref" (JSONSchemaProps does).
            if m.len() > 1 && m.get("$ref").is_some_and(Value::is_string) {
                if let Some(r) = m.remove("$ref") {
                    m.insert("allOf".into(), json!([{"$ref": r}]));
                }
            }
            for child in m.values_mut() {
                wrap_refs_with_siblings(child);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(wrap_refs_with_siblings),
        _ => {}
    }
}

/// Names referenced ("#/components/schemas/<name>") anywhere inside `v`.
pub fn collect_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if let Some(name) = r.strip_prefix(REF_PREFIX_V3) {
                    out.insert(name.to_string());
                }
            }
            m.values().for_each(|c| collect_refs(c, out));
        }
        Value::Array(a) => a.iter().for_each(|c| collect_refs(c, out)),
        _ => {}
    }
}

/// Adds `roots` and everything they reference, taking definitions from
/// `source`, to `into` (definitions already in `into` are kept and their
/// references followed too).
pub fn add_closure(into: &mut Map<String, Value>, roots: &[String], source: &Map<String, Value>) {
    let mut queue: Vec<String> = roots.to_vec();
    for v in into.values() {
        let mut refs = BTreeSet::new();
        collect_refs(v, &mut refs);
        queue.extend(refs);
    }
    while let Some(name) = queue.pop() {
        if into.contains_key(&name) {
            continue;
        }
        let Some(schema) = source.get(&name) else { continue };
        let mut refs = BTreeSet::new();
        collect_refs(schema, &mut refs);
        into.insert(name, schema.clone());
        queue.extend(refs.into_iter().filter(|r| !into.contains_key(r)));
    }
}

/// The definition name of a resource's kind: the built-in one from the facts,
/// else one of `schemas` whose x-kubernetes-group-version-kind names it, else
/// upstream's name for a custom resource (reversed group, version, kind).
pub fn definition_name(r: &ResourceInfo, schemas: &Map<String, Value>) -> String {
    definition_for_kind(&r.group, &r.version, &r.kind, schemas)
}

pub fn definition_for_kind(group: &str, version: &str, kind: &str, schemas: &Map<String, Value>) -> String {
    if let Some(n) = facts().type_for_gvk(group, version, kind) {
        if schemas.contains_key(n) || builtin_definitions().contains_key(n) {
            return n.to_string();
        }
    }
    for (name, s) in schemas {
        let gvks = super::facts::gvks_of(s.get("x-kubernetes-group-version-kind"));
        if gvks.len() == 1 && gvks[0] == (group.to_string(), version.to_string(), kind.to_string()) {
            return name.clone();
        }
    }
    let mut segments: Vec<&str> = group.split('.').collect();
    segments.reverse();
    format!("{}.{version}.{kind}", segments.join("."))
}

/// Schemas for the built-in resource kinds in `resources` and everything they
/// reference, grouped by group-version path ("api/v1", "apis/apps/v1"), with
/// the list kinds, the Scale kind of scalable resources and the meta types the
/// paths refer to. Resources whose kind is not a known built-in type get no
/// schema here (their server contributes it).
pub fn builtin_schemas(resources: &[ResourceInfo]) -> Vec<OpenApiPart> {
    let defs = builtin_definitions();
    let mut parts: Vec<OpenApiPart> = Vec::new();
    for r in resources {
        let path = gv_path(&r.group, &r.version);
        let idx = match parts.iter().position(|p| p.path == path) {
            Some(i) => i,
            None => {
                parts.push(OpenApiPart { path, schemas: Map::new(), resources: Vec::new() });
                parts.len() - 1
            }
        };
        let part = &mut parts[idx];
        part.resources.push(r.clone());
        let Some(name) = facts().type_for_gvk(&r.group, &r.version, &r.kind).filter(|n| defs.contains_key(*n)) else {
            continue;
        };
        let mut roots = vec![name.to_string(), format!("{name}List")];
        if r.subresources.iter().any(|s| matches!(s, Subresource::Scale(_))) {
            roots.push(SCALE.to_string());
        }
        roots.extend(COMMON_DEFINITIONS.iter().map(|s| s.to_string()));
        add_closure(&mut part.schemas, &roots, defs);
    }
    parts
}

/// "api/v1" for the core group, "apis/<group>/<version>" otherwise.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}
