//! Assembling kube-core-server: one Store per built-in resource and served
//! version, the Stores of one key root (a resource served in several
//! versions) behind one shared watch cache, with the built-in admission plugins, installed in a
//! ResourceServer in front of the delegate; then bootstrap and the controllers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, PersistentVolume, Pod, ResourceQuota as Quota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::flowcontrol::v1::{FlowSchema, PriorityLevelConfiguration};
use k8s_openapi::api::networking::v1::{IPAddress, IngressClass, ServiceCIDR};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::api::storage::v1::{StorageClass, VolumeAttachment};

use generic_server::endpoints::ResourceServer;
use generic_server::handler::DynHandler;
use generic_server::registry::registration::BuiltIn;
use generic_server::registry::{AdmissionChain, Mutating, Store, Validating};
use generic_server::storage::cacher::Cacher;
use generic_server::storage::Storage;

use generic_server::authz::Deferred;

use crate::admission::{AdmissionPlugins, BuiltinStores, Builtins, LimitRanger, Plugin, Priority, ResourceQuota};
use crate::node_authorizer::{NodeAuthorizer, NodeAuthorizerStores};
use crate::rbac::escalation::EscalationCheck;
use crate::rbac::{AuthorizerStores, Rbac};
use crate::serviceaccount_admission::ServiceAccountAdmission;
use crate::{CoreConfig, CoreResources, NamespaceLifecycle, StoreRegistry};

/// How often allocations are re-learnt from stored services (upstream's repair
/// loop runs every few minutes).
const ALLOCATOR_REPAIR_EVERY: Duration = Duration::from_secs(180);

pub struct CoreServer {
    pub server: Arc<ResourceServer>,
    /// Every Store, for the namespace controller and admission; servers
    /// behind this one register theirs here too.
    pub registry: Arc<StoreRegistry>,
    /// The admission chain every Store is built with, for servers behind.
    pub admission: Arc<AdmissionChain>,
    /// The RBAC authorizer over this server's rbac Stores.
    pub rbac: Arc<Rbac>,
    /// The Node authorizer over this server's pods and volumes (following
    /// them only with `CoreConfig::node_authorization`).
    pub node: Arc<NodeAuthorizer>,
    /// The handle the access reviews and escalation check consult: bind the
    /// server's authorizer into it.
    pub authorizer: Arc<Deferred>,
}

/// What kube-core-server shares with the servers behind it: the admission
/// chain every Store runs (its own plugins bound here to the Stores they read,
/// and those the binary provides) and the registry of namespaced Stores the
/// namespace controller empties.
pub struct Shared {
    pub lifecycle: Arc<NamespaceLifecycle>,
    pub service_account: Arc<ServiceAccountAdmission>,
    pub priority: Arc<Priority>,
    /// The other default-on plugins of this crate.
    pub builtins: Builtins,
    pub limit_ranger: Arc<LimitRanger>,
    pub resource_quota: Arc<ResourceQuota>,
    pub registry: Arc<StoreRegistry>,
    pub plugins: AdmissionPlugins,
    provided: std::sync::Mutex<BTreeMap<Plugin, Provided>>,
    chain: OnceLock<Arc<AdmissionChain>>,
}

/// The two halves of a plugin; either may be absent.
#[derive(Default, Clone)]
pub struct Provided {
    pub mutating: Option<Arc<dyn Mutating>>,
    pub validating: Option<Arc<dyn Validating>>,
}

impl Shared {
    pub fn new() -> Self {
        Self::with_plugins(AdmissionPlugins::default())
    }

