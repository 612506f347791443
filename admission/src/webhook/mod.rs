//! Admission webhooks (upstream's admission/plugin/webhook): the
//! MutatingAdmissionWebhook and ValidatingAdmissionWebhook plugins, calling
//! the webhooks of the stored Mutating- and ValidatingWebhookConfigurations.
//!
//! The configurations are followed by an informer and compiled when they
//! change ([`config`]), so a request only walks precompiled rules, and a
//! webhook that does not match costs a few comparisons. A matching webhook
//! gets an AdmissionReview ([`review`]) over HTTPS ([`client`]); its answer
//! refuses the request in upstream's words, patches the object (mutating),
//! or adds warnings and audit annotations. A webhook that cannot be called
//! or answers nonsense is judged by its failurePolicy: Ignore lets the
//! request through, Fail refuses it with upstream's InternalError
//! `failed calling webhook "NAME": ...`.
//!
//! A webhook with matchPolicy Equivalent whose rules miss the request's
//! version but name another version of the same resource (core and
//! events.k8s.io Events, a CRD's versions) is called with the request in
//! that version: the objects converted, `kind` and `resource` the matched
//! ones, `requestKind` and `requestResource` the request's; a mutating
//! webhook's patch applies in its version and is converted back.
//!
//! Mutating webhooks run in order; one with reinvocationPolicy IfNeeded is
//! called once more when a later webhook changed the object, as upstream's
//! reinvocation round. Validating webhooks of one request run concurrently.

mod config;
mod review;

use cel_k8s::meter::Budget;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Instant;

use serde_json::{json, Value};

use generic_server::backend::Resolver;
use generic_server::informer::Informer;
use generic_server::metrics;
use generic_server::registry::{AdmissionAttributes, Mutating, Store, StoreRegistry, Validating};
use generic_server::status::StatusError;

use crate::matching::{passed_over, Equivalents, NamespaceVerdicts, Namespaces, RequestNamespace, Versioned, View};
use config::Hook;

/// admissionregistration.k8s.io resources no webhook is called for
/// (upstream's IsExemptAdmissionConfigurationResource).
const EXEMPT: &[&str] = &[
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
    "mutatingadmissionpolicies",
    "mutatingadmissionpolicybindings",
];

/// Why a call did not admit.
enum Failure {
    /// The webhook could not be called or answered nonsense: failurePolicy
    /// decides. The reason follows `failed calling webhook "NAME": `; the
    /// code is the one upstream records in metrics.
    Calling(String, u16),
    /// The webhook refused.
    Rejected(StatusError),
    /// An error that fails the request whatever the policy.
    Internal(StatusError),
}

/// One of the two webhook plugins, holding the compiled webhooks of its
/// configuration kind.
pub struct Webhooks {
    mutating: bool,
    hooks: RwLock<Arc<Vec<Arc<Hook>>>>,
    verdicts: NamespaceVerdicts<Vec<Arc<Hook>>>,
    namespaces: Namespaces,
    stores: OnceLock<Arc<StoreRegistry>>,
    resolver: OnceLock<Resolver>,
}

/// What a request may need looked up while its webhooks are matched, each
/// read at most once.
struct Lookups<'a> {
    namespace: RequestNamespace<'a>,
    equivalents: Equivalents<'a>,
}

impl Webhooks {
    /// MutatingAdmissionWebhook, unbound: it calls nothing until [`bind`](Self::bind).
    pub fn mutating() -> Arc<Webhooks> {
        Arc::new(Self::new(true))
    }

    /// ValidatingAdmissionWebhook, unbound.
    pub fn validating() -> Arc<Webhooks> {
        Arc::new(Self::new(false))
    }

    fn new(mutating: bool) -> Webhooks {
        Webhooks {
            mutating,
            hooks: RwLock::default(),
            verdicts: NamespaceVerdicts::default(),
            namespaces: Namespaces::default(),
            stores: OnceLock::new(),
            resolver: OnceLock::new(),
        }
    }

