//! REST endpoints (upstream's endpoints/handlers and APIInstaller): the one
//! [`ResourceServer`] that turns a resource request into a call on the right
//! [`Store`] and the result into a response in the negotiated form. A server in
//! the chain owns a ResourceServer with its Stores installed; requests for
//! anything it does not hold go to its delegate.

pub(crate) mod output;
mod watch;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::discovery::{self, ApiGroup, ApiVersion};
use crate::handler::{DynHandler, Handler, Request, Response};
use crate::negotiation::{self, BodyFormat};
use crate::registry::store::{
    read_at, read_freshness, DeleteOptions, DeleteResult, FieldValidation, ListOptions, ReadAt, SubresourceAdmission,
    WriteOptions,
};
use crate::registry::{
    ConnectOptions, CreateCall, CreateOnly, Operation, OptionField, ReadOnly, ResourceInfo, Store, Subresource,
    SubresourceCall, SubresourceHandler,
};
use crate::request_info::{query_pairs, query_params, query_unescape, RequestInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{success_status, Cause, StatusError};

pub use output::{respond, respond_value, Responder};

type Result<T> = std::result::Result<T, StatusError>;
/// An installed resource's key: its group, version and plural.
type StoreKey = (String, String, String);

/// What is installed, by [`StoreKey`]: every resource request looks its
/// resource up in each server it passes through, by the names it was given
/// ([`Names`]), without making a key.
type ByKey<V> = hashbrown::HashMap<StoreKey, V>;

fn store_key(group: &str, version: &str, plural: &str) -> StoreKey {
    (group.to_string(), version.to_string(), plural.to_string())
}

/// A request's group, version and plural, hashed as the [`StoreKey`] they
/// name (a tuple hashes its parts in order, as a derived Hash does).
#[derive(Hash)]
struct Names<'a>(&'a str, &'a str, &'a str);

impl hashbrown::Equivalent<StoreKey> for Names<'_> {
    fn equivalent(&self, key: &StoreKey) -> bool {
        (self.0, self.1, self.2) == (key.0.as_str(), key.1.as_str(), key.2.as_str())
    }
}

/// The value at `group/version/plural`.
fn find<V: Clone>(map: &RwLock<ByKey<V>>, group: &str, version: &str, plural: &str) -> Option<V> {
    map.read().unwrap_or_else(|e| e.into_inner()).get(&Names(group, version, plural)).cloned()
}

/// A resource served without a Store.
enum Unstored {
    CreateOnly(CreateOnly),
    ReadOnly(ReadOnly),
}

impl Unstored {
    fn info(&self) -> &ResourceInfo {
        match self {
            Unstored::CreateOnly(c) => &c.info,
            Unstored::ReadOnly(r) => &r.info,
        }
    }
}

/// Serves the resources whose Stores are installed in it; delegates the rest.
/// Produces the OpenAPI parts for a server's resources.
pub type OpenApiSource = fn(&[ResourceInfo]) -> Vec<discovery::OpenApiPart>;

pub struct ResourceServer {
    stores: RwLock<ByKey<Arc<Store>>>,
    /// Resources served without a Store (the review kinds, componentstatuses).
    unstored: RwLock<ByKey<Arc<Unstored>>>,
    openapi: Option<OpenApiSource>,
    /// Group names in the order they were first installed, for discovery.
    group_order: RwLock<Vec<String>>,
    delegate: DynHandler,
    /// Counts the changes to what is served, for controllers that follow it
    /// ([`Self::changes`]).
    changed: tokio::sync::watch::Sender<u64>,
}

