//! How a resource is registered: its identity taken from its type, the
//! [`Schema`] its objects follow, its [`Strategy`](super::Strategy) and the
//! options that differ per resource, declared on the [`Registration`] (never
//! found by matching the plural). Subresources beyond status, scale and
//! finalize are [`SubresourceHandler`]s the registration supplies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use super::conversion::{Conversion, Converted, VersionConverter};
use super::{Decoded, ResourceInfo, ScalePaths, Store, Strategy, Subresource, WriteHooks, WriteOptions};
use crate::fieldmanager::{Definitions, TypeResolver, Untyped};
use crate::status::StatusError;

type DecodeFn = dyn Fn(Value) -> Result<Decoded, StatusError> + Send + Sync;

/// What the objects of a resource are: how a client's JSON becomes the stored
/// form, and the type facts strategic merge patch and server-side apply follow.
#[derive(Clone)]
pub struct Schema {
    decode: Arc<DecodeFn>,
    /// The definition ("io.k8s.api.core.v1.Pod") the strategic merge patch
    /// facts are keyed by; None refuses strategic merge patch, as upstream
    /// does for custom resources.
    pub definition: Option<&'static str>,
    /// List and map types for managedFields and apply.
    pub types: Arc<dyn TypeResolver>,
    /// Objects are maps with no Go type behind them (custom resources):
    /// upstream writes their keys sorted and has no protobuf form for them.
    pub unstructured: bool,
}

impl Schema {
    /// A built-in type: decoded through its k8s-openapi struct (dropping and
    /// reporting the fields it lacks), patched by its definition's facts.
    pub fn of<K: BuiltIn>() -> Schema {
        let definition = crate::openapi::facts::facts().type_for_gvk(K::GROUP, K::VERSION, K::KIND);
        let types: Arc<dyn TypeResolver> = match definition {
            Some(d) => Arc::new(Definitions::new(d)),
            None => Arc::new(Untyped),
        };
        Schema { decode: Arc::new(super::typed::decode_as::<K>), definition, types, unstructured: false }
    }

    /// Objects kept as the client sent them, with no type facts.
    pub fn untyped() -> Schema {
        Schema {
            decode: Arc::new(|object| Ok(Decoded { object, unknown_fields: Vec::new() })),
            definition: None,
            types: Arc::new(Untyped),
            unstructured: false,
        }
    }

    /// A schema known only at run time (a CRD's structural schema).
    pub fn custom(
        decode: impl Fn(Value) -> Result<Decoded, StatusError> + Send + Sync + 'static,
        types: Arc<dyn TypeResolver>,
    ) -> Schema {
        Schema { decode: Arc::new(decode), definition: None, types, unstructured: false }
    }

    /// Marks the objects as unstructured maps (custom resources).
    pub fn unstructured(self) -> Schema {
        Schema { unstructured: true, ..self }
    }

    /// Adds a step after decoding that upstream's conversion to the internal
    /// form does (a Secret's stringData folded into data).
    pub fn converted(self, convert: fn(&mut Value)) -> Schema {
        let decode = self.decode;
        Schema {
            decode: Arc::new(move |object| {
                let mut d = decode(object)?;
                convert(&mut d.object);
                Ok(d)
            }),
            ..self
        }
    }

    /// The client's JSON in the stored form, with the fields that were dropped.
    pub fn decode(&self, object: Value) -> Result<Decoded, StatusError> {
        (self.decode)(object)
    }
}

/// The scope of a k8s-openapi type, as a value.
pub trait Scope {
    const NAMESPACED: bool;
}
impl Scope for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scope for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

/// A built-in type that can be registered: a k8s-openapi resource type with a
/// namespaced or cluster scope.
pub trait BuiltIn: k8s_openapi::Resource<Scope: Scope> + DeserializeOwned + Serialize + 'static {}
impl<K: k8s_openapi::Resource<Scope: Scope> + DeserializeOwned + Serialize + 'static> BuiltIn for K {}

impl ResourceInfo {
    /// The identity of a built-in type (as kube-rs's `ApiResource::erase`):
    /// group, version, kind, plural and scope from `K`; stored under
    /// `/registry/<plural>`, every verb served, no subresources.
    pub fn of<K: BuiltIn>() -> ResourceInfo {
        ResourceInfo {
            group: K::GROUP.into(),
            version: K::VERSION.into(),
            kind: K::KIND.into(),
            plural: K::URL_PATH_SEGMENT.into(),
            singular: K::KIND.to_ascii_lowercase(),
            namespaced: K::Scope::NAMESPACED,
            short_names: Vec::new(),
            categories: Vec::new(),
            key_root: format!("/registry/{}", K::URL_PATH_SEGMENT),
            subresources: Vec::new(),
            verbs: crate::discovery::VERBS,
            storage_version_hash: crate::discovery::storage_version_hash(K::GROUP, K::VERSION, K::KIND),
        }
    }

    /// Whether this is the resource of type `K` (same group, version, kind).
    pub fn is<K: k8s_openapi::Resource>(&self) -> bool {
        self.group == K::GROUP && self.version == K::VERSION && self.kind == K::KIND
    }
}

