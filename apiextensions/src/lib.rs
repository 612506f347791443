//! The apiextensions server: the last server in the delegation chain. It
//! serves the CustomResourceDefinition resource and, for every Established
//! CRD, one Store per served version in a [`ResourceServer`], built from the
//! CRD's schema.
//!
//! - `crd`: the CRD resource (Strategy, spec validation) and a parsed view.
//! - `cr`: the Strategy of a served version (pruning, defaulting, schema and
//!   CEL validation, printer columns, selectable fields).
//! - `schema`, `cel`, `jsonpath`: the machinery those use.
//! - `conversion`: version conversion at each version's Store codec seam.
//! - [`ApiextensionsServer::run_controller`]: names acceptance, Established,
//!   serving as CRDs come and go, and the cleanup finalizer.

pub mod cel;
pub mod conversion;
pub mod cr;
pub mod crd;
pub mod jsonpath;
pub mod schema;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Map, Value};

use generic_server::backend::Resolver;
use generic_server::discovery::{ApiGroup, OpenApiPart};
use generic_server::endpoints::ResourceServer;
use generic_server::handler::{DynHandler, Handler, Request, Response};
use generic_server::meta;
use generic_server::openapi::{builtin_schemas, gv_path, REF_PREFIX_V3};
use generic_server::registry::store::{DeleteOptions, WatchStart};
use generic_server::registry::{
    AdmissionAttributes, AdmissionChain, ListOptions, Operation, Registration, Store, StoreRegistry, Subresource,
    Validating, WriteOptions,
};
use generic_server::status::StatusError;
use generic_server::storage::cacher::Cacher;
use generic_server::storage::{ListOptions as StorageList, Storage};

use crate::conversion::{Converter, VersionConversion};
use crate::crd::{Crd, Names};

/// What is being served for one CRD.
struct Served {
    /// The CRD spec and accepted names the Stores were built from.
    fingerprint: Value,
    keys: Vec<(String, String, String)>,
    key_root: String,
    /// Any one of the Stores (all share the key space), for cleanup.
    store: Arc<Store>,
    openapi: Vec<OpenApiPart>,
    /// Set once the CRD is being deleted: its Stores refuse creates from then on.
    terminating: Arc<AtomicBool>,
}

/// Upstream's forbidCreateAdmission: while a CRD's cleanup finalizer runs, new
/// custom resources would outlive it, so creates are refused (reads, updates
/// and deletes go on).
struct ForbidCreateWhileTerminating(Arc<AtomicBool>);

#[async_trait::async_trait]
impl Validating for ForbidCreateWhileTerminating {
    async fn validate(&self, attrs: &AdmissionAttributes<'_>) -> Result<(), StatusError> {
        if attrs.operation == Operation::Create && self.0.load(Ordering::Acquire) {
            return Err(attrs.forbidden("create not allowed while custom resource definition is terminating"));
        }
        Ok(())
    }
}

pub struct ApiextensionsServer {
    resources: Arc<ResourceServer>,
    crd_store: Arc<Store>,
    storage: Arc<dyn Storage>,
    admission: Arc<AdmissionChain>,
    registry: Arc<StoreRegistry>,
    served: RwLock<HashMap<String, Served>>,
    /// One watch cache per key root, kept for the process's life (its task
    /// runs forever), reused when a CRD is recreated.
    cachers: Mutex<HashMap<String, Arc<Cacher>>>,
    /// How conversion webhooks' Services are found ([`bind_resolver`](Self::bind_resolver)).
    resolver: Arc<OnceLock<Resolver>>,
}

/// Builds the apiextensions server in front of `delegate` and starts its
/// controller. Must run inside a tokio runtime.
pub async fn new_server(
    storage: Arc<dyn Storage>,
    admission: Arc<AdmissionChain>,
    registry: Arc<StoreRegistry>,
    delegate: DynHandler,
) -> Result<Arc<ApiextensionsServer>, String> {
    let registration = crd::registration();
    let cache = Cacher::new(storage.clone(), &format!("{}/", registration.info.key_root));
    let crd_store = Arc::new(Store::new(registration, storage.clone(), admission.clone()).with_cache(cache));
    let resources = Arc::new(ResourceServer::new(delegate));
    resources.install(crd_store.clone());
    let server = Arc::new(ApiextensionsServer {
        resources,
        crd_store,
        storage,
        admission,
        registry,
        served: RwLock::default(),
        cachers: Mutex::default(),
        resolver: Arc::default(),
    });
    // Serve what is already established before answering anything.
    server.reconcile_all().await;
    let s = server.clone();
    tokio::spawn(async move { s.run_controller().await });
    Ok(server)
}

