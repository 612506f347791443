//! A policy and its bindings as the plugin keeps them: parsed and compiled
//! once per change (upstream's policy/generic PolicyHook with the validating
//! Validator), and one evaluation of a policy for one request and param
//! (upstream's validator.Validate): match conditions, variables, validations
//! with their messages and reasons, audit annotations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::{Program, Value as CelValue};
use cel_k8s::meter::{Budget, Metered, Spent, OUT_OF_BUDGET};
use serde_json::{json, Value};

use generic_server::meta::str_at;
use generic_server::registry::AdmissionAttributes;
use generic_server::selectors::LabelSelector;
use generic_server::status::Reason;

use crate::matching::{Equivalents, Matched, Rule, Selectors};

/// Upstream's celconfig.MaxEvaluatedMessageExpressionSizeBytes.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// A CEL expression with its source, compiled (and metered when run).
pub struct Expression {
    pub source: String,
    program: Program,
    metered: Metered,
}

/// Why an expression gave no value.
enum RunError {
    /// Upstream's activation error: `expression 'X' resulted in error: E`.
    Failed(String),
    /// The evaluation's budget is spent: no further expression runs.
    OutOfBudget,
}

impl Expression {
    fn compile(source: &str) -> Result<Expression, String> {
        let program = cel_k8s::compile(source)?;
        let metered = Metered::new(&program);
        Ok(Expression { source: source.to_string(), program, metered })
    }

    /// Upstream's static estimate of the worst case. Only what every
    /// object has is known (labels and annotations are maps); the rest is
    /// as large as a request.
    fn cost(&self) -> u64 {
        static META: OnceLock<Value> = OnceLock::new();
        let meta = META.get_or_init(|| {
            let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": map, "annotations": map}}}})
        });
        let object = || cel_k8s::cost::Shape::Schema(meta);
        let vars = [("object", object()), ("oldObject", object()), ("namespaceObject", object())];
        cel_k8s::cost::estimate(self.program.expression(), &vars).max
    }

    fn names(&self, variable: &str) -> bool {
        self.program.references().has_variable(variable)
    }

    /// Runs within the per-call limit, charging `budget` what it cost, as
    /// upstream's filter does: over the remaining budget, nothing further
    /// runs; over the per-call limit, this expression failed.
    fn run(&self, ctx: &cel::Context, budget: &mut Budget) -> Result<CelValue, RunError> {
        let failed = |e: &dyn std::fmt::Display| {
            RunError::Failed(format!("expression '{}' resulted in error: {e}", self.source))
        };
        match budget.run(&self.metered, ctx) {
            Spent::Ran(Ok(v)) => Ok(v),
            Spent::Ran(Err(e)) => Err(failed(&e)),
            Spent::CallLimitExceeded => Err(failed(&cel_k8s::meter::COST_EXCEEDED)),
            Spent::OutOfBudget => Err(RunError::OutOfBudget),
        }
    }
}

/// matchConstraints or a binding's matchResources.
pub struct MatchResources {
    rules: Vec<(Rule, Vec<String>)>,
    exclude: Vec<(Rule, Vec<String>)>,
    /// matchPolicy Equivalent.
    equivalent: bool,
    pub selectors: Selectors,
}

fn named_rules(holder: &Value, key: &str) -> Vec<(Rule, Vec<String>)> {
    let Some(rules) = holder.get(key).and_then(Value::as_array) else { return Vec::new() };
    rules
        .iter()
        .map(|r| {
            let names = r
                .get("resourceNames")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default();
            (Rule::parse(r), names)
        })
        .collect()
}

impl MatchResources {
    pub fn parse(mr: &Value) -> MatchResources {
        MatchResources {
            rules: named_rules(mr, "resourceRules"),
            exclude: named_rules(mr, "excludeResourceRules"),
            equivalent: mr.get("matchPolicy").and_then(Value::as_str) == Some("Equivalent"),
            selectors: Selectors::parse(mr),
        }
    }

    /// The rules part of upstream's matching.Matches: not excluded, and
    /// matched by a rule (no rules match everything), resourceNames
    /// included; with matchPolicy Equivalent, rules that miss the request's
    /// version are tried against the others. None when the request does not
    /// match.
    pub fn matches_rules(&self, a: &AdmissionAttributes<'_>, equivalents: &Equivalents<'_>) -> Option<Matched> {
        let named = |names: &[String]| names.is_empty() || names.iter().any(|n| n == a.name);
        let matched = |rules: &[(Rule, Vec<String>)]| {
            let matches = |(r, names): &(Rule, Vec<String>), resource: &_| r.matches_as(a, resource) && named(names);
            equivalents.matched(rules, self.equivalent, matches)
        };
        if matched(&self.exclude).is_some() {
            return None;
        }
        if self.rules.is_empty() {
            return Some(Matched::Exact);
        }
        matched(&self.rules)
    }
}

