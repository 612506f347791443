//! ValidatingAdmissionPolicy (upstream's admission/plugin/policy/validating
//! on policy/generic and policy/matching): policies and their bindings are
//! followed by informers and compiled once per change; every request is
//! matched against each policy's matchConstraints and each binding's
//! matchResources, its params looked up (a ConfigMap, a custom resource, any
//! kind with a Store), and the validations evaluated with upstream's
//! variables. Failures are denied, warned about or audited as the binding's
//! validationActions say, in upstream's words. A policy whose
//! matchConstraints (matchPolicy Equivalent) matched another version of the
//! request's resource evaluates the objects converted to that version, with
//! that version as `request.kind` and `request.resource`.
//!
//! Evaluation is metered as upstream's (`cel_k8s::meter`): each expression
//! within the per-call limit, the policy's expressions together within the
//! runtime budget, with upstream's errors under the failure policy. A
//! policy whose estimated worst case is small runs on the request's thread;
//! any other runs on a blocking thread, under a deadline as a last line for
//! work the meter does not see.

mod authorizer;
mod compiled;
mod typecheck;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use serde_json::{json, Value};

use generic_server::authz::Authorizer;
use generic_server::informer::{Change, Informer};
use generic_server::registry::{AdmissionAttributes, ListOptions, Operation, ResourceInfo, StoreRegistry, Validating};
use generic_server::status::{Reason, StatusError};

use crate::matching::{
    passed_over, Equivalents, Matched, NamespaceVerdicts, Namespaces, RequestNamespace, Versioned, View,
};
use compiled::{Binding, Denial, Evaluation, Input, MatchResources, ParamRef, Policy};

/// How long one policy's evaluation for one param may take.
const EVAL_DEADLINE: Duration = Duration::from_secs(1);
/// Upstream's maxAuditAnnotationValueLength.
const MAX_ANNOTATION_VALUE: usize = 10 * 1024;
/// Upstream's maxValidationFailures in the audit annotation.
const MAX_VALIDATION_FAILURES: usize = 50;
const VALIDATION_FAILURE_KEY: &str = "validation.policy.admission.k8s.io/validation_failure";

/// A policy with the bindings that name it.
struct Hook {
    policy: Arc<Policy>,
    bindings: Vec<Arc<Binding>>,
}

/// The ValidatingAdmissionPolicy plugin, provided to the chain as its
/// Validating half.
#[derive(Default)]
pub struct ValidatingAdmissionPolicy {
    hooks: RwLock<Arc<Vec<Hook>>>,
    verdicts: NamespaceVerdicts<Vec<Hook>>,
    /// Compiled policies by name, reused while their generation holds.
    compiled: RwLock<HashMap<String, Arc<Policy>>>,
    namespaces: Namespaces,
    stores: OnceLock<Arc<StoreRegistry>>,
    /// The server's authorizer, which the `authorizer` variable asks.
    authorizer: OnceLock<Arc<dyn Authorizer>>,
}

const GROUP: &str = "admissionregistration.k8s.io";

impl ValidatingAdmissionPolicy {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Binds the plugin to the Stores (after they exist) and the server's
    /// authorizer, and starts following policies and bindings;
    /// status.typeChecking is written as policies change. Must run inside a
    /// tokio runtime.
    pub fn start(self: &Arc<Self>, stores: Arc<StoreRegistry>, authorizer: Arc<dyn Authorizer>) -> Result<(), String> {
        let _ = self.authorizer.set(authorizer);
        let find = |kind: &str| stores.of_kind(GROUP, kind).ok_or_else(|| format!("no Store serves {kind}"));
        let (policies, bindings) = (find("ValidatingAdmissionPolicy")?, find("ValidatingAdmissionPolicyBinding")?);
        if let Some(ns) = stores.of_kind("", "Namespace") {
            self.namespaces.bind(&ns);
        }
        let _ = self.stores.set(stores.clone());
        let (pi, bi) = (Informer::new(policies.clone()), Informer::new(bindings));
        let refresh = {
            let (me, pi, bi) = (Arc::downgrade(self), pi.clone(), bi.clone());
            move || {
                if let Some(me) = me.upgrade() {
                    me.rebuild(&pi.list(), &bi.list());
                }
            }
        };
        let on_binding = refresh.clone();
        bi.spawn(move |_| on_binding());
        let typecheck = typecheck::TypeChecker::new(stores, policies);
        pi.spawn(move |change| {
            refresh();
            if let Change::Added(p) | Change::Updated { new: p, .. } = change {
                typecheck.observe(p);
            }
        });
        Ok(())
    }

