//! The Strategy of one served version of a CRD: pruning (reported as unknown
//! fields for fieldValidation), defaulting, schema and CEL validation, the
//! status split, printer columns and selectable fields.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

use generic_server::fieldmanager::StructuralSchema;
use generic_server::meta;
use generic_server::registry::table;
use generic_server::registry::{Decoded, Schema, Strategy, TableColumn};
use generic_server::status::Cause;

use crate::cel::{self, CelNode};
use crate::crd::{Column, Version};
use crate::jsonpath::JsonPath;
use crate::schema::{self, SchemaValidator};

/// Field label names must be `'static` for the Store; CRDs define them at run
/// time, so each distinct set is interned once for the life of the process.
fn intern(fields: &[String]) -> &'static [&'static str] {
    static TABLE: OnceLock<Mutex<HashMap<Vec<String>, &'static [&'static str]>>> = OnceLock::new();
    let mut t = TABLE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = t.get(fields) {
        return s;
    }
    let leaked: Vec<&'static str> = fields.iter().map(|f| &*Box::leak(f.clone().into_boxed_str())).collect();
    let slice: &'static [&'static str] = Box::leak(leaked.into_boxed_slice());
    t.insert(fields.to_vec(), slice);
    slice
}

pub struct CrStrategy {
    schema: Value,
    validator: SchemaValidator,
    cel: Option<Arc<CelNode>>,
    columns: Vec<(Column, JsonPath)>,
    selectable: Vec<(&'static str, JsonPath)>,
    selectable_names: &'static [&'static str],
    /// List and map types for server-side apply, from the structural schema.
    types: Arc<StructuralSchema>,
}

impl CrStrategy {
    pub fn new(version: &Version) -> Result<CrStrategy, String> {
        let validator = SchemaValidator::new(&version.schema)?;
        let mut errors = Vec::new();
        let cel = cel::compile(&version.schema, "openAPIV3Schema", &mut errors).map(Arc::new);
        if let Some(e) = errors.first() {
            return Err(e.full_message());
        }
        let mut columns = Vec::new();
        for c in &version.columns {
            columns.push((c.clone(), JsonPath::parse(&c.json_path)?));
        }
        let selectable_names = intern(&version.selectable_fields);
        let mut selectable = Vec::new();
        for name in selectable_names {
            selectable.push((*name, JsonPath::parse(&format!(".{name}"))?));
        }
        Ok(CrStrategy {
            schema: version.schema.clone(),
            validator,
            cel,
            columns,
            selectable,
            selectable_names,
            types: Arc::new(StructuralSchema::new(version.schema.clone())),
        })
    }

    fn validate_with(&self, new: &Value, old: Option<&Value>) -> Vec<Cause> {
        // Metadata is ObjectMeta's business (the Store checks it); the schema
        // speaks about the rest.
        let mut body = new.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("metadata");
        }
        let mut causes = self.validator.validate(&body);
        // A name constraint in the schema (metadata.name pattern, maxLength).
        if let Some(name_schema) = self.schema.pointer("/properties/metadata/properties/name") {
            if let Ok(v) = SchemaValidator::new(name_schema) {
                for c in v.validate(&json!(meta::name(new))) {
                    let field = if c.field.is_empty() { "metadata.name".to_string() } else { c.field.clone() };
                    let message = c.message.replace("body", "metadata.name");
                    causes.push(Cause { field, message, ..c });
                }
            }
        }
        if causes.is_empty() {
            if let Some(rules) = &self.cel {
                causes.extend(cel::evaluate(rules.clone(), body, old.cloned()));
            }
        }
        causes
    }
}

