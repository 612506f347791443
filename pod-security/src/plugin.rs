//! The PodSecurity admission plugin (upstream's
//! plugin/pkg/admission/security/podsecurity over pod-security-admission's
//! admission package): pods are checked against their namespace's policy
//! (enforce refuses, audit annotates, warn warns), pod templates of workload
//! resources are audited and warned about but never refused, and raising a
//! namespace's enforce level warns about the pods already there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use generic_server::registry::{AdmissionAttributes, BoundStore, ListOptions, Operation, Store, Validating};
use generic_server::status::{Cause, StatusError};
use generic_server::storage::Freshness;
use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::api::{aggregate, Level, LevelVersion, Policy, LABEL_PREFIX};
use crate::api::{
    AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL, WARN_LEVEL_LABEL,
    WARN_VERSION_LABEL,
};
use crate::config::Configuration;
use crate::evaluator::{evaluate, Outcome};
use crate::metrics::{self, Mode};

/// At most this many existing pods are checked on a namespace relabel, for
/// at most this long (upstream's defaults).
const MAX_PODS_TO_CHECK: usize = 3000;
const POD_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Pod subresources that change nothing the standards look at.
const IGNORED_POD_SUBRESOURCES: &[&str] =
    &["exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"];

/// The workload resources whose pod template is checked (group, resource).
const POD_CONTROLLERS: &[(&str, &str)] = &[
    ("", "replicationcontrollers"),
    ("", "podtemplates"),
    ("apps", "replicasets"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
];

pub struct PodSecurity {
    config: Configuration,
    namespaces: BoundStore,
    pods: BoundStore,
}

impl PodSecurity {
    /// A plugin with no Stores yet; call [`bind`](Self::bind) once they exist.
    pub fn new(config: Configuration) -> Self {
        PodSecurity { config, namespaces: BoundStore::new("namespaces"), pods: BoundStore::new("pods") }
    }

    /// Sets the namespace and pod Stores (only the first call counts).
    pub fn bind(&self, namespaces: &Arc<Store>, pods: &Arc<Store>) {
        self.namespaces.bind(namespaces);
        self.pods.bind(pods);
    }

    fn policy(&self, labels: &BTreeMap<String, String>) -> (Policy, Vec<Cause>) {
        Policy::from_labels(labels, &self.config.defaults)
    }

    fn exempt_namespace(&self, ns: &str) -> bool {
        !ns.is_empty() && self.config.exemptions.namespaces.iter().any(|n| n == ns)
    }

    fn exempt_user(&self, a: &AdmissionAttributes<'_>) -> bool {
        a.user.is_some_and(|u| !u.name.is_empty() && self.config.exemptions.usernames.contains(&u.name))
    }

    fn exempt_runtime_class(&self, spec: &PodSpec) -> bool {
        spec.runtime_class_name
            .as_deref()
            .is_some_and(|rc| !rc.is_empty() && self.config.exemptions.runtime_classes.iter().any(|c| c == rc))
    }

    /// The labels of namespace `ns`, from the watch cache as upstream reads
    /// its informer, from storage when the cache does not have it yet.
    async fn namespace_labels(&self, ns: &str) -> Result<BTreeMap<String, String>, StatusError> {
        let store = self.namespaces.store()?;
        let namespace = match store.get_at("", ns, Freshness::Any).await {
            Err(e) if e.is_not_found() => store.get("", ns).await?,
            other => other?,
        };
        Ok(labels_of(&namespace))
    }

    async fn validate_namespace(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if !a.subresource.is_empty() {
            return Ok(());
        }
        let Some(ns) = a.object else { return Ok(()) };
        let labels = labels_of(ns);
        let (new_policy, new_errs) = self.policy(&labels);
        let invalid = || StatusError::invalid("", "Namespace", a.name, new_errs.clone());
        match a.operation {
            Operation::Create => {
                if !new_errs.is_empty() {
                    return Err(invalid());
                }
                // Upstream's attributes carry no namespace on a namespace
                // create, so no exemption warning is given here.
                if self.exempt_namespace(a.namespace) {
                    self.warn_exempt(a, &new_policy, &labels);
                }
                Ok(())
            }
            Operation::Update => {
                let old_labels = a.old.map(labels_of).unwrap_or_default();
                let (old_policy, old_errs) = self.policy(&old_labels);
                if !new_errs.is_empty() && (old_errs.is_empty() || new_errs != old_errs) {
                    return Err(invalid());
                }
                let (new, old) = (new_policy.enforce, old_policy.enforce);
                let loosened = new.version == old.version && new.level <= old.level;
                if new == old || new.level == Level::Privileged || loosened {
                    return Ok(());
                }
                // A namespace's own requests name it as their namespace.
                if self.exempt_namespace(a.name) {
                    self.warn_exempt(a, &new_policy, &labels);
                    return Ok(());
                }
                for w in self.check_existing_pods(a.name, new).await {
                    a.notes.warn(w);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Upstream's exemptNamespaceWarning.
    fn warn_exempt(&self, a: &AdmissionAttributes<'_>, policy: &Policy, labels: &BTreeMap<String, String>) {
        if policy.fully_privileged() || policy.equivalent(&self.config.defaults) {
            return;
        }
        let modes = [
            ("enforce", policy.enforce, ENFORCE_LEVEL_LABEL, ENFORCE_VERSION_LABEL),
            ("audit", policy.audit, AUDIT_LEVEL_LABEL, AUDIT_VERSION_LABEL),
            ("warn", policy.warn, WARN_LEVEL_LABEL, WARN_VERSION_LABEL),
        ];
        let set: Vec<String> = modes
            .iter()
            .filter(|(_, lv, l, v)| {
                lv.level != Level::Privileged && (labels.contains_key(*l) || labels.contains_key(*v))
            })
            .map(|(m, lv, _, _)| format!("{m}={lv}"))
            .collect();
        let name = if a.name.is_empty() { a.namespace } else { a.name };
        a.notes.warn(format!(
            "namespace {name:?} is exempt from Pod Security, and the policy ({}) will be ignored",
            set.join(", ")
        ));
    }

    /// Upstream's EvaluatePodsInNamespace: one line per distinct set of
    /// reasons, naming the alphabetically first pod and counting the others;
    /// one pod per controller is checked before the rest.
    async fn check_existing_pods(&self, ns: &str, enforce: LevelVersion) -> Vec<String> {
        const LIST_FAILED: &str = "failed to list pods while checking new PodSecurity enforce level";
        let listed = match self.pods.store() {
            Ok(pods) => pods.list(ns, &ListOptions::default()).await,
            Err(e) => Err(e),
        };
        let Ok(list) = listed else { return vec![LIST_FAILED.to_string()] };
        let pods: Vec<(String, ObjectMeta, PodSpec)> = list
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let (meta, spec) = decode_pod(p).ok()?;
                Some((meta.name.clone().unwrap_or_default(), meta, spec))
            })
            .collect();
        let pods = self.prioritize(pods);
        let total = pods.len();
        let started = Instant::now();
        let mut checked = total.min(MAX_PODS_TO_CHECK);
        // (reasons, first pod name, count), in the order first seen.
        let mut found: Vec<(String, String, usize)> = Vec::new();
        for (i, (name, meta, spec)) in pods.iter().take(MAX_PODS_TO_CHECK).enumerate() {
            let outcome = evaluate(enforce, meta, spec);
            if !outcome.allowed() {
                let reasons = outcome.reasons();
                match found.iter_mut().find(|(r, _, _)| *r == reasons) {
                    Some((_, first, count)) => {
                        if name < first {
                            *first = name.clone();
                        }
                        *count += 1;
                    }
                    None => found.push((reasons, name.clone(), 1)),
                }
            }
            if started.elapsed() > POD_CHECK_TIMEOUT {
                checked = i + 1;
                break;
            }
        }
        let mut warnings = Vec::new();
        if checked < total {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
            ));
        }
        if !found.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {ns:?} violate the new PodSecurity enforce level {:?}",
                enforce.to_string()
            ));
        }
        let mut lines: Vec<String> = found
            .into_iter()
            .map(|(reasons, first, count)| match count {
                1 => format!("{first}: {reasons}"),
                2 => format!("{first} (and 1 other pod): {reasons}"),
                n => format!("{first} (and {} other pods): {reasons}", n - 1),
            })
            .collect();
        lines.sort();
        warnings.extend(lines);
        warnings
    }

    /// Pods without a controller and the first pod of each controller, then
    /// the other pods of controllers already seen; exempt runtime classes
    /// dropped.
    fn prioritize(&self, pods: Vec<(String, ObjectMeta, PodSpec)>) -> Vec<(String, ObjectMeta, PodSpec)> {
        let mut first = Vec::new();
        let mut duplicates = Vec::new();
        let mut controllers = HashSet::new();
        for pod in pods {
            if self.exempt_runtime_class(&pod.2) {
                continue;
            }
            let controller = pod.1.owner_references.iter().flatten().find(|o| o.controller == Some(true));
            match controller {
                Some(c) if !controllers.insert(c.uid.clone()) => duplicates.push(pod),
                _ => first.push(pod),
            }
        }
        first.extend(duplicates);
        first
    }

    async fn validate_pod(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if IGNORED_POD_SUBRESOURCES.contains(&a.subresource) || self.exempted(a) {
            return Ok(());
        }
        let labels = match self.namespace_labels(a.namespace).await {
            Ok(l) => l,
            Err(e) => {
                metrics::error(a, true);
                let err = StatusError::internal(format!("failed to lookup namespace {:?}", a.namespace));
                annotate(a, "error", &format!("{}: {}", err.message, e.message));
                return Err(err);
            }
        };
        let (policy, errs) = self.policy(&labels);
        if errs.is_empty() && policy.fully_privileged() {
            metrics::evaluation(a, true, policy.enforce, Mode::Enforce);
            annotate(a, "enforce-policy", &LevelVersion::PRIVILEGED_LATEST.to_string());
            return Ok(());
        }
        let decoded = a.object.map(decode_pod).transpose();
        let Ok(Some((meta, spec))) = decoded else {
            metrics::error(a, true);
            let why = "failed to decode object";
            if let Err(e) = decoded {
                annotate(a, "error", &format!("{why}: {e}"));
            }
            return Err(StatusError::bad_request(why));
        };
        if a.operation == Operation::Update {
            let old = a.old.map(decode_pod).transpose().ok().flatten();
            if let Some((_, old_spec)) = old {
                if !significant_update(&spec, &old_spec) {
                    return Ok(());
                }
            }
        }
        self.evaluate_pod(a, &policy, &errs, &meta, &spec, true)
    }

    async fn validate_controller(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if !a.subresource.is_empty() || self.exempted(a) {
            return Ok(());
        }
        let labels = match self.namespace_labels(a.namespace).await {
            Ok(l) => l,
            Err(e) => {
                metrics::error(a, true);
                annotate(a, "error", &format!("failed to lookup namespace {:?}: {}", a.namespace, e.message));
                return Ok(());
            }
        };
        let (policy, errs) = self.policy(&labels);
        if errs.is_empty() && policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged {
            return Ok(());
        }
        let Some(template) = a.object.and_then(|o| pod_template(a.resource(), o)) else {
            return Ok(());
        };
        match decode_pod(template) {
            Ok((meta, spec)) => self.evaluate_pod(a, &policy, &errs, &meta, &spec, false),
            Err(e) => {
                metrics::error(a, true);
                annotate(a, "error", &format!("failed to decode object: {e}"));
                Ok(())
            }
        }
    }

    /// Whether the request's namespace or user is exempt, annotated so.
    fn exempted(&self, a: &AdmissionAttributes<'_>) -> bool {
        let reason = if self.exempt_namespace(a.namespace) {
            "namespace"
        } else if self.exempt_user(a) {
            "user"
        } else {
            return false;
        };
        annotate(a, "exempt", reason);
        metrics::exemption(a);
        true
    }

    /// Upstream's EvaluatePod: enforce (pods only) refuses, audit annotates,
    /// warn warns when the request is allowed.
    fn evaluate_pod(
        &self,
        a: &AdmissionAttributes<'_>,
        policy: &Policy,
        policy_errs: &[Cause],
        meta: &ObjectMeta,
        spec: &PodSpec,
        enforce: bool,
    ) -> Result<(), StatusError> {
        if self.exempt_runtime_class(spec) {
            annotate(a, "exempt", "runtimeClass");
            metrics::exemption(a);
            return Ok(());
        }
        if !policy_errs.is_empty() {
            annotate(a, "error", &format!("Failed to parse policy: {}", aggregate(policy_errs)));
            metrics::error(a, false);
        }
        let mut cache: HashMap<LevelVersion, Outcome> = HashMap::new();
        let mut outcome = |lv: LevelVersion| cache.entry(lv).or_insert_with(|| evaluate(lv, meta, spec)).clone();
        let mut refusal = None;
        if enforce {
            annotate(a, "enforce-policy", &policy.enforce.to_string());
            let result = outcome(policy.enforce);
            metrics::evaluation(a, result.allowed(), policy.enforce, Mode::Enforce);
            if !result.allowed() {
                refusal = Some(a.forbidden(&format!(
                    "violates PodSecurity {:?}: {}",
                    policy.enforce.to_string(),
                    result.details()
                )));
            }
        }
        let audit = outcome(policy.audit);
        if !audit.allowed() {
            metrics::evaluation(a, false, policy.audit, Mode::Audit);
            let text = format!("would violate PodSecurity {:?}: {}", policy.audit.to_string(), audit.details());
            annotate(a, "audit-violations", &text);
        }
        if let Some(err) = refusal {
            return Err(err);
        }
        let warn = outcome(policy.warn);
        if !warn.allowed() {
            metrics::evaluation(a, false, policy.warn, Mode::Warn);
            a.notes.warn(format!("would violate PodSecurity {:?}: {}", policy.warn.to_string(), warn.details()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Validating for PodSecurity {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if !matches!(a.operation, Operation::Create | Operation::Update) {
            return Ok(());
        }
        match (a.group(), a.resource()) {
            ("", "namespaces") => self.validate_namespace(a).await,
            ("", "pods") => self.validate_pod(a).await,
            (g, r) if POD_CONTROLLERS.contains(&(g, r)) => self.validate_controller(a).await,
            _ => Ok(()),
        }
    }
}

/// An audit annotation under upstream's `pod-security.kubernetes.io/` prefix.
fn annotate(a: &AdmissionAttributes<'_>, key: &str, value: &str) {
    a.notes.annotate(format!("{LABEL_PREFIX}{key}"), value);
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    generic_server::meta::labels(obj).into_iter().filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string()))).collect()
}