    /// Recompiles what changed and swaps the set the requests read.
    fn rebuild(&self, policies: &[Value], bindings: &[Value]) {
        let mut compiled = self.compiled.write().unwrap_or_else(|e| e.into_inner());
        let mut next = HashMap::new();
        for p in policies {
            let name = generic_server::meta::name(p);
            let generation = p.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let policy = match compiled.get(name) {
                Some(c) if c.generation == generation => c.clone(),
                _ => Arc::new(Policy::compile(p)),
            };
            next.insert(name.to_string(), policy);
        }
        let mut by_policy: HashMap<&str, Vec<Arc<Binding>>> = HashMap::new();
        let parsed: Vec<Arc<Binding>> = bindings.iter().map(|b| Arc::new(Binding::parse(b))).collect();
        for b in &parsed {
            by_policy.entry(b.policy.as_str()).or_default().push(b.clone());
        }
        let mut hooks: Vec<Hook> = next
            .values()
            .filter_map(|p| {
                let bindings = by_policy.remove(p.name.as_str())?;
                Some(Hook { policy: p.clone(), bindings })
            })
            .collect();
        // Upstream evaluates in a stable order; the first denial is reported.
        hooks.sort_by(|a, b| a.policy.name.cmp(&b.policy.name));
        for h in &mut hooks {
            h.bindings.sort_by(|a, b| a.name.cmp(&b.name));
        }
        *compiled = next;
        *self.hooks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(hooks);
    }

    /// Upstream's matching.Matches: the rules (which version matched), then
    /// the namespace and object selectors.
    async fn matches(
        &self,
        m: &MatchResources,
        a: &AdmissionAttributes<'_>,
        namespace: &RequestNamespace<'_>,
        equivalents: &Equivalents<'_>,
    ) -> Result<Option<Matched>, StatusError> {
        let Some(matched) = m.matches_rules(a, equivalents) else { return Ok(None) };
        if !m.selectors.matches_namespace(a, a.object, namespace).await? || !m.selectors.matches_object(a, a.object) {
            return Ok(None);
        }
        Ok(Some(matched))
    }

    /// Upstream's CollectParams: the params a binding evaluates with; a
    /// single null when the policy or binding takes none.
    async fn params(&self, policy: &Policy, binding: &Binding, namespace: &str) -> Result<Vec<Value>, String> {
        let (Some(kind), Some(param_ref)) = (&policy.param_kind, &binding.param_ref) else {
            return Ok(vec![Value::Null]);
        };
        let store = self
            .stores
            .get()
            .and_then(|s| s.of_gvk(&kind.group, &kind.version, &kind.kind))
            .ok_or_else(|| format!("paramKind kind `{}, Kind={}` not known", kind.api_version, kind.kind))?;
        let ref_namespace = match param_ref {
            ParamRef::Name { namespace, .. } | ParamRef::Selector { namespace, .. } => namespace,
        };
        let ns = if !store.info.namespaced {
            if !ref_namespace.is_empty() {
                return Err("paramRef.namespace must not be provided for a cluster-scoped `paramKind`".into());
            }
            ""
        } else if !ref_namespace.is_empty() {
            ref_namespace.as_str()
        } else if !namespace.is_empty() {
            namespace
        } else {
            return Err("cannot use namespaced paramRef in policy binding that matches cluster-scoped resources".into());
        };
        let params = match param_ref {
            ParamRef::Name { name, .. } => match store.get(ns, name).await {
                Ok(p) => vec![p],
                Err(e) if e.is_not_found() => Vec::new(),
                Err(e) => return Err(e.message),
            },
            ParamRef::Selector { selector, .. } => {
                let opts = ListOptions { label_selector: selector.clone(), ..Default::default() };
                let list = store.list(ns, &opts).await.map_err(|e| e.message)?;
                list.get("items").and_then(Value::as_array).cloned().unwrap_or_default()
            }
        };
        if params.is_empty() && binding.deny_when_missing {
            return Err("no params found for policy binding with `Deny` parameterNotFoundAction".into());
        }
        Ok(params)
    }
}

