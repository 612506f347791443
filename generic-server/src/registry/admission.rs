//! Admission (upstream's k8s.io/apiserver/pkg/admission): the checks and
//! changes every write goes through after decoding and before storage, across
//! resources. A [`Chain`] holds the plugins in upstream's order and runs them
//! in two phases, as upstream: every [`Mutating`] plugin before the object is
//! validated, every [`Validating`] plugin after. The Store drives the phases;
//! the binary decides which plugins are in the chain, so a Store never knows.
//!
//! A plugin sees upstream's admission.Attributes ([`Attributes`]) and leaves
//! warnings and audit annotations in the request's [`Notes`], which the filter
//! chain turns into Warning headers and audit event annotations.

use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::authn::UserInfo;
use crate::registry::ResourceInfo;
use crate::status::StatusError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    /// A connect subresource (pods/exec, pods/portforward, .../proxy).
    Connect,
}

impl Operation {
    /// Upstream's spelling (AdmissionReview's `operation`, webhook rules).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// What a plugin knows of the request (upstream's admission.Attributes).
pub struct Attributes<'a> {
    pub operation: Operation,
    /// The resource as served at the request's version.
    pub info: &'a ResourceInfo,
    pub subresource: &'a str,
    /// The kind of the object when a subresource's is not the resource's own
    /// (the autoscaling/v1 Scale of deployments/scale, the policy/v1
    /// Eviction of pods/eviction, a connect's options).
    pub kind: Option<Kind<'a>>,
    pub namespace: &'a str,
    /// Empty for a create whose name is still to be generated.
    pub name: &'a str,
    /// The object as it will be validated, for validating plugins; mutating
    /// plugins get it separately, to change. None on delete and connect.
    pub object: Option<&'a Value>,
    /// The stored object an update replaces or a delete removes.
    pub old: Option<&'a Value>,
    /// Who asks; None for the server's own writes.
    pub user: Option<&'a UserInfo>,
    pub dry_run: bool,
    /// Where plugins leave warnings and audit annotations.
    pub notes: &'a Notes,
}

/// A group, version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
}

impl<'a> Kind<'a> {
    /// The kind of `info`'s objects.
    pub fn of(info: &'a ResourceInfo) -> Self {
        Kind { group: &info.group, version: &info.version, kind: &info.kind }
    }
}

impl Attributes<'_> {
    /// Upstream's GetKind: the object's kind, as `resource` (the request's
    /// resource or an equivalent version of it) serves it.
    pub fn kind_as<'r>(&'r self, resource: &'r ResourceInfo) -> Kind<'r> {
        self.kind.unwrap_or_else(|| Kind::of(resource))
    }

    /// Whether the request is for the resource of type `K` (group and
    /// resource; any version, any subresource).
    pub fn is<K: k8s_openapi::Resource>(&self) -> bool {
        self.info.group == K::GROUP && self.info.plural == K::URL_PATH_SEGMENT
    }

    /// Whether the request writes the object of type `K` itself (no subresource).
    pub fn is_main<K: k8s_openapi::Resource>(&self) -> bool {
        self.is::<K>() && self.subresource.is_empty()
    }

    pub fn group(&self) -> &str {
        &self.info.group
    }

    pub fn resource(&self) -> &str {
        &self.info.plural
    }

    /// A 403 Forbidden Status for this request, as upstream's
    /// admission.NewForbidden.
    pub fn forbidden(&self, why: &str) -> StatusError {
        StatusError::forbidden(&self.info.group, &self.info.plural, self.name, why)
    }
}

/// Upstream's MutationInterface: changes a create's or update's object before
/// it is validated. On delete and connect `object` is null and changes to it
/// are dropped.
#[async_trait::async_trait]
pub trait Mutating: Send + Sync {
    async fn admit(&self, attrs: &Attributes<'_>, object: &mut Value) -> Result<(), StatusError>;
}

/// Upstream's ValidationInterface: accepts or refuses the final object.
#[async_trait::async_trait]
pub trait Validating: Send + Sync {
    async fn validate(&self, attrs: &Attributes<'_>) -> Result<(), StatusError>;
}

/// The plugins of a server, in the order they run.
#[derive(Default, Clone)]
pub struct Chain {
    mutating: Vec<Arc<dyn Mutating>>,
    validating: Vec<Arc<dyn Validating>>,
}

impl Chain {
    /// A chain with no plugins: every write is admitted.
    pub fn empty() -> Arc<Chain> {
        Arc::new(Chain::default())
    }

    /// Appends a mutating plugin.
    pub fn mutating(mut self, plugin: Arc<dyn Mutating>) -> Self {
        self.mutating.push(plugin);
        self
    }

    /// Appends a validating plugin.
    pub fn validating(mut self, plugin: Arc<dyn Validating>) -> Self {
        self.validating.push(plugin);
        self
    }

    /// The mutating phase.
    pub async fn mutate(&self, attrs: &Attributes<'_>, object: &mut Value) -> Result<(), StatusError> {
        for p in &self.mutating {
            p.admit(attrs, object).await?;
        }
        Ok(())
    }

    /// The validating phase.
    pub async fn validate(&self, attrs: &Attributes<'_>) -> Result<(), StatusError> {
        for p in &self.validating {
            p.validate(attrs).await?;
        }
        Ok(())
    }
}

/// What admission leaves for the response and the audit log of one request
/// (upstream keeps both in the request context).
#[derive(Default, Debug)]
pub struct Notes {
    state: Mutex<NotesState>,
}

#[derive(Default, Debug)]
struct NotesState {
    warnings: Vec<String>,
    annotations: Vec<(String, String)>,
    /// Whether the audit event records the decoded request object.
    wants_request_object: bool,
    request_object: Option<serde_json::Value>,
}

impl Notes {
    fn state(&self) -> std::sync::MutexGuard<'_, NotesState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a warning for the client; a repeated warning is sent once, as
    /// upstream's recorder dedupes.
    pub fn warn(&self, text: impl Into<String>) {
        let text = text.into();
        let mut s = self.state();
        if !text.is_empty() && !s.warnings.contains(&text) {
            s.warnings.push(text);
        }
    }

    /// Adds an annotation to the request's audit event.
    pub fn annotate(&self, key: impl Into<String>, value: impl Into<String>) {
        self.state().annotations.push((key.into(), value.into()));
    }

    pub fn warnings(&self) -> Vec<String> {
        self.state().warnings.clone()
    }

    /// The audit annotations, taken out.
    pub fn take_annotations(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.state().annotations)
    }

    /// Asks for the request's object as decoded, for the audit event.
    pub fn want_request_object(&self) {
        self.state().wants_request_object = true;
    }

    /// Records the request's object once decoded and defaulted, when the
    /// audit event wants it (else `obj` is never made); the first one stays,
    /// as a retried update decodes the same body again.
    pub fn log_request_object(&self, obj: impl FnOnce() -> serde_json::Value) {
        let mut s = self.state();
        if s.wants_request_object && s.request_object.is_none() {
            s.request_object = Some(obj());
        }
    }

    pub fn take_request_object(&self) -> Option<serde_json::Value> {
        self.state().request_object.take()
    }

    /// Takes the warnings out (they are sent once).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.state().warnings)
    }
}