pub struct Validation {
    expression: Expression,
    message: String,
    message_expression: Option<Expression>,
    /// The Status reason a denial carries (upstream's default: Invalid).
    reason: Reason,
}

pub struct AuditAnnotation {
    key: String,
    value: Expression,
}

/// What the policy's paramKind names.
pub struct ParamKind {
    pub api_version: String,
    pub group: String,
    pub version: String,
    pub kind: String,
}

pub struct Policy {
    pub name: String,
    pub generation: i64,
    pub fail_open: bool,
    pub param_kind: Option<ParamKind>,
    pub constraints: MatchResources,
    match_conditions: Vec<(String, Expression)>,
    variables: Vec<(String, Expression)>,
    validations: Vec<Validation>,
    audit_annotations: Vec<AuditAnnotation>,
    /// Why the policy cannot run (an expression that does not compile).
    pub config_error: Option<String>,
    /// Which of the request's costlier variables an expression names; the
    /// others are never built.
    pub reads: Reads,
    /// Whether the worst case of all expressions together is small enough
    /// to evaluate on the request's own thread, without the deadline.
    pub inline: bool,
}

/// The variables an evaluation builds only for a policy that names them:
/// `namespaceObject` is a lookup, `request` and `authorizer` are built
/// from the request's attributes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub namespace: bool,
    pub request: bool,
    pub authorizer: bool,
}

/// The estimated cost under which a policy runs inline: a few hundred
/// microseconds at most, with nothing in it that loops over the request.
const INLINE_COST: u64 = 100_000;

fn items<'a>(v: &'a Value, p: &str) -> &'a [Value] {
    v.pointer(p).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Upstream's Status reasons a validation may name.
fn reason(name: &str) -> Reason {
    match Reason::named(name) {
        r @ (Reason::Forbidden | Reason::Unauthorized | Reason::RequestEntityTooLarge) => r,
        _ => Reason::Invalid,
    }
}

/// Upstream's reasonToCode; a denial without a reason is Invalid's 422.
pub fn code_of(reason: Option<Reason>) -> u16 {
    match reason {
        Some(Reason::Forbidden) => 403,
        Some(Reason::Unauthorized) => 401,
        Some(Reason::RequestEntityTooLarge) => 413,
        _ => 422,
    }
}

impl Policy {
    /// Compiles a stored policy; an expression that does not compile makes
    /// the whole policy a configuration error, as upstream.
    pub fn compile(obj: &Value) -> Policy {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut errors = Vec::new();
        let mut compile = |src: &str| match Expression::compile(src) {
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let named = |list: &[Value], compile: &mut dyn FnMut(&str) -> Option<Expression>| {
            list.iter()
                .filter_map(|c| compile(str_at(c, "/expression")).map(|e| (str_at(c, "/name").to_string(), e)))
                .collect::<Vec<_>>()
        };
        let match_conditions = named(items(spec, "/matchConditions"), &mut compile);
        let variables = named(items(spec, "/variables"), &mut compile);
        let validations: Vec<Validation> = items(spec, "/validations")
            .iter()
            .filter_map(|v| {
                let expression = compile(str_at(v, "/expression"))?;
                let me = str_at(v, "/messageExpression");
                let message_expression = if me.is_empty() { None } else { Some(compile(me)?) };
                Some(Validation {
                    expression,
                    message: str_at(v, "/message").trim().to_string(),
                    message_expression,
                    reason: reason(str_at(v, "/reason")),
                })
            })
            .collect();
        let audit_annotations: Vec<AuditAnnotation> = items(spec, "/auditAnnotations")
            .iter()
            .filter_map(|a| {
                let value = compile(str_at(a, "/valueExpression"))?;
                Some(AuditAnnotation { key: str_at(a, "/key").to_string(), value })
            })
            .collect();
        let param_kind = spec.get("paramKind").filter(|v| v.is_object()).map(|pk| {
            let api_version = str_at(pk, "/apiVersion").to_string();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
            let (group, version) = (group.to_string(), version.to_string());
            ParamKind { api_version, group, version, kind: str_at(pk, "/kind").to_string() }
        });
        let expressions: Vec<&Expression> = match_conditions
            .iter()
            .chain(&variables)
            .map(|(_, e)| e)
            .chain(
                validations
                    .iter()
                    .flat_map(|v: &Validation| std::iter::once(&v.expression).chain(&v.message_expression)),
            )
            .chain(audit_annotations.iter().map(|a: &AuditAnnotation| &a.value))
            .collect();
        let names = |v: &str| expressions.iter().any(|e| e.names(v));
        let reads =
            Reads { namespace: names("namespaceObject"), request: names("request"), authorizer: names("authorizer") };
        let inline = expressions.iter().map(|e| e.cost()).fold(0u64, u64::saturating_add) <= INLINE_COST;
        Policy {
            reads,
            inline,
            name: generic_server::meta::name(obj).to_string(),
            generation: obj.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0),
            fail_open: str_at(spec, "/failurePolicy") == "Ignore",
            param_kind,
            constraints: MatchResources::parse(spec.get("matchConstraints").unwrap_or(&Value::Null)),
            match_conditions,
            variables,
            validations,
            audit_annotations,
            config_error: (!errors.is_empty()).then(|| errors.join(", ")),
        }
    }
}

