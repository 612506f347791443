//! Strategic merge patch, with upstream's semantics
//! (k8s.io/apimachinery/pkg/util/strategicpatch, applying side only):
//!
//! - maps merge key by key; `null` deletes a key;
//! - a list whose field has patch strategy `merge` merges: lists of objects by
//!   the field's merge key (`containers` by `name`, `ports` by `containerPort`),
//!   lists of scalars as a set union; other lists are replaced;
//! - `$patch: replace` / `$patch: delete` on an object replace or clear it, and
//!   inside a merging list `{"name": "x", "$patch": "delete"}` removes element x
//!   and `{"$patch": "replace"}` replaces the whole list with the other elements;
//! - `$setElementOrder/<field>` orders the merged list; `$retainKeys` clears
//!   the keys of the object it sits in that it does not list;
//!   `$deleteFromPrimitiveList/<field>` removes scalars from a list.
//!
//! Ordering of merged lists follows upstream exactly, including how upstream's
//! in-place slice edits affect the order used for `$setElementOrder`.

use serde_json::{Map, Value};

use crate::openapi::facts::{facts, FieldFacts};
use crate::status::StatusError;

const DIRECTIVE: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// How an error is reported: upstream's interpretStrategicMergePatchError.
#[derive(Debug)]
enum SmpError {
    /// 400 BadRequest with the message.
    BadRequest(String),
    /// 422 Invalid with the generic message (upstream drops the text).
    Unprocessable,
}

type R<T> = Result<T, SmpError>;

fn bad(msg: impl Into<String>) -> SmpError {
    SmpError::BadRequest(msg.into())
}

const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

/// Applies a strategic merge patch to `doc`, a resource of definition
/// `type_name` ("io.k8s.api.core.v1.Pod"). An empty or unknown type name
/// applies the patch with no field facts (maps merge, lists replace).
pub fn strategic_merge_patch(doc: &Value, patch: &[u8], type_name: &str) -> Result<Value, StatusError> {
    crate::depth::check_json(patch).map_err(StatusError::bad_request)?;
    let patch_value: Value = serde_json::from_slice(patch).map_err(|e| StatusError::bad_request(go_json_error(&e)))?;
    let patch_map = match patch_value {
        Value::Object(m) => m,
        Value::Null => Map::new(),
        other => {
            return Err(StatusError::bad_request(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                go_json_kind(&other)
            )))
        }
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        _ => return Err(StatusError::bad_request("invalid JSON document")),
    };
    let schema = if facts().get(type_name).is_some() { Schema::Type(type_name) } else { Schema::Unknown };
    match merge_map(original, patch_map, schema) {
        Ok(m) => Ok(Value::Object(m)),
        Err(SmpError::BadRequest(msg)) => Err(StatusError::bad_request(msg)),
        Err(SmpError::Unprocessable) => Err(super::unprocessable()),
    }
}

fn go_json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        "unexpected end of JSON input".to_string()
    } else {
        e.to_string()
    }
}

fn go_json_kind(v: &Value) -> &'static str {
    match v {
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// Where in the type tree a value sits, for looking up field facts.
#[derive(Debug, Clone, Copy)]
enum Schema<'a> {
    /// No facts: maps merge, lists replace.
    Unknown,
    /// An object of this definition.
    Type(&'a str),
    /// A map whose values are of this definition (or unknown).
    MapOf(Option<&'a str>),
}

impl<'a> Schema<'a> {
    /// The facts of field `key` and the schema of its value (for a list: of
    /// each element).
    fn field(self, key: &str) -> (Schema<'a>, Option<&'a FieldFacts>) {
        match self {
            Schema::Unknown => (Schema::Unknown, None),
            Schema::MapOf(v) => (v.map(Schema::Type).unwrap_or(Schema::Unknown), None),
            Schema::Type(t) => match facts().field(t, key) {
                None => (Schema::Unknown, None),
                Some(f) => {
                    let sub = if let Some(r) = &f.ref_type {
                        Schema::Type(r.as_str())
                    } else if let Some(i) = &f.items {
                        Schema::Type(i.as_str())
                    } else if let Some(v) = &f.values {
                        Schema::MapOf(Some(v.as_str()))
                    } else {
                        Schema::Unknown
                    };
                    (sub, Some(f))
                }
            },
        }
    }

    fn name(self) -> String {
        match self {
            Schema::Type(t) => t.to_string(),
            _ => String::new(),
        }
    }
}

/// (strategy other than retainKeys, merge key) of a field.
fn field_strategy(f: Option<&FieldFacts>) -> R<(String, String)> {
    let Some(f) = f else { return Ok((String::new(), String::new())) };
    let strategies = f.patch_strategies();
    let other = match strategies.as_slice() {
        [] => "",
        [one] if *one == RETAIN_KEYS_STRATEGY => "",
        [one] => one,
        [a, b] if *a == RETAIN_KEYS_STRATEGY => b,
        [a, b] if *b == RETAIN_KEYS_STRATEGY => a,
        _ => return Err(bad(format!("unexpected patch strategy: [{}]", strategies.join(" ")))),
    };
    Ok((other.to_string(), f.patch_merge_key().unwrap_or_default().to_string()))
}

/// Go's type name for a decoded JSON value, as in upstream's messages.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "map[string]interface {}",
        Value::Array(_) => "[]interface {}",
        Value::String(_) => "string",
        Value::Number(_) => "float64",
        Value::Bool(_) => "bool",
        Value::Null => "<nil>",
    }
}