/// A denial with the policy and binding it came from.
struct Denied {
    policy: Arc<Policy>,
    binding: Option<Arc<Binding>>,
    message: String,
    reason: Option<Reason>,
}

/// Upstream's AdmissionRequest as CEL's `request`, for the policy matching
/// the request as `resource` (its own version, or an equivalent).
fn request_of(a: &AdmissionAttributes<'_>, resource: &ResourceInfo) -> Value {
    let (kind, resource) = crate::matching::gvk_gvr(a, resource);
    let (request_kind, request_resource) = crate::matching::gvk_gvr(a, a.info);
    let user = a.user.map(|u| json!({"username": u.name, "uid": u.uid, "groups": u.groups, "extra": u.extra}));
    json!({
        "kind": kind, "resource": resource, "subResource": a.subresource,
        "requestKind": request_kind, "requestResource": request_resource, "requestSubResource": a.subresource,
        "name": a.name, "namespace": a.namespace, "operation": a.operation.as_str(),
        "userInfo": user.unwrap_or_else(|| json!({})), "dryRun": a.dry_run,
    })
}

/// Upstream's CreateNamespaceObject: the namespace without managedFields
/// and owner references.
fn namespace_object(ns: &Value) -> Value {
    let mut ns = ns.clone();
    if let Some(m) = ns.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("ownerReferences");
    }
    ns
}