impl ResourceServer {
    pub fn new(delegate: DynHandler) -> Self {
        ResourceServer {
            stores: RwLock::default(),
            unstored: RwLock::default(),
            openapi: None,
            group_order: RwLock::default(),
            delegate,
            changed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes whenever a resource is installed here or uninstalled.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn note_change(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Has this server contribute OpenAPI documents for its resources.
    pub fn with_openapi(mut self, source: OpenApiSource) -> Self {
        self.openapi = Some(source);
        self
    }

    pub fn install(&self, store: Arc<Store>) {
        let key = self.note_group(&store.info);
        self.stores.write().unwrap_or_else(|e| e.into_inner()).insert(key, store);
        self.note_change();
    }

    /// Installs a resource that is only created, never stored.
    pub fn install_create_only(&self, resource: CreateOnly) {
        self.install_unstored(Unstored::CreateOnly(resource));
    }

    /// Installs a resource that is only read, computed on each read.
    pub fn install_read_only(&self, resource: ReadOnly) {
        self.install_unstored(Unstored::ReadOnly(resource));
    }

    fn install_unstored(&self, resource: Unstored) {
        let key = self.note_group(resource.info());
        self.unstored.write().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::new(resource));
        self.note_change();
    }

    /// Records the group's place in discovery order; the resource's key.
    fn note_group(&self, i: &ResourceInfo) -> StoreKey {
        let mut order = self.group_order.write().unwrap_or_else(|e| e.into_inner());
        if !order.contains(&i.group) {
            order.push(i.group.clone());
        }
        store_key(&i.group, &i.version, &i.plural)
    }

    /// What every installed resource is, stored or create-only.
    fn infos(&self) -> Vec<ResourceInfo> {
        let mut infos: Vec<ResourceInfo> =
            self.stores.read().unwrap_or_else(|e| e.into_inner()).values().map(|s| s.info.clone()).collect();
        infos.extend(self.unstored.read().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.info().clone()));
        infos
    }

    pub fn uninstall(&self, group: &str, version: &str, plural: &str) {
        self.stores.write().unwrap_or_else(|e| e.into_inner()).remove(&store_key(group, version, plural));
        self.note_change();
    }

    pub fn store(&self, group: &str, version: &str, plural: &str) -> Option<Arc<Store>> {
        find(&self.stores, group, version, plural)
    }

    /// The Store of the built-in type `K`, identity from the type.
    pub fn store_of<K: k8s_openapi::Resource>(&self) -> Option<Arc<Store>> {
        self.store(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
    }

    pub fn stores(&self) -> Vec<Arc<Store>> {
        self.stores.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Whether a resource of `group` was ever installed here.
    pub fn serves_group(&self, group: &str) -> bool {
        self.group_order.read().unwrap_or_else(|e| e.into_inner()).iter().any(|g| g == group)
    }

    /// The groups installed here, versions and resources in a stable order.
    pub fn own_groups(&self) -> Vec<ApiGroup> {
        let all = self.infos();
        let order = self.group_order.read().unwrap_or_else(|e| e.into_inner());
        let mut groups = Vec::new();
        for g in order.iter() {
            let mut versions: Vec<ApiVersion> = Vec::new();
            let mut infos: Vec<&ResourceInfo> = all.iter().filter(|i| &i.group == g).collect();
            infos.sort_by(|a, b| (&a.version, &a.plural).cmp(&(&b.version, &b.plural)));
            for i in infos {
                match versions.iter_mut().find(|v| v.version == i.version) {
                    Some(v) => v.resources.push(i.clone()),
                    None => versions.push(ApiVersion { version: i.version.clone(), resources: vec![i.clone()] }),
                }
            }
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.version)));
            if !versions.is_empty() {
                groups.push(ApiGroup { name: g.clone(), versions, priority: 0 });
            }
        }
        groups
    }

    pub fn delegate(&self) -> &DynHandler {
        &self.delegate
    }

    /// Serves group and group-version discovery for what is installed here.
    fn discovery(&self, req: &Request, info: &RequestInfo) -> Option<Response> {
        if req.method() != http::Method::GET {
            return None;
        }
        let groups = self.own_groups();
        let group = groups.iter().find(|g| g.name == info.api_group)?;
        let is_core = info.api_prefix == "api";
        if is_core != group.name.is_empty() {
            return None;
        }
        if info.api_version.is_empty() {
            if is_core {
                return None;
            }
            return Some(respond_value(req, 200, &discovery::group(group)));
        }
        let version = group.versions.iter().find(|v| v.version == info.api_version)?;
        Some(respond_value(req, 200, &discovery::resource_list(&group.name, version)))
    }
}

