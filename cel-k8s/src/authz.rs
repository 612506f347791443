//! Upstream's Kubernetes authorization library for CEL
//! (k8s.io/apiserver/pkg/cel/library/authz.go): the `authorizer` variable
//! and what hangs off it, `authorizer.group('apps').resource('deployments')
//! .namespace('ns').name('x').check('get').allowed()`, `.reason()`,
//! `authorizer.path('/healthz').check('get')` and
//! `authorizer.serviceAccount(ns, name)`, with upstream's type names and
//! errors.
//!
//! This crate does not know who asks or how a server decides: the caller
//! hands [`authorizer`] an [`Authorize`] bound to the request's user, and
//! every `check` asks it.

use std::sync::Arc;

use cel::common::types::{Type, STRING_TYPE};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::library::{arg, member, opaque, str_arg};

const AUTHORIZER: &str = "kubernetes.authorization.Authorizer";
const PATH_CHECK: &str = "kubernetes.authorization.PathCheck";
const GROUP_CHECK: &str = "kubernetes.authorization.GroupCheck";
const RESOURCE_CHECK: &str = "kubernetes.authorization.ResourceCheck";
const DECISION: &str = "kubernetes.authorization.Decision";

/// What one `check` asks (upstream's AttributesRecord as the library fills
/// it: a resource check names every API version, "*").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// The non-resource path of a path check; None for a resource check.
    pub path: Option<String>,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub field_selector: String,
    pub label_selector: String,
}

/// An authorizer's answer (upstream's Decision, reason and error).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    pub error: Option<String>,
}

/// The server's authorizer as the library sees it, bound to the user whose
/// request the expression judges.
pub trait Authorize: Send + Sync {
    /// Decides `check` for the request's user, or for the ServiceAccount
    /// (namespace, name) when the expression named one.
    fn authorize(&self, service_account: Option<(&str, &str)>, check: &Check) -> Decision;
}

/// The principal checks are made for: the request's user, or a ServiceAccount.
#[derive(Clone)]
struct Principal {
    authz: Arc<dyn Authorize>,
    service_account: Option<(String, String)>,
}