/// Where a binding's params come from.
pub enum ParamRef {
    Name { name: String, namespace: String },
    Selector { selector: LabelSelector, namespace: String },
}

pub struct Binding {
    pub name: String,
    pub policy: String,
    pub param_ref: Option<ParamRef>,
    pub deny_when_missing: bool,
    pub match_resources: Option<MatchResources>,
    pub deny: bool,
    pub warn: bool,
    pub audit: bool,
    /// validationActions as written, for the audit annotation.
    pub actions: Vec<String>,
}

impl Binding {
    pub fn parse(obj: &Value) -> Binding {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let actions: Vec<String> =
            items(spec, "/validationActions").iter().filter_map(Value::as_str).map(str::to_string).collect();
        let pr = spec.get("paramRef").filter(|v| v.is_object());
        let param_ref = pr.map(|pr| {
            let namespace = str_at(pr, "/namespace").to_string();
            match pr.get("selector").filter(|s| s.is_object()) {
                Some(sel) => ParamRef::Selector { selector: LabelSelector::from_object(sel), namespace },
                None => ParamRef::Name { name: str_at(pr, "/name").to_string(), namespace },
            }
        });
        let has = |a: &str| actions.iter().any(|x| x == a);
        Binding {
            name: generic_server::meta::name(obj).to_string(),
            policy: str_at(spec, "/policyName").to_string(),
            deny_when_missing: pr.is_some_and(|pr| str_at(pr, "/parameterNotFoundAction") == "Deny"),
            param_ref,
            match_resources: spec.get("matchResources").filter(|v| v.is_object()).map(MatchResources::parse),
            deny: has("Deny"),
            warn: has("Warn"),
            audit: has("Audit"),
            actions,
        }
    }
}

/// The variables of one evaluation, as JSON: CEL sees each through
/// [`cel_k8s::bind`], converted only if an expression names it. Borrowed
/// from the request where the evaluation runs on its thread; owned
/// ([`Input::into_owned`]) where it runs on another.
pub struct Input<'a> {
    pub object: Cow<'a, Value>,
    pub old_object: Cow<'a, Value>,
    pub request: Cow<'a, Value>,
    pub params: Cow<'a, Value>,
    pub namespace_object: Cow<'a, Value>,
    /// `authorizer` and `authorizer.requestResource`.
    pub authorizer: Cow<'a, CelValue>,
    pub request_resource: Cow<'a, CelValue>,
}

impl Input<'_> {
    pub fn into_owned(self) -> Input<'static> {
        Input {
            object: Cow::Owned(self.object.into_owned()),
            old_object: Cow::Owned(self.old_object.into_owned()),
            request: Cow::Owned(self.request.into_owned()),
            params: Cow::Owned(self.params.into_owned()),
            namespace_object: Cow::Owned(self.namespace_object.into_owned()),
            authorizer: Cow::Owned(self.authorizer.into_owned()),
            request_resource: Cow::Owned(self.request_resource.into_owned()),
        }
    }
}

/// One validation's outcome (upstream's PolicyDecision): None admits.
pub struct Denial {
    pub index: usize,
    pub message: String,
    /// None for an error, which carries no reason of its own.
    pub reason: Option<Reason>,
    /// An audit annotation's error: denied whatever the binding's actions.
    pub always: bool,
}

/// What evaluating a policy for one param yields.
#[derive(Default)]
pub struct Evaluation {
    pub denials: Vec<Denial>,
    /// Audit annotations to publish (key without the policy prefix).
    pub annotations: Vec<(String, String)>,
}

fn cel_string(v: &CelValue) -> Option<&str> {
    match v {
        CelValue::String(s) => Some(s.as_str()),
        _ => None,
    }
}

