//! The generic registry: one [`Store`] per resource, which does everything every
//! resource needs (metadata, optimistic concurrency, dry run, finalizers,
//! selectors, tables), and asks the resource's [`Strategy`] only what differs.
//! A new resource is a Strategy and a registration, never a new handler.

pub mod admission;
pub mod admission_config;
pub mod bound;
pub mod cached;
pub mod conversion;
pub mod hooks;
pub mod registration;
pub mod rest;
pub mod store;
pub mod store_registry;
pub mod table;
pub mod typed;

use serde_json::Value;

pub use admission::{
    Attributes as AdmissionAttributes, Chain as AdmissionChain, Kind as AdmissionKind, Mutating, Notes, Operation,
    Validating,
};
pub use bound::BoundStore;
pub use cached::{CachedObject, WatchEventType};
pub use conversion::{Conversion, Converted, VersionConverter};
pub use hooks::WriteHooks;
pub use registration::{
    ConnectOptions, OptionField, Registration, Schema, SubresourceCall, SubresourceDiscovery, SubresourceHandler,
    SubresourceReply,
};
pub use rest::{CreateCall, CreateOnly, Creater, ReadOnly, Reader};
pub use store::{ListOptions, Store, WriteOptions};
pub use store_registry::{StoreRegistry, Versions};
pub use table::TableColumn;

use crate::meta::NameRule;
use crate::status::Cause;

/// What discovery, routing and storage keys need to know about a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The plural, lower-case resource name used in URLs.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Where objects live in storage, without trailing slash, e.g.
    /// "/registry/configmaps" or "/registry/apps.example.com/widgets".
    pub key_root: String,
    pub subresources: Vec<Subresource>,
    /// The verbs served, as discovery lists them (`discovery::VERBS` for most).
    pub verbs: &'static [&'static str],
    /// Discovery's storageVersionHash: of the version objects are stored in
    /// (`discovery::storage_version_hash`); empty for what is not stored.
    pub storage_version_hash: String,
}

impl ResourceInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
    pub fn has_subresource(&self, sub: &Subresource) -> bool {
        self.subresources.contains(sub)
    }
}

/// A resource's subresources: the three whose meaning the generic Store owns,
/// and any other a registration supplies a handler for.
#[derive(Clone)]
pub enum Subresource {
    /// `/status`: writes change only `.status`; writes to the main resource keep
    /// the stored status.
    Status,
    /// `/scale`: an autoscaling/v1 Scale view of the replica fields.
    Scale(ScalePaths),
    /// `/finalize` (namespaces): writes change only `.spec.finalizers`.
    Finalize,
    /// A status-like subresource (certificatesigningrequests/approval): reads
    /// give the whole object; a write changes only the part the strategy's
    /// `prepare_for_subresource_update` takes from it.
    Part(&'static str),
    /// Served by the registration's own handler.
    Handler(std::sync::Arc<dyn SubresourceHandler>),
}

impl Subresource {
    pub fn name(&self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale(_) => "scale",
            Subresource::Finalize => "finalize",
            Subresource::Part(name) => name,
            Subresource::Handler(h) => h.name(),
        }
    }
}

// Two subresources of one resource are the same when their names are: a
// resource has at most one subresource of a name.
impl PartialEq for Subresource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Subresource::Scale(a), Subresource::Scale(b)) => a == b,
            _ => self.name() == other.name(),
        }
    }
}

impl std::fmt::Debug for Subresource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subresource::Scale(p) => f.debug_tuple("Scale").field(p).finish(),
            other => f.write_str(other.name()),
        }
    }
}

/// Where the replica counts and label selector of a scalable resource live, as
/// dotted JSON paths (the form CRDs use: ".spec.replicas").
#[derive(Debug, Clone, PartialEq)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

/// The result of decoding a client's object into the resource's canonical form.
pub struct Decoded {
    pub object: Value,
    /// JSON paths (".spec.foo") of fields the type does not have; they were
    /// dropped. fieldValidation decides whether this is a warning or an error.
    pub unknown_fields: Vec<String>,
}

