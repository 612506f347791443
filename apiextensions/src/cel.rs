//! x-kubernetes-validations: CEL rules compiled once per CRD version (with the
//! `cel` crate) and evaluated against each write, `self` bound to the value
//! at the rule's node and `oldSelf` to the correlated old value on updates.
//!
//! A rule cannot stall the server: rules are length-limited, a rule whose
//! estimated cost (`cel_k8s::cost`, upstream's model) is over upstream's
//! budget is refused when the CRD is written, and evaluation is metered
//! (`cel_k8s::meter`) as upstream's is: each rule within the per-call limit,
//! all rules of a write within the runtime budget, with upstream's errors
//! when either runs out. It runs on a worker thread with a deadline too, a
//! last line for work the meter does not see.
//!
//! The environment and upstream's Kubernetes libraries are the `cel-k8s`
//! crate's, shared with admission.

use std::sync::Arc;
use std::time::Duration;

use cel::{Context, Program, Value as CelValue};
use serde_json::Value;

use cel_k8s::cost;
use cel_k8s::meter::{Budget, Metered, Spent, OUT_OF_BUDGET};
use generic_server::status::Cause;

use crate::schema::type_name;

/// The longest rule (upstream bounds rules by cost; a length bound is a cheap
/// first line).
pub const MAX_RULE_LENGTH: usize = 4096;
/// How long the rules of one write may take in total.
pub const EVAL_DEADLINE: Duration = Duration::from_secs(1);

pub struct Rule {
    pub rule: String,
    program: Metered,
    message: Option<String>,
    message_expression: Option<Metered>,
    reason: Option<String>,
    field_path: Option<String>,
    transition: bool,
    optional_old_self: bool,
}

/// The rules at one schema node and the nodes below that have rules.
#[derive(Default)]
pub struct CelNode {
    rules: Vec<Rule>,
    properties: Vec<(String, CelNode)>,
    additional: Option<Box<CelNode>>,
    items: Option<Box<CelNode>>,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
}

impl CelNode {
    fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.properties.is_empty() && self.additional.is_none() && self.items.is_none()
    }
}

fn compile_expr(src: &str) -> Result<Program, String> {
    if src.len() > MAX_RULE_LENGTH {
        return Err(format!("must be no more than {MAX_RULE_LENGTH} characters"));
    }
    cel_k8s::compile(src)
}

/// How many of upstream's most expensive rules are named when the schema's
/// total is over budget.
const MOST_EXPENSIVE: usize = 4;