/// Upstream's version ordering: GA > beta > alpha, higher numbers first.
pub fn version_priority(v: &str) -> (u8, u32, u32) {
    let rest = match v.strip_prefix('v') {
        Some(r) => r,
        None => return (0, 0, 0),
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    if tail.is_empty() {
        return (3, major, 0);
    }
    let minor = |t: &str| t.parse().unwrap_or(0);
    if let Some(t) = tail.strip_prefix("beta") {
        return (2, major, minor(t));
    }
    if let Some(t) = tail.strip_prefix("alpha") {
        return (1, major, minor(t));
    }
    (0, 0, 0)
}

#[async_trait::async_trait]
impl Handler for ResourceServer {
    async fn handle(&self, req: Request) -> Response {
        let Some(info) = RequestInfo::of(&req).cloned() else {
            return self.delegate.handle(req).await;
        };
        if !info.is_resource_request {
            if let Some(resp) = self.discovery(&req, &info) {
                return resp;
            }
            return self.delegate.handle(req).await;
        }
        let Some(store) = self.store(&info.api_group, &info.api_version, &info.resource) else {
            let found = find(&self.unstored, &info.api_group, &info.api_version, &info.resource);
            return match found.as_deref() {
                Some(Unstored::CreateOnly(resource)) => {
                    serve_create_only(resource, &req, &info).await.unwrap_or_else(StatusError::into_response)
                }
                Some(Unstored::ReadOnly(resource)) => {
                    // Upstream warns on every request to a deprecated API, refused ones too.
                    if let Some(w) = resource.deprecation {
                        crate::context::notes_of(&req).warn(w);
                    }
                    serve_read_only(resource, &req, &info).await.unwrap_or_else(StatusError::into_response)
                }
                None => self.delegate.handle(req).await,
            };
        };
        // Upstream warns on every request to a deprecated API, refused ones too.
        if let Some(w) = store.deprecation {
            crate::context::notes_of(&req).warn(w);
        }
        match serve_resource(&store, &req, &info).await {
            Ok(resp) => resp,
            Err(e) => e.into_response(),
        }
    }

    fn api_groups(&self) -> Vec<ApiGroup> {
        let mut groups = self.own_groups();
        groups.extend(self.delegate.api_groups());
        groups
    }

    fn openapi_schemas(&self) -> Vec<discovery::OpenApiPart> {
        let mut parts = match self.openapi {
            Some(source) => {
                let mut infos = self.infos();
                infos.sort_by(|a, b| (&a.group, &a.version, &a.plural).cmp(&(&b.group, &b.version, &b.plural)));
                source(&infos)
            }
            None => Vec::new(),
        };
        parts.extend(self.delegate.openapi_schemas());
        parts
    }
}

/// Query parameters of a resource request, decoded, in order; a key's
/// value is its first (Go's Values.Get). Most requests send one or two
/// (a GET its resourceVersion): those are held without an allocation.
pub(crate) struct Params<'q>(smallvec::SmallVec<[(Cow<'q, str>, Cow<'q, str>); 2]>);

impl<'q> Params<'q> {
    fn of(req: &'q Request) -> Self {
        Params(query_params(req.uri().query()))
    }

    /// The first value of `k`, empty or not.
    fn first(&self, k: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_ref())
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.first(k).filter(|v| !v.is_empty())
    }

    /// Every key's first value, owned: what a subresource handler reads.
    fn first_values(&self) -> HashMap<String, String> {
        let mut out = HashMap::new();
        for (k, v) in &self.0 {
            out.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
        out
    }

    fn dry_run(&self) -> Result<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => {
                Err(StatusError::bad_request(format!("Invalid dry run value: {other:?}: supported values: \"All\"")))
            }
        }
    }

    /// The options of a write for the request's client.
    fn write_options(&self, req: &Request) -> Result<WriteOptions> {
        Ok(WriteOptions {
            dry_run: self.dry_run()?,
            field_validation: FieldValidation::parse(self.get("fieldValidation"))?,
            field_manager: None,
            user: requester(req),
            notes: crate::context::notes_of(req),
        })
    }

    /// The options of a client's create, update or patch: its writes are
    /// recorded in managedFields under `fieldManager` or its User-Agent.
    fn tracked_write_options(&self, req: &Request, options_kind: &str) -> Result<WriteOptions> {
        let mut opts = self.write_options(req)?;
        let causes = crate::fieldmanager::validate_field_manager(self.get("fieldManager").unwrap_or(""));
        if !causes.is_empty() {
            return Err(StatusError::invalid("meta.k8s.io", options_kind, "", causes));
        }
        let ua = req.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        opts.field_manager = Some(crate::fieldmanager::manager_name(self.get("fieldManager"), ua));
        Ok(opts)
    }

    /// PatchOptions.force, which only an apply may state.
    fn force(&self) -> Result<Option<bool>> {
        match self.first("force") {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") | Some("") => Ok(Some(false)),
            Some(other) => Err(StatusError::bad_request(format!("invalid force {other:?}: must be a boolean"))),
        }
    }

    /// Selectors, limit and continue, and for a list (not a watch, which has
    /// its own resourceVersion rules) the freshness it asks for.
    fn list_options(&self) -> Result<ListOptions> {
        let mut opts = self.selector_options()?;
        match read_at(self.get("resourceVersion"), self.get("resourceVersionMatch"), opts.continue_token.is_some())? {
            ReadAt::Fresh(f) => opts.freshness = f,
            ReadAt::Exact(rev) => opts.exact_revision = Some(rev),
        }
        Ok(opts)
    }

    fn selector_options(&self) -> Result<ListOptions> {
        let limit = match self.get("limit") {
            Some(l) => {
                l.parse::<i64>().map_err(|_| StatusError::bad_request(format!("invalid limit {l:?}")))?.max(0) as usize
            }
            None => 0,
        };
        let continue_token = self.get("continue").map(str::to_string);
        Ok(ListOptions {
            label_selector: LabelSelector::parse(self.get("labelSelector").unwrap_or(""))?,
            field_selector: FieldSelector::parse(self.get("fieldSelector").unwrap_or(""))?,
            limit,
            continue_token,
            ..ListOptions::default()
        })
    }
}

/// Decodes a request body (JSON, YAML or protobuf) into a JSON value.
pub fn decode_body(req: &Request) -> Result<Value> {
    let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let body: &Bytes = req.body();
    match negotiation::body_format(ct) {
        Some(BodyFormat::Json) => {
            let json_error =
                |e: String| StatusError::bad_request(format!("error decoding request body: json parse error: {e}"));
            crate::depth::check_json(body).map_err(json_error)?;
            serde_json::from_slice(body).map_err(|e| json_error(e.to_string()))
        }
        Some(BodyFormat::Yaml) => {
            crate::depth::check_yaml(body)
                .map_err(|e| StatusError::bad_request(format!("error decoding request body: yaml parse error: {e}")))?;
            let v: Value = serde_yaml::from_slice(body)
                .map_err(|e| StatusError::bad_request(format!("error decoding request body: yaml parse error: {e}")))?;
            Ok(v)
        }
        Some(BodyFormat::Protobuf) => crate::protobuf::decode(body),
        None => Err(StatusError::unsupported_media_type(ct.unwrap_or(""))),
    }
}