impl Policy {
    /// Upstream's validator.Validate for one param. Errors follow the
    /// failure policy: Fail turns them into denials, Ignore drops them.
    pub fn evaluate(&self, input: &Input<'_>) -> Evaluation {
        let bound = cel_k8s::bind::Variables::new()
            .json("object", &input.object)
            .json("oldObject", &input.old_object)
            .json("request", &input.request)
            .json("params", &input.params)
            .json("namespaceObject", &input.namespace_object)
            .cel("authorizer", input.authorizer.as_ref().clone())
            .cel("authorizer.requestResource", input.request_resource.as_ref().clone());
        cel_k8s::with_context(|root| self.evaluate_in(root, &bound))
    }

    fn evaluate_in<'v>(&self, root: &cel::Context<'_, 'v>, bound: &'v cel_k8s::bind::Variables<'_>) -> Evaluation {
        let mut out = Evaluation::default();
        let fail_as = |out: &mut Evaluation, index: usize, message: String, always: bool| {
            if !self.fail_open {
                out.denials.push(Denial { index, message, reason: None, always });
            }
        };
        let fail = |out: &mut Evaluation, index: usize, message: String| fail_as(out, index, message, false);
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(bound);
        let mut budget = Budget::default();
        let out_of_budget = |mut out: Evaluation| {
            fail(&mut out, 0, OUT_OF_BUDGET.to_string());
            out
        };
        // Variables see the ones before them; one that fails is left out, so
        // an expression using it fails with it.
        let mut vars: HashMap<cel::objects::Key, CelValue> = HashMap::new();
        for (name, expr) in &self.variables {
            let mut scope = ctx.new_inner_scope();
            scope.add_variable_from_value("variables", CelValue::Map(cel::objects::Map::from(vars.clone())));
            match expr.run(&scope, &mut budget) {
                Ok(v) => drop(vars.insert(cel::objects::Key::String(Arc::new(name.clone())), v)),
                Err(RunError::OutOfBudget) => return out_of_budget(out),
                Err(RunError::Failed(_)) => {}
            }
        }
        ctx.add_variable_from_value("variables", CelValue::Map(cel::objects::Map::from(vars)));
        // Upstream's matchconditions matcher: any false skips the policy,
        // even past errors; otherwise errors fail it, aggregated.
        let mut errors = Vec::new();
        for (_, cond) in &self.match_conditions {
            match cond.run(&ctx, &mut budget) {
                Ok(CelValue::Bool(false)) => return out,
                Ok(CelValue::Bool(true)) => {}
                Ok(_) => errors.push(format!("expression '{}' resulted in error: no such overload", cond.source)),
                Err(RunError::Failed(e)) => errors.push(e),
                Err(RunError::OutOfBudget) => return out_of_budget(out),
            }
        }
        if !errors.is_empty() {
            let message = if errors.len() == 1 { errors.remove(0) } else { format!("[{}]", errors.join(", ")) };
            fail(&mut out, 0, message);
            return out;
        }
        for (i, v) in self.validations.iter().enumerate() {
            match v.expression.run(&ctx, &mut budget) {
                Ok(CelValue::Bool(true)) => {}
                Err(RunError::OutOfBudget) => return out_of_budget(out),
                Ok(_) => {
                    let from_expression = v.message_expression.as_ref().and_then(|m| {
                        let r = m.run(&ctx, &mut budget).ok()?;
                        let s = cel_string(&r)?.trim();
                        (!s.is_empty() && s.len() <= MAX_MESSAGE_BYTES && !s.contains('\n')).then(|| s.to_string())
                    });
                    let message = from_expression
                        .or_else(|| (!v.message.is_empty()).then(|| v.message.clone()))
                        .unwrap_or_else(|| format!("failed expression: {}", v.expression.source.trim()));
                    out.denials.push(Denial { index: i, message, reason: Some(v.reason), always: false });
                }
                Err(RunError::Failed(e)) => fail(&mut out, i, e),
            }
        }
        for a in &self.audit_annotations {
            match a.value.run(&ctx, &mut budget) {
                Ok(CelValue::String(s)) if !s.trim().is_empty() => {
                    out.annotations.push((a.key.clone(), s.trim().to_string()))
                }
                Ok(CelValue::String(_)) | Ok(CelValue::Null) => {}
                Ok(other) => fail_as(
                    &mut out,
                    0,
                    format!(
                        "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
                        a.value.source,
                        type_name(&other)
                    ),
                    true,
                ),
                Err(RunError::Failed(e)) => fail_as(&mut out, 0, e, true),
                Err(RunError::OutOfBudget) => return out_of_budget(out),
            }
        }
        out
    }
}

