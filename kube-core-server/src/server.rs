//! Assembling kube-core-server: one Store per built-in resource and served
//! version, the Stores of one key root (a resource served in several
//! versions) behind one shared watch cache, with NamespaceLifecycle admission, installed in a
//! ResourceServer in front of the delegate; then bootstrap and the controllers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};

use generic_server::endpoints::ResourceServer;
use generic_server::handler::DynHandler;
use generic_server::registry::{Admission, Store};
use generic_server::storage::cacher::Cacher;
use generic_server::storage::Storage;

use crate::admission::AdmissionPlugins;
use crate::{CoreConfig, CoreResources, NamespaceLifecycle, StoreRegistry};

/// How often allocations are re-learnt from stored services (upstream's repair
/// loop runs every few minutes).
const ALLOCATOR_REPAIR_EVERY: Duration = Duration::from_secs(180);

pub struct CoreServer {
    pub server: Arc<ResourceServer>,
    /// Every namespaced Store, for the namespace controller; servers behind
    /// this one register theirs here too.
    pub registry: Arc<StoreRegistry>,
    /// The admission plugins every Store is built with, for servers behind.
    pub admission: Vec<Arc<dyn Admission>>,
}

/// What kube-core-server shares with the servers behind it: the admission
/// chain every Store runs (NamespaceLifecycle, bound here to the namespace
/// Store) and the registry of namespaced Stores the namespace controller empties.
pub struct Shared {
    pub lifecycle: Arc<NamespaceLifecycle>,
    pub registry: Arc<StoreRegistry>,
    pub plugins: AdmissionPlugins,
}

impl Shared {
    pub fn new() -> Self {
        Self::with_plugins(AdmissionPlugins::default())
    }

    /// With the plugins the admission flags left on.
    pub fn with_plugins(plugins: AdmissionPlugins) -> Self {
        Shared { lifecycle: Arc::new(NamespaceLifecycle::new()), registry: Arc::new(StoreRegistry::new()), plugins }
    }

    pub fn admission(&self) -> Vec<Arc<dyn Admission>> {
        let mut chain: Vec<Arc<dyn Admission>> = Vec::new();
        if self.plugins.is_enabled("NamespaceLifecycle") {
            chain.push(self.lifecycle.clone());
        }
        chain
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds the built-in groups on `storage`, bootstraps them and starts their
/// controllers. Must run inside a tokio runtime.
pub async fn new_server(
    config: &CoreConfig,
    storage: Arc<dyn Storage>,
    shared: &Shared,
    delegate: DynHandler,
) -> Result<CoreServer, String> {
    let core = CoreResources::new(config)?;
    let lifecycle = shared.lifecycle.clone();
    let admission = shared.admission();
    let server = Arc::new(ResourceServer::new(delegate).with_openapi(generic_server::openapi::builtin_schemas));
    let registry = shared.registry.clone();
    let (mut namespaces, mut services, mut service_accounts, mut configmaps) = (None, None, None, None);
    let mut caches: HashMap<String, Arc<dyn Storage>> = HashMap::new();
    for registration in core.registrations() {
        let root = format!("{}/", registration.info.key_root);
        let cached = caches
            .entry(root)
            .or_insert_with_key(|root| Cacher::new(storage.clone(), root) as Arc<dyn Storage>)
            .clone();
        let store = Arc::new(Store::new(registration, cached, admission.clone()));
        core.peers.bind(&store);
        if store.info.is::<Namespace>() {
            lifecycle.bind(&store);
            namespaces = Some(store.clone());
        } else if store.info.is::<Service>() {
            services = Some(store.clone());
        } else if store.info.is::<ServiceAccount>() {
            service_accounts = Some(store.clone());
        } else if store.info.is::<ConfigMap>() {
            configmaps = Some(store.clone());
        }
        if store.info.namespaced {
            registry.register(store.clone());
        }
        server.install(store);
    }
    for resource in core.create_only() {
        server.install_create_only(resource);
    }
    let (Some(namespaces), Some(services), Some(service_accounts), Some(configmaps)) =
        (namespaces, services, service_accounts, configmaps)
    else {
        return Err("the built-in resources lack namespaces, services, serviceaccounts or configmaps".into());
    };
    core.bootstrap(&namespaces, &services).await.map_err(|e| format!("bootstrap: {e}"))?;
    let stores = crate::publishers::PublisherStores { namespaces: namespaces.clone(), service_accounts, configmaps };
    crate::publishers::spawn(stores, &config.root_ca);
    core.spawn_namespace_controller(namespaces, registry.clone());
    core.spawn_allocator_repair(services, ALLOCATOR_REPAIR_EVERY);
    Ok(CoreServer { server, registry, admission })
}
