//! Upstream's static cost estimate of an expression (cel-go's checker/cost.go
//! with k8s.io/apiserver/pkg/cel/library/cost.go): the worst-case cost of one
//! evaluation, from the sizes an OpenAPI schema allows (maxLength, maxItems,
//! maxProperties; what it leaves unbounded is bounded by the largest request,
//! 3 MiB, as upstream) and per-call costs, counting how strings and lists
//! grow through `+`, `replace`, `join`, `split` and comprehensions.
//!
//! The `cel` crate has no type checker, so sizes follow the schema along
//! field selections, indexes and comprehension variables; what the walk
//! cannot place is taken as large as a request. The constants are upstream's
//! (k8s.io/apiserver/pkg/apis/cel/config.go and the CRD validation limits).

use cel::common::ast::{operators as op, EntryExpr, Expr, IdedExpr};
use serde_json::Value;

/// Upstream's celconfig.PerCallLimit: the runtime cost one expression may use.
pub const PER_CALL_LIMIT: u64 = 1_000_000;
/// Upstream's celconfig.RuntimeCELCostBudget: all expressions of one
/// evaluation (a CRD write's rules, a policy's validations).
pub const RUNTIME_BUDGET: u64 = 10_000_000;
/// Upstream's StaticEstimatedCostLimit: one CRD rule, times how often its
/// schema node can occur.
pub const STATIC_RULE_LIMIT: u64 = 10_000_000;
/// Upstream's StaticEstimatedCRDCostLimit: all rules of one CRD schema.
pub const STATIC_CRD_LIMIT: u64 = 100_000_000;
/// Upstream's celconfig.MaxRequestSizeBytes: what bounds the unbounded.
pub const MAX_REQUEST_SIZE: u64 = 3 * 1024 * 1024;

const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;
const STRUCT_CREATE: u64 = 40;
/// A value nothing bounds but the request it came in.
const UNBOUNDED: u64 = MAX_REQUEST_SIZE - 2;

/// A [min, max] estimate of a cost or a size, saturating as upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Estimate {
    pub min: u64,
    pub max: u64,
}

impl Estimate {
    pub const fn exact(n: u64) -> Self {
        Estimate { min: n, max: n }
    }
    fn up_to(n: u64) -> Self {
        Estimate { min: 0, max: n }
    }
    fn add(self, o: Estimate) -> Self {
        Estimate { min: self.min.saturating_add(o.min), max: self.max.saturating_add(o.max) }
    }
    fn mul(self, o: Estimate) -> Self {
        Estimate { min: self.min.saturating_mul(o.min), max: self.max.saturating_mul(o.max) }
    }
    /// Upstream's MultiplyByCostFactor: rounded up.
    fn factor(self, f: f64) -> Self {
        let scale = |n: u64| if n == u64::MAX { n } else { (n as f64 * f).ceil().min(u64::MAX as f64) as u64 };
        Estimate { min: scale(self.min), max: scale(self.max) }
    }
}

