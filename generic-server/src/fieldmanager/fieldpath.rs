//! Field paths and sets of them (structured-merge-diff's fieldpath), and their
//! wire form, FieldsV1: a JSON tree whose keys are path elements (`f:<field>`,
//! `k:<key fields as JSON>`, `v:<value as JSON>`, `i:<index>`) and where `.`
//! marks that the path leading to it is itself a member of the set.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path. The derived order (fields, then keys, then values,
/// then indexes) is the order structured-merge-diff sorts elements in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a struct or a key of a map.
    Field(String),
    /// An item of an associative list, by its key fields: (name, compact JSON
    /// of the value), sorted by name.
    Key(Vec<(String, String)>),
    /// An item of a set list, as the compact JSON of its value.
    Value(String),
    /// An item of a list by position (only ever decoded, never produced).
    Index(usize),
}

pub type Path = Vec<PathElement>;

impl PathElement {
    /// The FieldsV1 key of this element.
    pub fn serialize(&self) -> String {
        match self {
            PathElement::Field(f) => {
                let mut key = String::with_capacity(f.len() + 2);
                key.push_str("f:");
                key.push_str(f);
                key
            }
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(n, v)| format!("{}:{v}", serde_json::to_string(n).unwrap_or_default()))
                    .collect();
                format!("k:{{{}}}", parts.join(","))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a FieldsV1 key.
    pub fn deserialize(s: &str) -> Result<PathElement, String> {
        let (kind, rest) = match (s.get(..1), s.get(1..2), s.get(2..)) {
            (Some(k), Some(":"), Some(rest)) => (k, rest),
            _ => return Err(format!("invalid path element {s:?}")),
        };
        match kind {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|e| format!("invalid value in {s:?}: {e}"))?;
                Ok(PathElement::Value(v.to_string()))
            }
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(Value::Object(m)) => {
                    let mut fields: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
                    fields.sort();
                    Ok(PathElement::Key(fields))
                }
                _ => Err(format!("invalid key in {s:?}")),
            },
            "i" => rest.parse().map(PathElement::Index).map_err(|_| format!("invalid index in {s:?}")),
            _ => Err(format!("unknown path element type in {s:?}")),
        }
    }
}

impl fmt::Display for PathElement {
    /// structured-merge-diff's human form, used in conflict messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields.iter().map(|(n, v)| format!("{n}={v}")).collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path in structured-merge-diff's human form: `.spec.containers[name="a"].image`.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// A set of paths, as a tree: `members` are the paths ending here, `children`
/// the sets below each element. Empty children are never kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Set {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Adds the path of one element.
    pub fn insert_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    /// Adds `below` as the set under `pe` (paths relative to it), for a
    /// caller building the tree top-down instead of path by path.
    pub fn insert_below(&mut self, pe: PathElement, below: Set) {
        if !below.is_empty() {
            self.children.insert(pe, below);
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn is_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    /// The set below one element (paths relative to it).
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    /// Adds every path of `other`.
    pub fn merge(&mut self, other: Set) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.members.extend(other.members);
        for (pe, c) in other.children {
            match self.children.get_mut(&pe) {
                Some(mine) => mine.merge(c),
                None => {
                    self.children.insert(pe, c);
                }
            }
        }
    }

    /// The union, taking both sides.
    pub fn union(mut self, other: Set) -> Set {
        self.merge(other);
        self
    }

    /// Removes every path of `other`.
    pub fn subtract(&mut self, other: &Set) {
        if other.is_empty() {
            return;
        }
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|pe, c| match other.children.get(pe) {
            Some(o) => {
                c.subtract(o);
                !c.is_empty()
            }
            None => true,
        });
    }