    /// With the plugins the admission flags left on.
    pub fn with_plugins(plugins: AdmissionPlugins) -> Self {
        let shared = Shared {
            lifecycle: Arc::new(NamespaceLifecycle::new()),
            service_account: Arc::new(ServiceAccountAdmission::new()),
            priority: Arc::new(Priority::new()),
            builtins: Builtins::default(),
            limit_ranger: Arc::new(LimitRanger::new()),
            resource_quota: Arc::new(ResourceQuota::new()),
            registry: Arc::new(StoreRegistry::new()),
            plugins,
            provided: Default::default(),
            chain: OnceLock::new(),
        };
        shared.provide(
            Plugin::NamespaceLifecycle,
            Provided { validating: Some(shared.lifecycle.clone()), ..Default::default() },
        );
        shared.provide(
            Plugin::LimitRanger,
            Provided { mutating: Some(shared.limit_ranger.clone()), validating: Some(shared.limit_ranger.clone()) },
        );
        shared.provide(
            Plugin::ResourceQuota,
            Provided { validating: Some(shared.resource_quota.clone()), ..Default::default() },
        );
        shared.provide(
            Plugin::ServiceAccount,
            Provided { mutating: Some(shared.service_account.clone()), ..Default::default() },
        );
        shared.provide(
            Plugin::Priority,
            Provided { mutating: Some(shared.priority.clone()), validating: Some(shared.priority.clone()) },
        );
        for (plugin, halves) in shared.builtins.provided() {
            shared.provide(plugin, halves);
        }
        shared
    }

    /// Supplies the code of `plugin`, which runs if the flags enabled it.
    /// Must come before the first [`admission`](Self::admission).
    pub fn provide(&self, plugin: Plugin, halves: Provided) {
        if self.chain.get().is_some() {
            tracing::error!(plugin = plugin.name(), "admission plugin provided after the chain was built; ignored");
        }
        self.provided.lock().unwrap_or_else(|e| e.into_inner()).insert(plugin, halves);
    }