impl Principal {
    fn decide(&self, check: &Check) -> Decision {
        let sa = self.service_account.as_ref().map(|(ns, n)| (ns.as_str(), n.as_str()));
        self.authz.authorize(sa, check)
    }
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Principal").field("service_account", &self.service_account).finish()
    }
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.authz, &other.authz) && self.service_account == other.service_account
    }
}
impl Eq for Principal {}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AuthorizerVal(Principal);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PathCheck {
    principal: Principal,
    path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupCheck {
    principal: Principal,
    group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceCheck {
    principal: Principal,
    check: Check,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DecisionVal(Decision);

macro_rules! opaque_type {
    ($t:ty, $name:expr) => {
        impl Opaque for $t {
            fn runtime_type_name(&self) -> &str {
                $name
            }
        }
    };
}
opaque_type!(AuthorizerVal, AUTHORIZER);
opaque_type!(PathCheck, PATH_CHECK);
opaque_type!(GroupCheck, GROUP_CHECK);
opaque_type!(ResourceCheck, RESOURCE_CHECK);
opaque_type!(DecisionVal, DECISION);

/// The `authorizer` variable for checks on behalf of `authz`'s user.
pub fn authorizer(authz: Arc<dyn Authorize>) -> Value {
    opaque(AuthorizerVal(Principal { authz, service_account: None }))
}

/// The `authorizer.requestResource` variable: a resource check already set
/// to the request's group, resource, subresource, namespace and name.
pub fn request_resource(
    authz: Arc<dyn Authorize>,
    group: &str,
    resource: &str,
    subresource: &str,
    namespace: &str,
    name: &str,
) -> Value {
    let check = Check {
        group: group.to_string(),
        resource: resource.to_string(),
        subresource: subresource.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        ..Check::default()
    };
    opaque(ResourceCheck { principal: Principal { authz, service_account: None }, check })
}

fn error(function: &str, message: &str) -> ExecutionError {
    ExecutionError::function_error(function, message)
}

fn path(a: &[Value]) -> Result<Value, ExecutionError> {
    let AuthorizerVal(principal) = arg::<AuthorizerVal>(a, 0, "path")?;
    let path = str_arg(a, 1, "path")?;
    if path.trim().is_empty() {
        return Err(error("path", "path must not be empty"));
    }
    Ok(opaque(PathCheck { principal: principal.clone(), path: path.to_string() }))
}

fn group(a: &[Value]) -> Result<Value, ExecutionError> {
    let AuthorizerVal(principal) = arg::<AuthorizerVal>(a, 0, "group")?;
    Ok(opaque(GroupCheck { principal: principal.clone(), group: str_arg(a, 1, "group")?.to_string() }))
}

/// RFC 1123 labels (at most 63 characters) and subdomains (dot-separated
/// labels, at most 253), as apimachinery's name validation.
fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

fn service_account(a: &[Value]) -> Result<Value, ExecutionError> {
    let AuthorizerVal(principal) = arg::<AuthorizerVal>(a, 0, "serviceAccount")?;
    let (namespace, name) = (str_arg(a, 1, "serviceAccount")?, str_arg(a, 2, "serviceAccount")?);
    if !dns_subdomain(name) {
        return Err(error("serviceAccount", "Invalid service account name"));
    }
    if !dns_label(namespace) {
        return Err(error("serviceAccount", "Invalid service account namespace"));
    }
    let principal = Principal { service_account: Some((namespace.to_string(), name.to_string())), ..principal.clone() };
    Ok(opaque(AuthorizerVal(principal)))
}

fn resource(a: &[Value]) -> Result<Value, ExecutionError> {
    let g = arg::<GroupCheck>(a, 0, "resource")?;
    let resource = str_arg(a, 1, "resource")?;
    if resource.trim().is_empty() {
        return Err(error("resource", "resource must not be empty"));
    }
    let check = Check { group: g.group.clone(), resource: resource.to_string(), ..Check::default() };
    Ok(opaque(ResourceCheck { principal: g.principal.clone(), check }))
}

/// A ResourceCheck with one of its fields set.
fn with(a: &[Value], function: &str, set: fn(&mut Check, String)) -> Result<Value, ExecutionError> {
    let mut r = arg::<ResourceCheck>(a, 0, function)?.clone();
    set(&mut r.check, str_arg(a, 1, function)?.to_string());
    Ok(opaque(r))
}
fn subresource(a: &[Value]) -> Result<Value, ExecutionError> {
    with(a, "subresource", |c, v| c.subresource = v)
}
fn namespace(a: &[Value]) -> Result<Value, ExecutionError> {
    with(a, "namespace", |c, v| c.namespace = v)
}
fn name(a: &[Value]) -> Result<Value, ExecutionError> {
    with(a, "name", |c, v| c.name = v)
}
fn field_selector(a: &[Value]) -> Result<Value, ExecutionError> {
    with(a, "fieldSelector", |c, v| c.field_selector = v)
}
fn label_selector(a: &[Value]) -> Result<Value, ExecutionError> {
    with(a, "labelSelector", |c, v| c.label_selector = v)
}

fn path_check(a: &[Value]) -> Result<Value, ExecutionError> {
    let p = arg::<PathCheck>(a, 0, "check")?;
    let check = Check { path: Some(p.path.clone()), verb: str_arg(a, 1, "check")?.to_string(), ..Check::default() };
    Ok(opaque(DecisionVal(p.principal.decide(&check))))
}

fn resource_check(a: &[Value]) -> Result<Value, ExecutionError> {
    let r = arg::<ResourceCheck>(a, 0, "check")?;
    let check = Check { verb: str_arg(a, 1, "check")?.to_string(), ..r.check.clone() };
    Ok(opaque(DecisionVal(r.principal.decide(&check))))
}

fn allowed(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(arg::<DecisionVal>(a, 0, "allowed")?.0.allowed))
}
fn reason(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(arg::<DecisionVal>(a, 0, "reason")?.0.reason.clone())))
}
fn errored(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(arg::<DecisionVal>(a, 0, "errored")?.0.error.is_some()))
}
fn error_of(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(arg::<DecisionVal>(a, 0, "error")?.0.error.clone().unwrap_or_default())))
}