    /// The paths of `self` that are not paths of `other`.
    pub fn difference(mut self, other: &Set) -> Set {
        self.subtract(other);
        self
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Keeps only what lies below the given top-level elements (or, with
    /// `keep == false`, drops those subtrees): how reset fields are filtered.
    pub fn filter_top(mut self, elements: &[PathElement], keep: bool) -> Set {
        self.members.retain(|m| elements.contains(m) == keep);
        self.children.retain(|pe, _| elements.contains(pe) == keep);
        self
    }

    /// Every path, members of a node before the paths below it, in element order.
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The FieldsV1 form.
    pub fn to_fields_v1(&self) -> Value {
        let mut out = Map::with_capacity(self.width());
        self.write_fields_v1(&mut out);
        Value::Object(out)
    }

    /// At most how many FieldsV1 keys this node has (members with children
    /// count once there), to size its map.
    fn width(&self) -> usize {
        self.members.len() + self.children.len()
    }

    /// Writes the FieldsV1 keys of this node into `out`, in element order:
    /// members and children are both sorted, so one pass merges them.
    fn write_fields_v1(&self, out: &mut Map<String, Value>) {
        let mut members = self.members.iter().peekable();
        let mut children = self.children.iter().peekable();
        loop {
            let pe = match (members.peek(), children.peek()) {
                (None, None) => return,
                (Some(m), None) => *m,
                (None, Some((c, _))) => *c,
                (Some(m), Some((c, _))) => (*m).min(*c),
            };
            let member = members.next_if(|m| *m == pe).is_some();
            let below = children.next_if(|(c, _)| *c == pe).map(|(_, s)| s);
            let mut inner = Map::with_capacity(below.map_or(0, |b| b.width() + usize::from(member)));
            if let Some(below) = below {
                if member {
                    inner.insert(".".into(), Value::Object(Map::new()));
                }
                below.write_fields_v1(&mut inner);
            }
            out.insert(pe.serialize(), Value::Object(inner));
        }
    }

    /// Parses the FieldsV1 form.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("fieldsV1 must be an object".into());
        };
        let mut set = Set::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let pe = PathElement::deserialize(k)?;
            let Value::Object(cm) = child else {
                return Err(format!("the value of {k:?} must be an object"));
            };
            if cm.is_empty() || cm.contains_key(".") {
                set.members.insert(pe.clone());
            }
            let c = Set::from_fields_v1(child)?;
            if !c.is_empty() {
                set.children.insert(pe, c);
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trips_in_upstreams_shape() {
        let wire = json!({
            "f:data": {".": {}, "f:a": {}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:finalizers": {"v:\"x\"": {}}, "f:list": {"i:0": {}}}
        });
        let set = Set::from_fields_v1(&wire).unwrap();
        assert!(set.has(&[f("data")]));
        assert!(set.has(&[f("data"), f("a")]));
        assert!(!set.has(&[f("spec")]));
        let item = PathElement::Key(vec![("name".into(), "\"nginx\"".into())]);
        assert!(set.has(&[f("spec"), f("containers"), item.clone()]));
        assert!(set.has(&[f("spec"), f("containers"), item.clone(), f("image")]));
        assert_eq!(set.to_fields_v1(), wire);
        assert_eq!(
            path_string(&[f("spec"), f("containers"), item, f("image")]),
            ".spec.containers[name=\"nginx\"].image"
        );
        assert_eq!(path_string(&[f("a"), PathElement::Value("\"x\"".into()), PathElement::Index(2)]), ".a[=\"x\"][2]");
    }

    #[test]
    fn keys_are_canonical() {
        let pe = PathElement::deserialize("k:{\"protocol\":\"TCP\",\"containerPort\":80}").unwrap();
        assert_eq!(pe.serialize(), "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
        assert!(PathElement::deserialize("x:1").is_err());
        assert!(PathElement::deserialize("k:[1]").is_err());
        assert!(PathElement::deserialize("i:a").is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::new();
        a.insert(&[f("x"), f("y")]);
        a.insert(&[f("x"), f("z")]);
        let mut b = Set::new();
        b.insert(&[f("x"), f("y")]);
        b.insert(&[f("w")]);
        assert_eq!(a.clone().difference(&b).paths(), vec![vec![f("x"), f("z")]]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("x"), f("y")]]);
        assert_eq!(a.clone().union(b.clone()).paths().len(), 3);
        assert!(a.clone().difference(&a).is_empty());
        assert_eq!(a.clone().union(b.clone()).filter_top(&[f("w")], false), a);
        // In place: a member that also has children below it stays a member
        // when only its children go, and a node left empty is dropped.
        let mut c = a.clone();
        c.insert(&[f("x")]);
        c.subtract(&a);
        assert_eq!(c.paths(), vec![vec![f("x")]]);
        let mut d = Set::new();
        d.merge(a.clone());
        d.merge(b);
        assert_eq!(d.paths(), vec![vec![f("w")], vec![f("x"), f("y")], vec![f("x"), f("z")]]);
    }
}