    /// The metrics' name for the plugin's step.
    fn step(&self) -> &'static str {
        if self.mutating {
            "admit"
        } else {
            "validating"
        }
    }

    /// Follows the configurations in `configurations` (of this plugin's kind)
    /// from now on; returns once the first list is compiled. Namespace labels
    /// and other versions of a resource come from `stores`, Service backends
    /// from `resolver`.
    pub async fn bind(self: &Arc<Self>, configurations: Arc<Store>, stores: Arc<StoreRegistry>, resolver: Resolver) {
        if let Some(ns) = stores.of_kind("", "Namespace") {
            self.namespaces.bind(&ns);
        }
        let _ = self.stores.set(stores);
        let _ = self.resolver.set(resolver);
        let informer = Informer::new(configurations);
        let (me, cache) = (Arc::downgrade(self), informer.clone());
        informer.spawn(move |_| {
            if let Some(me) = me.upgrade() {
                let hooks = Arc::new(Hook::compile_all(cache.list()));
                *me.hooks.write().unwrap_or_else(|e| e.into_inner()) = hooks;
            }
        });
        informer.wait_synced().await;
    }

    /// The webhooks for this request: none for the admission configuration
    /// kinds themselves, which upstream exempts so that a broken webhook can
    /// always be removed.
    fn current(&self, a: &AdmissionAttributes<'_>) -> Arc<Vec<Arc<Hook>>> {
        if a.info.group == "admissionregistration.k8s.io" && EXEMPT.contains(&a.info.plural.as_str()) {
            return Arc::default();
        }
        self.hooks.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn lookups<'a>(&'a self, a: &AdmissionAttributes<'a>) -> Lookups<'a> {
        Lookups {
            namespace: self.namespaces.of_request(a),
            equivalents: Equivalents::of(self.stores.get().map(|s| &**s), a),
        }
    }

    async fn namespace_verdicts(
        &self,
        hooks: &Arc<Vec<Arc<Hook>>>,
        a: &AdmissionAttributes<'_>,
        lookups: &Lookups<'_>,
    ) -> Option<Arc<[bool]>> {
        if hooks.is_empty() {
            return None;
        }
        let judge = |labels: &_| hooks.iter().map(|h| h.selectors.namespace_passes(labels)).collect();
        self.verdicts.of(hooks, a, &lookups.namespace, judge).await
    }

    /// Upstream's ShouldCallHook: rules (with matchPolicy Equivalent, the
    /// other versions of the resource when the request's own misses), the
    /// object and namespace selectors, then matchConditions on the request
    /// in the version matched. None when the webhook is not called; else
    /// the request's objects converted, when an equivalent matched.
    async fn should_call(
        &self,
        hook: &Hook,
        a: &AdmissionAttributes<'_>,
        object: Option<&Value>,
        lookups: &Lookups<'_>,
    ) -> Result<Option<Option<Versioned>>, StatusError> {
        let matches = |r: &crate::matching::Rule, resource: &_| r.matches_as(a, resource);
        let Some(matched) = lookups.equivalents.matched(&hook.rules, hook.equivalent, matches) else {
            return Ok(None);
        };
        if !hook.selectors.matches_object(a, object)
            || !hook.selectors.matches_namespace(a, object, &lookups.namespace).await?
        {
            return Ok(None);
        }
        let versioned = matched.convert(&lookups.equivalents, object, a.old).await?;
        let view = View::of(a, object, versioned.as_ref());
        Ok(conditions_match(hook, a, view)?.then_some(versioned))
    }

    /// One exchange with a webhook, up to its checked answer; the answer's
    /// warnings and audit annotations are recorded here.
    async fn call(
        &self,
        hook: &Hook,
        a: &AdmissionAttributes<'_>,
        view: View<'_>,
    ) -> Result<review::Response, Failure> {
        if a.dry_run {
            if hook.side_effects_unset {
                return Err(Failure::Calling("Webhook SideEffects is nil".into(), 400));
            }
            if !hook.dry_run_safe {
                let why = format!("admission webhook {:?} does not support dry run", hook.name);
                return Err(Failure::Internal(StatusError::bad_request(why)));
            }
        }
        let Some(version) = hook.review_version else {
            let why = "could not create admission objects: webhook does not accept known AdmissionReview versions (v1, v1beta1)";
            return Err(Failure::Calling(why.into(), 400));
        };
        let uid = generic_server::meta::new_uuid().to_string();
        let body = serde_json::to_vec(&review::review(version, review::request(a, view, &uid)))
            .map_err(|e| Failure::Calling(format!("could not create admission objects: {e}"), 400))?;
        // Upstream's `timeout` parameter: Go's time.Duration text.
        let query = format!("?timeout={}s", hook.timeout.as_secs());
        let answer = hook
            .client
            .post(self.resolver.get(), &query, body, hook.timeout)
            .await
            .map_err(|e| Failure::Calling(format!("failed to call webhook: {e}"), 503))?;
        let resp = review::verify(&uid, version, self.mutating, &answer)
            .map_err(|e| Failure::Calling(format!("received invalid webhook response: {e}"), 503))?;
        for (k, v) in &resp.audit_annotations {
            a.notes.annotate(format!("{}/{k}", hook.name), v.clone());
        }
        for w in &resp.warnings {
            a.notes.warn(w.clone());
        }
        if !resp.allowed {
            return Err(Failure::Rejected(review::denied(&hook.name, resp.result.as_ref())));
        }
        Ok(resp)
    }

    /// Records a finished call in metrics and turns a failure into the
    /// request's error, or into nothing when failurePolicy is Ignore.
    fn settle<T>(
        &self,
        hook: &Hook,
        a: &AdmissionAttributes<'_>,
        outcome: Result<T, Failure>,
        started: Instant,
        failed_open_key: impl FnOnce() -> String,
    ) -> Result<Option<T>, StatusError> {
        let (m, step, op) = (metrics::global(), self.step(), a.operation.as_str());
        let observe =
            |rejected: bool, code: u16| m.observe_webhook(&hook.name, step, op, rejected, code, started.elapsed());
        match outcome {
            Ok(v) => {
                observe(false, 200);
                Ok(Some(v))
            }
            Err(Failure::Calling(why, code)) if hook.fail_open => {
                observe(false, code);
                tracing::warn!(webhook = %hook.name, "Failed calling webhook, failing open: {why}");
                m.observe_webhook_fail_open(&hook.name, step);
                a.notes.annotate(failed_open_key(), hook.name.clone());
                Ok(None)
            }
            Err(Failure::Calling(why, code)) => {
                observe(true, code);
                m.observe_webhook_rejection(&hook.name, step, op, "calling_webhook_error", code);
                Err(StatusError::internal(format!("failed calling webhook {:?}: {why}", hook.name)))
            }
            Err(Failure::Rejected(status)) => {
                observe(true, status.code);
                m.observe_webhook_rejection(&hook.name, step, op, "no_error", status.code);
                Err(status)
            }
            Err(Failure::Internal(e)) => {
                observe(true, 0);
                m.observe_webhook_rejection(&hook.name, step, op, "apiserver_internal_error", 0);
                Err(e)
            }
        }
    }

    /// One mutating webhook's call and patch: the object patched (in the
    /// view's version) when the patch changed it.
    async fn mutate_once(
        &self,
        hook: &Hook,
        a: &AdmissionAttributes<'_>,
        view: View<'_>,
    ) -> Result<Option<Value>, Failure> {
        let resp = self.call(hook, a, view).await?;
        if resp.patch.is_empty() {
            return Ok(None);
        }
        let ops: json_patch::Patch = serde_json::from_slice(&resp.patch)
            .map_err(|e| Failure::Calling(format!("received undecodable patch in webhook response: {e}"), 503))?;
        if ops.0.is_empty() {
            return Ok(None);
        }
        let Some(object) = view.object else {
            return Err(Failure::Internal(StatusError::internal(format!(
                "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
                hook.name
            ))));
        };
        if resp.patch_type != "JSONPatch" {
            let status = review::denied(&hook.name, resp.result.as_ref());
            return Err(Failure::Calling(format!("unsupported patch type {:?}", resp.patch_type), status.code));
        }
        let mut patched = object.clone();
        json_patch::patch(&mut patched, &ops).map_err(|e| Failure::Internal(StatusError::internal(e)))?;
        Ok((patched != *object).then_some(patched))
    }
}