/// Declares the library's types and functions on `env`.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let t = Type::new_opaque_type;
    let (authz, path_t, group_t, resource_t, decision) =
        (|| t(AUTHORIZER), || t(PATH_CHECK), || t(GROUP_CHECK), || t(RESOURCE_CHECK), || t(DECISION));
    for ty in [authz(), path_t(), group_t(), resource_t(), decision()] {
        env.add_type(ty)?;
    }
    member!(env, "path", "authorizer_path", authz(), [STRING_TYPE], path);
    member!(env, "group", "authorizer_group", authz(), [STRING_TYPE], group);
    member!(env, "serviceAccount", "authorizer_serviceaccount", authz(), [STRING_TYPE, STRING_TYPE], service_account);
    member!(env, "resource", "groupcheck_resource", group_t(), [STRING_TYPE], resource);
    member!(env, "subresource", "resourcecheck_subresource", resource_t(), [STRING_TYPE], subresource);
    member!(env, "namespace", "resourcecheck_namespace", resource_t(), [STRING_TYPE], namespace);
    member!(env, "name", "resourcecheck_name", resource_t(), [STRING_TYPE], name);
    member!(env, "fieldSelector", "authorizer_fieldselector", resource_t(), [STRING_TYPE], field_selector);
    member!(env, "labelSelector", "authorizer_labelselector", resource_t(), [STRING_TYPE], label_selector);
    member!(env, "check", "pathcheck_check", path_t(), [STRING_TYPE], path_check);
    member!(env, "check", "resourcecheck_check", resource_t(), [STRING_TYPE], resource_check);
    member!(env, "allowed", "decision_allowed", decision(), [], allowed);
    member!(env, "reason", "decision_reason", decision(), [], reason);
    member!(env, "errored", "decision_errored", decision(), [], errored);
    member!(env, "error", "decision_error", decision(), [], error_of);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A check as the authorizer got it: for which ServiceAccount, if any.
    type Seen = (Option<(String, String)>, Check);

    /// Allows `get` of anything and GET of /healthz; records every check.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Seen>>);

    impl Authorize for Recorder {
        fn authorize(&self, sa: Option<(&str, &str)>, check: &Check) -> Decision {
            let sa = sa.map(|(ns, n)| (ns.to_string(), n.to_string()));
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push((sa, check.clone()));
            let allowed = check.verb == "get" || check.path.as_deref() == Some("/healthz");
            Decision { allowed, reason: format!("checked {}", check.verb), error: None }
        }
    }

    fn eval(authz: &Arc<Recorder>, expr: &str) -> Result<Value, String> {
        let program = crate::compile(expr)?;
        let base = crate::context();
        let mut ctx = base.new_inner_scope();
        let dynamic: Arc<dyn Authorize> = authz.clone();
        ctx.add_variable_from_value("authorizer", authorizer(dynamic.clone()));
        ctx.add_variable_from_value(
            "authorizer.requestResource",
            request_resource(dynamic, "apps", "deployments", "scale", "ns", "web"),
        );
        program.execute(&ctx).map_err(|e| e.to_string())
    }

    #[test]
    fn checks_reach_the_authorizer() {
        let a = Arc::new(Recorder::default());
        let yes = "authorizer.group('').resource('pods').subresource('log').namespace('ns').name('p').check('get')";
        assert_eq!(eval(&a, &format!("{yes}.allowed()")), Ok(Value::Bool(true)));
        assert_eq!(eval(&a, &format!("{yes}.reason()")), Ok(Value::String(Arc::new("checked get".into()))));
        assert_eq!(eval(&a, &format!("{yes}.errored() || {yes}.error() != ''")), Ok(Value::Bool(false)));
        let first = a.0.lock().unwrap_or_else(|e| e.into_inner())[0].clone();
        let want = Check {
            verb: "get".into(),
            resource: "pods".into(),
            subresource: "log".into(),
            namespace: "ns".into(),
            name: "p".into(),
            ..Check::default()
        };
        assert_eq!(first, (None, want));
        assert_eq!(
            eval(&a, "authorizer.group('apps').resource('deployments').check('delete').allowed()"),
            Ok(Value::Bool(false))
        );
        assert_eq!(eval(&a, "authorizer.path('/healthz').check('get').allowed()"), Ok(Value::Bool(true)));
        assert_eq!(eval(&a, "authorizer.requestResource.check('update').allowed()"), Ok(Value::Bool(false)));
        let last = a.0.lock().unwrap_or_else(|e| e.into_inner()).last().cloned().map(|(_, c)| c);
        assert_eq!(
            last.map(|c| (c.group, c.resource, c.subresource, c.namespace, c.name, c.verb)),
            Some(("apps".into(), "deployments".into(), "scale".into(), "ns".into(), "web".into(), "update".into()))
        );
        eval(&a, "authorizer.serviceAccount('ns', 'robot').group('').resource('pods').check('list').allowed()")
            .expect("a service account check");
        let sa = a.0.lock().unwrap_or_else(|e| e.into_inner()).last().cloned().and_then(|(sa, _)| sa);
        assert_eq!(sa, Some(("ns".to_string(), "robot".to_string())));
    }

    #[test]
    fn bad_arguments_fail_in_upstreams_words() {
        let a = Arc::new(Recorder::default());
        let fails = |expr: &str, want: &str| match eval(&a, expr) {
            Err(e) => assert!(e.contains(want), "{expr}: {e}"),
            Ok(v) => panic!("{expr} gave {v:?}"),
        };
        fails("authorizer.path(' ').check('get')", "path must not be empty");
        fails("authorizer.group('').resource('').check('get')", "resource must not be empty");
        fails("authorizer.serviceAccount('ns', 'Bad_Name').path('/').check('get')", "Invalid service account name");
        fails("authorizer.serviceAccount('a.b', 'ok').path('/').check('get')", "Invalid service account namespace");
    }
}
