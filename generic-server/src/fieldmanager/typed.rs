//! What a value's schema says about merging it (structured-merge-diff's
//! schema and typed walkers): which objects are structs, maps or atomic, which
//! lists are atomic, sets or maps keyed by some fields; and the walks over a
//! value with its type that server-side apply is made of: the set of fields a
//! value sets, the comparison of two values, merging, and removing fields.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::fieldpath::{Path, PathElement, Set};
use crate::openapi::facts::{facts, FieldFacts};

/// How a list merges (`x-kubernetes-list-type`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum ListType {
    /// Replaced as a whole; owned as a whole.
    #[default]
    Atomic,
    /// Items are scalars, merged as a set.
    Set,
    /// Items are objects identified by these key fields.
    Map(Vec<String>),
}

/// Where a resolver finds a node's children.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum TypeId {
    /// Nothing known: objects are granular maps, lists atomic.
    #[default]
    Untyped,
    /// A definition of the built-in facts table (for a list or map: of its
    /// items or values).
    Definition(String),
    /// A JSON pointer into a structural schema.
    Schema(String),
}

/// The merge-relevant type of one node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Type {
    pub id: TypeId,
    /// For arrays.
    pub list: ListType,
    /// For objects: replaced and owned as a whole (`x-kubernetes-map-type: atomic`).
    pub atomic: bool,
    /// For objects: keys are declared fields (a struct), not entries of a map.
    pub is_struct: bool,
}

/// Resolves the types of an object's nodes from the root down. A Strategy
/// hands one out (`Strategy::type_resolver`); built-ins use the facts table,
/// custom resources their CRD version's structural schema.
pub trait TypeResolver: Send + Sync {
    fn root(&self) -> Type;
    /// The type of a field (struct) or entry (map) of an object of type `parent`.
    fn field(&self, parent: &Type, key: &str) -> Type;
    /// The type of the items of a list of type `list`.
    fn item(&self, list: &Type) -> Type;
}

/// A resolver that knows nothing: upstream's deduced type.
pub struct Untyped;

impl TypeResolver for Untyped {
    fn root(&self) -> Type {
        Type::default()
    }
    fn field(&self, _parent: &Type, _key: &str) -> Type {
        Type::default()
    }
    fn item(&self, _list: &Type) -> Type {
        Type::default()
    }
}

/// Built-in types through the facts table, rooted at one definition.
pub struct Definitions {
    root: String,
}

impl Definitions {
    pub fn new(root: &str) -> Definitions {
        Definitions { root: root.to_string() }
    }
}

/// The type of a value of definition `name` (a struct unless unknown).
fn definition_type(name: &str) -> Type {
    let atomic = facts()
        .get(name)
        .and_then(|t| t.extensions.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "atomic");
    Type { id: TypeId::Definition(name.to_string()), list: ListType::Atomic, atomic, is_struct: true }
}

fn list_type_of(list_type: Option<&str>, keys: Vec<String>, merge_key: Option<&str>) -> ListType {
    match list_type {
        Some("map") if !keys.is_empty() => ListType::Map(keys),
        Some("map") => merge_key.map(|k| ListType::Map(vec![k.to_string()])).unwrap_or_default(),
        Some("set") => ListType::Set,
        Some(_) => ListType::Atomic,
        // Upstream treats a list with a patch merge key as a map keyed by it.
        None => merge_key.map(|k| ListType::Map(vec![k.to_string()])).unwrap_or_default(),
    }
}

fn field_facts_type(ff: &FieldFacts) -> Type {
    let list =
        list_type_of(ff.list_type(), ff.list_map_keys().into_iter().map(String::from).collect(), ff.patch_merge_key());
    let field_atomic = ff.map_type() == Some("atomic");
    if let Some(items) = &ff.items {
        return Type { id: TypeId::Definition(items.clone()), list, atomic: false, is_struct: false };
    }
    if let Some(r) = &ff.ref_type {
        let mut t = definition_type(r);
        t.atomic |= field_atomic;
        t.list = list;
        return t;
    }
    if let Some(values) = &ff.values {
        return Type { id: TypeId::Definition(values.clone()), list, atomic: field_atomic, is_struct: false };
    }
    Type { id: TypeId::Untyped, list, atomic: field_atomic, is_struct: false }
}

