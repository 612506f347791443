//! wardle.example.com/v1alpha1 flunders: the typed form (unknown fields are
//! dropped and reported for fieldValidation), upstream's defaulting and
//! validation of the reference fields, and the OpenAPI schema that lets
//! `kubectl explain` and `kubectl create` work through an aggregator.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use generic_server::discovery::OpenApiPart;
use generic_server::openapi::{gv_path, REF_PREFIX_V3};
use generic_server::registry::typed::decode_as;
use std::sync::Arc;

use generic_server::fieldmanager::Untyped;
use generic_server::registry::{Registration, ResourceInfo, Schema, Strategy};
use generic_server::status::Cause;

pub const GROUP: &str = "wardle.example.com";
pub const VERSION: &str = "v1alpha1";
const FLUNDER: &str = "Flunder";
const FISCHER: &str = "Fischer";

/// The flunders resource as discovery and storage see it: a type of the
/// sample server's own, so its identity is stated here.
pub fn registration() -> Registration {
    let info = ResourceInfo {
        group: GROUP.into(),
        version: VERSION.into(),
        kind: "Flunder".into(),
        plural: "flunders".into(),
        singular: "flunder".into(),
        namespaced: true,
        short_names: vec!["fl".into()],
        categories: Vec::new(),
        key_root: format!("/registry/{GROUP}/flunders"),
        subresources: Vec::new(),
        verbs: generic_server::discovery::VERBS,
        storage_version_hash: generic_server::discovery::storage_version_hash(GROUP, VERSION, "Flunder"),
    };
    let schema = Schema::custom(decode_as::<Flunder>, Arc::new(Untyped));
    Registration::new(info, schema, Arc::new(FlunderStrategy))
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flunder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<FlunderSpec>,
    /// Free-form, as the contract of this sample says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlunderSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference_type: Option<String>,
}

pub struct FlunderStrategy;

fn spec_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("spec").and_then(|s| s.get(field)).and_then(Value::as_str).unwrap_or("")
}

impl Strategy for FlunderStrategy {
    /// Upstream's v1alpha1 defaulting: a reference without a type refers to a
    /// Flunder.
    fn default(&self, obj: &mut Value) {
        if !spec_str(obj, "reference").is_empty() && spec_str(obj, "referenceType").is_empty() {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("referenceType".into(), json!(FLUNDER));
            }
        }
    }

    /// Upstream's ValidateFlunderSpec, on the internal fields the reference
    /// converts to (flunderReference or fischerReference, by its type), whose
    /// names are the paths upstream reports.
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let reference = spec_str(obj, "reference");
        let kind = spec_str(obj, "referenceType");
        let mut causes = Vec::new();
        match kind {
            FLUNDER | FISCHER if reference.is_empty() => {
                let field = if kind == FLUNDER { "spec.flunderReference" } else { "spec.fischerReference" };
                causes.push(Cause::invalid(field, &json!(""), &format!("cannot be empty if referenceType is {kind}")));
            }
            FLUNDER | FISCHER | "" => {}
            other => {
                causes.push(Cause::invalid("spec.referenceType", &json!(other), "must be Flunder or Fischer"));
            }
        }
        causes
    }
}

/// The OpenAPI part of the flunders resource, named as upstream names
/// definitions of a group without generated Go package names.
pub fn openapi(resources: &[ResourceInfo]) -> Vec<OpenApiPart> {
    let Some(info) = resources.iter().find(|r| r.group == GROUP && r.kind == "Flunder") else {
        return Vec::new();
    };
    let schema = json!({
        "description": "Flunder is an example type with a spec and a status.",
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"},
            "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"},
            "metadata": {"allOf": [{"$ref": format!("{REF_PREFIX_V3}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}], "default": {}, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"},
            "spec": {
                "description": "FlunderSpec is the specification of a Flunder.",
                "type": "object",
                "default": {},
                "properties": {
                    "reference": {"type": "string", "description": "A name of another flunder or fischer, depending on the reference type."},
                    "referenceType": {"type": "string", "enum": [FLUNDER, FISCHER], "description": "The type of the reference: Flunder (the default when a reference is set) or Fischer."},
                },
            },
            "status": {"description": "FlunderStatus is the status of a Flunder.", "type": "object", "x-kubernetes-preserve-unknown-fields": true, "default": {}},
        },
        "x-kubernetes-group-version-kind": [{"group": info.group, "version": info.version, "kind": info.kind}],
    });
    let mut schemas = Map::new();
    schemas.insert(format!("com.example.wardle.{VERSION}.Flunder"), schema);
    vec![OpenApiPart { path: gv_path(&info.group, &info.version), schemas, resources: vec![info.clone()] }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_rules() {
        let s = FlunderStrategy;
        let mut obj = json!({"metadata": {"name": "a"}, "spec": {"reference": "b"}});
        s.default(&mut obj);
        assert_eq!(obj["spec"]["referenceType"], FLUNDER);
        assert!(s.validate(&obj).is_empty());

        let msgs = |v: Value| s.validate(&v).iter().map(Cause::full_message).collect::<Vec<_>>();
        assert_eq!(
            msgs(json!({"spec": {"referenceType": "Fischer"}})),
            vec!["spec.fischerReference: Invalid value: \"\": cannot be empty if referenceType is Fischer"]
        );
        assert_eq!(
            msgs(json!({"spec": {"reference": "x", "referenceType": "Other"}})),
            vec!["spec.referenceType: Invalid value: \"Other\": must be Flunder or Fischer"]
        );
    }

    #[test]
    fn unknown_fields_are_dropped() {
        let d = registration()
            .schema
            .decode(json!({"apiVersion": "wardle.example.com/v1alpha1", "kind": "Flunder", "metadata": {"name": "a"}, "spec": {"reference": "b", "bogus": 1}, "status": {"free": {"x": 1}}}))
            .unwrap();
        assert_eq!(d.unknown_fields, vec![".spec.bogus"]);
        assert_eq!(d.object["status"]["free"]["x"], 1);
    }
}