/// A resource as a server installs it: what it is, what its objects are, its
/// rules, and the options that differ from the common case.
#[derive(Clone)]
pub struct Registration {
    pub info: ResourceInfo,
    pub schema: Schema,
    pub strategy: Arc<dyn Strategy>,
    /// Objects go away by themselves this long after their last write
    /// (upstream's TTLFunc; Events with --event-ttl).
    pub ttl: Option<Duration>,
    /// A DELETE answers with the deleted object rather than a Status
    /// (upstream's ReturnDeletedObject). A deletion waiting on finalizers
    /// answers with the object either way.
    pub return_deleted_object: bool,
    /// For a version served over another version's storage: how objects
    /// convert to and from the stored version.
    pub conversion: Option<Arc<dyn VersionConverter>>,
    /// Records kept beside the objects (see [`WriteHooks`]).
    pub hooks: Option<Arc<dyn WriteHooks>>,
    /// The Warning every request to this resource gets: upstream's for a
    /// deprecated API.
    pub deprecation: Option<&'static str>,
}

impl Registration {
    /// A built-in resource: identity and schema from `K`.
    pub fn of<K: BuiltIn>(strategy: impl Strategy) -> Registration {
        Registration::shared::<K>(Arc::new(strategy))
    }

    /// As [`Registration::of`], with a strategy the caller keeps a handle to.
    pub fn shared<K: BuiltIn>(strategy: Arc<dyn Strategy>) -> Registration {
        Registration::new(ResourceInfo::of::<K>(), Schema::of::<K>(), strategy)
    }

    /// A resource whose identity is known only at run time (a custom resource).
    pub fn new(info: ResourceInfo, schema: Schema, strategy: Arc<dyn Strategy>) -> Registration {
        Registration {
            info,
            schema,
            strategy,
            ttl: None,
            return_deleted_object: false,
            conversion: None,
            hooks: None,
            deprecation: None,
        }
    }

    /// This resource served as version `K` too, over the same storage: `K`'s
    /// identity and schema, everything else (key root, names, subresources,
    /// TTL) as here, objects converted to this registration's version before
    /// they are written and back after they are read, and this strategy's
    /// rules applied through the conversion (see [`super::conversion`]).
    pub fn served_as<K: BuiltIn>(
        &self,
        to_stored: fn(Value) -> Value,
        from_stored: fn(Value) -> Value,
    ) -> Registration {
        let conversion = Conversion { to_stored, from_stored };
        let info = ResourceInfo {
            key_root: self.info.key_root.clone(),
            short_names: self.info.short_names.clone(),
            categories: self.info.categories.clone(),
            subresources: self.info.subresources.clone(),
            verbs: self.info.verbs,
            storage_version_hash: self.info.storage_version_hash.clone(),
            ..ResourceInfo::of::<K>()
        };
        let strategy = Arc::new(Converted { inner: self.strategy.clone(), conversion });
        Registration {
            info,
            schema: Schema::of::<K>(),
            strategy,
            ttl: self.ttl,
            return_deleted_object: self.return_deleted_object,
            conversion: Some(Arc::new(conversion)),
            hooks: self.hooks.clone(),
            deprecation: None,
        }
    }

    /// Objects stored in another version than this one (a CRD version other
    /// than its storage version), converted by `converter` where the Store
    /// encodes and decodes.
    pub fn stored_through(mut self, converter: Arc<dyn VersionConverter>) -> Self {
        self.conversion = Some(converter);
        self
    }

    /// Replaces the strategy (a served version whose rules differ from the
    /// stored version's beyond the conversion, as events.k8s.io/v1's).
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    pub fn short_names(mut self, names: &[&str]) -> Self {
        self.info.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn categories(mut self, categories: &[&str]) -> Self {
        self.info.categories = categories.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Where upstream keeps this resource when it is not `/registry/<plural>`
    /// (services live under `/registry/services/specs`).
    pub fn key_root(mut self, root: &str) -> Self {
        self.info.key_root = root.into();
        self
    }

    pub fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.info.verbs = verbs;
        self
    }

    pub fn subresource(mut self, sub: Subresource) -> Self {
        self.info.subresources.push(sub);
        self
    }

    /// The `/status` subresource.
    pub fn status(self) -> Self {
        self.subresource(Subresource::Status)
    }

    /// The `/scale` subresource over `.spec.replicas`, `.status.replicas` and
    /// `.spec.selector`, as every built-in scalable workload has it.
    pub fn scale(self) -> Self {
        self.subresource(Subresource::Scale(ScalePaths::replicas()))
    }

    /// A subresource served by its own handler.
    pub fn handler(self, handler: impl SubresourceHandler + 'static) -> Self {
        self.subresource(Subresource::Handler(Arc::new(handler)))
    }

    /// See [`Schema::converted`].
    pub fn converted(mut self, convert: fn(&mut Value)) -> Self {
        self.schema = self.schema.converted(convert);
        self
    }

    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Records this resource's writes keep beside their objects.
    pub fn hooks(mut self, hooks: Arc<dyn WriteHooks>) -> Self {
        self.hooks = Some(hooks);
        self
    }

    /// Every request to this resource warns with `warning` (upstream's
    /// deprecated-API warning).
    pub fn deprecated(mut self, warning: &'static str) -> Self {
        self.deprecation = Some(warning);
        self
    }

    /// See [`Registration::return_deleted_object`].
    pub fn returns_deleted_object(mut self) -> Self {
        self.return_deleted_object = true;
        self
    }
}

impl ScalePaths {
    /// `.spec.replicas`, `.status.replicas`, `.spec.selector`.
    pub fn replicas() -> ScalePaths {
        ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: Some(".spec.selector".into()),
        }
    }
}