/// Evaluates the webhook's matchConditions: any false skips the webhook;
/// an error fails closed with upstream's Forbidden unless failurePolicy is
/// Ignore.
fn conditions_match(hook: &Hook, a: &AdmissionAttributes<'_>, view: View<'_>) -> Result<bool, StatusError> {
    let conditions = match &hook.conditions {
        Ok(c) if c.is_empty() => return Ok(true),
        Ok(c) => c,
        Err(e) if hook.fail_open => {
            tracing::warn!(webhook = %hook.name, "matchConditions do not compile: {e}");
            return Ok(false);
        }
        Err(e) => return Err(a.forbidden(e)),
    };
    let null = Value::Null;
    let mut request = review::request(a, View { object: None, old: None, ..view }, "");
    if let Some(r) = request.as_object_mut() {
        r.remove("object");
        r.remove("oldObject");
        // A typed AdmissionRequest in CEL: empty strings are fields too.
        for k in ["name", "namespace", "subResource", "requestSubResource"] {
            r.entry(k).or_insert(json!(""));
        }
    }
    let vars = cel_k8s::bind::Variables::new()
        .json("object", view.object.unwrap_or(&null))
        .json("oldObject", view.old.unwrap_or(&null))
        .json("request", &request);
    let errors = cel_k8s::with_context(|root| {
        let mut ctx = root.new_inner_scope();
        ctx.set_variable_resolver(&vars);
        condition_errors(conditions, &ctx)
    });
    match errors {
        None => Ok(false),
        Some(errors) if errors.is_empty() || hook.fail_open => Ok(errors.is_empty()),
        Some(errors) => Err(a.forbidden(&errors.join(", "))),
    }
}