/// A cell of a printer column from the values its JSONPath found.
fn cell(col: &Column, found: &[&Value]) -> Value {
    match found {
        [] => Value::Null,
        [one] => match (col.type_.as_str(), one) {
            ("date", Value::String(s)) => match chrono::DateTime::parse_from_rfc3339(s) {
                Ok(t) => json!(table::human_duration(chrono::Utc::now().signed_duration_since(t).num_seconds())),
                Err(_) => json!(s),
            },
            ("integer" | "number" | "boolean", v) if !v.is_object() && !v.is_array() => (*one).clone(),
            (_, Value::String(s)) => json!(s),
            (_, v) => json!(v.to_string()),
        },
        many => {
            let parts: Vec<String> = many
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            json!(parts.join(","))
        }
    }
}

impl CrStrategy {
    /// The version's structural schema as the Store's [`Schema`]: decoding
    /// prunes what it does not declare (reported as unknown fields); apply
    /// follows its list and map types.
    pub fn schema(&self) -> Schema {
        let structural = Arc::new(self.schema.clone());
        Schema::custom(
            move |mut object| {
                let mut pruned = Vec::new();
                schema::prune(&mut object, &structural, true, "", &mut pruned);
                Ok(Decoded { object, unknown_fields: pruned })
            },
            self.types.clone(),
        )
        .unstructured()
    }
}

impl Strategy for CrStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, object: &mut Value) {
        schema::apply_defaults(object, &self.schema);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        self.validate_with(object, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut old_body = old.clone();
        if let Some(m) = old_body.as_object_mut() {
            m.remove("metadata");
        }
        self.validate_with(new, Some(&old_body))
    }

    fn field_labels(&self, object: &Value) -> Vec<(&'static str, String)> {
        self.selectable
            .iter()
            .map(|(name, path)| {
                let v = match path.find(object).first() {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(other) => other.to_string(),
                };
                (*name, v)
            })
            .collect()
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        self.selectable_names
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        if self.columns.is_empty() {
            return table::default_columns();
        }
        let mut cols = vec![TableColumn::name_column()];
        for (c, _) in &self.columns {
            cols.push(TableColumn {
                name: Cow::Owned(c.name.clone()),
                type_: Cow::Owned(c.type_.clone()),
                format: Cow::Owned(c.format.clone()),
                description: Cow::Owned(c.description.clone()),
                priority: c.priority,
            });
        }
        cols
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        if self.columns.is_empty() {
            return table::default_row(object);
        }
        let mut row = vec![json!(meta::name(object))];
        for (c, path) in &self.columns {
            row.push(cell(c, &path.find(object)));
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Crd;

    fn version() -> Version {
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "additionalPrinterColumns": [
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status", "priority": 1}
                ],
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "replicas": {"type": "integer", "default": 2, "maximum": 5},
                        "color": {"type": "string"}},
                        "x-kubernetes-validations": [{"rule": "self.replicas != 4", "message": "four is unlucky"}]},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}});
        Crd::parse(&crd).versions.remove(0)
    }

    #[test]
    fn strategy_prunes_defaults_validates_and_prints() {
        let s = CrStrategy::new(&version()).unwrap();
        let d = s.schema().decode(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"color": "red", "x": 1}})).unwrap();
        assert_eq!(d.unknown_fields, vec![".spec.x"]);
        let mut obj = d.object;
        s.default(&mut obj);
        assert_eq!(obj["spec"]["replicas"], json!(2));
        assert!(s.validate(&obj).is_empty());
        obj["spec"]["replicas"] = json!(4);
        assert_eq!(s.validate(&obj)[0].full_message(), "spec: Invalid value: \"object\": four is unlucky");
        obj["spec"]["replicas"] = json!(9);
        assert_eq!(s.validate(&obj)[0].field, "spec.replicas");
        assert_eq!(s.field_labels(&obj), vec![("spec.color", "red".to_string())]);
        assert_eq!(s.supported_field_labels(), &["spec.color"]);
        let cols = s.table_columns();
        assert_eq!(cols.len(), 3);
        assert_eq!(cols[2].priority, 1);
        obj["status"] = json!({"conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(s.table_row(&obj), vec![json!("w"), json!(9), json!("True")]);
    }
}