/// What discovery lists for a handler's subresource.
#[derive(Debug, Clone, PartialEq)]
pub struct SubresourceDiscovery {
    /// The kind it answers with (`Binding`, `Eviction`); empty means the
    /// parent's kind.
    pub kind: &'static str,
    /// Group and version of that kind when it is not the parent's (Eviction
    /// is policy/v1); empty otherwise.
    pub group: &'static str,
    pub version: &'static str,
    pub verbs: &'static [&'static str],
}

impl SubresourceDiscovery {
    /// The kind of the subresource's object, as admission is told it: the
    /// parent's group, version or kind wherever this leaves them empty.
    pub fn admission_kind<'a>(&self, parent: &'a ResourceInfo) -> super::AdmissionKind<'a> {
        let own = super::AdmissionKind::of(parent);
        let or = |mine: &'static str, theirs: &'a str| if mine.is_empty() { theirs } else { mine };
        super::AdmissionKind {
            group: if self.version.is_empty() { own.group } else { self.group },
            version: or(self.version, own.version),
            kind: or(self.kind, own.kind),
        }
    }
}

/// One request to a handler's subresource, decoded: the endpoints layer owns
/// HTTP, the handler only the meaning.
pub struct SubresourceCall<'a> {
    /// The RequestInfo verb: get, create, update, patch, delete.
    pub verb: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The decoded request body, when the request had one.
    pub body: Option<Value>,
    pub params: &'a HashMap<String, String>,
    pub options: WriteOptions,
}

/// A handler's answer: a status code and an object the endpoints layer writes
/// in the negotiated form (warnings go to the call's `options.notes`).
pub struct SubresourceReply {
    pub code: u16,
    pub object: Value,
}

/// How a connect options kind is read from a request's query (upstream's
/// query parameter conversion of the versioned options type).
pub struct ConnectOptions {
    /// Each query parameter the kind has, by its JSON name.
    pub fields: &'static [(&'static str, OptionField)],
    /// The field the path after the subresource goes to (upstream's
    /// subpathKey, `path` for the proxies).
    pub path: Option<&'static str>,
}

/// The type of a connect option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionField {
    Bool,
    String,
    Strings,
    Int32s,
}

/// A subresource with behaviour of its own (pods/binding, pods/eviction,
/// certificatesigningrequests/approval, or the kubelet-backed ones that
/// answer with an error here).
#[async_trait::async_trait]
pub trait SubresourceHandler: Send + Sync {
    /// The name in the URL ("binding").
    fn name(&self) -> &'static str;
    fn discovery(&self) -> SubresourceDiscovery;
    /// Upstream's Connecter (pods/exec, pods/proxy, ...): the request is not
    /// an object write, so its body is not decoded and its query is the
    /// handler's own options. A reply with code 204 is written without a body.
    fn connect(&self) -> bool {
        false
    }
    /// Whether the subresource takes a path after its name
    /// (`pods/NAME/proxy/some/path`), as upstream's proxy connecters do.
    fn takes_path(&self) -> bool {
        false
    }
    /// The fields of upstream's connect options (NewConnectOptions: the
    /// PodExecOptions of pods/exec), read from the query, which admission
    /// sees as the object of a CONNECT. None for a subresource upstream
    /// serves without ConnectResource (pods/log is a getter there), which no
    /// CONNECT admission sees.
    fn connect_options(&self) -> Option<ConnectOptions> {
        None
    }
    async fn serve(&self, store: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace, core::v1::Pod};

    #[test]
    fn identity_comes_from_the_type() {
        let i = ResourceInfo::of::<Deployment>();
        assert_eq!((i.group.as_str(), i.version.as_str(), i.kind.as_str()), ("apps", "v1", "Deployment"));
        assert_eq!((i.plural.as_str(), i.singular.as_str(), i.namespaced), ("deployments", "deployment", true));
        assert_eq!(i.key_root, "/registry/deployments");
        assert!(!ResourceInfo::of::<Namespace>().namespaced);
        assert!(i.is::<Deployment>() && !i.is::<Pod>());
    }

    #[test]
    fn schema_comes_from_the_type() {
        let s = Schema::of::<Pod>();
        assert_eq!(s.definition, Some("io.k8s.api.core.v1.Pod"));
        let d = s.decode(serde_json::json!({"metadata": {"name": "p"}, "bogus": 1})).unwrap();
        assert_eq!(d.unknown_fields, vec![".bogus"]);
        assert_eq!(Schema::untyped().definition, None);
    }
}
