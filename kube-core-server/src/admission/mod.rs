//! The built-in admission plugins.
//!
//! NamespaceLifecycle (upstream plugin/pkg/admission/namespace/lifecycle):
//! nothing is created in a namespace that does not exist or is being
//! terminated, and the system namespaces cannot be deleted.
//!
//! Priority (upstream plugin/pkg/admission/priority): a new pod's
//! priorityClassName resolves to its spec.priority and preemptionPolicy; at
//! most one PriorityClass is the global default; and (upstream's
//! priorityclass REST storage) the built-in classes cannot be deleted.
//!
//! LimitRanger ([`limitranger`]) and ResourceQuota ([`quota`]) have modules
//! of their own; [`resources`] is the resource arithmetic they share.
//!
//! Each reads its resource through a Store. The Stores themselves need the
//! plugins, so a Store is bound after construction and held weakly, which
//! avoids a reference cycle.
//!
//! The other default-on plugins live in their own modules and are provided
//! together as [`Builtins`]: TaintNodesByCondition, DefaultTolerationSeconds
//! and DefaultIngressClass ([`defaults`]), DefaultStorageClass,
//! StorageObjectInUseProtection and PersistentVolumeClaimResize
//! ([`storage`]), RuntimeClass ([`runtimeclass`]), and CertificateApproval,
//! CertificateSigning and CertificateSubjectRestriction ([`certificates`]).

mod builtins;
pub mod certificates;
pub mod defaults;
pub mod runtimeclass;
pub mod storage;

pub use builtins::{BuiltinStores, Builtins};
use generic_server::registry::BoundStore;

pub mod limitranger;
pub mod quota;
pub mod resources;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use generic_server::registry::{AdmissionAttributes, Mutating, Operation, Store, Validating};
use generic_server::status::StatusError;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::registry::namespace::is_terminating;
use crate::registry::priorityclass::SYSTEM_PRIORITY_CLASSES;

/// Namespaces that always exist (upstream's immortal namespaces).
pub use limitranger::LimitRanger;
pub use quota::ResourceQuota;

pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// How long after admitting a namespace's deletion the plugin distrusts a
/// cached copy that still shows it active (upstream's forceLiveLookupTTL).
const DELETED_RECENTLY: Duration = Duration::from_secs(30);

pub struct NamespaceLifecycle {
    namespaces: BoundStore,
    /// Namespaces whose deletion this plugin admitted, and when: the watch
    /// cache may not show them terminating yet.
    deleted: Mutex<HashMap<String, Instant>>,
}

impl Default for NamespaceLifecycle {
    fn default() -> Self {
        NamespaceLifecycle { namespaces: BoundStore::new("namespaces"), deleted: Mutex::default() }
    }
}

impl NamespaceLifecycle {
    /// A plugin with no namespace Store yet; call [`bind`](Self::bind) once it exists.
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// A plugin reading namespaces from `store`.
    pub fn with_store(store: &Arc<Store>) -> Self {
        let p = Self::new();
        p.bind(store);
        p
    }

    /// Sets the namespace Store (only the first call counts).
    pub fn bind(&self, store: &Arc<Store>) {
        self.namespaces.bind(store);
    }

    fn deleting(&self, name: &str) {
        let now = Instant::now();
        let mut deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.retain(|_, at| now.duration_since(*at) < DELETED_RECENTLY);
        deleted.insert(name.to_string(), now);
    }

    fn deleted_recently(&self, name: &str) -> bool {
        let deleted = self.deleted.lock().unwrap_or_else(|e| e.into_inner());
        deleted.get(name).is_some_and(|at| at.elapsed() < DELETED_RECENTLY)
    }

    /// The namespace as the watch cache has it, unless that copy may predate
    /// a deletion this server admitted.
    async fn namespace(&self, name: &str) -> Result<Option<Arc<Value>>, StatusError> {
        match self.namespaces.find(name).await? {
            Some(ns) if !is_terminating(&ns) && self.deleted_recently(name) => self.namespaces.find_live(name).await,
            found => Ok(found),
        }
    }
}

#[async_trait::async_trait]
impl Validating for NamespaceLifecycle {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let is_namespace = a.is::<Namespace>();
        if is_namespace && a.operation == Operation::Delete && IMMORTAL_NAMESPACES.contains(&a.name) {
            return Err(a.forbidden("this namespace may not be deleted"));
        }
        if is_namespace && a.operation == Operation::Delete {
            self.deleting(a.name);
        }
        // Only creates of namespaced objects are this plugin's business:
        // updates and deletes inside a terminating namespace must go through
        // so that it can be emptied.
        if a.namespace.is_empty() || is_namespace || a.operation != Operation::Create {
            return Ok(());
        }
        let Some(ns) = self.namespace(a.namespace).await? else {
            return Err(StatusError::not_found("", "namespaces", a.namespace));
        };
        if is_terminating(&ns) {
            let why =
                format!("unable to create new content in namespace {} because it is being terminated", a.namespace);
            let mut err = a.forbidden(&why);
            if let Some(serde_json::Value::Object(d)) = err.details.as_deref_mut() {
                d.insert(
                    "causes".into(),
                    json!([{"reason": "NamespaceTerminating", "message": why, "field": "metadata.namespace"}]),
                );
            }
            return Err(err);
        }
        Ok(())
    }
}