/// The routes upstream's APIInstaller registers at the path a request names,
/// as (HTTP method, verb); none means no route has this path (404), and a
/// method missing among them is 405. A namespaced resource has list and watch
/// across all namespaces but nothing else there: its writes, and deletecollection
/// above all, exist only under a namespace.
fn routes<'r>(r: &'r ResourceInfo, info: &RequestInfo) -> Routes<'r> {
    let parts = info.parts_len;
    let has_path = |s: &Subresource| matches!(s, Subresource::Handler(h) if h.takes_path());
    let path_allowed = parts > 3 && r.subresources.iter().any(|s| s.name() == info.subresource && has_path(s));
    let none = Routes { candidates: &[], verbs: Cow::Borrowed(&[]) };
    if parts == 0 || (parts > 3 && !path_allowed) || (info.namespace_in_path && !r.namespaced) {
        return none;
    }
    let all_namespaces = r.namespaced && !info.namespace_in_path;
    let candidates: &'static [(&str, &str)] = match (parts, info.watch_prefix) {
        // Upstream's WATCHLIST needs both verbs.
        (1, true) if r.verbs.contains(&"list") => &[("GET", "watch")],
        (1, true) => return none,
        (1, false) if all_namespaces => &[("GET", "list")],
        (1, false) => &[("GET", "list"), ("POST", "create"), ("DELETE", "deletecollection")],
        _ if all_namespaces => return none,
        (2, true) => &[("GET", "watch")],
        (2, false) => &[("GET", "get"), ("PUT", "update"), ("PATCH", "patch"), ("DELETE", "delete")],
        (_, true) => return none,
        _ => {
            return match r.subresources.iter().find(|s| s.name() == info.subresource) {
                Some(s) => Routes {
                    candidates: &[
                        ("GET", "get"),
                        ("POST", "create"),
                        ("PUT", "update"),
                        ("PATCH", "patch"),
                        ("DELETE", "delete"),
                    ],
                    verbs: Cow::Owned(discovery::subresource_verbs(r, s)),
                },
                None => none,
            }
        }
    };
    Routes { candidates, verbs: Cow::Borrowed(r.verbs) }
}

/// The (HTTP method, verb) pairs a path could have, and the verbs the
/// resource (or subresource) serves: a route is a candidate whose verb is
/// served. Looked through lazily: a request asks only whether its own
/// method is served, which is usually the first candidate.
struct Routes<'r> {
    candidates: &'static [(&'static str, &'static str)],
    verbs: Cow<'r, [&'static str]>,
}

impl Routes<'_> {
    fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
        self.candidates.iter().filter(|(_, v)| self.verbs.contains(v)).copied()
    }

    /// A 404 when nothing is served at the path, a 405 when `method` is not.
    fn admit(&self, method: &http::Method) -> Result<()> {
        let mut served = self.iter().peekable();
        if served.peek().is_none() {
            return Err(StatusError::no_route());
        }
        match served.any(|(m, _)| m == method.as_str()) {
            true => Ok(()),
            false => Err(StatusError::method_not_allowed()),
        }
    }
}

