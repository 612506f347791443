//! A CRD version's openAPIV3Schema at work on custom resources: structural
//! pruning, defaulting, and validation through the `jsonschema` crate with
//! upstream's field paths and messages.
//!
//! Schemas stay `serde_json::Value` in the CRD's own form; [`to_json_schema`]
//! rewrites one into the JSON Schema (draft 4, which shares OpenAPI v3.0's
//! boolean exclusiveMinimum/Maximum) the validator compiles.

use serde_json::{json, Map, Value};

use generic_server::status::Cause;

/// The ObjectMeta fields a custom resource keeps (everything else under
/// metadata is pruned, as upstream decodes metadata into ObjectMeta).
pub use generic_server::meta::OBJECT_META_FIELDS;

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool).unwrap_or(false)
}

pub fn preserves_unknown(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-preserve-unknown-fields")
}

pub fn is_embedded(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-embedded-resource")
}

pub fn is_int_or_string(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-int-or-string")
}

pub fn is_nullable(schema: &Value) -> bool {
    flag(schema, "nullable")
}

fn prune_meta(meta: &mut Value, path: &str, pruned: &mut Vec<String>) {
    if let Value::Object(m) = meta {
        let unknown: Vec<String> = m.keys().filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str())).cloned().collect();
        for k in unknown {
            m.remove(&k);
            pruned.push(format!("{path}.{k}"));
        }
    }
}

/// Drops every field the schema does not specify (unless it preserves unknown
/// fields there), recording each dropped field's path (".spec.foo").
/// `root` marks the object's top level, where apiVersion, kind and metadata
/// are always kept.
pub fn prune(obj: &mut Value, schema: &Value, root: bool, path: &str, pruned: &mut Vec<String>) {
    match obj {
        Value::Object(m) => {
            let embedded = root || is_embedded(schema);
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = preserves_unknown(schema) || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child_path = format!("{path}.{k}");
                if embedded && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if embedded && k == "metadata" {
                    if let Some(v) = m.get_mut(&k) {
                        prune_meta(v, &child_path, pruned);
                    }
                    continue;
                }
                let child_schema = props.and_then(|p| p.get(&k)).or(additional);
                match child_schema {
                    Some(s) => {
                        if let Some(v) = m.get_mut(&k) {
                            prune(v, s, false, &child_path, pruned);
                        }
                    }
                    None if preserve => {}
                    None => {
                        m.remove(&k);
                        pruned.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, s, false, &format!("{path}[{i}]"), pruned);
                }
            }
        }
        _ => {}
    }
}