/// Declares [`Plugin`]: every admission plugin kube-apiserver 1.33 knows, in
/// its order (`AllOrderedPlugins`), named as its flags name them.
macro_rules! plugins {
    ($($p:ident),* $(,)?) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Plugin {
            $($p),*
        }

        impl Plugin {
            /// Every plugin, in upstream's order.
            pub const ALL: &'static [Plugin] = &[$(Plugin::$p),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Plugin::$p => stringify!($p)),*
                }
            }
        }
    };
}

plugins!(
    AlwaysAdmit,
    NamespaceAutoProvision,
    NamespaceLifecycle,
    NamespaceExists,
    LimitPodHardAntiAffinityTopology,
    LimitRanger,
    ServiceAccount,
    NodeRestriction,
    TaintNodesByCondition,
    AlwaysPullImages,
    ImagePolicyWebhook,
    PodSecurity,
    PodNodeSelector,
    Priority,
    DefaultTolerationSeconds,
    PodTolerationRestriction,
    EventRateLimit,
    ExtendedResourceToleration,
    DefaultStorageClass,
    StorageObjectInUseProtection,
    OwnerReferencesPermissionEnforcement,
    PersistentVolumeClaimResize,
    RuntimeClass,
    CertificateApproval,
    CertificateSigning,
    ClusterTrustBundleAttest,
    CertificateSubjectRestriction,
    DefaultIngressClass,
    DenyServiceExternalIPs,
    PodTopologyLabels,
    MutatingAdmissionPolicy,
    MutatingAdmissionWebhook,
    ValidatingAdmissionPolicy,
    ValidatingAdmissionWebhook,
    ResourceQuota,
    AlwaysDeny,
);

impl Plugin {
    pub fn from_name(name: &str) -> Option<Plugin> {
        Plugin::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Whether upstream runs the plugin unless disabled (the complement of
    /// its `DefaultOffAdmissionPlugins`).
    pub fn on_by_default(self) -> bool {
        use Plugin::*;
        !matches!(
            self,
            AlwaysAdmit
                | NamespaceAutoProvision
                | NamespaceExists
                | LimitPodHardAntiAffinityTopology
                | NodeRestriction
                | AlwaysPullImages
                | ImagePolicyWebhook
                | PodNodeSelector
                | PodTolerationRestriction
                | EventRateLimit
                | ExtendedResourceToleration
                | OwnerReferencesPermissionEnforcement
                | DenyServiceExternalIPs
                | AlwaysDeny
        )
    }
}

/// The admission plugins that run, from --enable-admission-plugins and
/// --disable-admission-plugins with upstream's meaning: the default-on set,
/// plus what is enabled, minus what is disabled, in upstream's order.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionPlugins {
    enabled: Vec<Plugin>,
    /// Those --enable-admission-plugins named.
    requested: Vec<Plugin>,
}

impl Default for AdmissionPlugins {
    fn default() -> Self {
        let enabled = Plugin::ALL.iter().copied().filter(|p| p.on_by_default()).collect();
        AdmissionPlugins { enabled, requested: Vec::new() }
    }
}

impl AdmissionPlugins {
    /// Resolves the flags; the errors are upstream's AdmissionOptions.Validate
    /// messages.
    pub fn from_flags(enable: &[String], disable: &[String]) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let known = |flag: &str, names: &[String], errors: &mut Vec<String>| {
            for n in names.iter().filter(|n| Plugin::from_name(n).is_none()) {
                errors.push(format!("{flag} plugin {n:?} is unknown"));
            }
        };
        known("enable-admission-plugins", enable, &mut errors);
        known("disable-admission-plugins", disable, &mut errors);
        let mut both: Vec<&str> = enable.iter().filter(|n| disable.contains(n)).map(String::as_str).collect();
        both.sort_unstable();
        both.dedup();
        if !both.is_empty() {
            errors.push(format!(
                "[{}] in enable-admission-plugins and disable-admission-plugins overlapped",
                both.join(" ")
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let named = |names: &[String], p: Plugin| names.iter().any(|n| n == p.name());
        let enabled = Plugin::ALL
            .iter()
            .copied()
            .filter(|p| (p.on_by_default() || named(enable, *p)) && !named(disable, *p))
            .collect();
        let requested = Plugin::ALL.iter().copied().filter(|p| named(enable, *p)).collect();
        Ok(AdmissionPlugins { enabled, requested })
    }

    /// Whether --enable-admission-plugins named `plugin`.
    pub fn requested(&self, plugin: Plugin) -> bool {
        self.requested.contains(&plugin)
    }

    pub fn is_enabled(&self, plugin: Plugin) -> bool {
        self.enabled.contains(&plugin)
    }

    /// The enabled plugins, in upstream's order.
    pub fn enabled(&self) -> &[Plugin] {
        &self.enabled
    }
}

/// The Priority admission plugin; see the module doc.
pub struct Priority {
    classes: BoundStore,
}

impl Default for Priority {
    fn default() -> Self {
        Priority { classes: BoundStore::new("priorityclasses") }
    }
}

impl Priority {
    pub fn new() -> Self {
        <Self as Default>::default()
    }

    /// Sets the PriorityClass Store (only the first call counts).
    pub fn bind(&self, store: &Arc<Store>) {
        self.classes.bind(store);
    }

    /// The global default class; with several (a race upstream allows too),
    /// the one of lowest value.
    async fn default_class(&self) -> Result<Option<Value>, StatusError> {
        Ok(self
            .classes
            .list()
            .await?
            .into_iter()
            .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
            .min_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0)))
    }

