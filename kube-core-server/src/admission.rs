//! NamespaceLifecycle admission (upstream plugin/pkg/admission/namespace/
//! lifecycle): nothing is created in a namespace that does not exist or is
//! being terminated, and the system namespaces cannot be deleted.
//!
//! It reads namespaces through their Store. The namespace Store itself needs
//! this plugin (to refuse deleting `default`), so the Store is bound after
//! construction and held weakly, which avoids a reference cycle.

use std::sync::{Arc, OnceLock, Weak};

use serde_json::json;

use generic_server::registry::{Admission, AdmissionAttributes, Operation, Store};
use generic_server::status::StatusError;

use crate::registry::namespace::is_terminating;

/// Namespaces that always exist (upstream's immortal namespaces).
pub const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

#[derive(Default)]
pub struct NamespaceLifecycle {
    namespaces: OnceLock<Weak<Store>>,
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
        let _ = self.namespaces.set(Arc::downgrade(store));
    }

    fn store(&self) -> Result<Arc<Store>, StatusError> {
        self.namespaces
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| StatusError::internal("namespace lifecycle admission has no namespace store"))
    }
}

#[async_trait::async_trait]
impl Admission for NamespaceLifecycle {
    async fn admit(&self, a: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        let is_namespace = a.group.is_empty() && a.resource == "namespaces";
        if is_namespace && a.operation == Operation::Delete && IMMORTAL_NAMESPACES.contains(&a.name) {
            return Err(StatusError::forbidden("", "namespaces", a.name, "this namespace may not be deleted"));
        }
        // Only creates of namespaced objects are this plugin's business:
        // updates and deletes inside a terminating namespace must go through
        // so that it can be emptied.
        if a.namespace.is_empty() || is_namespace || a.operation != Operation::Create {
            return Ok(());
        }
        let ns = match self.store()?.get("", a.namespace).await {
            Ok(ns) => ns,
            Err(e) if e.code == 404 => return Err(StatusError::not_found("", "namespaces", a.namespace)),
            Err(e) => return Err(e),
        };
        if is_terminating(&ns) {
            let why =
                format!("unable to create new content in namespace {} because it is being terminated", a.namespace);
            let mut err = StatusError::forbidden(a.group, a.resource, a.name, &why);
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

/// Every admission plugin name kube-apiserver 1.33 knows, in its order
/// (`AllOrderedPlugins`).
pub const ALL_PLUGINS: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins upstream turns off unless enabled (`DefaultOffAdmissionPlugins`
/// is the complement of this list within [`ALL_PLUGINS`]).
const DEFAULT_OFF: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "NodeRestriction",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodNodeSelector",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "OwnerReferencesPermissionEnforcement",
    "DenyServiceExternalIPs",
    "AlwaysDeny",
];

/// The plugins this server has code for; the rest of [`ALL_PLUGINS`] are
/// accepted by name only.
pub const IMPLEMENTED: &[&str] = &["NamespaceLifecycle"];

/// The admission plugins that run, from --enable-admission-plugins and
/// --disable-admission-plugins with upstream's meaning: the default-on set,
/// plus what is enabled, minus what is disabled.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionPlugins {
    enabled: Vec<&'static str>,
}

impl Default for AdmissionPlugins {
    fn default() -> Self {
        AdmissionPlugins { enabled: ALL_PLUGINS.iter().copied().filter(|p| !DEFAULT_OFF.contains(p)).collect() }
    }
}

impl AdmissionPlugins {
    /// Resolves the flags; the errors are upstream's AdmissionOptions.Validate
    /// messages. Names that upstream knows but this server does not implement
    /// are accepted, so command lines written for kube-apiserver keep working;
    /// they are logged as doing nothing here.
    pub fn from_flags(enable: &[String], disable: &[String]) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let known = |flag: &str, names: &[String], errors: &mut Vec<String>| {
            for n in names.iter().filter(|n| !ALL_PLUGINS.contains(&n.as_str())) {
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
        let mut plugins = Self::default();
        plugins.enabled = ALL_PLUGINS
            .iter()
            .copied()
            .filter(|p| {
                (plugins.enabled.contains(p) || enable.iter().any(|e| e == p)) && !disable.iter().any(|d| d == p)
            })
            .collect();
        for p in enable.iter().filter(|p| !IMPLEMENTED.contains(&p.as_str())) {
            tracing::warn!(plugin = %p, "admission plugin is enabled but not implemented by this server; it does nothing");
        }
        Ok(plugins)
    }

    pub fn is_enabled(&self, plugin: &str) -> bool {
        self.enabled.contains(&plugin)
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
        assert!(d.is_enabled("NamespaceLifecycle") && d.is_enabled("ResourceQuota") && !d.is_enabled("AlwaysDeny"));
        assert_eq!(d.enabled.len(), 22);
        let p = AdmissionPlugins::from_flags(&names(&["AlwaysPullImages"]), &names(&["NamespaceLifecycle"])).unwrap();
        assert!(p.is_enabled("AlwaysPullImages") && !p.is_enabled("NamespaceLifecycle"));
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
