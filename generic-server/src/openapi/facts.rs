//! The one table of facts about built-in API types that the Rust type schemas do
//! not carry: patch strategies and merge keys (strategic merge patch), list types
//! and list-map keys (server-side apply), group-version-kinds (kubectl explain,
//! field validation), and which property refers to which definition.
//!
//! The table is generated from upstream's definitions by
//! `generic-server/data/gen_openapi_facts.py` into
//! `generic-server/data/openapi_facts.json`, compiled in, and parsed once.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

const FACTS_JSON: &str = include_str!("../../data/openapi_facts.json");

/// Facts about one property of a type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldFacts {
    /// The definition the property is (an object field).
    pub ref_type: Option<String>,
    /// The definition of each element when the property is an array.
    pub items: Option<String>,
    /// The definition of each value when the property is a map.
    pub values: Option<String>,
    /// The property's x-kubernetes-* extensions, verbatim.
    pub extensions: Map<String, Value>,
}

impl FieldFacts {
    fn ext_str(&self, key: &str) -> Option<&str> {
        self.extensions.get(key).and_then(Value::as_str)
    }
    /// x-kubernetes-patch-strategy split on commas ("merge,retainKeys").
    pub fn patch_strategies(&self) -> Vec<&str> {
        self.ext_str("x-kubernetes-patch-strategy")
            .map(|s| s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
    pub fn patch_merge_key(&self) -> Option<&str> {
        self.ext_str("x-kubernetes-patch-merge-key")
    }
    pub fn list_type(&self) -> Option<&str> {
        self.ext_str("x-kubernetes-list-type")
    }
    pub fn list_map_keys(&self) -> Vec<&str> {
        match self.extensions.get("x-kubernetes-list-map-keys") {
            Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
    pub fn map_type(&self) -> Option<&str> {
        self.ext_str("x-kubernetes-map-type")
    }
}

/// Facts about one definition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeFacts {
    /// The type's own x-kubernetes-* extensions (group-version-kind, map-type, ...).
    pub extensions: Map<String, Value>,
    /// Required properties as upstream lists them; None when upstream lists none.
    pub required: Option<Vec<String>>,
    pub fields: HashMap<String, FieldFacts>,
}

impl TypeFacts {
    /// The (group, version, kind) triples of x-kubernetes-group-version-kind.
    pub fn group_version_kinds(&self) -> Vec<(String, String, String)> {
        gvks_of(self.extensions.get("x-kubernetes-group-version-kind"))
    }
}

pub(crate) fn gvks_of(v: Option<&Value>) -> Vec<(String, String, String)> {
    let one = |g: &Value| {
        let s = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        (s("group"), s("version"), s("kind"))
    };
    match v {
        Some(Value::Array(list)) => list.iter().map(one).collect(),
        Some(o @ Value::Object(_)) => vec![one(o)],
        _ => Vec::new(),
    }
}

/// The whole table.
#[derive(Debug, Default)]
pub struct Facts {
    types: HashMap<String, TypeFacts>,
    by_gvk: HashMap<(String, String, String), String>,
}

impl Facts {
    fn parse(text: &str) -> Facts {
        let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut facts = Facts::default();
        let Some(Value::Object(types)) = doc.get("types") else {
            return facts;
        };
        for (name, entry) in types {
            let mut tf = TypeFacts::default();
            if let Some(Value::Object(ext)) = entry.get("ext") {
                tf.extensions = ext.clone();
            }
            if let Some(Value::Array(req)) = entry.get("required") {
                tf.required = Some(req.iter().filter_map(Value::as_str).map(String::from).collect());
            }
            if let Some(Value::Object(fields)) = entry.get("fields") {
                for (fname, f) in fields {
                    let Value::Object(f) = f else { continue };
                    let mut ff = FieldFacts::default();
                    for (k, v) in f {
                        let s = v.as_str().map(String::from);
                        match k.as_str() {
                            "ref" => ff.ref_type = s,
                            "items" => ff.items = s,
                            "values" => ff.values = s,
                            _ => {
                                ff.extensions.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    tf.fields.insert(fname.clone(), ff);
                }
            }
            for gvk in tf.group_version_kinds() {
                facts.by_gvk.entry(gvk).or_insert_with(|| name.clone());
            }
            facts.types.insert(name.clone(), tf);
        }
        facts
    }

    pub fn get(&self, type_name: &str) -> Option<&TypeFacts> {
        self.types.get(type_name)
    }

    pub fn field(&self, type_name: &str, field: &str) -> Option<&FieldFacts> {
        self.types.get(type_name).and_then(|t| t.fields.get(field))
    }

    /// The definition name whose x-kubernetes-group-version-kind lists this
    /// group, version and kind, e.g. ("apps", "v1", "Deployment") ->
    /// "io.k8s.api.apps.v1.Deployment". Shared types such as DeleteOptions list
    /// many; the first listed wins only for kinds that are not shared.
    pub fn type_for_gvk(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.by_gvk.get(&(group.to_string(), version.to_string(), kind.to_string())).map(String::as_str)
    }

    pub fn type_names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }
}

/// The facts table, parsed on first use.
pub fn facts() -> &'static Facts {
    static FACTS: OnceLock<Facts> = OnceLock::new();
    FACTS.get_or_init(|| Facts::parse(FACTS_JSON))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_table_loads_and_answers() {
        let f = facts();
        let c = f.field("io.k8s.api.core.v1.PodSpec", "containers").expect("containers");
        assert_eq!(c.patch_strategies(), vec!["merge"]);
        assert_eq!(c.patch_merge_key(), Some("name"));
        assert_eq!(c.items.as_deref(), Some("io.k8s.api.core.v1.Container"));
        assert_eq!(c.list_type(), Some("map"));
        assert_eq!(c.list_map_keys(), vec!["name"]);
        let v = f.field("io.k8s.api.core.v1.PodSpec", "volumes").expect("volumes");
        assert_eq!(v.patch_strategies(), vec!["merge", "retainKeys"]);
        assert_eq!(f.type_for_gvk("apps", "v1", "Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
        assert_eq!(f.type_for_gvk("", "v1", "Pod"), Some("io.k8s.api.core.v1.Pod"));
        assert_eq!(
            f.field("io.k8s.api.apps.v1.Deployment", "spec").and_then(|s| s.ref_type.as_deref()),
            Some("io.k8s.api.apps.v1.DeploymentSpec")
        );
    }
}