    /// Resolves a new pod's priority from its class.
    async fn admit_new_pod(&self, a: &AdmissionAttributes<'_>, pod: &mut Value) -> Result<(), StatusError> {
        let forbidden = |why: String| a.forbidden(&why);
        let named = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
        let (class_name, priority, policy) = if named.is_empty() {
            match self.default_class().await? {
                Some(pc) => (
                    generic_server::meta::name(&pc).to_string(),
                    pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                    pc.get("preemptionPolicy").cloned().filter(|p| !p.is_null()),
                ),
                None => (String::new(), 0, Some(json!("PreemptLowerPriority"))),
            }
        } else {
            let Some(pc) = self.classes.find(&named).await? else {
                return Err(forbidden(format!("no PriorityClass with name {named} was found")));
            };
            (named, pc.get("value").and_then(Value::as_i64).unwrap_or(0), pc.get("preemptionPolicy").cloned())
        };
        let spec = crate::registry::child(pod, "spec");
        if !class_name.is_empty() {
            spec.insert("priorityClassName".into(), json!(class_name));
        }
        if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
            if given != priority {
                return Err(forbidden(format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name")));
            }
        }
        spec.insert("priority".into(), json!(priority));
        if let Some(policy) = policy.filter(|p| !p.is_null()) {
            if let Some(given) = spec.get("preemptionPolicy").filter(|p| !p.is_null()) {
                if *given != policy {
                    let shown = |v: &Value| v.as_str().unwrap_or("").to_string();
                    return Err(forbidden(format!("the string value of PreemptionPolicy ({}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name", shown(given), shown(&policy))));
                }
            }
            spec.insert("preemptionPolicy".into(), policy);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Mutating for Priority {
    async fn admit(&self, a: &AdmissionAttributes<'_>, object: &mut Value) -> Result<(), StatusError> {
        if !a.is_main::<Pod>() {
            return Ok(());
        }
        match (a.operation, a.old) {
            (Operation::Create, _) => self.admit_new_pod(a, object).await,
            // Priority is set once, on create: an update that leaves it out
            // keeps it (validation refuses any other change).
            (Operation::Update, Some(old)) => {
                let spec = crate::registry::child(object, "spec");
                for field in ["priority", "preemptionPolicy"] {
                    let kept = old.pointer(&format!("/spec/{field}")).filter(|v| !v.is_null());
                    if let (None | Some(Value::Null), Some(kept)) = (spec.get(field), kept) {
                        spec.insert(field.into(), kept.clone());
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Validating for Priority {
    async fn validate(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if !a.is_main::<PriorityClass>() {
            return Ok(());
        }
        if a.operation == Operation::Delete {
            if SYSTEM_PRIORITY_CLASSES.iter().any(|(n, _, _)| *n == a.name) {
                return Err(a.forbidden("this is a system priority class and cannot be deleted"));
            }
            return Ok(());
        }
        let wants_default = a.object.and_then(|o| o.get("globalDefault")).and_then(Value::as_bool) == Some(true);
        if !wants_default {
            return Ok(());
        }
        if let Some(current) = self.default_class().await? {
            let current = generic_server::meta::name(&current);
            if a.operation == Operation::Create || current != a.name {
                return Err(a.forbidden(&format!(
                    "PriorityClass {current} is already marked as default. Only one default can exist"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_resolve_as_upstream() {
        let d = AdmissionPlugins::default();
        assert!(
            d.is_enabled(Plugin::NamespaceLifecycle)
                && d.is_enabled(Plugin::ResourceQuota)
                && !d.is_enabled(Plugin::AlwaysDeny)
        );
        assert_eq!(d.enabled.len(), 22);
        let p = AdmissionPlugins::from_flags(&names(&["AlwaysPullImages"]), &names(&["NamespaceLifecycle"])).unwrap();
        assert!(p.is_enabled(Plugin::AlwaysPullImages) && !p.is_enabled(Plugin::NamespaceLifecycle));
        let e =
            AdmissionPlugins::from_flags(&names(&["Bogus", "Priority"]), &names(&["Priority", "Nope"])).unwrap_err();
        assert_eq!(
            e,
            [
                "enable-admission-plugins plugin \"Bogus\" is unknown",
                "disable-admission-plugins plugin \"Nope\" is unknown",
                "[Priority] in enable-admission-plugins and disable-admission-plugins overlapped",
            ]
        );
    }
}
