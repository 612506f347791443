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