fn err_bad_arg_type(expected: &str, actual: &Value) -> SmpError {
    bad(format!("expected a {expected}, but received a {}", go_type(actual)))
}

fn err_no_merge_key(m: &Map<String, Value>, key: &str) -> SmpError {
    bad(format!("map: {} does not contain declared merge key: {key}", go_fmt_map(m)))
}

/// Go's `%v` rendering of a decoded JSON value.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            // Go's %v is the shortest 'g' form: exponent form from 1e6 up and
            // below 1e-4.
            Some(f) if f != 0.0 && (f.abs() >= 1e6 || f.abs() < 1e-4) => go_exponent(&format!("{f:e}")),
            Some(f) => f.to_string(),
            None => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => go_fmt_map(m),
    }
}

/// Rust's "1e6" as Go's "1e+06".
fn go_exponent(s: &str) -> String {
    match s.split_once('e') {
        Some((mant, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mant}e{sign}{digits:0>2}")
        }
        None => s.to_string(),
    }
}

fn go_fmt_map(m: &Map<String, Value>) -> String {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let parts: Vec<String> = keys.iter().map(|k| format!("{k}:{}", go_fmt(&m[k.as_str()]))).collect();
    format!("map[{}]", parts.join(" "))
}

/// The Go kind of a value for "all elements of a list have the same type".
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Map,
    Slice,
    String,
    Number,
    Bool,
    Null,
}

fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Object(_) => Kind::Map,
        Value::Array(_) => Kind::Slice,
        Value::String(_) => Kind::String,
        Value::Number(_) => Kind::Number,
        Value::Bool(_) => Kind::Bool,
        Value::Null => Kind::Null,
    }
}

fn slice_element_kind(lists: &[&[Value]]) -> R<Kind> {
    let mut prev: Option<Kind> = None;
    for l in lists {
        for v in l.iter() {
            let k = kind_of(v);
            match prev {
                None => {
                    if k == Kind::Slice {
                        return Err(SmpError::Unprocessable);
                    }
                    prev = Some(k);
                }
                Some(p) if p != k => {
                    let all: Vec<String> = lists.iter().map(|l| go_fmt(&Value::Array(l.to_vec()))).collect();
                    return Err(bad(format!("list element types are not identical: [{}]", all.join(" "))));
                }
                Some(_) => {}
            }
        }
    }
    prev.ok_or_else(|| bad("no elements in any of the given slices"))
}

/// Drops objects that carry a `$patch` directive, recursively.
fn remove_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            let mut out = Map::new();
            for (k, v) in m {
                if let Some(v) = remove_directives(v) {
                    out.insert(k, v);
                }
            }
            Some(Value::Object(out))
        }
        Value::Array(a) => Some(Value::Array(a.into_iter().filter_map(remove_directives).collect())),
        other => Some(other),
    }
}

/// Removes null-valued keys from every object inside `v`.
fn discard_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            for v in m.values_mut() {
                discard_nulls(v);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(discard_nulls),
        _ => {}
    }
}