async fn serve_resource(store: &Arc<Store>, req: &Request, info: &RequestInfo) -> Result<Response> {
    let params = Params::of(req);
    routes(&store.info, info).admit(req.method())?;
    // A list route answers `?watch=` too, or says the resource cannot be watched.
    if info.verb == "watch" && !store.info.verbs.contains(&"watch") {
        return Err(StatusError::method_not_supported(&store.info.group, &store.info.plural, "watch"));
    }
    let ns = if store.info.namespaced { info.namespace.as_str() } else { "" };
    let sub = store.info.subresources.iter().find(|s| s.name() == info.subresource).cloned();
    if let Some(Subresource::Handler(handler)) = &sub {
        return Box::pin(serve_handler(store, handler.as_ref(), req, info, &params, ns)).await;
    }
    let responder = Responder { store: store.clone(), req };
    // This future is allocated and moved for every request, so it holds
    // the reads and creates inline and boxes the larger, rarer verbs'.
    match info.verb.as_str() {
        "get" => {
            let freshness = read_freshness(params.get("resourceVersion"), None, false)?;
            let obj = store.get_object(ns, &info.name, freshness).await?;
            match sub {
                Some(Subresource::Scale(_)) => Ok(respond_value(req, 200, &store.to_scale(&obj.value())?)),
                _ => Ok(responder.cached(200, &obj)),
            }
        }
        "list" => {
            let opts = params.list_options()?;
            let list = store.list_objects(ns, &opts).await?;
            Ok(responder.objects(200, list))
        }
        "watch" => Box::pin(watch::serve(store, req, info, &params)).await,
        "create" => {
            let opts = params.tracked_write_options(req, "CreateOptions")?;
            let obj = decode_body(req)?;
            let r = store.create(ns, obj, &opts).await?;
            Ok(responder.written(201, r))
        }
        "update" => {
            let opts = params.tracked_write_options(req, "UpdateOptions")?;
            let obj = decode_body(req)?;
            if let Some(Subresource::Scale(_)) = sub {
                let scale = Box::pin(store.update_scale(ns, &info.name, &opts, |_| Ok(obj.clone()))).await?;
                return Ok(respond_value(req, 200, &scale));
            }
            let r = Box::pin(store.update(ns, &info.name, obj, sub.as_ref(), &opts)).await?;
            Ok(responder.written(if r.created { 201 } else { 200 }, r))
        }
        "patch" => {
            let opts = params.tracked_write_options(req, "PatchOptions")?;
            let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchKind::from_content_type(ct, store)?;
            let force = params.force()?;
            if let PatchKind::Apply = kind {
                return Box::pin(apply(store, req, info, &params, ns, sub.as_ref(), force.unwrap_or(false), &opts))
                    .await;
            }
            if force.is_some() {
                return Err(StatusError::invalid(
                    "meta.k8s.io",
                    "PatchOptions",
                    "",
                    vec![Cause::forbidden("force", "may not be specified for non-apply patch")],
                ));
            }
            let patch = req.body().clone();
            if let Some(Subresource::Scale(_)) = sub {
                let scale = Box::pin(store.update_scale(ns, &info.name, &opts, |current| {
                    kind.apply(&current, &patch, Some("io.k8s.api.autoscaling.v1.Scale"))
                }))
                .await?;
                return Ok(respond_value(req, 200, &scale));
            }
            let smp_type = store.schema.definition;
            let r = Box::pin(store.update_with(ns, &info.name, sub.as_ref(), &opts, |current| match current {
                Some(c) => kind.apply(c, &patch, smp_type),
                None => Err(StatusError::not_found(&store.info.group, &store.info.plural, &info.name)),
            }))
            .await?;
            Ok(responder.written(200, r))
        }
        "delete" => {
            let opts = delete_options(req, &params)?;
            let (obj, deleted) = match Box::pin(store.delete(ns, &info.name, &opts)).await? {
                DeleteResult::Deleted(obj) => (obj, true),
                DeleteResult::Pending(obj) => (obj, false),
            };
            // Upstream answers 202 only to an old-style request for cascading.
            let code = if !deleted && opts.orphan_dependents == Some(false) { 202 } else { 200 };
            if !deleted || store.return_deleted_object {
                return Ok(responder.object(code, obj));
            }
            let mut details = serde_json::Map::new();
            details.insert("name".into(), json!(info.name));
            if !store.info.group.is_empty() {
                details.insert("group".into(), json!(store.info.group));
            }
            // Upstream's Status names the resource in `kind`.
            details.insert("kind".into(), json!(store.info.plural));
            details.insert("uid".into(), json!(crate::meta::uid(&obj)));
            Ok(respond_value(req, code, &success_status(Some(Value::Object(details)))))
        }
        "deletecollection" => {
            let opts = delete_options(req, &params)?;
            let list_opts = params.list_options()?;
            let list = Box::pin(store.delete_collection(ns, &list_opts, &opts)).await?;
            Ok(responder.list(200, &list))
        }
        other => Err(StatusError::method_not_supported(&store.info.group, &store.info.plural, other)),
    }
}

/// A create-only resource: POST of a whole object, checked as a Store's
/// create checks it, answered with what the [`Creater`] made of it.
async fn serve_create_only(resource: &CreateOnly, req: &Request, info: &RequestInfo) -> Result<Response> {
    let i = &resource.info;
    let ns = info.namespace.as_str();
    let addressed_ns = info.subresource == "namespaces";
    if (i.namespaced && ns.is_empty()) || (!i.namespaced && addressed_ns) {
        return Err(StatusError::no_route());
    }
    if info.verb != "create" || !info.name.is_empty() || !info.subresource.is_empty() {
        return Err(StatusError::method_not_supported(&i.group, &i.plural, &info.verb));
    }
    let params = Params::of(req);
    let opts = params.write_options(req)?;
    let obj = decode_body(req)?;
    if !obj.is_object() {
        return Err(StatusError::bad_request("the body of the request must be a JSON object"));
    }
    crate::registry::store::check_type(i, &obj)?;
    let mut object = crate::registry::store::decode_checked(&resource.schema, obj, &opts)?;
    if let Some(m) = object.as_object_mut() {
        m.insert("apiVersion".into(), json!(i.api_version()));
        m.insert("kind".into(), json!(i.kind));
    }
    // As upstream's create handler: the request's namespace is the object's.
    let body_ns = crate::meta::namespace(&object).to_string();
    if i.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if i.namespaced {
        crate::meta::set_meta(&mut object, "namespace", json!(ns));
    } else {
        crate::meta::remove_meta(&mut object, "namespace");
    }
    let call = CreateCall {
        namespace: ns,
        object,
        user: req.extensions().get::<Arc<crate::authn::UserInfo>>().map(|u| &**u),
        tokens: req.extensions().get::<Arc<crate::authn::TokenAuthenticator>>().map(|t| &**t),
        dry_run: opts.dry_run,
    };
    let answer = resource.creater.create(call).await?;
    Ok(respond(req, 201, &answer, &output::negotiated_or_json(req)))
}