/// The errors of `conditions` (all true: none); None when one is false.
fn condition_errors(conditions: &[config::Condition], ctx: &cel::Context<'_, '_>) -> Option<Vec<String>> {
    let mut errors = Vec::new();
    // Metered as upstream's matcher: each condition within the per-call
    // limit, all of them within the runtime budget.
    let mut budget = Budget::default();
    for c in conditions {
        let Some(result) = budget.run_if_affordable(&c.metered, ctx) else {
            errors.push(format!("matchCondition {:?}: {}", c.name, cel_k8s::meter::COST_EXCEEDED));
            break;
        };
        match result {
            Ok(cel::Value::Bool(true)) => {}
            Ok(cel::Value::Bool(false)) => return None,
            Ok(other) => {
                errors.push(format!("matchCondition {:?}: expected a boolean, got {:?}", c.name, other.type_of()))
            }
            Err(e) => errors.push(format!("matchCondition {:?}: {e}", c.name)),
        }
    }
    Some(errors)
}

#[async_trait::async_trait]
impl Mutating for Webhooks {
    async fn admit(&self, a: &AdmissionAttributes<'_>, object: &mut Value) -> Result<(), StatusError> {
        if !self.mutating {
            return Ok(());
        }
        let hooks = self.current(a);
        // Upstream's reinvocation: webhooks with reinvocationPolicy IfNeeded
        // called before a later change are called once more, in a second
        // round that calls no webhook for the first time.
        let mut invoked_reinvocable = BTreeSet::new();
        let mut reinvoke = BTreeSet::new();
        let lookups = self.lookups(a);
        let verdicts = self.namespace_verdicts(&hooks, a, &lookups).await;
        for round in 0..2 {
            for (i, hook) in hooks.iter().enumerate() {
                if (round == 1 && !reinvoke.contains(&i)) || passed_over(&verdicts, i) {
                    continue;
                }
                let current = (!object.is_null()).then_some(&*object);
                let Some(versioned) = self.should_call(hook, a, current, &lookups).await? else {
                    continue;
                };
                let view = View::of(a, current, versioned.as_ref());
                let started = Instant::now();
                let outcome = match (self.mutate_once(hook, a, view).await, &versioned) {
                    (Ok(Some(patched)), Some(v)) => {
                        lookups.equivalents.convert_back(&v.target, patched).await.map(Some).map_err(Failure::Internal)
                    }
                    (outcome, _) => outcome,
                };
                let changed = matches!(outcome, Ok(Some(_)));
                a.notes.annotate(
                    format!("mutation.webhook.admission.k8s.io/round_{round}_index_{i}"),
                    json!({"configuration": hook.configuration, "webhook": hook.name, "mutated": changed}).to_string(),
                );
                if changed {
                    reinvoke.append(&mut invoked_reinvocable);
                }
                if hook.reinvoke {
                    invoked_reinvocable.insert(i);
                }
                let failed_open = || format!("failed-open.mutation.webhook.admission.k8s.io/round_{round}_index_{i}");
                if let Some(Some(patched)) = self.settle(hook, a, outcome, started, failed_open)? {
                    *object = patched;
                }
            }
            if round == 0 && reinvoke.is_empty() {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for Webhooks {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if self.mutating {
            return Ok(());
        }
        let hooks = self.current(a);
        let mut matched = Vec::new();
        let lookups = self.lookups(a);
        let verdicts = self.namespace_verdicts(&hooks, a, &lookups).await;
        for (i, hook) in hooks.iter().enumerate() {
            if passed_over(&verdicts, i) {
                continue;
            }
            if let Some(versioned) = self.should_call(hook, a, a.object, &lookups).await? {
                matched.push((i, hook, versioned));
            }
        }
        let calls = matched.iter().map(|(i, hook, versioned)| async move {
            let started = Instant::now();
            let view = View::of(a, a.object, versioned.as_ref());
            let outcome = self.call(hook, a, view).await;
            (*i, *hook, outcome, started)
        });
        let mut first = None;
        for (i, hook, outcome, started) in futures::future::join_all(calls).await {
            let failed_open = || format!("failed-open.validating.webhook.admission.k8s.io/round_0_index_{i}");
            if let Err(e) = self.settle(hook, a, outcome, started, failed_open) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use generic_server::registry::{Notes, Operation, ResourceInfo};
    use k8s_openapi::api::core::v1::ConfigMap;

    fn hook(side_effects: &str, extra: Value) -> Hook {
        let mut h = json!({"name": "side.example.com", "sideEffects": side_effects, "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": "https://127.0.0.1:1/"},
            "rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}]});
        if let (Some(h), Some(e)) = (h.as_object_mut(), extra.as_object()) {
            h.extend(e.clone());
        }
        Hook::compile("c", &h)
    }

    fn attrs<'a>(
        info: &'a ResourceInfo,
        object: &'a Value,
        notes: &'a Notes,
        dry_run: bool,
    ) -> AdmissionAttributes<'a> {
        AdmissionAttributes {
            operation: Operation::Create,
            info,
            subresource: "",
            kind: None,
            namespace: "",
            name: "x",
            object: Some(object),
            old: None,
            user: None,
            dry_run,
            notes,
        }
    }

    #[tokio::test]
    async fn dry_run_is_refused_to_webhooks_with_side_effects() {
        let (info, notes, obj) =
            (ResourceInfo::of::<ConfigMap>(), Notes::default(), json!({"metadata": {"name": "x"}}));
        let plugin = Webhooks::new(false);
        let a = attrs(&info, &obj, &notes, true);
        let Err(Failure::Internal(e)) = plugin.call(&hook("Some", json!({})), &a, View::of(&a, a.object, None)).await
        else {
            panic!("a dry run must not reach a webhook with side effects")
        };
        assert_eq!((e.code, e.reason), (400, generic_server::status::Reason::BadRequest));
        assert_eq!(e.message, "admission webhook \"side.example.com\" does not support dry run");
        // NoneOnDryRun is called (and here fails to connect: a calling error).
        let Err(Failure::Calling(why, _)) =
            plugin.call(&hook("NoneOnDryRun", json!({})), &a, View::of(&a, a.object, None)).await
        else {
            panic!("NoneOnDryRun accepts dry runs")
        };
        assert_eq!(
            why,
            "failed to call webhook: Post \"https://127.0.0.1:1/?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused"
        );
    }

    #[test]
    fn match_conditions_see_object_old_object_and_request() {
        let (info, notes, obj) =
            (ResourceInfo::of::<ConfigMap>(), Notes::default(), json!({"metadata": {"name": "x"}}));
        let a = attrs(&info, &obj, &notes, false);
        let cond = |e: &str, policy: &str| {
            hook("None", json!({"failurePolicy": policy, "matchConditions": [{"name": "c", "expression": e}]}))
        };
        let matched = |h: &Hook| conditions_match(h, &a, View::of(&a, a.object, None));
        let expr = "object.metadata.name == 'x' && oldObject == null && request.operation == 'CREATE'";
        assert!(matches!(matched(&cond(expr, "Fail")), Ok(true)));
        assert!(matches!(matched(&cond("request.namespace == 'other'", "Fail")), Ok(false)));
        assert!(matches!(matched(&cond("object.nope.deeper", "Ignore")), Ok(false)), "Ignore skips on error");
        let Err(e) = matched(&cond("object.nope.deeper", "Fail")) else { panic!("Fail refuses on error") };
        assert_eq!(e.code, 403);
    }

    #[test]
    fn configuration_kinds_are_exempt() {
        use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
        let plugin = Webhooks::new(false);
        *plugin.hooks.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(vec![Arc::new(hook("None", json!({})))]);
        let (notes, obj) = (Notes::default(), json!({}));
        let (cm, vwc) = (ResourceInfo::of::<ConfigMap>(), ResourceInfo::of::<ValidatingWebhookConfiguration>());
        assert_eq!(plugin.current(&attrs(&cm, &obj, &notes, false)).len(), 1);
        assert!(plugin.current(&attrs(&vwc, &obj, &notes, false)).is_empty());
    }
}