/// Children of nodes whose id is a facts definition.
fn definition_field(parent: &Type, key: &str) -> Type {
    match &parent.id {
        TypeId::Definition(d) if parent.is_struct => match facts().field(d, key) {
            Some(ff) => field_facts_type(ff),
            None => Type::default(),
        },
        // A map's entries are values of its value definition.
        TypeId::Definition(d) => definition_type(d),
        _ => Type::default(),
    }
}

fn definition_item(list: &Type) -> Type {
    match &list.id {
        TypeId::Definition(d) => definition_type(d),
        _ => Type::default(),
    }
}

impl TypeResolver for Definitions {
    fn root(&self) -> Type {
        definition_type(&self.root)
    }
    fn field(&self, parent: &Type, key: &str) -> Type {
        definition_field(parent, key)
    }
    fn item(&self, list: &Type) -> Type {
        definition_item(list)
    }
}

/// A custom resource's structural schema (an openAPIV3Schema), with
/// metadata typed as ObjectMeta from the facts table.
pub struct StructuralSchema {
    schema: Arc<Value>,
}

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

impl StructuralSchema {
    pub fn new(schema: Value) -> StructuralSchema {
        StructuralSchema { schema: Arc::new(schema) }
    }

    fn at(&self, pointer: String) -> Type {
        let node = self.schema.pointer(&pointer).unwrap_or(&Value::Null);
        let s = |k: &str| node.get(k).and_then(Value::as_str);
        let keys = node
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        Type {
            list: list_type_of(s("x-kubernetes-list-type"), keys, None),
            atomic: s("x-kubernetes-map-type") == Some("atomic"),
            is_struct: node.get("properties").is_some_and(Value::is_object),
            id: TypeId::Schema(pointer),
        }
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl TypeResolver for StructuralSchema {
    fn root(&self) -> Type {
        self.at(String::new())
    }
    fn field(&self, parent: &Type, key: &str) -> Type {
        match &parent.id {
            TypeId::Schema(p) => {
                if p.is_empty() && key == "metadata" {
                    return definition_type(OBJECT_META);
                }
                let node = self.schema.pointer(p).unwrap_or(&Value::Null);
                if node.get("properties").and_then(|ps| ps.get(key)).is_some() {
                    self.at(format!("{p}/properties/{}", escape_pointer(key)))
                } else if node.get("additionalProperties").is_some_and(Value::is_object) {
                    self.at(format!("{p}/additionalProperties"))
                } else {
                    Type::default()
                }
            }
            TypeId::Definition(_) => definition_field(parent, key),
            TypeId::Untyped => Type::default(),
        }
    }
    fn item(&self, list: &Type) -> Type {
        match &list.id {
            TypeId::Schema(p) => self.at(format!("{p}/items")),
            TypeId::Definition(_) => definition_item(list),
            TypeId::Untyped => Type::default(),
        }
    }
}

/// Key fields upstream's schemas default, so an item that omits them still
/// names the item the server stored with the default filled in.
fn key_default(field: &str) -> Option<Value> {
    match field {
        "protocol" => Some(Value::String("TCP".into())),
        _ => None,
    }
}

/// The path element naming one item of a non-atomic list.
pub fn item_element(list: &ListType, item: &Value) -> PathElement {
    match list {
        ListType::Map(keys) => {
            let mut fields: Vec<(String, String)> = keys
                .iter()
                .filter_map(|k| {
                    let v = item.get(k).filter(|v| !v.is_null()).cloned().or_else(|| key_default(k))?;
                    Some((k.clone(), v.to_string()))
                })
                .collect();
            fields.sort();
            PathElement::Key(fields)
        }
        _ => PathElement::Value(item.to_string()),
    }
}

fn child_path(path: &Path, pe: PathElement) -> Path {
    let mut p = path.clone();
    p.push(pe);
    p
}

/// The fields a value sets (structured-merge-diff's ToFieldSet): leaves, atomic
/// nodes, list items, map entries and empty objects.
pub fn field_set(r: &dyn TypeResolver, v: &Value) -> Set {
    let mut set = Set::new();
    walk_field_set(r, v, &r.root(), &Vec::new(), &mut set);
    set
}

fn walk_field_set(r: &dyn TypeResolver, v: &Value, t: &Type, path: &Path, set: &mut Set) {
    match v {
        Value::Object(m) => {
            if t.atomic {
                set.insert(path);
                return;
            }
            for (k, cv) in m {
                let p = child_path(path, PathElement::Field(k.clone()));
                walk_field_set(r, cv, &r.field(t, k), &p, set);
                let empty = cv.is_null() || cv.as_object().is_some_and(Map::is_empty);
                if empty || !t.is_struct {
                    set.insert(&p);
                }
            }
        }
        Value::Array(items) => {
            if t.list == ListType::Atomic {
                set.insert(path);
                return;
            }
            let it = r.item(t);
            let pes: Vec<PathElement> = items.iter().map(|i| item_element(&t.list, i)).collect();
            for (i, item) in items.iter().enumerate() {
                let p = child_path(path, pes[i].clone());
                if pes.iter().filter(|pe| **pe == pes[i]).count() > 1 {
                    // Duplicates are owned as a whole.
                    set.insert(&p);
                    continue;
                }
                walk_field_set(r, item, &it, &p, set);
                set.insert(&p);
            }
        }
        _ => set.insert(path),
    }
}

/// Every node of `v`: what structured-merge-diff's Compare reports added
/// against an empty object (leaves, atomic nodes, list items, map entries
/// and the objects and lists holding them). With `zero_structs`, less the
/// struct objects that are fields of structs: a Go zero value already has
/// those, so upstream's creates of built-ins own only what is inside them.
/// One walk that builds the tree directly, since every create needs it.
pub fn node_set(r: &dyn TypeResolver, v: &Value, zero_structs: bool) -> Set {
    let mut set = Set::new();
    nodes_below(r, v, &r.root(), zero_structs, &mut set);
    set
}

fn nodes_below(r: &dyn TypeResolver, v: &Value, t: &Type, zero_structs: bool, set: &mut Set) {
    match v {
        Value::Object(m) if !t.atomic => {
            for (k, cv) in m {
                let ct = r.field(t, k);
                let pe = PathElement::Field(k.clone());
                let mut below = Set::new();
                nodes_below(r, cv, &ct, zero_structs, &mut below);
                let zero = zero_structs
                    && t.is_struct
                    && ct.is_struct
                    && !ct.atomic
                    && cv.as_object().is_some_and(|o| !o.is_empty());
                match (zero, below.is_empty()) {
                    (false, true) => set.insert_member(pe),
                    (false, false) => {
                        set.insert_member(pe.clone());
                        set.insert_below(pe, below);
                    }
                    (true, _) => set.insert_below(pe, below),
                }
            }
        }
        Value::Array(items) if t.list != ListType::Atomic => {
            let it = r.item(t);
            let pes: Vec<PathElement> = items.iter().map(|i| item_element(&t.list, i)).collect();
            for (item, pe) in items.iter().zip(&pes) {
                // Duplicated items are one node, with nothing below it.
                if pes.iter().filter(|other| *other == pe).count() == 1 {
                    let mut below = Set::new();
                    nodes_below(r, item, &it, zero_structs, &mut below);
                    set.insert_below(pe.clone(), below);
                }
                set.insert(std::slice::from_ref(pe));
            }
        }
        _ => {}
    }
}

/// The differences between two values (structured-merge-diff's Compare).
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }
}