/// A read-only resource: get and list on the routes upstream's installer
/// gives a Getter and Lister, lists filtered by label and name selectors.
async fn serve_read_only(resource: &ReadOnly, req: &Request, info: &RequestInfo) -> Result<Response> {
    let i = &resource.info;
    routes(i, info).admit(req.method())?;
    let ns = if i.namespaced { info.namespace.as_str() } else { "" };
    match info.verb.as_str() {
        "get" => match resource.reader.get(ns, &info.name).await? {
            Some(obj) => Ok(output::read_only(req, resource, &obj, false)),
            None => Err(StatusError::not_found(&i.group, &i.plural, &info.name)),
        },
        "list" => {
            let opts = Params::of(req).selector_options()?;
            let items: Vec<Value> = (resource.reader.list(ns).await?.into_iter())
                .filter(|o| {
                    let mut fields = vec![("metadata.name", crate::meta::name(o).to_string())];
                    if i.namespaced {
                        fields.push(("metadata.namespace", crate::meta::namespace(o).to_string()));
                    }
                    opts.label_selector.matches(&crate::meta::labels(o)) && opts.field_selector.matches(&fields)
                })
                .collect();
            let list = json!({"kind": i.list_kind(), "apiVersion": i.api_version(), "metadata": {}, "items": items});
            Ok(output::read_only(req, resource, &list, true))
        }
        other => Err(StatusError::method_not_supported(&i.group, &i.plural, other)),
    }
}

/// A subresource with its own handler: the verb must be one it lists; the
/// body, if any, is decoded here and the reply written in the negotiated form.
async fn serve_handler(
    store: &Arc<Store>,
    handler: &dyn SubresourceHandler,
    req: &Request,
    info: &RequestInfo,
    params: &Params<'_>,
    ns: &str,
) -> Result<Response> {
    if !handler.discovery().verbs.contains(&info.verb.as_str()) {
        return Err(StatusError::method_not_supported(
            &store.info.group,
            &format!("{}/{}", store.info.plural, handler.name()),
            &info.verb,
        ));
    }
    let (body, options) = if handler.connect() {
        if let Some(spec) = handler.connect_options() {
            // Upstream's ConnectResource: no dry run, then admission with
            // the options as the object, before the handler connects.
            if req.uri().query().is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some("dryRun"))) {
                return Err(StatusError::bad_request("dryRun is not supported"));
            }
            let kind = handler.discovery().kind;
            let mut object = connect_options(&store.info, kind, &spec, req, info)?;
            let (user, notes) = (requester(req), crate::context::notes_of(req));
            let call = SubresourceAdmission {
                operation: Operation::Connect,
                namespace: ns,
                name: &info.name,
                subresource: handler.name(),
                kind: handler.discovery().admission_kind(&store.info),
                user: user.as_deref(),
                dry_run: false,
                notes: &notes,
            };
            store.admit_subresource(call, &mut object).await?;
        }
        (None, WriteOptions::default())
    } else {
        let mut body = if req.body().is_empty() { None } else { Some(decode_body(req)?) };
        let options = match info.verb.as_str() {
            "create" | "update" | "patch" => params.tracked_write_options(req, "CreateOptions")?,
            _ => params.write_options(req)?,
        };
        if let (Some(object), "create") = (&mut body, info.verb.as_str()) {
            // Upstream's createHandler: a subresource's create (a Binding,
            // an Eviction, a TokenRequest) is admitted as its own kind.
            let call = SubresourceAdmission {
                operation: Operation::Create,
                namespace: ns,
                name: &info.name,
                subresource: handler.name(),
                kind: handler.discovery().admission_kind(&store.info),
                user: options.user.as_deref(),
                dry_run: options.dry_run,
                notes: &options.notes,
            };
            store.admit_subresource(call, object).await?;
        }
        (body, options)
    };
    let params = params.first_values();
    let call = SubresourceCall { verb: &info.verb, namespace: ns, name: &info.name, body, params: &params, options };
    let reply = handler.serve(store, call).await?;
    if reply.code == 204 {
        return Ok(http::Response::builder()
            .status(204)
            .body(crate::body::empty())
            .unwrap_or_else(|_| http::Response::new(crate::body::empty())));
    }
    let object = crate::wire::typed(reply.object);
    Ok(respond(req, reply.code, &object, &output::negotiated_or_json(req)))
}

/// Upstream's getRequestOptions: a connect options object of `kind` from
/// the request's query (every value of a repeated parameter) and, for the
/// proxies, the path after the subresource.
fn connect_options(
    info: &ResourceInfo,
    kind: &str,
    spec: &ConnectOptions,
    req: &Request,
    request: &RequestInfo,
) -> Result<Value> {
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in query_pairs(req.uri().query()) {
        values.entry(query_unescape(k)).or_default().push(query_unescape(v));
    }
    let mut object = serde_json::Map::new();
    object.insert("kind".into(), json!(kind));
    object.insert("apiVersion".into(), json!(info.api_version()));
    for (field, ty) in spec.fields {
        let Some(vs) = values.get(*field).filter(|v| !v.is_empty()) else { continue };
        let first = vs[0].as_str();
        // The versioned types leave false and empty values out.
        let value = match ty {
            OptionField::Bool
                if first == "0" || first.eq_ignore_ascii_case("f") || first.eq_ignore_ascii_case("false") =>
            {
                continue
            }
            OptionField::Bool => json!(true),
            OptionField::String if first.is_empty() => continue,
            OptionField::String => json!(first),
            OptionField::Strings => json!(vs),
            OptionField::Int32s => {
                let ints = vs.iter().map(|v| {
                    v.parse::<i32>().map_err(|_| {
                        StatusError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
                    })
                });
                json!(ints.collect::<Result<Vec<i32>>>()?)
            }
        };
        object.insert(field.to_string(), value);
    }
    if let Some(key) = spec.path {
        let mut path = request.rest.join("/");
        if !path.is_empty() && !path.starts_with('/') {
            path.insert(0, '/');
        }
        if request.path.ends_with('/') && !path.ends_with('/') {
            path.push('/');
        }
        if !path.is_empty() {
            object.insert(key.into(), json!(path));
        }
    }
    Ok(Value::Object(object))
}