#[async_trait::async_trait]
impl Validating for ValidatingAdmissionPolicy {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let hooks = self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone();
        if hooks.is_empty() {
            return Ok(());
        }
        let mut denied: Vec<Denied> = Vec::new();
        let mut failures: Vec<Value> = Vec::new();
        let config_error = |denied: &mut Vec<Denied>, p: &Arc<Policy>, b: Option<&Arc<Binding>>, e: String| {
            if !p.fail_open {
                let what = if b.is_some() { "binding" } else { "policy" };
                denied.push(Denied {
                    policy: p.clone(),
                    binding: b.cloned(),
                    message: format!("failed to configure {what}: {e}"),
                    reason: None,
                });
            }
        };
        // The request's own values, each made once, for the first policy
        // that reads it.
        let mut base = RequestInput::default();
        let namespace = self.namespaces.of_request(a);
        let equivalents = Equivalents::of(self.stores.get().map(|s| &**s), a);
        // A policy is passed over in a namespace that its own selector or
        // every one of its bindings' selectors exclude; one with a
        // configuration error is not, since its error is reported once the
        // policy matches, whatever its bindings select.
        let judge = |labels: &_| {
            let passes = |h: &Hook| {
                let binding_passes =
                    |b: &Arc<Binding>| b.match_resources.as_ref().is_none_or(|m| m.selectors.namespace_passes(labels));
                h.policy.config_error.is_some()
                    || (h.policy.constraints.selectors.namespace_passes(labels)
                        && h.bindings.iter().any(binding_passes))
            };
            hooks.iter().map(passes).collect()
        };
        let verdicts = self.verdicts.of(&hooks, a, &namespace, judge).await;
        for (i, hook) in hooks.iter().enumerate() {
            if passed_over(&verdicts, i) {
                continue;
            }
            let p = &hook.policy;
            let matched = match self.matches(&p.constraints, a, &namespace, &equivalents).await {
                Err(e) => {
                    config_error(&mut denied, p, None, e.message);
                    continue;
                }
                Ok(None) => continue,
                Ok(Some(matched)) => matched,
            };
            if let Some(e) = &p.config_error {
                config_error(&mut denied, p, None, e.clone());
                continue;
            }
            let mut annotations: Vec<(String, Vec<String>)> = Vec::new();
            // The objects in the version the policy matched, converted when
            // the first binding applies (as upstream's VersionedAttribute).
            let mut versioned: Option<Option<(Versioned, Option<Value>)>> = None;
            for b in &hook.bindings {
                if let Some(m) = &b.match_resources {
                    match self.matches(m, a, &namespace, &equivalents).await {
                        Err(e) => {
                            config_error(&mut denied, p, Some(b), e.message);
                            continue;
                        }
                        Ok(None) => continue,
                        Ok(Some(_)) => {}
                    }
                }
                let params = match self.params(p, b, a.namespace).await {
                    Ok(params) => params,
                    Err(e) => {
                        config_error(&mut denied, p, Some(b), e);
                        continue;
                    }
                };
                if p.reads.request && base.request.is_none() {
                    base.request = Some(request_of(a, a.info));
                }
                if p.reads.authorizer && base.authorizer.is_none() {
                    base.authorizer = Some(self.authorizer_variables(a));
                }
                if p.reads.namespace && base.namespace_object.is_none() {
                    base.namespace_object = Some(namespace_input(a, &namespace).await?);
                }
                let converted = match &mut versioned {
                    Some(v) => v,
                    None => {
                        let v = matched.convert(&equivalents, a.object, a.old).await?;
                        versioned.insert(v.map(|v| {
                            let request = p.reads.request.then(|| request_of(a, &v.target.info));
                            (v, request)
                        }))
                    }
                };
                let view = View::of(a, a.object, converted.as_ref().map(|(v, _)| v));
                let request = match &*converted {
                    Some((_, request)) => request.as_ref(),
                    None => base.request.as_ref(),
                };
                for param in params {
                    let input = base.input(a, view, request, &param);
                    let result =
                        if p.inline { p.evaluate(&input) } else { evaluate(p.clone(), input.into_owned()).await };
                    for d in result.denials {
                        act(a, p, b, d, &mut denied, &mut failures);
                    }
                    for (k, v) in result.annotations {
                        let v: String = v.chars().take(MAX_ANNOTATION_VALUE).collect();
                        match annotations.iter_mut().find(|(key, _)| *key == k) {
                            Some((_, vs)) if !vs.contains(&v) => vs.push(v),
                            Some(_) => {}
                            None => annotations.push((k, vec![v])),
                        }
                    }
                }
            }
            for (k, vs) in annotations {
                a.notes.annotate(format!("{}/{k}", p.name), vs.join(", "));
            }
        }
        if !failures.is_empty() {
            failures.truncate(MAX_VALIDATION_FAILURES);
            a.notes.annotate(VALIDATION_FAILURE_KEY, Value::Array(failures).to_string());
        }
        let Some(d) = denied.into_iter().next() else { return Ok(()) };
        let message = match &d.binding {
            Some(b) => format!(
                "ValidatingAdmissionPolicy '{}' with binding '{}' denied request: {}",
                d.policy.name, b.name, d.message
            ),
            None => format!("ValidatingAdmissionPolicy '{}' denied request: {}", d.policy.name, d.message),
        };
        let mut err = a.forbidden(&message);
        err.reason = d.reason.unwrap_or(Reason::Invalid);
        err.code = compiled::code_of(d.reason);
        if let Some(details) = err.details.as_deref_mut().and_then(Value::as_object_mut) {
            details.insert("causes".into(), json!([{"message": message}]));
        }
        Err(err)
    }
}

/// What every evaluation for one request shares, each part built when the
/// first policy that names it applies.
#[derive(Default)]
struct RequestInput {
    request: Option<Value>,
    /// `authorizer` and `authorizer.requestResource`.
    authorizer: Option<(cel::Value, cel::Value)>,
    namespace_object: Option<Value>,
}