fn status_of(obj: &Value) -> Value {
    obj.get("status").cloned().unwrap_or(Value::Null)
}

impl ApiextensionsServer {
    /// Where conversion webhooks given as a Service are called: resolved as
    /// the aggregator resolves APIService backends. Until bound (the built-in
    /// Stores come after this server in the chain), such a call fails.
    pub fn bind_resolver(&self, resolver: Resolver) {
        let _ = self.resolver.set(resolver);
    }

    pub fn crd_store(&self) -> &Arc<Store> {
        &self.crd_store
    }

    /// Changes whenever a CRD version starts or stops being served.
    pub fn served_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.resources.changes()
    }

    fn cacher(&self, key_root: &str) -> Arc<Cacher> {
        let mut c = self.cachers.lock().unwrap_or_else(|e| e.into_inner());
        c.entry(key_root.to_string())
            .or_insert_with(|| Cacher::new(self.storage.clone(), &format!("{key_root}/")))
            .clone()
    }

    /// Watches CRDs and reconciles on every change, and every second while
    /// some CRD is being deleted.
    pub async fn run_controller(self: Arc<Self>) {
        loop {
            let stream = self
                .crd_store
                .watch("", &ListOptions::default(), WatchStart::WithInitialEvents { bookmark: false })
                .await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("watching CRDs: {}", e.message);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            loop {
                let busy = self.reconcile_all().await;
                let wait = if busy { Duration::from_millis(500) } else { Duration::from_secs(30) };
                match tokio::time::timeout(wait, stream.next()).await {
                    Ok(Some(_)) => {
                        // Take whatever else arrived at once.
                        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(20), stream.next()).await {}
                    }
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
        }
    }

    /// One pass over every CRD; true while some deletion is still pending.
    async fn reconcile_all(&self) -> bool {
        let list = match self.crd_store.list("", &ListOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("listing CRDs: {}", e.message);
                return true;
            }
        };
        let mut items: Vec<Value> = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
        items.sort_by(|a, b| {
            (meta::meta_str(a, "creationTimestamp"), meta::name(a))
                .cmp(&(meta::meta_str(b, "creationTimestamp"), meta::name(b)))
        });
        let mut busy = false;
        let names: Vec<String> = items.iter().map(|i| meta::name(i).to_string()).collect();
        for i in 0..items.len() {
            let obj = items[i].clone();
            if !meta::meta_str(&obj, "deletionTimestamp").is_empty() {
                self.mark_terminating(&obj);
                busy |= !self.finalize(&obj).await;
                continue;
            }
            if let Some(updated) = self.reconcile(&obj, &items).await {
                items[i] = updated;
            }
        }
        // CRDs gone from storage stop being served.
        let gone: Vec<String> = {
            let served = self.served.read().unwrap_or_else(|e| e.into_inner());
            served.keys().filter(|k| !names.contains(k)).cloned().collect()
        };
        for name in gone {
            self.stop_serving(&name);
        }
        busy
    }

    /// Names acceptance, serving and the status conditions of one live CRD;
    /// returns the CRD as written when its status changed.
    async fn reconcile(&self, obj: &Value, all: &[Value]) -> Option<Value> {
        let parsed = Crd::parse(obj);
        let wanted = parsed.names.clone();
        let accepted_before =
            obj.pointer("/status/acceptedNames").map(Names::from_value).filter(|n| !n.plural.is_empty());
        let conflict = name_conflict(&parsed, &wanted, obj, all);
        let accepted = match (&conflict, &accepted_before) {
            (None, _) => Some(wanted.clone()),
            (Some(_), Some(before)) => Some(before.clone()),
            (Some(_), None) => None,
        };
        let mut new = obj.clone();
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        match &conflict {
            None => crd::set_condition(&mut new, "NamesAccepted", "True", "NoConflicts", "no conflicts found"),
            Some((reason, msg)) => crd::set_condition(&mut new, "NamesAccepted", "False", reason, msg),
        }
        // A live CRD of a name that was terminating is a new one (deletion
        // cannot be undone), recreated before the controller saw the old go.
        if let Some(s) = self.served.read().unwrap_or_else(|e| e.into_inner()).get(meta::name(obj)) {
            s.terminating.store(false, Ordering::Release);
        }
        let mut serving_error = None;
        if let Some(names) = &accepted {
            new["status"]["acceptedNames"] = names.to_value();
            if let Err(e) = self.serve(&parsed, names) {
                serving_error = Some(e);
            }
        }
        match (&accepted, &serving_error) {
            (Some(_), None) => crd::set_condition(
                &mut new,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            ),
            (Some(_), Some(e)) => crd::set_condition(&mut new, "Established", "False", "Installing", e),
            (None, _) => {
                crd::set_condition(&mut new, "Established", "False", "NotAccepted", "not all names are accepted")
            }
        }
        if let Some(sv) = parsed.storage_version() {
            let mut stored: Vec<Value> =
                new["status"].get("storedVersions").and_then(Value::as_array).cloned().unwrap_or_default();
            if !stored.contains(&json!(sv.name)) {
                stored.push(json!(sv.name));
            }
            new["status"]["storedVersions"] = Value::Array(stored);
        }
        if status_of(&new) == status_of(obj) {
            return None;
        }
        let status = status_of(&new);
        let name = meta::name(obj).to_string();
        let result = self
            .crd_store
            .update_with("", &name, Some(&Subresource::Status), &WriteOptions::default(), |cur| {
                let mut cur = cur
                    .cloned()
                    .ok_or_else(|| StatusError::not_found(crd::GROUP, "customresourcedefinitions", &name))?;
                cur["status"] = status.clone();
                meta::remove_meta(&mut cur, "resourceVersion");
                Ok(cur)
            })
            .await;
        match result {
            Ok(r) => Some(r.object),
            Err(e) => {
                tracing::debug!("updating status of CRD {name}: {}", e.message);
                None
            }
        }
    }

    /// Builds and installs the Stores of a CRD's served versions (unless the
    /// ones installed were built from the same spec and names).
    fn serve(&self, crd: &Crd, names: &Names) -> Result<(), String> {
        let fingerprint = json!({"crd": format!("{crd:?}"), "names": names.to_value()});
        {
            let served = self.served.read().unwrap_or_else(|e| e.into_inner());
            if served.get(&crd.name).is_some_and(|s| s.fingerprint == fingerprint) {
                return Ok(());
            }
        }
        let storage_version = crd.storage_version().ok_or("no storage version")?.name.clone();
        let key_root = format!("/registry/{}/{}", crd.group, names.plural);
        let cache = self.cacher(&key_root);
        let converter = Arc::new(Converter::new(&crd.group, &crd.conversion, self.resolver.clone()));
        let mut stores = Vec::new();
        let mut openapi = Vec::new();
        let terminating = Arc::new(AtomicBool::new(false));
        let forbid_create: Arc<dyn Validating> = Arc::new(ForbidCreateWhileTerminating(terminating.clone()));
        for v in crd.versions.iter().filter(|v| v.served) {
            let strategy = cr::CrStrategy::new(v)?;
            let conversion = VersionConversion {
                converter: converter.clone(),
                version: v.name.clone(),
                storage_version: storage_version.clone(),
                schema: v.schema.clone(),
            };
            let info = crd.info(v, names);
            openapi.push(openapi_part(&info, &v.schema));
            let registration =
                Registration::new(info, strategy.schema(), Arc::new(strategy)).stored_through(Arc::new(conversion));
            let store = Store::new(registration, self.storage.clone(), self.admission.clone())
                .with_cache(cache.clone())
                .with_check(forbid_create.clone());
            stores.push(Arc::new(store));
        }
        let Some(first) = stores.first().cloned() else {
            return Err("no served versions".into());
        };
        self.stop_serving(&crd.name);
        let mut keys = Vec::new();
        for s in &stores {
            keys.push((s.info.group.clone(), s.info.version.clone(), s.info.plural.clone()));
            self.resources.install(s.clone());
        }
        for s in &stores {
            self.registry.register(s.clone());
        }
        let mut served = self.served.write().unwrap_or_else(|e| e.into_inner());
        served.insert(crd.name.clone(), Served { fingerprint, keys, key_root, store: first, openapi, terminating });
        Ok(())
    }

    /// Refuses creates of a deleting CRD's resources. A CRD found deleting at
    /// start is served again first, so its objects stay readable and
    /// deletable while the finalizer runs, as upstream.
    fn mark_terminating(&self, obj: &Value) {
        let name = meta::name(obj);
        let served = self.served.read().unwrap_or_else(|e| e.into_inner()).get(name).map(|s| s.terminating.clone());
        let flag = match served {
            Some(f) => Some(f),
            None => {
                let parsed = Crd::parse(obj);
                let accepted =
                    obj.pointer("/status/acceptedNames").map(Names::from_value).filter(|n| !n.plural.is_empty());
                accepted.and_then(|names| {
                    self.serve(&parsed, &names).ok()?;
                    self.served.read().unwrap_or_else(|e| e.into_inner()).get(name).map(|s| s.terminating.clone())
                })
            }
        };
        if let Some(f) = flag {
            f.store(true, Ordering::Release);
        }
    }

    fn stop_serving(&self, crd_name: &str) {
        let removed = self.served.write().unwrap_or_else(|e| e.into_inner()).remove(crd_name);
        if let Some(s) = removed {
            for (g, v, p) in &s.keys {
                self.resources.uninstall(g, v, p);
            }
            self.registry.unregister(&s.key_root);
        }
    }

    /// The cleanup finalizer: deletes every custom resource, then stops
    /// serving and lets the CRD go. True once the CRD is finished.
    async fn finalize(&self, obj: &Value) -> bool {
        let name = meta::name(obj).to_string();
        if !meta::finalizers(obj).iter().any(|f| f == crd::FINALIZER) {
            return true;
        }
        let parsed = Crd::parse(obj);
        let store = {
            let served = self.served.read().unwrap_or_else(|e| e.into_inner());
            served.get(&name).map(|s| s.store.clone())
        };
        let accepted = obj.pointer("/status/acceptedNames").map(Names::from_value).filter(|n| !n.plural.is_empty());
        let key_root = format!(
            "/registry/{}/{}",
            parsed.group,
            accepted.as_ref().map(|n| n.plural.as_str()).unwrap_or(&parsed.names.plural)
        );
        let mut remaining = 0;
        match &store {
            Some(store) => match store.list("", &ListOptions::default()).await {
                Ok(list) => {
                    for item in list.get("items").and_then(Value::as_array).into_iter().flatten() {
                        if let Err(e) =
                            store.delete(meta::namespace(item), meta::name(item), &DeleteOptions::default()).await
                        {
                            if !e.is_not_found() {
                                tracing::debug!("deleting a {name} object: {}", e.message);
                            }
                        }
                    }
                }
                Err(e) => tracing::debug!("listing {name} objects: {}", e.message),
            },
            None => {
                // Never served: remove whatever is stored directly.
                if let Ok(list) = self.storage.list(&format!("{key_root}/"), StorageList::default()).await {
                    for kv in list.items {
                        let _ = self.storage.delete(&kv.key, Some(kv.mod_revision)).await;
                    }
                }
            }
        }
        match self.storage.count(&format!("{key_root}/")).await {
            Ok(n) => remaining = n,
            Err(_) => remaining += 1,
        }
        if remaining > 0 {
            return false;
        }
        self.stop_serving(&name);
        let result = self
            .crd_store
            .update_with("", &name, None, &WriteOptions::default(), |cur| {
                let mut cur = cur
                    .cloned()
                    .ok_or_else(|| StatusError::not_found(crd::GROUP, "customresourcedefinitions", &name))?;
                let f: Vec<String> = meta::finalizers(&cur).into_iter().filter(|f| f != crd::FINALIZER).collect();
                meta::set_meta(&mut cur, "finalizers", json!(f));
                meta::remove_meta(&mut cur, "resourceVersion");
                Ok(cur)
            })
            .await;
        match result {
            Ok(_) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                tracing::debug!("removing the finalizer of {name}: {}", e.message);
                false
            }
        }
    }
}

