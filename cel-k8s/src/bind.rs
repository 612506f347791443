//! Binding JSON to an evaluation's variables without copying it.
//!
//! The `cel` crate copies a variable bound with `add_variable_from_value`
//! into its own value tree, strings included, on every bind; an admission
//! request's object bound for each policy, or a CRD's `self` for each rule,
//! was copied twice per evaluation (JSON to `cel::Value`, then to the
//! crate's `Val`). [`Variables`] resolves a name on its first lookup into a
//! tree that borrows every string and key from the JSON, so a variable no
//! expression names costs nothing and one that is named costs its
//! structure, once per evaluation.

use std::collections::HashMap;
use std::sync::OnceLock;

use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelUInt};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::Value as CelValue;
use serde_json::Value;

/// JSON as a CEL value that borrows its strings and keys: integers stay
/// integers, objects become string-keyed maps.
pub fn to_val(v: &Value) -> Box<dyn Val + '_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Box::new(CelInt::from(i)),
            (None, Some(u)) => Box::new(CelUInt::from(u)),
            _ => Box::new(CelDouble::from(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(a) => Box::new(CelList::from(a.iter().map(to_val).collect::<Vec<_>>())),
        Value::Object(m) => {
            let map: HashMap<CelMapKey<'_>, Box<dyn Val + '_>> =
                m.iter().map(|(k, v)| (CelMapKey::from(k.as_str()), to_val(v))).collect();
            Box::new(CelMap::from(map))
        }
    }
}

enum Source<'v> {
    Json(&'v Value),
    Cel(CelValue),
}

/// A variable's name, what it is bound to, and its conversion once made.
struct Entry<'v> {
    name: &'static str,
    source: Source<'v>,
    converted: OnceLock<Box<dyn Val + 'v>>,
}

/// Named variables for one evaluation, each converted when an expression
/// first looks it up; set as the context's resolver.
#[derive(Default)]
pub struct Variables<'v> {
    entries: Vec<Entry<'v>>,
}

impl<'v> Variables<'v> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Binds `name` to JSON; null stays CEL's null.
    pub fn json(mut self, name: &'static str, v: &'v Value) -> Self {
        self.entries.push(Entry { name, source: Source::Json(v), converted: OnceLock::new() });
        self
    }

    /// Binds `name` to a value built as a `cel::Value` (an opaque, a
    /// function's result).
    pub fn cel(mut self, name: &'static str, v: CelValue) -> Self {
        self.entries.push(Entry { name, source: Source::Cel(v), converted: OnceLock::new() });
        self
    }
}

impl VariableResolver for Variables<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let entry = self.entries.iter().find(|e| e.name == variable)?;
        let val = entry.converted.get_or_init(|| match &entry.source {
            Source::Json(v) => to_val(v),
            Source::Cel(v) => {
                let converted: Result<Box<dyn Val>, _> = v.clone().try_into();
                converted.unwrap_or_else(|_| Box::new(CelNull))
            }
        });
        Some(CowVal::Borrowed(val.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, vars: &Variables<'_>) -> CelValue {
        let program = crate::compile(src).expect("compiles");
        let mut ctx = crate::context();
        ctx.set_variable_resolver(vars);
        program.execute(&ctx).expect("evaluates")
    }

    #[test]
    fn borrowed_json_behaves_as_copied_json() {
        let object = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"n": 3, "big": 18446744073709551615u64, "f": 1.5, "items": [1, "two", null, true]}});
        let vars = Variables::new().json("object", &object).json("oldObject", &Value::Null);
        for (src, want) in [
            ("object.metadata.name == 'a'", CelValue::Bool(true)),
            ("'x' in object.metadata.labels && !('y' in object.metadata.labels)", CelValue::Bool(true)),
            ("has(object.spec.n) && !has(object.spec.m)", CelValue::Bool(true)),
            ("object.spec.n * 2", CelValue::Int(6)),
            ("object.spec.big", CelValue::UInt(u64::MAX)),
            ("object.spec.f + 1.0", CelValue::Float(2.5)),
            ("size(object.spec.items)", CelValue::Int(4)),
            ("object.spec.items.exists(i, i == 'two')", CelValue::Bool(true)),
            ("oldObject == null", CelValue::Bool(true)),
            ("object.metadata == {'name': 'a', 'labels': {'x': '1'}}", CelValue::Bool(true)),
        ] {
            assert_eq!(eval(src, &vars), want, "{src}");
        }
        // The same expression over the crate's own, copying, conversion agrees.
        let mut ctx = crate::context();
        ctx.add_variable_from_value("object", cel::to_value(&object).expect("JSON converts"));
        let copied = crate::compile("object.spec.items[1] + object.metadata.name")
            .and_then(|p| p.execute(&ctx).map_err(|e| e.to_string()));
        assert_eq!(Ok(eval("object.spec.items[1] + object.metadata.name", &vars)), copied);
    }

    #[test]
    fn unnamed_variables_are_never_converted() {
        let object = json!({"a": 1});
        let vars = Variables::new().json("object", &object).json("oldObject", &object);
        assert_eq!(eval("object.a", &vars), CelValue::Int(1));
        let converted: Vec<&str> =
            vars.entries.iter().filter(|e| e.converted.get().is_some()).map(|e| e.name).collect();
        assert_eq!(converted, ["object"]);
    }
}