/// The pod template of a workload resource's object, if it has one.
fn pod_template<'a>(resource: &str, obj: &'a Value) -> Option<&'a Value> {
    let template = match resource {
        "podtemplates" => obj.get("template"),
        "cronjobs" => obj.pointer("/spec/jobTemplate/spec/template"),
        _ => obj.pointer("/spec/template"),
    };
    template.filter(|t| !t.is_null())
}

/// The metadata and spec of a pod or pod template.
fn decode_pod(obj: &Value) -> Result<(ObjectMeta, PodSpec), serde_json::Error> {
    let part = |field: &str| {
        obj.get(field).filter(|v| !v.is_null()).cloned().unwrap_or_else(|| Value::Object(Default::default()))
    };
    let meta = serde_json::from_value(part("metadata"))?;
    let mut spec = part("spec");
    // A template may omit containers, which PodSpec requires.
    if let Value::Object(m) = &mut spec {
        m.entry("containers").or_insert_with(|| Value::Array(Vec::new()));
    }
    Ok((meta, serde_json::from_value(spec)?))
}

/// Upstream's isSignificantPodUpdate: only a change of containers or their
/// images (or a new ephemeral container) is checked again.
fn significant_update(new: &PodSpec, old: &PodSpec) -> bool {
    let images = |cs: &[k8s_openapi::api::core::v1::Container]| -> Vec<Option<String>> {
        cs.iter().map(|c| c.image.clone()).collect()
    };
    let (new_init, old_init) =
        (new.init_containers.as_deref().unwrap_or_default(), old.init_containers.as_deref().unwrap_or_default());
    if images(&new.containers) != images(&old.containers) || images(new_init) != images(old_init) {
        return true;
    }
    new.ephemeral_containers.iter().flatten().any(|c| {
        let old_c = old.ephemeral_containers.iter().flatten().find(|o| o.name == c.name);
        old_c.is_none_or(|o| o.image != c.image)
    })
}