/// Another CRD in the same group that already holds one of the names.
fn name_conflict(crd: &Crd, wanted: &Names, obj: &Value, all: &[Value]) -> Option<(String, String)> {
    for other in all {
        if meta::name(other) == meta::name(obj) {
            continue;
        }
        let o = Crd::parse(other);
        if o.group != crd.group {
            continue;
        }
        let Some(theirs) =
            other.pointer("/status/acceptedNames").map(Names::from_value).filter(|n| !n.plural.is_empty())
        else {
            continue;
        };
        let their_resource_names: Vec<&str> = [theirs.plural.as_str(), theirs.singular.as_str()]
            .into_iter()
            .chain(theirs.short_names.iter().map(String::as_str))
            .collect();
        if their_resource_names.contains(&wanted.plural.as_str()) {
            return Some(("PluralConflict".into(), format!("{:?} is already in use", wanted.plural)));
        }
        if their_resource_names.contains(&wanted.singular.as_str()) {
            return Some(("SingularConflict".into(), format!("{:?} is already in use", wanted.singular)));
        }
        for s in &wanted.short_names {
            if their_resource_names.contains(&s.as_str()) {
                return Some(("ShortNamesConflict".into(), format!("{s:?} is already in use")));
            }
        }
        if [theirs.kind.as_str(), theirs.list_kind.as_str()].contains(&wanted.kind.as_str()) {
            return Some(("KindConflict".into(), format!("{:?} is already in use", wanted.kind)));
        }
        if [theirs.kind.as_str(), theirs.list_kind.as_str()].contains(&wanted.list_kind.as_str()) {
            return Some(("ListKindConflict".into(), format!("{:?} is already in use", wanted.list_kind)));
        }
    }
    None
}