pub fn compare(r: &dyn TypeResolver, old: &Value, new: &Value) -> Comparison {
    let mut c = Comparison::default();
    walk_compare(r, Some(old), Some(new), &r.root(), &Vec::new(), &mut c);
    c
}

fn is_leaf(v: &Value, t: &Type) -> bool {
    match v {
        Value::Object(_) => t.atomic,
        Value::Array(_) => t.list == ListType::Atomic,
        _ => true,
    }
}

fn same_shape(a: &Value, b: &Value) -> bool {
    matches!((a, b), (Value::Object(_), Value::Object(_)) | (Value::Array(_), Value::Array(_)))
        || (!a.is_object() && !a.is_array() && !b.is_object() && !b.is_array())
}

fn walk_compare(
    r: &dyn TypeResolver,
    l: Option<&Value>,
    rv: Option<&Value>,
    t: &Type,
    path: &Path,
    c: &mut Comparison,
) {
    let any = match (l, rv) {
        (Some(a), Some(b)) if !same_shape(a, b) || is_leaf(a, t) || is_leaf(b, t) => {
            if a != b {
                c.modified.insert(path);
            }
            return;
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => return,
    };
    if is_leaf(any, t) {
        match (l, rv) {
            (None, _) => c.added.insert(path),
            (_, None) => c.removed.insert(path),
            _ => {}
        }
        return;
    }
    match any {
        Value::Object(_) => {
            let empty = Map::new();
            let lm = l.and_then(Value::as_object).unwrap_or(&empty);
            let rm = rv.and_then(Value::as_object).unwrap_or(&empty);
            let keys = lm.keys().chain(rm.keys().filter(|k| !lm.contains_key(*k)));
            for k in keys {
                let p = child_path(path, PathElement::Field(k.clone()));
                walk_compare(r, lm.get(k), rm.get(k), &r.field(t, k), &p, c);
            }
        }
        Value::Array(_) => {
            let it = r.item(t);
            let empty = Vec::new();
            let la = l.and_then(Value::as_array).unwrap_or(&empty);
            let ra = rv.and_then(Value::as_array).unwrap_or(&empty);
            let lk: Vec<PathElement> = la.iter().map(|i| item_element(&t.list, i)).collect();
            let rk: Vec<PathElement> = ra.iter().map(|i| item_element(&t.list, i)).collect();
            let mut seen: Vec<&PathElement> = Vec::new();
            for pe in lk.iter().chain(rk.iter()) {
                if seen.contains(&pe) {
                    continue;
                }
                seen.push(pe);
                let li: Vec<&Value> = la.iter().zip(&lk).filter(|(_, k)| *k == pe).map(|(v, _)| v).collect();
                let ri: Vec<&Value> = ra.iter().zip(&rk).filter(|(_, k)| *k == pe).map(|(v, _)| v).collect();
                let p = child_path(path, pe.clone());
                if li.len() > 1 || ri.len() > 1 {
                    // Duplicated items compare as a whole.
                    match (li.is_empty(), ri.is_empty()) {
                        (true, _) => c.added.insert(&p),
                        (_, true) => c.removed.insert(&p),
                        _ if li != ri => c.modified.insert(&p),
                        _ => {}
                    }
                    continue;
                }
                walk_compare(r, li.first().copied(), ri.first().copied(), &it, &p, c);
            }
        }
        _ => {}
    }
    match (l, rv) {
        (None, _) => c.added.insert(path),
        (_, None) => c.removed.insert(path),
        _ => {}
    }
}

/// Merges an applied configuration into a live value (structured-merge-diff's
/// Merge): the configuration wins, maps and structs merge key by key, lists by
/// their type, atomic nodes are replaced.
pub fn merge(r: &dyn TypeResolver, live: &Value, config: &Value) -> Value {
    merge_at(r, live, config, &r.root())
}

fn merge_at(r: &dyn TypeResolver, live: &Value, config: &Value, t: &Type) -> Value {
    match (live, config) {
        (Value::Object(lm), Value::Object(cm)) if !t.atomic => {
            let mut out = lm.clone();
            for (k, cv) in cm {
                let merged = match lm.get(k) {
                    Some(lv) => merge_at(r, lv, cv, &r.field(t, k)),
                    None => cv.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(la), Value::Array(ca)) if t.list != ListType::Atomic => Value::Array(merge_list(r, la, ca, t)),
        _ => config.clone(),
    }
}

/// Items of both lists, each once: live order, with the configuration's own
/// items placed where the configuration puts them relative to shared ones.
fn merge_list(r: &dyn TypeResolver, live: &[Value], config: &[Value], t: &Type) -> Vec<Value> {
    let it = r.item(t);
    let lk: Vec<PathElement> = live.iter().map(|i| item_element(&t.list, i)).collect();
    let ck: Vec<PathElement> = config.iter().map(|i| item_element(&t.list, i)).collect();
    let in_config = |pe: &PathElement| ck.iter().position(|k| k == pe);
    let mut out: Vec<Value> = Vec::new();
    let mut emitted: Vec<PathElement> = Vec::new();
    let mut ci = 0;
    let emit_config_up_to = |upto: usize, ci: &mut usize, out: &mut Vec<Value>, emitted: &mut Vec<PathElement>| {
        while *ci < upto {
            let pe = &ck[*ci];
            if !emitted.contains(pe) {
                let merged = match lk.iter().position(|k| k == pe) {
                    Some(li) => merge_at(r, &live[li], &config[*ci], &it),
                    None => config[*ci].clone(),
                };
                out.push(merged);
                emitted.push(pe.clone());
            }
            *ci += 1;
        }
    };
    for (li, pe) in lk.iter().enumerate() {
        if emitted.contains(pe) {
            continue;
        }
        match in_config(pe) {
            Some(pos) => emit_config_up_to(pos + 1, &mut ci, &mut out, &mut emitted),
            None => {
                out.push(live[li].clone());
                emitted.push(pe.clone());
            }
        }
    }
    emit_config_up_to(ck.len(), &mut ci, &mut out, &mut emitted);
    out
}

/// Removes the paths of `set` (and what lies below them) from a value.
pub fn remove(r: &dyn TypeResolver, v: &mut Value, set: &Set) {
    remove_at(r, v, set, &r.root());
}

fn remove_at(r: &dyn TypeResolver, v: &mut Value, set: &Set, t: &Type) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = PathElement::Field(k.clone());
                if set.is_member(&pe) {
                    m.remove(&k);
                } else if let (Some(child), Some(cv)) = (set.child(&pe), m.get_mut(&k)) {
                    remove_at(r, cv, child, &r.field(t, &k));
                }
            }
        }
        Value::Array(items) => {
            let it = r.item(t);
            let list = t.list.clone();
            items.retain(|i| !set.is_member(&item_element(&list, i)));
            for i in items.iter_mut() {
                if let Some(child) = set.child(&item_element(&list, i)) {
                    remove_at(r, i, child, &it);
                }
            }
        }
        _ => {}
    }
}