    /// The chain of the enabled plugins in upstream's order, built once and
    /// shared by every Store.
    pub fn admission(&self) -> Arc<AdmissionChain> {
        self.chain
            .get_or_init(|| {
                let provided = self.provided.lock().unwrap_or_else(|e| e.into_inner());
                let mut chain = AdmissionChain::default();
                for plugin in self.plugins.enabled() {
                    let Some(halves) = provided.get(plugin) else {
                        let (name, why) =
                            (plugin.name(), "admission plugin not implemented by this server; it does nothing");
                        if self.plugins.requested(*plugin) {
                            tracing::warn!(plugin = name, "{why}");
                        } else {
                            tracing::debug!(plugin = name, "{why}");
                        }
                        continue;
                    };
                    if let Some(m) = &halves.mutating {
                        chain = chain.mutating(m.clone());
                    }
                    if let Some(v) = &halves.validating {
                        chain = chain.validating(v.clone());
                    }
                }
                Arc::new(chain)
            })
            .clone()
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
    let mut caches: HashMap<String, Arc<Cacher>> = HashMap::new();
    let mut stores = Vec::new();
    let rbac = Arc::new(Rbac::default());
    let escalation: Arc<dyn Validating> = Arc::new(EscalationCheck::new(rbac.clone(), core.authorizer.clone()));
    for registration in core.registrations() {
        let root = format!("{}/", registration.info.key_root);
        let info = &registration.info;
        let is_rbac = info.is::<Role>()
            || info.is::<ClusterRole>()
            || info.is::<RoleBinding>()
            || info.is::<ClusterRoleBinding>();
        let cache = caches.entry(root).or_insert_with_key(|root| Cacher::new(storage.clone(), root)).clone();
        let mut store = Store::new(registration, storage.clone(), admission.clone()).with_cache(cache);
        if is_rbac {
            store = store.with_check(escalation.clone());
        }
        let store = Arc::new(store);
        core.peers.bind(&store);
        registry.register(store.clone());
        server.install(store.clone());
        stores.push(store);
    }
    for resource in core.create_only() {
        server.install_create_only(resource);
    }
    server.install_read_only(crate::registry::componentstatus::read_only(storage.clone()));
    let namespaces = store_of::<Namespace>(&stores)?;
    let services = store_of::<Service>(&stores)?;
    let classes = store_of::<PriorityClass>(&stores)?;
    lifecycle.bind(&namespaces);
    shared.priority.bind(&classes);
    let builtin_stores = BuiltinStores {
        storage_classes: &store_of::<StorageClass>(&stores)?,
        ingress_classes: &store_of::<IngressClass>(&stores)?,
        runtime_classes: &store_of::<RuntimeClass>(&stores)?,
    };
    shared.builtins.bind(builtin_stores, core.authorizer.clone());
    shared.limit_ranger.bind(&store_of::<LimitRange>(&stores)?);
    shared.resource_quota.bind(&store_of::<Quota>(&stores)?, &registry);
    let (accounts, secrets) = (store_of::<ServiceAccount>(&stores)?, store_of::<Secret>(&stores)?);
    shared.service_account.bind(&accounts);
    if let Some(tokens) = &config.service_account_tokens {
        tokens.bind_lookup(core.peers.clone());
        crate::tokens_controller::spawn(secrets, accounts.clone(), tokens.clone(), &config.root_ca);
    }
    core.ip_records.bind(&store_of::<IPAddress>(&stores)?);
    core.bootstrap(&namespaces, &services).await.map_err(|e| format!("bootstrap: {e}"))?;
    let cidrs = core.services.ip_allocator().cidrs();
    let (flow_schemas, priority_levels) =
        (store_of::<FlowSchema>(&stores)?, store_of::<PriorityLevelConfiguration>(&stores)?);
    let cluster_roles = store_of::<ClusterRole>(&stores)?;
    let policy_stores = crate::rbac::RbacStores {
        cluster_roles: &cluster_roles,
        cluster_role_bindings: &*store_of::<ClusterRoleBinding>(&stores)?,
        roles: &*store_of::<Role>(&stores)?,
        role_bindings: &*store_of::<RoleBinding>(&stores)?,
    };
    // Independent of each other: written together, the embedded store
    // commits them in a few group commits rather than one after another.
    let service_cidr = store_of::<ServiceCIDR>(&stores)?;
    tokio::try_join!(
        async {
            crate::service_ips::spawn_default_service_cidr(service_cidr, cidrs)
                .await
                .map_err(|e| format!("default ServiceCIDR: {e}"))
        },
        async { crate::bootstrap::bootstrap_priority_classes(&classes).await.map_err(|e| format!("bootstrap: {e}")) },
        async {
            crate::apf_bootstrap::ensure_and_follow(flow_schemas, priority_levels)
                .await
                .map_err(|e| format!("flowcontrol bootstrap: {e}"))
        },
        async {
            crate::rbac::ensure(crate::rbac::policy(), &policy_stores).await.map_err(|e| format!("rbac bootstrap: {e}"))
        },
    )?;
    crate::rbac::aggregation::spawn(cluster_roles);
    let publishers = crate::publishers::PublisherStores {
        namespaces: namespaces.clone(),
        service_accounts: accounts,
        configmaps: store_of::<ConfigMap>(&stores)?,
    };
    crate::publishers::spawn(publishers, &config.root_ca);
    let rbac_stores = AuthorizerStores {
        roles: store_of::<Role>(&stores)?,
        cluster_roles: store_of::<ClusterRole>(&stores)?,
        role_bindings: store_of::<RoleBinding>(&stores)?,
        cluster_role_bindings: store_of::<ClusterRoleBinding>(&stores)?,
    };
    rbac.start(rbac_stores).await;
    let node = Arc::new(NodeAuthorizer::default());
    if config.node_authorization {
        let node_stores = NodeAuthorizerStores {
            pods: store_of::<Pod>(&stores)?,
            persistent_volumes: store_of::<PersistentVolume>(&stores)?,
            volume_attachments: store_of::<VolumeAttachment>(&stores)?,
        };
        node.start(node_stores).await;
    }
    core.spawn_namespace_controller(namespaces, registry.clone());
    core.spawn_allocator_repair(services, ALLOCATOR_REPAIR_EVERY);
    Ok(CoreServer { server, registry, admission, rbac, node, authorizer: core.authorizer.clone() })
}

/// The Store of the built-in kind `K` (of its stored version).
fn store_of<K: BuiltIn>(stores: &[Arc<Store>]) -> Result<Arc<Store>, String> {
    stores
        .iter()
        .find(|s| s.info.is::<K>())
        .cloned()
        .ok_or_else(|| format!("the built-in resources lack {}", K::URL_PATH_SEGMENT))
}