/// Takes the patch value as-is (without directives, without nulls).
fn take_patch_value(original: &mut Map<String, Value>, key: String, mut v: Value) {
    discard_nulls(&mut v);
    match remove_directives(v) {
        Some(v) => {
            original.insert(key, v);
        }
        None => {
            original.shift_remove(&key);
        }
    }
}

fn merge_map(mut original: Map<String, Value>, mut patch: Map<String, Value>, schema: Schema) -> R<Map<String, Value>> {
    if let Some(d) = patch.get(DIRECTIVE) {
        return match d.as_str() {
            Some(REPLACE) => {
                patch.shift_remove(DIRECTIVE);
                Ok(patch)
            }
            Some(DELETE) => Ok(Map::new()),
            _ => Err(bad(format!("unknown patch type: {} in map: {}", go_fmt(d), go_fmt_map(&patch)))),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    merge_set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_v) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST)?, true)
        } else {
            (key, false)
        };

        if patch_v.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let Some(orig_v) = original.get(&key) else {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_v);
            }
            continue;
        };
        if kind_of(orig_v) != kind_of(&patch_v) {
            if !is_delete_list {
                take_patch_value(&mut original, key, patch_v);
            }
            continue;
        }
        match patch_v {
            Value::Object(pm) => {
                let (sub, f) = schema.field(&key);
                let (strategy, _) = field_strategy(f)?;
                let Some(Value::Object(om)) = original.shift_remove(&key) else { continue };
                let merged = if strategy == REPLACE { pm } else { merge_map(om, pm, sub)? };
                original.insert(key, Value::Object(merged));
            }
            Value::Array(pl) => {
                let (sub, f) = schema.field(&key);
                let (strategy, merge_key) = field_strategy(f)?;
                let Some(Value::Array(ol)) = original.get(&key).cloned() else { continue };
                let merged = if strategy == MERGE || is_delete_list {
                    merge_slice(ol, pl, sub, &merge_key, is_delete_list)?.merged
                } else {
                    pl
                };
                original.insert(key, Value::Array(merged));
            }
            scalar => take_patch_value(&mut original, key, scalar),
        }
    }
    Ok(original)
}

/// "$setElementOrder/containers" -> "containers".
fn extract_key(key: &str, prefix: &str) -> R<String> {
    match key.split_once('/') {
        Some((p, rest)) if p == prefix => Ok(rest.to_string()),
        _ => Err(bad(if prefix == DELETE_FROM_PRIMITIVE_LIST { BAD_PRIMITIVE_LIST } else { BAD_SET_ELEMENT_ORDER })),
    }
}

fn apply_retain_keys(original: &mut Map<String, Value>, patch: &mut Map<String, Value>) -> R<()> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else { return Ok(()) };
    let Value::Array(list) = retain else { return Err(bad(BAD_RETAIN_KEYS)) };
    let keep: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM_PRIMITIVE_LIST) || k.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(bad(BAD_RETAIN_KEYS));
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

/// The value of the merge key of a list element (None when absent or when
/// the element is not an object).
fn key_of<'v>(v: &'v Value, merge_key: &str) -> Option<&'v Value> {
    v.as_object().and_then(|m| m.get(merge_key))
}

/// Upstream's index(): position of `needle` in `list`, comparing merge key
/// values for objects and whole values for scalars.
fn index_in(list: &[Value], needle: &Value, merge_key: &str, kind: Kind) -> Option<usize> {
    if kind == Kind::Map {
        let want = key_of(needle, merge_key);
        list.iter().position(|v| key_of(v, merge_key) == want)
    } else {
        list.iter().position(|v| v == needle)
    }
}

fn validate_merge_key_in(lists: &[&[Value]], merge_key: &str) -> R<()> {
    for l in lists {
        for item in l.iter() {
            let Value::Object(m) = item else { return Err(err_bad_arg_type("map[string]interface {}", item)) };
            if !m.contains_key(merge_key) {
                return Err(err_no_merge_key(m, merge_key));
            }
        }
    }
    Ok(())
}