/// The authenticated client of a request, for admission.
fn requester(req: &Request) -> Option<Arc<crate::authn::UserInfo>> {
    req.extensions().get::<Arc<crate::authn::UserInfo>>().cloned()
}

/// DeleteOptions from the body (if any) and the query, query winning as upstream.
fn delete_options(req: &Request, params: &Params) -> Result<DeleteOptions> {
    let body = if req.body().is_empty() { Value::Null } else { decode_body(req)? };
    let mut opts = DeleteOptions::from_body(&body)?;
    opts.user = requester(req);
    opts.notes = crate::context::notes_of(req);
    if params.dry_run()? {
        opts.dry_run = true;
    }
    match params.get("orphanDependents") {
        Some("true") => opts.orphan_dependents = Some(true),
        Some("false") => opts.orphan_dependents = Some(false),
        Some(o) => return Err(StatusError::bad_request(format!("invalid orphanDependents {o:?}: must be a boolean"))),
        None => {}
    }
    // Checked as upstream checks them, though every deletion here is immediate
    // and orphaning is not modelled: a bad value must not delete anything.
    match params.get("gracePeriodSeconds") {
        Some(g) if g.parse::<i64>().is_err() => {
            return Err(StatusError::bad_request(format!("invalid gracePeriodSeconds {g:?}: must be an integer")))
        }
        _ => {}
    }
    if body.get("gracePeriodSeconds").is_some_and(|g| !g.is_null() && !g.is_i64()) {
        return Err(StatusError::bad_request("gracePeriodSeconds in the body must be an integer"));
    }
    let policy = params
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| body.get("propagationPolicy").and_then(Value::as_str).map(str::to_string));
    if let Some(p) = policy {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(StatusError::invalid(
                "meta.k8s.io",
                "DeleteOptions",
                "",
                vec![Cause::not_supported("propagationPolicy", &json!(p), &["Background", "Foreground", "Orphan"])],
            ));
        }
    }
    Ok(opts)
}

/// A server-side apply (`application/apply-patch+yaml`).
#[allow(clippy::too_many_arguments)]
async fn apply(
    store: &Arc<Store>,
    req: &Request,
    info: &RequestInfo,
    params: &Params<'_>,
    ns: &str,
    sub: Option<&Subresource>,
    force: bool,
    opts: &crate::registry::store::WriteOptions,
) -> Result<Response> {
    let Some(manager) = params.get("fieldManager") else {
        return Err(StatusError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::required("fieldManager", "is required for apply patch")],
        ));
    };
    if let Some(Subresource::Scale(_)) = sub {
        return Err(StatusError::unsupported_media_type("application/apply-patch+yaml"));
    }
    let decoding = |e: String| StatusError::bad_request(format!("error decoding YAML: {e}"));
    crate::depth::check_yaml(req.body()).map_err(decoding)?;
    let config: Value = serde_yaml::from_slice(req.body()).map_err(|e| decoding(e.to_string()))?;
    let r = store.apply(ns, &info.name, sub, config, manager, force, opts).await?;
    let responder = Responder { store: store.clone(), req };
    Ok(responder.written(if r.created { 201 } else { 200 }, r))
}

/// The patch types upstream accepts.
enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    fn from_content_type(ct: &str, store: &Store) -> Result<Self> {
        let essence = ct.split(';').next().unwrap_or("").trim();
        match essence {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" if store.schema.definition.is_some() => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" => Ok(PatchKind::Apply),
            _ => Err(StatusError::unsupported_media_type(ct)),
        }
    }

    fn apply(&self, current: &Value, patch: &[u8], smp_type: Option<&str>) -> Result<Value> {
        let mut patched = match self {
            PatchKind::Json => crate::patch::json_patch(current, patch)?,
            PatchKind::Merge => crate::patch::merge_patch(current, patch)?,
            PatchKind::Strategic => crate::patch::strategic_merge_patch(current, patch, smp_type.unwrap_or_default())?,
            // Served by `apply` before any patch is applied.
            PatchKind::Apply => return Err(StatusError::unsupported_media_type("application/apply-patch+yaml")),
        };
        // A patch that drops the resourceVersion is unconditional; one that sets
        // it is checked against the stored object by the Store.
        if crate::meta::resource_version(&patched).is_empty() {
            crate::meta::remove_meta(&mut patched, "resourceVersion");
        } else if crate::meta::resource_version(&patched) == crate::meta::resource_version(current) {
            crate::meta::remove_meta(&mut patched, "resourceVersion");
            // Keep it only when the client stated it: compare with the patch.
            if patch_states_resource_version(patch) {
                crate::meta::set_meta(&mut patched, "resourceVersion", json!(crate::meta::resource_version(current)));
            }
        }
        Ok(patched)
    }
}