/// Compiles every x-kubernetes-validations rule in `schema`; problems are
/// causes at the CRD path `path` (".openAPIV3Schema" form). Each rule's
/// estimated cost, times how often its node can occur, must stay within
/// upstream's per-rule limit, and their sum within the per-schema limit.
pub fn compile(schema: &Value, path: &str, errors: &mut Vec<Cause>) -> Option<CelNode> {
    let mut costs = Vec::new();
    let node = compile_node(schema, path, 1, &mut costs, errors);
    let total = costs.iter().fold(0u64, |t, (_, c)| t.saturating_add(*c));
    if total > cost::STATIC_CRD_LIMIT {
        costs.sort_by_key(|c| std::cmp::Reverse(c.1));
        for (p, _) in costs.iter().take(MOST_EXPENSIVE) {
            errors.push(Cause::forbidden(
                p.clone(),
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        errors.push(Cause::forbidden(
            path,
            &cost::over_budget_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                total,
                cost::STATIC_CRD_LIMIT,
            ),
        ));
    }
    node
}

/// Estimates `program` at a node of `schema` occurring `cardinality` times,
/// refusing it over the per-rule limit; the cost joins the schema's total.
fn check_cost(
    program: &Program,
    schema: &Value,
    cardinality: u64,
    field: (String, &str),
    costs: &mut Vec<(String, u64)>,
    errors: &mut Vec<Cause>,
) {
    let shape = cost::Shape::Schema(schema);
    let vars = [("self", shape.clone()), ("oldSelf", shape)];
    let estimated = cost::estimate(program.expression(), &vars).max.saturating_mul(cardinality);
    if estimated > cost::STATIC_RULE_LIMIT {
        errors.push(Cause::forbidden(
            field.0.clone(),
            &cost::over_budget_message(&format!("estimated {} cost", field.1), estimated, cost::STATIC_RULE_LIMIT),
        ));
    }
    costs.push((field.0, estimated));
}

fn compile_node(
    schema: &Value,
    path: &str,
    cardinality: u64,
    costs: &mut Vec<(String, u64)>,
    errors: &mut Vec<Cause>,
) -> Option<CelNode> {
    let mut node = CelNode::default();
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            let rpath = format!("{path}.x-kubernetes-validations[{i}]");
            let Some(rule) = r.get("rule").and_then(Value::as_str).filter(|s| !s.trim().is_empty()) else {
                errors.push(Cause::required(format!("{rpath}.rule"), ""));
                continue;
            };
            let program = match compile_expr(rule) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(Cause::invalid(format!("{rpath}.rule"), &Value::String(rule.into()), &e));
                    continue;
                }
            };
            check_cost(&program, schema, cardinality, (format!("{rpath}.rule"), "rule"), costs, errors);
            let message_expression = match r.get("messageExpression").and_then(Value::as_str) {
                Some(m) => match compile_expr(m) {
                    Ok(p) => {
                        let field = (format!("{rpath}.messageExpression"), "messageExpression");
                        check_cost(&p, schema, cardinality, field, costs, errors);
                        Some(Metered::new(&p))
                    }
                    Err(e) => {
                        errors.push(Cause::invalid(
                            format!("{rpath}.messageExpression"),
                            &Value::String(m.into()),
                            &format!("messageExpression {e}"),
                        ));
                        continue;
                    }
                },
                None => None,
            };
            let reason = r.get("reason").and_then(Value::as_str).map(str::to_string);
            if let Some(reason) = &reason {
                let allowed = ["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];
                if !allowed.contains(&reason.as_str()) {
                    errors.push(Cause::not_supported(
                        format!("{rpath}.reason"),
                        &Value::String(reason.clone()),
                        &allowed,
                    ));
                    continue;
                }
            }
            let transition = program.references().has_variable("oldSelf");
            node.rules.push(Rule {
                rule: rule.to_string(),
                program: Metered::new(&program),
                message: r.get("message").and_then(Value::as_str).map(str::to_string),
                message_expression,
                reason,
                field_path: r.get("fieldPath").and_then(Value::as_str).map(str::to_string),
                transition,
                optional_old_self: r.get("optionalOldSelf").and_then(Value::as_bool).unwrap_or(false),
            });
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            if let Some(child) = compile_node(s, &format!("{path}.properties[{k}]"), cardinality, costs, errors) {
                node.properties.push((k.clone(), child));
            }
        }
    }
    // Below a list or map a node occurs as often as it has items or entries.
    let repeated = cardinality.saturating_mul(cost::Shape::Schema(schema).size().max.max(1));
    if let Some(s) = schema.get("additionalProperties").filter(|s| s.is_object()) {
        node.additional =
            compile_node(s, &format!("{path}.additionalProperties"), repeated, costs, errors).map(Box::new);
    }
    if let Some(s) = schema.get("items").filter(|s| s.is_object()) {
        node.items = compile_node(s, &format!("{path}.items"), repeated, costs, errors).map(Box::new);
    }
    node.list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str).map(str::to_string);
    node.list_map_keys = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    (!node.is_empty()).then_some(node)
}

fn cause_for(rule: &Rule, path: &str, value: &Value, message: String) -> Cause {
    let field = match &rule.field_path {
        Some(fp) => {
            format!("{path}{}", if fp.starts_with('.') || fp.starts_with('[') { fp.clone() } else { format!(".{fp}") })
        }
        None => path.to_string(),
    };
    let field = field.trim_start_matches('.').to_string();
    match rule.reason.as_deref() {
        Some("FieldValueForbidden") => Cause::forbidden(field, &message),
        Some("FieldValueRequired") => Cause::required(field, &message),
        Some("FieldValueDuplicate") => {
            Cause { reason: "FieldValueDuplicate", message: format!("Duplicate value: {message}"), field }
        }
        _ => Cause::invalid(field, &Value::String(type_name(value).into()), &message),
    }
}

struct Eval<'a> {
    base: Context<'a, 'a>,
    deadline: std::time::Instant,
    causes: Vec<Cause>,
    /// No further rule runs: out of time or of budget.
    timed_out: bool,
    /// The write's runtime cost budget.
    budget: Budget,
}