/// Stable sort of `to_sort` by position in `order` (items not found keep
/// their place at the front, as upstream's comparator says).
fn normalize_slice_order(to_sort: Vec<Value>, order: &[Value], merge_key: &str, kind: Kind) -> R<Vec<Value>> {
    let mut to_sort = to_sort;
    let mut to_delete = Vec::new();
    if kind == Kind::Map {
        validate_merge_key_in(&[&to_sort, order], merge_key)?;
        let (keep, del): (Vec<Value>, Vec<Value>) =
            to_sort.into_iter().partition(|v| v.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE));
        to_sort = keep;
        to_delete = del;
    }
    // Upstream's comparator is "less when both are found and earlier"; items
    // not found compare as less than everything. With every item found (the
    // common case) this is a stable sort by position.
    let mut keyed: Vec<(Option<usize>, Value)> =
        to_sort.into_iter().map(|v| (index_in(order, &v, merge_key, kind), v)).collect();
    insertion_sort_by(&mut keyed, |a, b| match (a.0, b.0) {
        (Some(i), Some(j)) => i < j,
        _ => true,
    });
    let mut out: Vec<Value> = keyed.into_iter().map(|(_, v)| v).collect();
    out.extend(to_delete);
    Ok(out)
}

/// A stable insertion sort with a plain "less" predicate (which may not be a
/// strict order, as upstream's is not when items are missing from the order).
fn insertion_sort_by<T>(v: &mut [T], less: impl Fn(&T, &T) -> bool) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 && less(&v[j], &v[j - 1]) {
            v.swap(j, j - 1);
            j -= 1;
        }
    }
}

/// Interleaves server-only items (`left`) into patch items (`right`), keeping
/// each list's order, placing a server-only item before a patch item when the
/// live list has it earlier.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(l.next()),
            (None, Some(_)) => out.extend(r.next()),
            (Some(a), Some(b)) => {
                let li = index_in(server_order, a, merge_key, kind);
                let ri = index_in(server_order, b, merge_key, kind);
                match (li, ri) {
                    (Some(i), Some(j)) if i < j => out.extend(l.next()),
                    _ => out.extend(r.next()),
                }
            }
        }
    }
    out
}

fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: &str,
    kind: Kind,
) -> R<Vec<Value>> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(server_only, patch_items, server_order, merge_key, kind))
}

/// Splits `merged` into (items present in `by`, the others).
fn partition_by_presence(merged: Vec<Value>, by: &[Value], merge_key: &str) -> R<(Vec<Value>, Vec<Value>)> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let present = if merge_key.is_empty() {
            by.contains(&v)
        } else {
            let Value::Object(m) = &v else { return Err(err_bad_arg_type("map[string]interface {}", &v)) };
            let Some(kv) = m.get(merge_key) else { return Err(err_no_merge_key(m, merge_key)) };
            let mut found = false;
            for (i, b) in by.iter().enumerate() {
                let Value::Object(bm) = b else { return Err(bad(format!("value for key {i} is not a map"))) };
                if bm.get(merge_key) == Some(kv) {
                    found = true;
                    break;
                }
            }
            found
        };
        if present {
            in_patch.push(v);
        } else {
            server_only.push(v);
        }
    }
    Ok((in_patch, server_only))
}