fn type_name(v: &CelValue) -> &'static str {
    match v {
        CelValue::Int(_) => "int",
        CelValue::UInt(_) => "uint",
        CelValue::Float(_) => "double",
        CelValue::Bool(_) => "bool",
        CelValue::List(_) => "list",
        CelValue::Map(_) => "map",
        CelValue::Bytes(_) => "bytes",
        _ => "dyn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(object: Value, params: Value) -> Input<'static> {
        Input {
            object: Cow::Owned(object),
            old_object: Cow::Owned(Value::Null),
            request: Cow::Owned(json!({"operation": "CREATE"})),
            params: Cow::Owned(params),
            namespace_object: Cow::Owned(Value::Null),
            authorizer: Cow::Owned(CelValue::Null),
            request_resource: Cow::Owned(CelValue::Null),
        }
    }

    fn policy(spec: Value) -> Policy {
        Policy::compile(&json!({"metadata": {"name": "p", "generation": 1}, "spec": spec}))
    }

    #[test]
    fn validations_variables_and_conditions() {
        let p = policy(json!({
            "variables": [{"name": "n", "expression": "size(object.data)"}, {"name": "twice", "expression": "variables.n * 2"}],
            "matchConditions": [{"name": "create", "expression": "request.operation == 'CREATE'"}],
            "validations": [
                {"expression": "variables.twice <= params.max", "messageExpression": "'too many: ' + string(variables.n)", "reason": "Forbidden"},
                {"expression": "variables.n > 0", "message": " empty "},
                {"expression": "object.data.all(k, k != 'x')"},
                {"expression": "object.missing == 1"}
            ],
            "auditAnnotations": [{"key": "n", "valueExpression": "string(variables.n)"}]}));
        assert!(p.config_error.is_none());
        let e = p.evaluate(&input(json!({"data": {"a": "1", "x": "2"}}), json!({"max": 2})));
        let got: Vec<(usize, &str, Option<Reason>)> =
            e.denials.iter().map(|d| (d.index, d.message.as_str(), d.reason)).collect();
        assert_eq!(got[0], (0, "too many: 2", Some(Reason::Forbidden)));
        assert_eq!(got[1], (2, "failed expression: object.data.all(k, k != 'x')", Some(Reason::Invalid)));
        assert_eq!(got[2].0, 3);
        assert!(got[2].1.starts_with("expression 'object.missing == 1' resulted in error: "), "{got:?}");
        assert_eq!(got[2].2, None, "an error carries no reason of its own");
        assert_eq!(e.annotations, [("n".to_string(), "2".to_string())]);

        let mut skipped = input(json!({"data": {}}), json!({"max": 2}));
        skipped.request = Cow::Owned(json!({"operation": "UPDATE"}));
        assert!(p.evaluate(&skipped).denials.is_empty(), "a false matchCondition skips the policy");
    }

    #[test]
    fn what_a_policy_reads_and_where_it_runs() {
        let cheap = policy(
            json!({"validations": [{"expression": "!has(object.metadata.labels) || !('x' in object.metadata.labels)"}]}),
        );
        assert!(cheap.inline, "field reads and a map lookup run on the request's thread");
        assert_eq!(cheap.reads, Reads::default(), "nothing but the object is built for it");
        let looping =
            policy(json!({"validations": [{"expression": "object.data.all(k, object.data.exists(j, j != k))"}]}));
        assert!(!looping.inline, "nested loops over the request run under the deadline");
        let ns = policy(
            json!({"matchConditions": [{"name": "n", "expression": "namespaceObject.metadata.name != 'x'"}], "validations": [{"expression": "true"}]}),
        );
        assert_eq!(ns.reads, Reads { namespace: true, ..Reads::default() });
        let who = policy(json!({"validations": [
            {"expression": "request.userInfo.username != 'x'"},
            {"expression": "true", "messageExpression": "authorizer.requestResource.check('get').reason()"},
        ]}));
        assert_eq!(who.reads, Reads { request: true, authorizer: true, namespace: false });
    }

    #[test]
    fn failure_policy_and_compile_errors() {
        let spec = json!({"failurePolicy": "Ignore", "validations": [{"expression": "object.missing == 1"}]});
        assert!(policy(spec).evaluate(&input(json!({}), Value::Null)).denials.is_empty(), "Ignore drops errors");
        let broken = policy(json!({"validations": [{"expression": "object.a >"}]}));
        assert!(broken.config_error.as_deref().is_some_and(|e| e.starts_with("compilation failed: ")));
        assert_eq!(code_of(Some(Reason::Forbidden)), 403);
        assert_eq!(code_of(None), 422);
    }
}