/// Per-resource behaviour, after upstream's RESTCreateStrategy,
/// RESTUpdateStrategy and TableConvertor. Everything has a default, so a
/// resource states only what differs. What the objects are (decoding, patch
/// facts) is the registration's [`Schema`], not the strategy's.
pub trait Strategy: Send + Sync + 'static {
    fn name_rule(&self) -> NameRule {
        NameRule::Dns1123Subdomain
    }

    /// Whether metadata.generation is maintained (bumped on spec changes).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether a creator may set the status of a resource with a status
    /// subresource (upstream's nodes: a kubelet registers its node with its
    /// status); otherwise the Store empties it on create.
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// Clears what a client may not set on create (for example status).
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// Records the creator in the object, for kinds that keep who asked
    /// (upstream's PrepareForCreate reading the user from the request
    /// context: CertificateSigningRequest's spec.username and the rest).
    /// Runs after `prepare_for_create`; `user` is None for the server's own
    /// writes.
    fn record_creator(&self, _object: &mut Value, _user: Option<&crate::authn::UserInfo>) {}

    /// Adjusts an update before validation (for example keeps the stored status).
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Upstream's status (and approval) strategies' PrepareForUpdate, for a
    /// write through `/status` or a [`Subresource::Part`] named `subresource`.
    /// For `/status` the Store has already kept everything but `.status`; for a
    /// Part `new` is the client's object with the stored metadata, and the
    /// strategy must put back from `old` all the Part may not change.
    fn prepare_for_subresource_update(&self, _subresource: &str, _new: &mut Value, _old: &Value) {}

    /// Validation of an update through `/status` or a Part.
    fn validate_subresource_update(&self, _subresource: &str, new: &Value, old: &Value) -> Vec<Cause> {
        self.validate_update(new, old)
    }

    /// Fills upstream's defaults.
    fn default(&self, _object: &mut Value) {}

    /// Resource-specific validation on create (ObjectMeta is checked by Store).
    fn validate(&self, _object: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Resource-specific validation on update: immutable fields and the rest.
    fn validate_update(&self, new: &Value, _old: &Value) -> Vec<Cause> {
        self.validate(new)
    }

    /// Whether a PUT of a missing object creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Whether a PUT without resourceVersion is accepted (last writer wins).
    fn allow_unconditional_update(&self) -> bool {
        true
    }

    /// Field selector labels beyond metadata.name and metadata.namespace, with
    /// their values for this object.
    fn field_labels(&self, _object: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The field selector labels this resource supports beyond metadata.*.
    fn supported_field_labels(&self) -> &'static [&'static str] {
        &[]
    }

    /// Table columns, in order; `priority > 0` columns are shown by `-o wide`.
    fn table_columns(&self) -> Vec<TableColumn> {
        table::default_columns()
    }

    /// One row's cells, one per column.
    fn table_row(&self, object: &Value) -> Vec<Value> {
        table::default_row(object)
    }

    /// Whether deletion has to wait: the Store marks the object with a
    /// deletionTimestamp instead of removing it while this holds, and removes it
    /// once an update makes it false. Upstream waits on metadata.finalizers;
    /// namespaces also wait on spec.finalizers.
    fn pending_finalizers(&self, object: &Value) -> bool {
        !crate::meta::finalizers(object).is_empty()
    }

    /// Adjusts an object as it is marked for deletion (a namespace turns
    /// Terminating).
    fn prepare_for_delete(&self, _object: &mut Value) {}

    /// Upstream's Canonicalize: normalises a valid object once its name is
    /// final (after generateName), on create and update.
    fn canonicalize(&self, _object: &mut Value) {}

    /// Called when a create that `prepare_for_create` already saw does not
    /// happen (dry run, validation or storage failure): allocators give back
    /// what they reserved.
    fn abort_create(&self, _object: &Value) {}

    /// Called after an update commits (allocators release what the new state
    /// no longer holds).
    fn after_update(&self, _new: &Value, _old: &Value) {}

    /// Called after a create commits (allocators record what they handed out).
    fn after_create(&self, _object: &Value) {}

    /// Called after an object is removed from storage (allocators release).
    fn after_delete(&self, _object: &Value) {}
}

/// A strategy with every default: an untyped resource with only ObjectMeta rules.
pub struct DefaultStrategy;
impl Strategy for DefaultStrategy {}