/// Position of the element whose merge key equals `value`.
fn find_by_key(list: &[Value], merge_key: &str, value: &Value) -> R<Option<usize>> {
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else { return Err(bad(format!("value for key {i} is not a map"))) };
        if m.get(merge_key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

struct SliceMerge {
    merged: Vec<Value>,
    /// What upstream's caller still sees in the original list's storage after
    /// the merge edited it in place: elements deleted by `$patch: delete` are
    /// shifted out and the first appended elements take the freed places.
    /// `$setElementOrder` orders server-only items by this view.
    original_view: Vec<Value>,
}

fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    elem: Schema,
    merge_key: &str,
    is_delete_list: bool,
) -> R<SliceMerge> {
    if original.is_empty() && patch.is_empty() {
        return Ok(SliceMerge { merged: original.clone(), original_view: original });
    }
    let kind = slice_element_kind(&[&original, &patch])?;

    if kind != Kind::Map {
        if is_delete_list {
            let merged: Vec<Value> = original.iter().filter(|v| !patch.contains(v)).cloned().collect();
            return Ok(SliceMerge { merged, original_view: original });
        }
        let mut both = original.clone();
        for v in &patch {
            if !both.contains(v) {
                both.push(v.clone());
            }
        }
        let (in_patch, server_only) = partition_by_presence(both, &patch, "")?;
        let merged = normalize_element_order(in_patch, server_only, &patch, &original, "", kind)?;
        return Ok(SliceMerge { merged, original_view: original });
    }

    if merge_key.is_empty() {
        return Err(bad(format!("cannot merge lists without merge key for {}", elem.name())));
    }

    // Special elements: deletions and replace.
    let n = original.len();
    let mut view = original.clone(); // the storage upstream edits in place
    let mut live = n; // upstream's slice length over that storage
    let mut plain = Vec::new();
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else { return Err(err_bad_arg_type("map[string]interface {}", &v)) };
        match m.get(DIRECTIVE) {
            None => plain.push(v),
            Some(d) => match d.as_str() {
                Some(DELETE) => {
                    let Some(key_value) = m.get(merge_key) else { return Err(err_no_merge_key(m, merge_key)) };
                    while let Some(i) = find_by_key(&view[..live], merge_key, key_value)? {
                        view[i..live].rotate_left(1);
                        // The vacated last slot keeps its old element, as Go's append does.
                        if live >= 2 && i < live - 1 {
                            view[live - 1] = view[live - 2].clone();
                        }
                        live -= 1;
                    }
                }
                Some(REPLACE) => replace = true,
                Some(MERGE) => return Err(bad("merging lists cannot yet be specified in the patch")),
                _ => return Err(bad(format!("unknown patch type: {} in map: {}", go_fmt(d), go_fmt_map(m)))),
            },
        }
    }
    let (mut current, patch, server_order, mut view, mut live) = if replace {
        let len = plain.len();
        (plain.clone(), Vec::new(), plain.clone(), plain, len)
    } else {
        let current: Vec<Value> = view[..live].to_vec();
        (current.clone(), plain, current, view, live)
    };

    // Merge the plain elements: matching ones merge, new ones append.
    let mut reallocated = false;
    for v in &patch {
        let Value::Object(pm) = v else { return Err(err_bad_arg_type("map[string]interface {}", v)) };
        let Some(key_value) = pm.get(merge_key) else { return Err(err_no_merge_key(pm, merge_key)) };
        match find_by_key(&current, merge_key, key_value)? {
            Some(i) => {
                let Value::Object(om) = std::mem::take(&mut current[i]) else { continue };
                let merged = Value::Object(merge_map(om, pm.clone(), elem)?);
                if !reallocated && i < view.len() {
                    view[i] = merged.clone();
                }
                current[i] = merged;
            }
            None => {
                current.push(v.clone());
                if !reallocated && live < view.len() {
                    view[live] = v.clone();
                    live += 1;
                } else {
                    reallocated = true;
                }
            }
        }
    }

    let (in_patch, server_only) = partition_by_presence(current, &patch, merge_key)?;
    let merged = normalize_element_order(in_patch, server_only, &patch, &server_order, merge_key, kind)?;
    Ok(SliceMerge { merged, original_view: view })
}

fn merge_set_element_order(original: &mut Map<String, Value>, patch: &mut Map<String, Value>, schema: Schema) -> R<()> {
    let order_keys: Vec<String> = patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for order_key in order_keys {
        let Some(order_v) = patch.shift_remove(&order_key) else { continue };
        let Value::Array(order) = &order_v else { return Err(err_bad_arg_type("[]interface {}", &order_v)) };
        let field = extract_key(&order_key, SET_ELEMENT_ORDER)?;

        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(other) => return Err(err_bad_arg_type("[]interface {}", other)),
        };
        let (elem, f) = schema.field(&field);
        let (strategy, merge_key) = field_strategy(f)?;
        validate_with_order(patch_list.as_deref().unwrap_or(&[]), order, &merge_key)?;

        let mut original_view = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list.clone()) {
            (Some(o), None) => o,
            (None, Some(p)) => match remove_directives(Value::Array(p)) {
                Some(Value::Array(a)) => a,
                _ => continue,
            },
            (Some(o), Some(p)) => {
                if strategy == MERGE {
                    let r = merge_slice(o, p, elem, &merge_key, false)?;
                    original_view = r.original_view;
                    r.merged
                } else {
                    p
                }
            }
            (None, None) => continue,
        };

        let (in_patch, server_only) = partition_by_presence(merged, order, &merge_key)?;
        let kind = slice_element_kind(&[&original_view, patch_list.as_deref().unwrap_or(&[])])?;
        let both = normalize_element_order(in_patch, server_only, order, &original_view, &merge_key, kind)?;
        original.insert(field.clone(), Value::Array(both));
        patch.shift_remove(&field);
    }
    Ok(())
}