/// The OpenAPI v3 part of one served CRD version: its schema as the
/// definition upstream names (reversed group, version, kind), with apiVersion,
/// kind and metadata filled in as upstream's builder does.
fn openapi_part(info: &generic_server::registry::ResourceInfo, schema: &Value) -> OpenApiPart {
    let mut s = openapi_schema(schema);
    if let Some(m) = s.as_object_mut() {
        let props = m.entry("properties").or_insert_with(|| json!({}));
        if let Some(p) = props.as_object_mut() {
            p.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
            p.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
            p.insert("metadata".into(), json!({"allOf": [{"$ref": format!("{REF_PREFIX_V3}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}], "default": {}, "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
        m.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": info.group, "version": info.version, "kind": info.kind}]),
        );
    }
    let mut segs: Vec<&str> = info.group.split('.').collect();
    segs.reverse();
    let def = format!("{}.{}.{}", segs.join("."), info.version, info.kind);
    let mut schemas = Map::new();
    schemas.insert(def, s);
    OpenApiPart { path: gv_path(&info.group, &info.version), schemas, resources: vec![info.clone()] }
}

/// A CRD schema as published: validation-only extensions dropped.
fn openapi_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                match k.as_str() {
                    "x-kubernetes-validations" => {}
                    "properties" => {
                        let props: Map<String, Value> = val
                            .as_object()
                            .map(|p| p.iter().map(|(pk, pv)| (pk.clone(), openapi_schema(pv))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "items" | "additionalProperties" | "not" => {
                        out.insert(k.clone(), openapi_schema(val));
                    }
                    "allOf" | "anyOf" | "oneOf" => {
                        out.insert(
                            k.clone(),
                            Value::Array(
                                val.as_array().map(|a| a.iter().map(openapi_schema).collect()).unwrap_or_default(),
                            ),
                        );
                    }
                    _ => {
                        out.insert(k.clone(), val.clone());
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[async_trait::async_trait]
impl Handler for ApiextensionsServer {
    async fn handle(&self, req: Request) -> Response {
        self.resources.handle(req).await
    }

    fn api_groups(&self) -> Vec<ApiGroup> {
        self.resources.api_groups()
    }

    fn openapi_schemas(&self) -> Vec<OpenApiPart> {
        let mut parts = builtin_schemas(std::slice::from_ref(&self.crd_store.info));
        {
            let served = self.served.read().unwrap_or_else(|e| e.into_inner());
            let mut names: Vec<&String> = served.keys().collect();
            names.sort();
            for n in names {
                parts.extend(served[n].openapi.iter().cloned());
            }
        }
        // Versions of different CRDs in one group-version share a document.
        let mut merged: Vec<OpenApiPart> = Vec::new();
        for p in parts {
            match merged.iter_mut().find(|m| m.path == p.path) {
                Some(m) => {
                    m.schemas.extend(p.schemas);
                    m.resources.extend(p.resources);
                }
                None => merged.push(p),
            }
        }
        merged.extend(self.resources.openapi_schemas());
        merged
    }
}