/// What the estimator knows of a value.
#[derive(Debug, Clone)]
pub enum Shape<'s> {
    /// A value of this schema node.
    Schema(&'s Value),
    /// A string, list or map of this size, with elements of the boxed shape.
    Sized(Estimate, Option<Box<Shape<'s>>>),
    /// A scalar (number, bool, null): size does not matter.
    Scalar,
    /// Anything the request may carry.
    Unknown,
}

fn schema_type(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("")
}

fn bound(s: &Value, key: &str) -> Option<u64> {
    s.get(key).and_then(Value::as_u64)
}

/// Upstream's estimateMinSizeJSON: the fewest bytes a value of `s` takes.
fn min_size(s: &Value) -> u64 {
    match schema_type(s) {
        "boolean" => 4,
        "number" | "integer" => 1,
        _ => 2,
    }
}

impl<'s> Shape<'s> {
    /// A number or a boolean: its size does not grow with the request.
    fn is_scalar(&self) -> bool {
        match self {
            Shape::Scalar => true,
            Shape::Schema(s) => {
                matches!(schema_type(s), "integer" | "number" | "boolean")
                    && s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) != Some(true)
            }
            _ => false,
        }
    }

    /// How many characters, items or entries the value can have.
    pub fn size(&self) -> Estimate {
        if self.is_scalar() {
            return Estimate::exact(1);
        }
        match self {
            Shape::Schema(s) => match schema_type(s) {
                "string" => Estimate::up_to(bound(s, "maxLength").unwrap_or(UNBOUNDED)),
                "array" => Estimate::up_to(
                    bound(s, "maxItems").unwrap_or_else(|| UNBOUNDED / (s.get("items").map(min_size).unwrap_or(2) + 1)),
                ),
                "object" => Estimate::up_to(bound(s, "maxProperties").unwrap_or_else(|| {
                    // A map entry is at least `"":` and its value.
                    UNBOUNDED / (s.get("additionalProperties").map(min_size).unwrap_or(2) + 4)
                })),
                _ => Estimate::up_to(UNBOUNDED),
            },
            Shape::Sized(e, _) => *e,
            Shape::Scalar => Estimate::exact(1),
            Shape::Unknown => Estimate::up_to(UNBOUNDED),
        }
    }

    /// The shape of an element of a list or a value of a map.
    pub fn element(&self) -> Shape<'s> {
        match self {
            Shape::Schema(s) => s
                .get("items")
                .or_else(|| s.get("additionalProperties"))
                .filter(|v| v.is_object())
                .map(Shape::Schema)
                .unwrap_or(Shape::Unknown),
            Shape::Sized(_, Some(e)) => (**e).clone(),
            _ => Shape::Unknown,
        }
    }

    /// The shape of a field of an object.
    pub fn field(&self, name: &str) -> Shape<'s> {
        match self {
            Shape::Schema(s) => match s.pointer(&format!("/properties/{}", name.replace('~', "~0").replace('/', "~1")))
            {
                Some(p) => Shape::Schema(p),
                None => self.element(),
            },
            _ => Shape::Unknown,
        }
    }

    fn is_string(&self) -> bool {
        matches!(self, Shape::Schema(s) if schema_type(s) == "string")
    }
}

/// Estimates `expr`'s cost with the variables' shapes (innermost last).
pub fn estimate<'s>(expr: &IdedExpr, vars: &[(&str, Shape<'s>)]) -> Estimate {
    let mut e = Estimator { scopes: vars.iter().map(|(n, s)| (n.to_string(), s.clone())).collect() };
    e.walk(expr).0
}

struct Estimator<'s> {
    scopes: Vec<(String, Shape<'s>)>,
}

fn sized(e: Estimate) -> Shape<'static> {
    Shape::Sized(e, None)
}