fn patch_states_resource_version(patch: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(patch) {
        Ok(Value::Object(m)) => m.get("metadata").and_then(|m| m.get("resourceVersion")).is_some(),
        Ok(Value::Array(ops)) => ops.iter().any(|op| {
            op.get("path").and_then(Value::as_str) == Some("/metadata/resourceVersion")
                && op.get("op").and_then(Value::as_str) != Some("test")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_resources_are_found_by_their_three_names_only() {
        let long = "g".repeat(300);
        let map = RwLock::new(ByKey::from_iter([
            (store_key("", "v1", "configmaps"), 1),
            (store_key("apps", "v1", "deployments"), 2),
            (store_key(&long, "v1", "things"), 3),
        ]));
        assert_eq!(find(&map, "", "v1", "configmaps"), Some(1));
        assert_eq!(find(&map, "apps", "v1", "deployments"), Some(2));
        assert_eq!(find(&map, &long, "v1", "things"), Some(3));
        // An escaped slash in a requested name does not shift the parts.
        assert_eq!(find(&map, "apps/v1", "deployments", ""), None);
        assert_eq!(find(&map, "", "", "v1/configmaps"), None);
        assert_eq!(find(&map, "apps", "v1", "daemonsets"), None);
    }

    fn resource(plural: &str, namespaced: bool, subresources: Vec<Subresource>) -> ResourceInfo {
        ResourceInfo {
            group: String::new(),
            version: "v1".into(),
            kind: "K".into(),
            plural: plural.into(),
            singular: "k".into(),
            namespaced,
            short_names: Vec::new(),
            categories: Vec::new(),
            key_root: format!("/registry/{plural}"),
            subresources,
            verbs: discovery::VERBS,
            storage_version_hash: String::new(),
        }
    }

    /// The methods served at `path`, as "METHOD verb" strings.
    fn served(r: &ResourceInfo, path: &str) -> Vec<String> {
        let info = crate::request_info::parse(&http::Method::GET, path, None);
        routes(r, &info).iter().map(|(m, v)| format!("{m} {v}")).collect()
    }

    #[test]
    fn namespaced_resource_routes() {
        let cm = resource("configmaps", true, Vec::new());
        // Across all namespaces: list and watch only (no deletecollection, no create).
        assert_eq!(served(&cm, "/api/v1/configmaps"), ["GET list"]);
        assert_eq!(served(&cm, "/api/v1/watch/configmaps"), ["GET watch"]);
        assert_eq!(
            served(&cm, "/api/v1/namespaces/ns/configmaps"),
            ["GET list", "POST create", "DELETE deletecollection"]
        );
        assert_eq!(served(&cm, "/api/v1/watch/namespaces/ns/configmaps"), ["GET watch"]);
        assert_eq!(
            served(&cm, "/api/v1/namespaces/ns/configmaps/x"),
            ["GET get", "PUT update", "PATCH patch", "DELETE delete"]
        );
        assert_eq!(served(&cm, "/api/v1/watch/namespaces/ns/configmaps/x"), ["GET watch"]);
        // No route: an object outside a namespace, an unknown subresource, extra segments.
        for path in [
            "/api/v1/configmaps/x",
            "/api/v1/watch/configmaps/x",
            "/api/v1/namespaces/ns/configmaps/x/status",
            "/api/v1/namespaces/ns/configmaps/x/y/z",
        ] {
            assert!(served(&cm, path).is_empty(), "{path}");
        }
        let pods = resource("pods", true, vec![Subresource::Status]);
        assert_eq!(served(&pods, "/api/v1/namespaces/ns/pods/x/status"), ["GET get", "PUT update", "PATCH patch"]);
        assert!(served(&pods, "/api/v1/watch/namespaces/ns/pods/x/status").is_empty());
        assert!(served(&pods, "/api/v1/pods/x/status").is_empty());
    }

    #[test]
    fn cluster_scoped_resource_routes() {
        let mut ns = resource("namespaces", false, vec![Subresource::Status, Subresource::Finalize]);
        ns.verbs = discovery::VERBS_NO_DELETECOLLECTION;
        assert_eq!(served(&ns, "/api/v1/namespaces"), ["GET list", "POST create"]);
        assert_eq!(served(&ns, "/api/v1/namespaces/a"), ["GET get", "PUT update", "PATCH patch", "DELETE delete"]);
        assert_eq!(served(&ns, "/api/v1/namespaces/a/finalize"), ["PUT update"]);
        assert_eq!(served(&ns, "/api/v1/watch/namespaces/a"), ["GET watch"]);
        // A namespace's path never holds a cluster-scoped resource, itself included.
        assert!(served(&ns, "/api/v1/namespaces/a/namespaces").is_empty());
        assert!(served(&ns, "/api/v1/namespaces/a/namespaces/a").is_empty());
        let cr = ResourceInfo { group: "rbac.authorization.k8s.io".into(), ..resource("clusterroles", false, vec![]) };
        assert!(served(&cr, "/apis/rbac.authorization.k8s.io/v1/namespaces/a/clusterroles").is_empty());
        assert_eq!(
            served(&cr, "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
            ["GET list", "POST create", "DELETE deletecollection"]
        );
    }
}