/// Upstream's ruleErrorString: the rule's message, else the rule.
fn rule_error_string(rule: &Rule) -> &str {
    rule.message.as_deref().filter(|m| !m.trim().is_empty()).unwrap_or(&rule.rule).trim()
}

impl Eval<'_> {
    fn run(&mut self, node: &CelNode, new: &Value, old: Option<&Value>, path: &str) {
        if self.timed_out {
            return;
        }
        for rule in &node.rules {
            if std::time::Instant::now() > self.deadline {
                self.timed_out = true;
                self.causes.push(Cause::invalid(
                    path.trim_start_matches('.'),
                    &Value::String(type_name(new).into()),
                    OUT_OF_BUDGET,
                ));
                return;
            }
            if rule.transition && old.is_none() && !rule.optional_old_self {
                continue;
            }
            let mut vars = cel_k8s::bind::Variables::new().json("self", new);
            if rule.transition || old.is_some() {
                vars = vars.json("oldSelf", old.unwrap_or(&Value::Null));
            }
            let mut ctx = self.base.new_inner_scope();
            ctx.set_variable_resolver(&vars);
            let shown = Value::String(type_name(new).into());
            let field = path.trim_start_matches('.');
            // Upstream checks what the rule cost against the budget before
            // it looks at the result; a rule stopped at the per-call limit
            // cost that much.
            let result = match self.budget.run(&rule.program, &ctx) {
                Spent::Ran(result) => result,
                Spent::OutOfBudget => {
                    self.timed_out = true;
                    self.causes.push(Cause::invalid(field, &shown, OUT_OF_BUDGET));
                    return;
                }
                Spent::CallLimitExceeded => {
                    self.timed_out = true;
                    let message = format!(
                        "'{}': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                        cel_k8s::meter::COST_EXCEEDED,
                        rule_error_string(rule)
                    );
                    self.causes.push(Cause::invalid(field, &shown, &message));
                    return;
                }
            };
            let message = match result {
                Ok(CelValue::Bool(true)) => continue,
                Ok(CelValue::Bool(false)) => {
                    let from_expr = rule.message_expression.as_ref().and_then(|m| {
                        match self.budget.run_if_affordable(m, &ctx)? {
                            Ok(CelValue::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                            _ => None,
                        }
                    });
                    from_expr.or_else(|| rule.message.clone()).unwrap_or_else(|| format!("failed rule: {}", rule.rule))
                }
                Ok(_) => format!("rule {:?} did not evaluate to a bool", rule.rule),
                Err(e) => format!("{e} evaluating rule: {}", rule.rule),
            };
            self.causes.push(cause_for(rule, path, new, message));
        }
        match new {
            Value::Object(m) => {
                for (k, child) in &node.properties {
                    if let Some(v) = m.get(k) {
                        let o = old.and_then(|o| o.get(k));
                        self.run(child, v, o, &format!("{path}.{k}"));
                    }
                }
                if let Some(child) = &node.additional {
                    for (k, v) in m {
                        let o = old.and_then(|o| o.get(k));
                        self.run(child, v, o, &format!("{path}[{k}]"));
                    }
                }
            }
            Value::Array(items) => {
                if let Some(child) = &node.items {
                    let old_items = old.and_then(Value::as_array);
                    for (i, v) in items.iter().enumerate() {
                        // Items correlate with old ones only in map lists, by key.
                        let o = match (node.list_type.as_deref(), old_items) {
                            (Some("map"), Some(olds)) if !node.list_map_keys.is_empty() => {
                                olds.iter().find(|o| node.list_map_keys.iter().all(|k| o.get(k) == v.get(k)))
                            }
                            _ => None,
                        };
                        self.run(child, v, o, &format!("{path}[{i}]"));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Evaluates the rules of `root` against `new` (and `old` on update), with a
/// deadline; returns the failures as causes.
pub fn evaluate(root: Arc<CelNode>, new: Value, old: Option<Value>) -> Vec<Cause> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("cel-eval".into()).spawn(move || {
        let base = cel_k8s::context();
        let mut ev = Eval {
            base,
            deadline: std::time::Instant::now() + EVAL_DEADLINE,
            causes: Vec::new(),
            timed_out: false,
            budget: Budget::default(),
        };
        ev.run(&root, &new, old.as_ref(), "");
        let _ = tx.send(ev.causes);
    });
    if spawned.is_err() {
        return vec![Cause::invalid("", &Value::Null, "validation rules could not be evaluated")];
    }
    match rx.recv_timeout(EVAL_DEADLINE + Duration::from_millis(500)) {
        Ok(c) => c,
        Err(_) => vec![Cause::invalid("", &Value::String("object".into()), OUT_OF_BUDGET)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(schema: Value) -> Arc<CelNode> {
        let mut errs = Vec::new();
        let n = compile(&schema, "openAPIV3Schema", &mut errs);
        assert!(errs.is_empty(), "{:?}", errs.iter().map(Cause::full_message).collect::<Vec<_>>());
        Arc::new(n.expect("rules"))
    }

    #[test]
    fn rules_and_transition_rules() {
        let n = node(json!({"type": "object", "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                {"rule": "self.name == oldSelf.name", "message": "name is immutable"},
                {"rule": "self.name.startsWith('a')", "messageExpression": "'name ' + self.name + ' must start with a'"},
                {"rule": "self.tags.all(t, t.matches('^[a-z]+$')) && self.tags.isSorted()"},
                {"rule": "self.name.lowerAscii() == self.name && self.tags.sum() == 0 || true"}
            ],
            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"},
                "tags": {"type": "array", "maxItems": 10, "items": {"type": "string"}}}
        }}}));
        let ok = json!({"spec": {"min": 1, "max": 2, "name": "abc", "tags": ["a", "b"]}});
        assert!(evaluate(n.clone(), ok.clone(), None).is_empty());
        let bad = json!({"spec": {"min": 3, "max": 2, "name": "xyz", "tags": ["b", "a"]}});
        let msgs: Vec<String> = evaluate(n.clone(), bad, None).iter().map(Cause::full_message).collect();
        assert_eq!(msgs[0], "spec: Invalid value: \"object\": min must not exceed max");
        assert_eq!(msgs[1], "spec: Invalid value: \"object\": name xyz must start with a");
        assert!(msgs[2].contains("failed rule: self.tags.all"), "{msgs:?}");
        let renamed = json!({"spec": {"min": 1, "max": 2, "name": "abd", "tags": []}});
        let msgs: Vec<String> = evaluate(n, renamed, Some(ok)).iter().map(Cause::full_message).collect();
        assert_eq!(msgs, vec!["spec: Invalid value: \"object\": name is immutable"]);
    }

    #[test]
    fn bad_rules_are_refused() {
        let mut errs = Vec::new();
        compile(&json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a >"}]}), "s", &mut errs);
        assert_eq!(errs.len(), 1);
        let mut errs = Vec::new();
        compile(
            &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.l.all(a, self.l.all(b, a == b))"}],
                "properties": {"l": {"type": "array", "items": {"type": "string"}}}}),
            "s",
            &mut errs,
        );
        let msgs: Vec<String> = errs.iter().map(Cause::full_message).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("s.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule"), "{msgs:?}");
        assert_eq!(msgs[1], "s.x-kubernetes-validations[0].rule: Forbidden: contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema");
        assert!(msgs[2].starts_with("s: Forbidden: x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema exceeds budget by factor of"), "{msgs:?}");
    }

    #[test]
    fn string_growth_counts_against_the_budget() {
        let rule = "self.replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa').replace('a', 'aaaaaaaaaa') != ''";
        let schema = |s: Value| json!({"type": "object", "properties": {"s": s}, "x-kubernetes-validations": [{"rule": rule.replace("self.", "self.s.")}]});
        let mut errs = Vec::new();
        compile(&schema(json!({"type": "string"})), "s", &mut errs);
        let msgs: Vec<String> = errs.iter().map(Cause::full_message).collect();
        assert!(
            msgs.first().is_some_and(|m| m.starts_with(
                "s.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of "
            )),
            "{msgs:?}"
        );
        let mut errs = Vec::new();
        compile(&schema(json!({"type": "string", "maxLength": 100})), "s", &mut errs);
        assert!(errs.is_empty(), "bounded, the same rule is cheap");
    }
}