impl<'s> Estimator<'s> {
    fn lookup(&self, name: &str) -> Shape<'s> {
        self.scopes.iter().rev().find(|(n, _)| n == name).map(|(_, s)| s.clone()).unwrap_or(Shape::Unknown)
    }

    fn walk(&mut self, e: &IdedExpr) -> (Estimate, Shape<'s>) {
        match &e.expr {
            Expr::Unspecified => (Estimate::default(), Shape::Unknown),
            Expr::Literal(l) => {
                let shape = match l {
                    cel::common::ast::LiteralValue::String(s) => {
                        sized(Estimate::exact(s.inner().chars().count() as u64))
                    }
                    cel::common::ast::LiteralValue::Bytes(b) => sized(Estimate::exact(b.inner().len() as u64)),
                    _ => Shape::Scalar,
                };
                (Estimate::default(), shape)
            }
            Expr::Ident(name) => (Estimate::exact(1), self.lookup(name)),
            Expr::Select(s) => {
                let (cost, shape) = self.walk(&s.operand);
                let shape = if s.test { Shape::Scalar } else { shape.field(&s.field) };
                (cost.add(Estimate::exact(1)), shape)
            }
            Expr::List(l) => {
                let mut cost = Estimate::exact(LIST_CREATE);
                let mut elem = None;
                for x in &l.elements {
                    let (c, s) = self.walk(x);
                    cost = cost.add(c);
                    elem.get_or_insert(s);
                }
                (cost, Shape::Sized(Estimate::exact(l.elements.len() as u64), elem.map(Box::new)))
            }
            Expr::Map(m) => {
                let mut cost = Estimate::exact(MAP_CREATE);
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        cost = cost.add(self.walk(&me.key).0).add(self.walk(&me.value).0);
                    }
                }
                (cost, sized(Estimate::exact(m.entries.len() as u64)))
            }
            Expr::Struct(st) => {
                let mut cost = Estimate::exact(STRUCT_CREATE);
                for entry in &st.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        cost = cost.add(self.walk(&f.value).0);
                    }
                }
                (cost, Shape::Unknown)
            }
            Expr::Comprehension(c) => {
                let (range_cost, range) = self.walk(&c.iter_range);
                let (init_cost, init) = self.walk(&c.accu_init);
                let depth = self.scopes.len();
                let (first, second) = match &range {
                    // Over a map the first variable is the key.
                    Shape::Schema(s) if schema_type(s) == "object" => (Shape::Unknown, range.element()),
                    _ => (range.element(), range.element()),
                };
                self.scopes.push((c.iter_var.clone(), first));
                if let Some(v2) = &c.iter_var2 {
                    self.scopes.push((v2.clone(), second));
                }
                self.scopes.push((c.accu_var.clone(), init.clone()));
                let (cond, _) = self.walk(&c.loop_cond);
                let (step, step_shape) = self.walk(&c.loop_step);
                self.scopes.truncate(depth);
                self.scopes.push((c.accu_var.clone(), init.clone()));
                let (result, result_shape) = self.walk(&c.result);
                self.scopes.truncate(depth);
                let count = range.size();
                let cost = range_cost.add(init_cost).add(result).add(count.mul(cond.add(step)));
                // map() and filter() build a list at most as long as the range.
                let shape = match (&init, step_shape) {
                    (Shape::Sized(e, _), Shape::Sized(_, elem)) if e.max == 0 => {
                        Shape::Sized(Estimate::up_to(count.max), elem)
                    }
                    _ => result_shape,
                };
                (cost, shape)
            }
            Expr::Call(call) => self.call(&call.func_name, call.target.as_deref(), &call.args),
        }
    }

    fn call(&mut self, name: &str, target: Option<&IdedExpr>, args: &[IdedExpr]) -> (Estimate, Shape<'s>) {
        match name {
            op::LOGICAL_AND | op::LOGICAL_OR if args.len() == 2 => {
                let (l, r) = (self.walk(&args[0]).0, self.walk(&args[1]).0);
                (Estimate { min: l.min, max: l.max.saturating_add(r.max) }, Shape::Scalar)
            }
            op::CONDITIONAL if args.len() == 3 => {
                let c = self.walk(&args[0]).0;
                let ((t, ts), (f, fs)) = (self.walk(&args[1]), self.walk(&args[2]));
                let shape = if ts.size().max >= fs.size().max { ts } else { fs };
                (c.add(Estimate { min: t.min.min(f.min), max: t.max.max(f.max) }), shape)
            }
            _ => {
                let mut cost = Estimate::default();
                let t = target.map(|t| {
                    let (c, s) = self.walk(t);
                    cost = cost.add(c);
                    s
                });
                let mut a = Vec::with_capacity(args.len());
                for x in args {
                    let (c, s) = self.walk(x);
                    cost = cost.add(c);
                    a.push(s);
                }
                let (call, shape) = call_cost(name, t.as_ref(), &a);
                (cost.add(call), shape)
            }
        }
    }
}