/// The elements of the patch list must appear in `$setElementOrder` in the
/// same relative order.
fn validate_with_order(patch_list: &[Value], order: &[Value], merge_key: &str) -> R<()> {
    if order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let non_delete: Vec<&Value> = if merge_key.is_empty() {
        patch_list.iter().collect()
    } else {
        let mut out = Vec::new();
        for v in patch_list {
            let Value::Object(m) = v else { return Err(err_bad_arg_type("map[string]interface {}", v)) };
            if m.get(DIRECTIVE).and_then(Value::as_str) != Some(DELETE) {
                out.push(v);
            }
        }
        out
    };
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        let p = non_delete[pi];
        if p.as_object().is_some_and(|m| m.contains_key(DIRECTIVE)) {
            pi += 1;
            continue;
        }
        let equal = if merge_key.is_empty() {
            p == &order[oi]
        } else {
            let Value::Object(pm) = p else { return Err(err_bad_arg_type("map[string]interface {}", p)) };
            let Value::Object(om) = &order[oi] else {
                return Err(err_bad_arg_type("map[string]interface {}", &order[oi]));
            };
            let Some(a) = pm.get(merge_key) else { return Err(err_no_merge_key(pm, merge_key)) };
            let Some(b) = om.get(merge_key) else { return Err(err_no_merge_key(om, merge_key)) };
            a == b
        };
        if equal {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(bad(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch_list.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
    const POD: &str = "io.k8s.api.core.v1.Pod";

    fn smp(doc: Value, patch: Value, ty: &str) -> Value {
        strategic_merge_patch(&doc, patch.to_string().as_bytes(), ty).expect("patch applies")
    }

    fn pod(containers: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
               "spec": {"containers": containers}})
    }

    #[test]
    fn containers_merge_by_name() {
        let doc = pod(json!([{"name": "a", "image": "a:1", "ports": [{"containerPort": 80, "name": "http"}]},
                             {"name": "b", "image": "b:1"}]));
        let out = smp(
            doc,
            json!({"spec": {"containers": [{"name": "b", "image": "b:2"},
                                           {"name": "a", "ports": [{"containerPort": 443}]}]}}),
            POD,
        );
        let cs = &out["spec"]["containers"];
        assert_eq!(cs.as_array().map(Vec::len), Some(2));
        // Patch order wins for elements the patch names.
        assert_eq!(cs[0], json!({"name": "b", "image": "b:2"}));
        assert_eq!(cs[1]["image"], "a:1");
        // ports merge by containerPort, the new one first (upstream's order).
        assert_eq!(cs[1]["ports"], json!([{"containerPort": 443}, {"containerPort": 80, "name": "http"}]));
    }

    #[test]
    fn new_container_is_added_and_existing_kept() {
        let doc = pod(json!([{"name": "a", "image": "a:1"}]));
        let out = smp(doc, json!({"spec": {"containers": [{"name": "z", "image": "z:1"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([{"name": "z", "image": "z:1"}, {"name": "a", "image": "a:1"}]));
    }

    #[test]
    fn delete_directive_removes_list_element() {
        let doc = pod(json!([{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]));
        let out = smp(doc, json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([{"name": "b", "image": "b:1"}]));
    }

    #[test]
    fn null_removes_map_key_and_labels_merge() {
        let out = smp(pod(json!([])), json!({"metadata": {"labels": {"a": null, "c": "3"}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        // Upstream's own example: server-only items keep their place.
        let doc = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "1"}, {"name": "2", "other": "b"}, {"name": "4", "other": "c"}]}}}});
        let out = smp(
            doc,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]}}}}),
            DEPLOYMENT,
        );
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "2", "other": "b"}, {"name": "4", "other": "c"}, {"name": "3"}])
        );

        let doc = pod(json!([{"name": "a"}, {"name": "b"}]));
        let out = smp(
            doc,
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}],
                            "containers": [{"name": "c", "image": "c"}]}}),
            POD,
        );
        assert_eq!(out["spec"]["containers"], json!([{"name": "b"}, {"name": "c", "image": "c"}, {"name": "a"}]));
    }

    #[test]
    fn list_without_strategy_is_replaced() {
        let doc = pod(json!([{"name": "a", "args": ["x", "y"], "command": ["sh"]}]));
        let out = smp(doc, json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}), POD);
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        assert_eq!(out["spec"]["containers"][0]["command"], json!(["sh"]));
        // tolerations are atomic: replaced.
        let doc = json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}});
        let out = smp(doc, json!({"spec": {"tolerations": [{"key": "c"}]}}), POD);
        assert_eq!(out["spec"]["tolerations"], json!([{"key": "c"}]));
    }

    #[test]
    fn primitive_merge_list_and_delete_from_primitive_list() {
        let doc = json!({"metadata": {"finalizers": ["a", "b"]}});
        let out = smp(doc.clone(), json!({"metadata": {"finalizers": ["c"]}}), POD);
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let out = smp(doc, json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}), POD);
        assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn replace_and_delete_directives_on_maps() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let out = smp(doc.clone(), json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({"c": "3"}));
        let out = smp(doc, json!({"metadata": {"labels": {"$patch": "delete"}}}), POD);
        assert_eq!(out["metadata"]["labels"], json!({}));
        // $patch: replace inside a merging list replaces the list.
        let doc = pod(json!([{"name": "a"}, {"name": "b"}]));
        let out = smp(doc, json!({"spec": {"containers": [{"name": "c"}, {"$patch": "replace"}]}}), POD);
        assert_eq!(out["spec"]["containers"], json!([{"name": "c"}]));
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let doc = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        let out = smp(doc, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}), DEPLOYMENT);
        assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
        let e = strategic_merge_patch(
            &json!({"spec": {"strategy": {"type": "Recreate"}}}),
            br#"{"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{}}}}"#,
            DEPLOYMENT,
        )
        .expect_err("key outside retainKeys");
        assert_eq!((e.code, e.message.as_str()), (400, BAD_RETAIN_KEYS));
    }

    #[test]
    fn malformed_patches_are_rejected() {
        let doc = pod(json!([{"name": "a"}]));
        for body in [&b"{"[..], b"[1,2]", b"\"x\"", b"{\"spec\": }"] {
            let e = strategic_merge_patch(&doc, body, POD).expect_err("malformed");
            assert_eq!(
                (e.code, e.reason),
                (400, crate::status::Reason::BadRequest),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Missing merge key.
        let e = strategic_merge_patch(&doc, br#"{"spec":{"containers":[{"image":"x"}]}}"#, POD).expect_err("no key");
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "map: map[image:x] does not contain declared merge key: name");
        // Unknown directive.
        let e = strategic_merge_patch(&doc, br#"{"metadata":{"$patch":"frob"}}"#, POD).expect_err("bad directive");
        assert_eq!(e.code, 400);
        // Lists of lists.
        let e = strategic_merge_patch(
            &json!({"metadata": {"finalizers": [["a"]]}}),
            br#"{"metadata":{"finalizers":[["b"]]}}"#,
            POD,
        )
        .expect_err("list of lists");
        assert_eq!((e.code, e.reason), (422, crate::status::Reason::Invalid));
        // Bad $setElementOrder and $deleteFromPrimitiveList keys.
        let e = strategic_merge_patch(&doc, br#"{"spec":{"$setElementOrder":[]}}"#, POD).expect_err("bad order key");
        assert_eq!((e.code, e.message.as_str()), (400, BAD_SET_ELEMENT_ORDER));
        let e = strategic_merge_patch(&doc, br#"{"metadata":{"$deleteFromPrimitiveList":["a"]}}"#, POD)
            .expect_err("bad delete key");
        assert_eq!((e.code, e.message.as_str()), (400, BAD_PRIMITIVE_LIST));
    }

    #[test]
    fn unknown_type_merges_maps_and_replaces_lists() {
        let doc = json!({"a": {"b": 1, "c": [1, 2]}});
        let out = smp(doc, json!({"a": {"d": 2, "c": [3]}}), "");
        assert_eq!(out, json!({"a": {"b": 1, "c": [3], "d": 2}}));
    }

    #[test]
    fn go_formatting_matches_upstream_messages() {
        assert_eq!(go_fmt(&json!({"b": [1, "x"], "a": 1.5, "c": null})), "map[a:1.5 b:[1 x] c:<nil>]");
        assert_eq!(go_fmt(&json!(1000000)), "1e+06");
        assert_eq!(go_fmt(&json!(80)), "80");
    }
}
