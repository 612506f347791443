//! The part of upstream's type checking this crate can do without a CEL
//! type checker: every field an expression selects on a variable of known
//! schema (`object.spec.replicas`, `has(object.foo)`, through indexes and
//! comprehension variables) must exist in that schema, else upstream's
//! `undefined field 'NAME'` issue at the selection's position. Operand and
//! overload types are not checked.

use cel::common::ast::{operators as op, EntryExpr, Expr, IdedExpr};
use cel::Program;
use serde_json::Value;

/// Resolves `$ref`s of OpenAPI v3 documents ("#/components/schemas/X").
pub type Resolve<'s> = &'s dyn Fn(&str) -> Option<&'s Value>;

/// A schema node of a typed variable.
#[derive(Clone, Copy)]
struct Node<'s>(Option<&'s Value>);

impl<'s> Node<'s> {
    fn deref(s: &'s Value, resolve: Resolve<'s>) -> Option<&'s Value> {
        let mut s = s;
        for _ in 0..16 {
            let r = s.get("$ref").or_else(|| s.pointer("/allOf/0/$ref")).and_then(Value::as_str);
            match r {
                Some(r) => s = resolve(r.rsplit('/').next().unwrap_or(r))?,
                None => return Some(s),
            }
        }
        None
    }

    /// `Err(())` when the schema has properties and no such field.
    fn field(self, name: &str, resolve: Resolve<'s>) -> Result<Node<'s>, ()> {
        let Some(s) = self.0.and_then(|s| Node::deref(s, resolve)) else { return Ok(Node(None)) };
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            return match p.get(name) {
                Some(f) => Ok(Node(Some(f))),
                // apiVersion, kind and metadata are every object's.
                None if ["apiVersion", "kind", "metadata"].contains(&name) => Ok(Node(None)),
                None if s.get("additionalProperties").is_some() => Ok(self.element(resolve)),
                None if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) => Ok(Node(None)),
                None => Err(()),
            };
        }
        Ok(self.element(resolve))
    }

    fn element(self, resolve: Resolve<'s>) -> Node<'s> {
        let s = self.0.and_then(|s| Node::deref(s, resolve));
        Node(s.and_then(|s| s.get("items").or_else(|| s.get("additionalProperties"))).filter(|v| v.is_object()))
    }
}

/// Checks the fields `program` selects on the variables of known schema;
/// returns upstream's issue text (`ERROR: <input>:L:C: undefined field 'x'`
/// with the source line and a caret), empty when none.
pub fn undefined_fields<'s>(program: &Program, vars: &[(&str, &'s Value)], resolve: Resolve<'s>) -> Vec<String> {
    let mut w = Walker {
        scopes: vars.iter().map(|(n, s)| (n.to_string(), Node(Some(*s)))).collect(),
        resolve,
        found: Vec::new(),
    };
    w.walk(program.expression());
    let source = &program.source_info().source;
    w.found
        .into_iter()
        .map(|(id, field)| {
            let offset = program.source_info().offset_for(id).map(|(s, _)| s as usize).unwrap_or(0);
            issue(source, offset, &format!("undefined field '{field}'"))
        })
        .collect()
}

/// cel-go's issue format: position (line and column from 1), the line, a caret.
fn issue(source: &str, offset: usize, message: &str) -> String {
    let before = source.get(..offset).unwrap_or(source);
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before[line_start..].chars().count();
    let line = source[line_start..].lines().next().unwrap_or("");
    format!("ERROR: <input>:{line_no}:{}: {message}\n | {line}\n | {}^", col + 1, ".".repeat(col))
}

struct Walker<'s> {
    scopes: Vec<(String, Node<'s>)>,
    resolve: Resolve<'s>,
    found: Vec<(u64, String)>,
}

impl<'s> Walker<'s> {
    fn walk(&mut self, e: &IdedExpr) -> Node<'s> {
        match &e.expr {
            Expr::Ident(name) => {
                self.scopes.iter().rev().find(|(n, _)| n == name).map(|(_, s)| *s).unwrap_or(Node(None))
            }
            Expr::Select(s) => {
                let operand = self.walk(&s.operand);
                match operand.field(&s.field, self.resolve) {
                    Ok(n) if !s.test => n,
                    Ok(_) => Node(None),
                    Err(()) => {
                        self.found.push((e.id, s.field.clone()));
                        Node(None)
                    }
                }
            }
            Expr::Call(c) => {
                let target = c.target.as_deref().map(|t| self.walk(t));
                let args: Vec<Node<'s>> = c.args.iter().map(|a| self.walk(a)).collect();
                match c.func_name.as_str() {
                    op::INDEX | op::OPT_INDEX => args.first().map(|n| n.element(self.resolve)).unwrap_or(Node(None)),
                    _ => {
                        let _ = target;
                        Node(None)
                    }
                }
            }
            Expr::Comprehension(c) => {
                let range = self.walk(&c.iter_range);
                self.walk(&c.accu_init);
                let depth = self.scopes.len();
                let is_map = range
                    .0
                    .and_then(|s| Node::deref(s, self.resolve))
                    .is_some_and(|s| s.get("type").and_then(Value::as_str) == Some("object"));
                let elem = range.element(self.resolve);
                match &c.iter_var2 {
                    Some(v2) => {
                        self.scopes.push((c.iter_var.clone(), Node(None)));
                        self.scopes.push((v2.clone(), elem));
                    }
                    None => self.scopes.push((c.iter_var.clone(), if is_map { Node(None) } else { elem })),
                }
                self.scopes.push((c.accu_var.clone(), Node(None)));
                self.walk(&c.loop_cond);
                self.walk(&c.loop_step);
                self.walk(&c.result);
                self.scopes.truncate(depth);
                Node(None)
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.walk(x);
                }
                Node(None)
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.walk(&me.key);
                        self.walk(&me.value);
                    }
                }
                Node(None)
            }
            Expr::Struct(st) => {
                for entry in &st.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.walk(&f.value);
                    }
                }
                Node(None)
            }
            Expr::Literal(_) | Expr::Unspecified => Node(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undefined_fields_are_found_with_their_position() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"},
                "items": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}}});
        let none = |_: &str| None;
        let check = |src: &str| {
            let p = crate::compile(src).expect("compiles");
            undefined_fields(&p, &[("object", &schema)], &none)
        };
        assert!(check("object.spec.replicas > 1 && object.metadata.name != ''").is_empty());
        assert!(check("object.spec.items.all(i, i.name != '') && object.spec.items[0].name == 'a'").is_empty());
        assert_eq!(
            check("object.spec.replica > 1"),
            ["ERROR: <input>:1:12: undefined field 'replica'\n | object.spec.replica > 1\n | ...........^"]
        );
        assert_eq!(check("object.spec.items.all(i, has(i.nme))").len(), 1);
        assert!(check("params.anything == 1").is_empty(), "variables of unknown schema are not checked");
    }
}