/// The cost of the call itself and the shape of its result.
fn call_cost<'s>(name: &str, target: Option<&Shape<'s>>, args: &[Shape<'s>]) -> (Estimate, Shape<'s>) {
    let one = Estimate::exact(1);
    // The receiver of a member call, else the first argument.
    let subject = target.or(args.first());
    let subject_size = subject.map(Shape::size).unwrap_or_default();
    // The arguments after the subject.
    let rest: &[Shape<'s>] = if target.is_some() { args } else { args.get(1..).unwrap_or(&[]) };
    let arg_size = |i: usize| rest.get(i).map(Shape::size).unwrap_or_default();
    match name {
        op::ADD => {
            let (l, r) = (args.first(), args.get(1));
            match (l, r) {
                (Some(l), Some(r)) if !l.is_scalar() && !r.is_scalar() => {
                    let size = l.size().add(r.size());
                    let elem = match (l, r) {
                        (Shape::Sized(_, Some(e)), _) | (_, Shape::Sized(_, Some(e))) => Some(e.clone()),
                        _ => None,
                    };
                    (size.factor(STRING_TRAVERSAL), Shape::Sized(size, elem))
                }
                _ => (one, Shape::Scalar),
            }
        }
        op::EQUALS | op::NOT_EQUALS | op::LESS | op::LESS_EQUALS | op::GREATER | op::GREATER_EQUALS => {
            let (l, r) = (args.first(), args.get(1));
            let smaller = match (l, r) {
                (Some(l), Some(r)) if !l.is_scalar() && !r.is_scalar() => {
                    let (ls, rs) = (l.size(), r.size());
                    Estimate { min: ls.min.min(rs.min), max: ls.max.min(rs.max) }.factor(STRING_TRAVERSAL)
                }
                _ => Estimate::default(),
            };
            (one.add(smaller), Shape::Scalar)
        }
        op::INDEX => (one, subject.map(Shape::element).unwrap_or(Shape::Unknown)),
        op::IN => match args.get(1) {
            Some(Shape::Schema(s)) if schema_type(s) == "object" => (one, Shape::Scalar),
            Some(list) => (list.size(), Shape::Scalar),
            None => (one, Shape::Scalar),
        },
        "matches" => {
            let regex = arg_size(0).factor(REGEX_LENGTH);
            (subject_size.factor(STRING_TRAVERSAL).mul(regex), Shape::Scalar)
        }
        "contains" => (subject_size.factor(STRING_TRAVERSAL).mul(arg_size(0).factor(STRING_TRAVERSAL)), Shape::Scalar),
        "startsWith" | "endsWith" => (arg_size(0).factor(STRING_TRAVERSAL), Shape::Scalar),
        "string" | "bytes" if subject.is_some_and(|s| s.is_string() || matches!(s, Shape::Sized(..))) => {
            (subject_size.factor(STRING_TRAVERSAL), sized(subject_size))
        }
        "lowerAscii" | "upperAscii" | "substring" | "trim" | "url" | "escapeKey" => {
            (subject_size.factor(STRING_TRAVERSAL), sized(subject_size))
        }
        "replace" if rest.len() >= 2 => {
            let (sz, from, with) = (subject_size, arg_size(0), arg_size(1));
            let mut count = Estimate::default();
            let mut retained = Estimate::default();
            if from.min == 0 {
                count.max = sz.max.saturating_add(1);
                retained.max = sz.max;
            } else if with.max <= from.min {
                retained.max = sz.max;
            } else {
                count.max = sz.max.div_ceil(from.min);
            }
            if from.max == 0 {
                count.min = sz.min.saturating_add(1);
                retained.min = sz.min;
            } else if from.max <= with.min {
                retained.min = sz.min;
            } else {
                count.min = sz.min.div_ceil(from.max);
            }
            let size = count.mul(with).add(retained);
            (sz.factor(2.0 * STRING_TRAVERSAL), sized(size))
        }
        "split" => {
            let elem = Shape::Sized(subject_size, None);
            (
                subject_size.factor(2.0 * STRING_TRAVERSAL),
                Shape::Sized(Estimate::up_to(subject_size.max), Some(Box::new(elem))),
            )
        }
        "join" => {
            let list = subject_size;
            let mut size = list.mul(subject.map(|s| s.element().size()).unwrap_or_default());
            if let Some(sep) = rest.first() {
                let seps = Estimate { min: list.min.saturating_sub(1), max: list.max.saturating_sub(1) };
                size = size.add(sep.size().mul(seps));
            }
            (size.factor(STRING_TRAVERSAL), sized(size))
        }
        "find" | "findAll" => {
            let s = subject_size.add(one).factor(STRING_TRAVERSAL);
            let result = if name == "find" {
                sized(Estimate::up_to(subject_size.max))
            } else {
                Shape::Sized(
                    Estimate::up_to(subject_size.max),
                    Some(Box::new(sized(Estimate::up_to(subject_size.max)))),
                )
            };
            (s.mul(arg_size(0).factor(REGEX_LENGTH)), result)
        }
        "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf" if target.is_some() => {
            let elem = subject.map(Shape::element).unwrap_or(Shape::Unknown);
            let per = if elem.is_string() { one.add(elem.size().factor(STRING_TRAVERSAL)) } else { one };
            (subject_size.mul(per), if name == "max" || name == "min" { elem } else { Shape::Scalar })
        }
        "quantity" | "isQuantity" | "semver" | "isSemver" | "ip" | "cidr" | "isIP" | "isCIDR" | "isURL" => {
            (subject_size.factor(STRING_TRAVERSAL), Shape::Unknown)
        }
        _ => (one, Shape::Unknown),
    }
}

/// Upstream's getCostErrorMessage: `what` exceeds the limit by a factor
/// printed as Go prints it.
pub fn over_budget_message(what: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!("{what} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cost(src: &str, schema: &Value) -> u64 {
        let p = crate::compile(src).expect("compiles");
        estimate(p.expression(), &[("self", Shape::Schema(schema))]).max
    }

    #[test]
    fn string_growth_is_counted() {
        let unbounded = json!({"type": "string"});
        let rule = "self.replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa') != ''";
        assert!(cost(rule, &unbounded) > STATIC_RULE_LIMIT, "{}", cost(rule, &unbounded));
        let bounded = json!({"type": "string", "maxLength": 64});
        assert!(cost(rule, &bounded) < 100_000, "{}", cost(rule, &bounded));
        let one = cost("self.replace('a', 'b') != ''", &unbounded);
        assert!(one < STATIC_RULE_LIMIT, "a replace that does not grow is cheap enough: {one}");
    }

    #[test]
    fn comprehensions_multiply_by_range() {
        let list = json!({"type": "array", "items": {"type": "string"}});
        let nested = cost("self.all(a, self.all(b, a == b))", &list);
        assert!(nested > STATIC_RULE_LIMIT * 100, "{nested}");
        let bounded = json!({"type": "array", "maxItems": 10, "items": {"type": "string", "maxLength": 10}});
        assert!(cost("self.all(a, self.all(b, a == b))", &bounded) < 1000);
        assert_eq!(cost("size(self) < 5", &bounded), 3, "the variable, size() and the comparison");
        // Numbers do not grow: adding or comparing them costs one.
        let ints = json!({"type": "array", "maxItems": 1000, "items": {"type": "integer"}});
        let pairs = cost("self.all(x, self.all(y, x + y >= 0))", &ints);
        assert!((1_000_000..STATIC_RULE_LIMIT).contains(&pairs), "{pairs}");
    }

    #[test]
    fn messages_print_the_factor_as_upstream() {
        assert!(over_budget_message("estimated rule cost", 20_000_000, 10_000_000)
            .starts_with("estimated rule cost exceeds budget by factor of 2.0x (try"));
        assert!(over_budget_message("x", 12_000_000, 10_000_000).contains("factor of 1.200000x"));
        assert!(over_budget_message("x", u64::MAX, 10_000_000).contains("more than 100x"));
    }
}