static NULL: Value = Value::Null;
static CEL_NULL: cel::Value = cel::Value::Null;

impl ValidatingAdmissionPolicy {
    fn authorizer_variables(&self, a: &AdmissionAttributes<'_>) -> (cel::Value, cel::Value) {
        match self.authorizer.get() {
            Some(authz) => authorizer::variables(authz, a),
            None => (cel::Value::Null, cel::Value::Null),
        }
    }
}

/// Upstream's namespaceObject: null for cluster-scoped requests and for
/// Namespaces themselves.
async fn namespace_input(a: &AdmissionAttributes<'_>, namespace: &RequestNamespace<'_>) -> Result<Value, StatusError> {
    if a.namespace.is_empty() || a.is::<k8s_openapi::api::core::v1::Namespace>() {
        return Ok(Value::Null);
    }
    Ok(namespace_object(namespace.get().await?))
}

impl RequestInput {
    /// The variables of one evaluation: the request's objects as `view` has
    /// them, `request` for the version matched.
    fn input<'a>(
        &'a self,
        a: &AdmissionAttributes<'_>,
        view: View<'a>,
        request: Option<&'a Value>,
        params: &'a Value,
    ) -> Input<'a> {
        let object = match (a.operation, view.object) {
            (Operation::Delete, _) | (_, None) => &NULL,
            (_, Some(o)) => o,
        };
        let old_object = match (a.operation, view.old) {
            (Operation::Create, _) | (_, None) => &NULL,
            (_, Some(o)) => o,
        };
        Input {
            object: Cow::Borrowed(object),
            old_object: Cow::Borrowed(old_object),
            request: Cow::Borrowed(request.unwrap_or(&NULL)),
            params: Cow::Borrowed(params),
            namespace_object: Cow::Borrowed(self.namespace_object.as_ref().unwrap_or(&NULL)),
            authorizer: Cow::Borrowed(self.authorizer.as_ref().map_or(&CEL_NULL, |(a, _)| a)),
            request_resource: Cow::Borrowed(self.authorizer.as_ref().map_or(&CEL_NULL, |(_, r)| r)),
        }
    }
}

/// Runs one evaluation on a blocking thread under the deadline; running
/// out of time is upstream's out-of-budget error, under the failure policy.
async fn evaluate(policy: Arc<Policy>, input: Input<'static>) -> Evaluation {
    let fail_open = policy.fail_open;
    let task = tokio::task::spawn_blocking(move || policy.evaluate(&input));
    match tokio::time::timeout(EVAL_DEADLINE, task).await {
        Ok(Ok(e)) => e,
        _ if fail_open => Evaluation::default(),
        _ => Evaluation {
            denials: vec![Denial {
                index: 0,
                message: "validation failed due to running out of cost budget, no further validation rules will be run"
                    .into(),
                reason: None,
                always: false,
            }],
            ..Default::default()
        },
    }
}

/// Upstream's dispatcher: a failed validation is denied, audited and warned
/// about as the binding's validationActions say.
fn act(
    a: &AdmissionAttributes<'_>,
    p: &Arc<Policy>,
    b: &Arc<Binding>,
    d: Denial,
    denied: &mut Vec<Denied>,
    failures: &mut Vec<Value>,
) {
    if d.always {
        denied.push(Denied { policy: p.clone(), binding: Some(b.clone()), message: d.message, reason: d.reason });
        return;
    }
    if b.audit {
        failures.push(json!({
            "message": d.message, "policy": b.policy, "binding": b.name,
            "expressionIndex": d.index, "validationActions": b.actions,
        }));
    }
    if b.warn {
        a.notes.warn(format!(
            "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{}': {}",
            p.name, b.name, d.message
        ));
    }
    if b.deny {
        denied.push(Denied { policy: p.clone(), binding: Some(b.clone()), message: d.message, reason: d.reason });
    }
}