/// Fills `default`s of missing fields (and of nulls in non-nullable fields),
/// top-down, as upstream's structural defaulting.
pub fn apply_defaults(obj: &mut Value, schema: &Value) {
    match obj {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, s) in props {
                    if let Some(d) = s.get("default") {
                        let missing = match m.get(k) {
                            None => true,
                            Some(Value::Null) => !is_nullable(s),
                            Some(_) => false,
                        };
                        if missing {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    if let Some(v) = m.get_mut(k) {
                        apply_defaults(v, s);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in m.values_mut() {
                    apply_defaults(v, s);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
                for item in items.iter_mut() {
                    apply_defaults(item, s);
                }
            }
        }
        _ => {}
    }
}

/// The JSON Schema (draft 4) equivalent of a CRD schema node.
pub fn to_json_schema(schema: &Value) -> Value {
    let Value::Object(src) = schema else { return json!({}) };
    let mut out = Map::new();
    let nullable = is_nullable(schema);
    for (k, v) in src {
        match k.as_str() {
            "properties" => {
                if let Value::Object(props) = v {
                    let converted: Map<String, Value> =
                        props.iter().map(|(name, s)| (name.clone(), to_json_schema(s))).collect();
                    out.insert(k.clone(), Value::Object(converted));
                }
            }
            "additionalProperties" | "items" | "not" => {
                if v.is_object() {
                    out.insert(k.clone(), to_json_schema(v));
                } else if v.is_boolean() && k == "additionalProperties" {
                    // Pruning already dropped unknown fields.
                }
            }
            "allOf" | "anyOf" | "oneOf" => {
                if let Value::Array(a) = v {
                    out.insert(k.clone(), Value::Array(a.iter().map(to_json_schema).collect()));
                }
            }
            "type" => {
                if let Value::String(t) = v {
                    if nullable {
                        out.insert("type".into(), json!([t, "null"]));
                    } else {
                        out.insert("type".into(), v.clone());
                    }
                }
            }
            "enum" => {
                let mut e = v.as_array().cloned().unwrap_or_default();
                if nullable && !e.contains(&Value::Null) {
                    e.push(Value::Null);
                }
                out.insert(k.clone(), Value::Array(e));
            }
            "required" | "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf"
            | "minLength" | "maxLength" | "pattern" | "minItems" | "maxItems" | "uniqueItems" | "minProperties"
            | "maxProperties" | "format" => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    if is_int_or_string(schema) && !out.contains_key("type") {
        let mut types = vec![json!("integer"), json!("string")];
        if nullable {
            types.push(json!("null"));
        }
        out.insert("type".into(), Value::Array(types));
        // The usual anyOf [integer, string] of int-or-string is implied.
        out.remove("anyOf");
    }
    if is_embedded(schema) {
        let mut req: Vec<Value> = out.get("required").and_then(Value::as_array).cloned().unwrap_or_default();
        for f in ["apiVersion", "kind"] {
            if !req.contains(&json!(f)) {
                req.push(json!(f));
            }
        }
        out.insert("required".into(), Value::Array(req));
        let props = out.entry("properties").or_insert_with(|| json!({}));
        if let Value::Object(p) = props {
            p.entry("apiVersion").or_insert_with(|| json!({"type": "string"}));
            p.entry("kind").or_insert_with(|| json!({"type": "string"}));
        }
    }
    Value::Object(out)
}

/// A Go duration ("1h30m", "300ms", "-1.5s").
pub fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    if s.is_empty() {
        return false;
    }
    let units = ["ns", "us", "µs", "ms", "s", "m", "h"];
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').map(char::len_utf8).sum::<usize>();
        if num_len == 0 {
            return false;
        }
        rest = &rest[num_len..];
        match units.iter().filter(|u| rest.starts_with(**u)).max_by_key(|u| u.len()) {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// A compiled validator for one CRD version's schema.
pub struct SchemaValidator {
    validator: jsonschema::Validator,
}

impl SchemaValidator {
    pub fn new(schema: &Value) -> Result<Self, String> {
        let js = to_json_schema(schema);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .should_ignore_unknown_formats(true)
            .with_format("byte", |s: &str| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.decode(s).is_ok()
            })
            .with_format("int32", |s: &str| s.parse::<i32>().is_ok())
            .with_format("int64", |s: &str| s.parse::<i64>().is_ok())
            .with_format("duration", is_go_duration)
            .with_format("datetime", |s: &str| chrono::DateTime::parse_from_rfc3339(s).is_ok())
            .with_format("date-time", |s: &str| chrono::DateTime::parse_from_rfc3339(s).is_ok())
            .with_format("password", |_: &str| true)
            .build(&js)
            .map_err(|e| e.to_string())?;
        Ok(SchemaValidator { validator })
    }

    /// Validates `obj` (the whole object); causes carry paths from the root.
    pub fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        for err in self.validator.iter_errors(obj) {
            let field = pointer_to_path(err.instance_path().as_str());
            causes.push(cause_for(&field, err.instance(), err.kind()));
        }
        causes
    }
}

/// "/spec/items/0/name" -> "spec.items[0].name".
pub fn pointer_to_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// Upstream's name of a JSON value's type.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn number_text(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

fn cause_for(field: &str, instance: &Value, kind: &jsonschema::error::ValidationErrorKind) -> Cause {
    use jsonschema::error::ValidationErrorKind as K;
    let shown = if field.is_empty() { "body".to_string() } else { field.to_string() };
    match kind {
        K::Type { kind } => {
            let expected = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(set) => {
                    let names: Vec<String> = set.iter().map(|t| t.to_string()).filter(|t| t != "null").collect();
                    names.first().cloned().unwrap_or_else(|| "null".into())
                }
            };
            let actual = type_name(instance);
            Cause::invalid(field, &json!(actual), &format!("{shown} in body must be of type {expected}: {actual:?}"))
        }
        K::Required { property } => {
            let p = property.as_str().unwrap_or_default();
            let f = if field.is_empty() { p.to_string() } else { format!("{field}.{p}") };
            Cause::required(f, "")
        }
        K::Enum { options } => {
            let allowed: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|o| match o {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
            Cause::not_supported(field, instance, &refs)
        }
        K::Minimum { limit } => Cause::invalid(
            field,
            instance,
            &format!("{shown} in body should be greater than or equal to {}", number_text(limit)),
        ),
        K::Maximum { limit } => Cause::invalid(
            field,
            instance,
            &format!("{shown} in body should be less than or equal to {}", number_text(limit)),
        ),
        K::ExclusiveMinimum { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should be greater than {}", number_text(limit)))
        }
        K::ExclusiveMaximum { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should be less than {}", number_text(limit)))
        }
        K::MultipleOf { .. } => Cause::invalid(field, instance, &format!("{shown} in body should be a multiple")),
        K::MinLength { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should be at least {limit} chars long"))
        }
        K::MaxLength { limit } => Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: may not be more than {limit} bytes"),
            field: field.to_string(),
        },
        K::Pattern { pattern } => Cause::invalid(field, instance, &format!("{shown} in body should match '{pattern}'")),
        K::MinItems { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should have at least {limit} items"))
        }
        K::MaxItems { limit } => Cause {
            reason: "FieldValueTooMany",
            message: format!(
                "Too many: {}: must have at most {limit} items",
                instance.as_array().map(Vec::len).unwrap_or(0)
            ),
            field: field.to_string(),
        },
        K::UniqueItems => Cause::duplicate(field, instance),
        K::MinProperties { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should have at least {limit} properties"))
        }
        K::MaxProperties { limit } => {
            Cause::invalid(field, instance, &format!("{shown} in body should have at most {limit} properties"))
        }
        K::Format { format } => {
            let s = instance.as_str().unwrap_or_default();
            Cause::invalid(field, instance, &format!("{shown} in body must be of type {format}: {s:?}"))
        }
        K::AnyOf { .. } => Cause::invalid(field, instance, "must validate at least one schema (anyOf)"),
        K::OneOfNotValid { .. } | K::OneOfMultipleValid { .. } => {
            Cause::invalid(field, instance, "must validate one and only one schema (oneOf)")
        }
        K::Not { .. } => Cause::invalid(field, instance, "must not validate the schema (not)"),
        other => Cause::invalid(field, instance, &format!("failed {} validation", other.keyword())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "replicas": {"type": "integer", "minimum": 0, "default": 1},
                        "image": {"type": "string", "pattern": "^[a-z]+$"},
                        "mode": {"type": "string", "enum": ["a", "b"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "when": {"type": "string", "format": "date-time"},
                        "note": {"type": "string", "nullable": true},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_unknown_and_keeps_preserved() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a", "junk": 1},
            "spec": {"image": "x", "bogus": 1, "extra": {"anything": [1]}, "labels": {"a": "b"}}, "top": 1});
        let mut pruned = Vec::new();
        prune(&mut obj, &schema(), true, "", &mut pruned);
        assert_eq!(pruned, vec![".metadata.junk", ".spec.bogus", ".top"]);
        assert_eq!(obj["spec"]["extra"]["anything"], json!([1]));
        assert_eq!(obj["spec"]["labels"]["a"], json!("b"));
    }

    #[test]
    fn defaults_fill_missing() {
        let mut obj = json!({"spec": {"image": "x"}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], json!(1));
    }

    #[test]
    fn validation_messages_follow_upstream() {
        let v = SchemaValidator::new(&schema()).unwrap();
        let causes = v.validate(&json!({"spec": {"replicas": "three", "image": "x"}}));
        assert_eq!(causes.len(), 1);
        assert_eq!(
            causes[0].full_message(),
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""
        );
        let causes = v.validate(&json!({"spec": {"mode": "c"}}));
        let msgs: Vec<String> = causes.iter().map(Cause::full_message).collect();
        assert!(msgs.contains(&"spec.image: Required value".to_string()), "{msgs:?}");
        assert!(msgs.contains(&"spec.mode: Unsupported value: \"c\": supported values: \"a\", \"b\"".to_string()));
        assert!(v.validate(&json!({"spec": {"image": "x", "port": 80, "note": null}})).is_empty());
        assert!(v.validate(&json!({"spec": {"image": "x", "port": "http"}})).is_empty());
        assert_eq!(v.validate(&json!({"spec": {"image": "x", "port": true}})).len(), 1);
        let c = v.validate(&json!({"spec": {"image": "x", "when": "yesterday"}}));
        assert_eq!(c[0].field, "spec.when");
        assert_eq!(
            v.validate(&json!({"spec": {"image": "x", "template": {"kind": "Pod"}}}))[0].field,
            "spec.template.apiVersion"
        );
        let c = v.validate(&json!({"spec": {"image": "x", "replicas": -1}}));
        assert_eq!(
            c[0].full_message(),
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"
        );
    }

    #[test]
    fn go_durations() {
        assert!(is_go_duration("1h30m"));
        assert!(is_go_duration("300ms"));
        assert!(!is_go_duration("1 hour"));
        assert!(!is_go_duration("h"));
    }
}