/// Adds, for every path of the set, the struct fields leading to it as members
/// (structured-merge-diff's EnsureNamedFieldsAreMembers), so that a field is
/// seen as owned when anything below it is.
pub fn with_named_fields(r: &dyn TypeResolver, set: &Set) -> Set {
    let mut out = set.clone();
    for p in set.paths() {
        let mut t = r.root();
        for (i, pe) in p.iter().enumerate() {
            if let PathElement::Field(f) = pe {
                if t.is_struct && i + 1 < p.len() {
                    out.insert(&p[..=i]);
                }
                t = r.field(&t, f);
            } else {
                t = r.item(&t);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::fieldpath::path_string;
    use super::*;
    use serde_json::json;

    fn deployment() -> Definitions {
        Definitions::new("io.k8s.api.apps.v1.Deployment")
    }

    fn paths(s: &Set) -> Vec<String> {
        s.paths().iter().map(|p| path_string(p)).collect()
    }

    #[test]
    fn field_set_follows_upstreams_shape() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "a"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "args": ["x"],
                    "ports": [{"containerPort": 80}]}]}}}});
        let s = field_set(&deployment(), &d);
        let fv = s.to_fields_v1();
        assert_eq!(fv["f:metadata"], json!({"f:labels": {"f:x": {}}, "f:name": {}}));
        assert_eq!(fv["f:spec"]["f:selector"], json!({}));
        let c = &fv["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:args"], json!({}));
        assert_eq!(
            c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
            json!({".": {}, "f:containerPort": {}})
        );
        let cm = json!({"data": {"a": "1"}, "metadata": {"finalizers": ["f"]}});
        let s = field_set(&Definitions::new("io.k8s.api.core.v1.ConfigMap"), &cm);
        assert_eq!(paths(&s), vec![".data.a", ".metadata.finalizers[=\"f\"]"]);
    }

    #[test]
    fn compare_reports_added_modified_removed() {
        let r = deployment();
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a", "image": "x"}]}}}});
        let new = json!({"spec": {"replicas": 2, "paused": true, "template": {"spec": {"containers": [{"name": "b", "image": "y"}]}}}});
        let c = compare(&r, &old, &new);
        assert_eq!(paths(&c.modified), vec![".spec.replicas"]);
        assert!(c.added.has(&[PathElement::Field("spec".into()), PathElement::Field("paused".into())]));
        assert!(paths(&c.added).contains(&".spec.template.spec.containers[name=\"b\"].image".to_string()));
        assert!(paths(&c.removed).contains(&".spec.template.spec.containers[name=\"a\"]".to_string()));
        assert!(compare(&r, &old, &old).is_same());
    }

    #[test]
    fn merge_follows_list_types() {
        let r = deployment();
        let live = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"matchLabels": {"x": "1"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let config = json!({"metadata": {"labels": {"b": "2"}}, "spec": {"selector": {"matchLabels": {"y": "2"}},
            "template": {"spec": {"containers": [{"name": "c", "image": "z"}, {"name": "b", "image": "w"}]}}}});
        let m = merge(&r, &live, &config);
        assert_eq!(m["metadata"]["labels"], json!({"a": "1", "b": "2"}));
        assert_eq!(m["spec"]["selector"], json!({"matchLabels": {"y": "2"}}));
        let names: Vec<&str> = m["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["a", "c", "b"]);
        assert_eq!(m["spec"]["template"]["spec"]["containers"][2]["image"], "w");
    }

    #[test]
    fn remove_and_named_fields() {
        let r = deployment();
        let mut v =
            json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}});
        let mut s = Set::new();
        s.insert(&[PathElement::Field("spec".into()), PathElement::Field("replicas".into())]);
        let item = PathElement::Key(vec![("name".into(), "\"a\"".into())]);
        let containers = ["spec", "template", "spec", "containers"].map(|f| PathElement::Field(f.into()));
        let mut p = containers.to_vec();
        p.push(item);
        s.insert(&p);
        let named = with_named_fields(&r, &s);
        assert!(named.has(&containers[..1]));
        assert!(named.has(&containers));
        remove(&r, &mut v, &s);
        assert_eq!(v, json!({"spec": {"template": {"spec": {"containers": [{"name": "b"}]}}}}));
    }

    #[test]
    fn structural_schema_types() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "sel": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
            "extra": {"type": "object", "additionalProperties": {"type": "string"}}}}}});
        let r = StructuralSchema::new(schema);
        // OwnerReference is an atomic struct.
        let v = json!({"metadata": {"ownerReferences": [{"uid": "u", "name": "n"}]},
            "spec": {"ports": [{"name": "p"}], "tags": ["a"], "sel": {"a": "b"}, "extra": {"k": "v"}}});
        assert_eq!(
            paths(&field_set(&r, &v)),
            vec![
                ".metadata.ownerReferences[uid=\"u\"]",
                ".spec.sel",
                ".spec.extra.k",
                ".spec.ports[name=\"p\"]",
                ".spec.ports[name=\"p\"].name",
                ".spec.tags[=\"a\"]",
            ]
        );
    }
}
