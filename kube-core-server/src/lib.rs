//! kube-core-server: the built-in API groups (core/v1, apps/v1, batch/v1,
//! policy/v1 and discovery.k8s.io/v1 so far).
//!
//! Each resource is a [`Strategy`] in [`registry`] plus a [`ResourceInfo`]
//! here; the generic Store (generic-server) does the rest. Besides the
//! strategies this crate owns what the built-ins need around them: the
//! service cluster IP and node port [`allocator`]s with the IPAddress records
//! and default ServiceCIDR of [`service_ips`], the NamespaceLifecycle
//! [`admission`] plugin (and the admission flags' plugin set), the
//! [`namespace_controller`] that empties deleted namespaces, the
//! [`publishers`] of the `default` ServiceAccount and `kube-root-ca.crt` in
//! every namespace, the ServiceAccount admission plugin
//! ([`serviceaccount_admission`]) and the legacy [`tokens_controller`],
//! [`bootstrap`] of the system namespaces and the `kubernetes` service, and
//! upstream's default [`rbac`] policy with the ClusterRole aggregation
//! controller, and the [`node_authorizer`] for kubelets.
//!
//! Wiring, in order (the binary does this):
//! 1. `let core = CoreResources::new(&CoreConfig::default())?;`
//! 2. build the namespace Store from `core.resources()` first; build
//!    `NamespaceLifecycle::with_store(&ns_store)` (and `bind` it into the
//!    namespace Store's own admission list if built with `NamespaceLifecycle::new()`);
//!    then the other Stores with the plugin;
//! 3. register the namespaced Stores in a [`StoreRegistry`], call
//!    `core.spawn_namespace_controller(..)`;
//! 4. `core.bootstrap(&ns_store, &svc_store).await?` and
//!    `core.spawn_allocator_repair(svc_store, ..)`.

pub mod admission;
pub mod allocator;
pub mod apf_bootstrap;
pub mod bootstrap;
pub mod namespace_controller;
pub mod node_authorizer;
pub mod publishers;
pub mod rbac;
pub mod registry;
pub mod server;
pub mod service_ips;
pub mod serviceaccount_admission;
pub mod tokens_controller;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use generic_server::registry::{CreateOnly, Registration, Store};
use generic_server::status::StatusError;

pub use admission::NamespaceLifecycle;
pub use allocator::{IpAllocator, PortAllocator};
pub use generic_server::registry::StoreRegistry;
pub use namespace_controller::NamespaceController;
pub use registry::namespace::NamespaceStrategy;
pub use registry::service::ServiceStrategy;
pub use server::{new_server, CoreServer, Shared};

/// The settings of the built-in resources, named after kube-apiserver's flags.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// --service-cluster-ip-range
    pub service_cluster_ip_range: String,
    /// --service-node-port-range
    pub service_node_port_range: String,
    /// --secure-port: the `kubernetes` service's targetPort.
    pub secure_port: u16,
    /// --event-ttl: how long Events live after their last write.
    pub event_ttl: std::time::Duration,
    /// The CA bundle (PEM) that verifies the serving certificate, published
    /// in every namespace as `kube-root-ca.crt`; empty publishes nothing.
    pub root_ca: String,
    /// The ServiceAccount token issuer (--service-account-* flags); without
    /// it serviceaccounts/token refuses and no legacy tokens are filled in.
    pub service_account_tokens: Option<Arc<generic_server::serviceaccount::ServiceAccountTokens>>,
    /// Whether the Node authorizer is in `--authorization-mode`: only then
    /// does it follow pods and volumes (a second copy of every pod).
    pub node_authorization: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            service_cluster_ip_range: "10.0.0.0/24".into(),
            service_node_port_range: "30000-32767".into(),
            secure_port: 6443,
            event_ttl: std::time::Duration::from_secs(3600),
            root_ca: String::new(),
            service_account_tokens: None,
            node_authorization: false,
        }
    }
}

/// The built-in resources and the shared state their strategies hold.
pub struct CoreResources {
    pub config: CoreConfig,
    pub namespaces: Arc<NamespaceStrategy>,
    pub services: Arc<ServiceStrategy>,
    /// The IPAddress records of the services' cluster IPs.
    pub ip_records: Arc<service_ips::IpRecords>,
    /// The Stores the connect subresources read besides their own.
    pub peers: Arc<registry::peers::Peers>,
    /// The server's authorizer, as the access reviews and RBAC's escalation
    /// check consult it; bound once the chain is built.
    pub authorizer: Arc<generic_server::authz::Deferred>,
    registrations: Vec<Registration>,
    /// The kinds that are only created, never stored (the review kinds).
    create_only: Vec<CreateOnly>,
    /// Deletion announcements for the namespace controller, taken when it starts.
    wake: Mutex<Option<UnboundedReceiver<String>>>,
}

impl CoreResources {
    pub fn new(config: &CoreConfig) -> Result<Self, String> {
        let ips = Arc::new(IpAllocator::new(&config.service_cluster_ip_range)?);
        let ports = Arc::new(PortAllocator::parse(&config.service_node_port_range)?);
        let namespaces = Arc::new(NamespaceStrategy::new());
        let (tx, rx) = unbounded_channel();
        namespaces.set_notifier(tx);
        let ip_records = Arc::new(service_ips::IpRecords::new(ips.clone()));
        let services = Arc::new(ServiceStrategy::new(ips, ports));
        let peers = Arc::new(registry::peers::Peers::default());
        let mut registrations = core_v1(config, &namespaces, (&services, &ip_records), &peers);
        registrations.extend(apps_v1());
        registrations.extend(batch_v1());
        registrations.extend(policy_v1());
        registrations.extend(events_v1(config));
        registrations.extend(autoscaling());
        registrations.extend(discovery_v1());
        registrations.extend(scheduling_v1());
        registrations.extend(coordination_v1());
        registrations.extend(node_v1());
        registrations.extend(networking_v1());
        registrations.extend(storage_v1());
        registrations.extend(rbac_v1());
        registrations.extend(certificates_v1());
        registrations.extend(flowcontrol_v1());
        registrations.extend(admissionregistration_v1());
        let mut create_only = registry::authentication::create_only();
        let authorizer = Arc::new(generic_server::authz::Deferred::default());
        create_only.extend(registry::authorization::create_only(authorizer.clone()));
        create_only.extend(registry::binding::create_only(&peers));
        Ok(CoreResources {
            config: config.clone(),
            namespaces,
            services,
            ip_records,
            peers,
            authorizer,
            registrations,
            create_only,
            wake: Mutex::new(Some(rx)),
        })
    }

    /// Every built-in resource, namespaces first.
    pub fn registrations(&self) -> Vec<Registration> {
        self.registrations.clone()
    }

    /// authentication.k8s.io's and authorization.k8s.io's review kinds, and
    /// core/v1 bindings.
    pub fn create_only(&self) -> Vec<CreateOnly> {
        self.create_only.clone()
    }

    /// The namespace controller, with the channel it wakes on. `None` if it
    /// was already taken (there is one per server).
    pub fn namespace_controller(
        &self,
        namespaces: Arc<Store>,
        registry: Arc<StoreRegistry>,
    ) -> Option<(NamespaceController, UnboundedReceiver<String>)> {
        let rx = self.wake.lock().ok()?.take()?;
        Some((NamespaceController::new(namespaces, registry), rx))
    }

    /// Starts the namespace controller on the current tokio runtime.
    pub fn spawn_namespace_controller(
        &self,
        namespaces: Arc<Store>,
        registry: Arc<StoreRegistry>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let (c, rx) = self.namespace_controller(namespaces, registry)?;
        Some(tokio::spawn(c.run(rx)))
    }

    /// Seeds the allocators, creates the system namespaces and the
    /// `kubernetes` service when missing and brings the IPAddress records in
    /// step with the services. Idempotent across restarts.
    pub async fn bootstrap(&self, namespaces: &Store, services: &Store) -> Result<(), StatusError> {
        bootstrap::bootstrap(&self.config, &self.services, namespaces, services).await?;
        self.ip_records.repair(services, &self.services).await
    }

    /// Periodically re-learns allocations from stored services and
    /// IPAddresses, returning what failed or dry-run writes left allocated
    /// (upstream's repair loops).
    pub fn spawn_allocator_repair(&self, services: Arc<Store>, every: Duration) -> tokio::task::JoinHandle<()> {
        let strategy = self.services.clone();
        let records = self.ip_records.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = records.repair(&services, &strategy).await {
                    tracing::warn!(error = %e, "service allocator repair failed");
                }
            }
        })
    }
}

/// core/v1, namespaces first (the other Stores' admission needs theirs).
fn core_v1(
    config: &CoreConfig,
    namespaces: &Arc<NamespaceStrategy>,
    (services, ip_records): (&Arc<ServiceStrategy>, &Arc<service_ips::IpRecords>),
    peers: &Arc<registry::peers::Peers>,
) -> Vec<Registration> {
    use registry::*;
    vec![
        namespace::registration(namespaces.clone()),
        configmap::registration(),
        secret::registration(),
        service::registration(services.clone(), peers, ip_records.clone()),
        serviceaccount::registration(config.service_account_tokens.clone(), peers),
        pod::registration(peers),
        event::registration(config.event_ttl),
        endpoints::registration(),
        replicationcontroller::registration(),
        podtemplate::registration(),
        node::registration(),
        resourcequota::registration(),
        limitrange::registration(),
    ]
    .into_iter()
    .chain(persistentvolume::registrations())
    .collect()
}

fn apps_v1() -> Vec<Registration> {
    use registry::*;
    vec![
        deployment::registration(),
        replicaset::registration(),
        statefulset::registration(),
        daemonset::registration(),
        controllerrevision::registration(),
    ]
}

fn batch_v1() -> Vec<Registration> {
    use registry::*;
    vec![job::registration(), cronjob::registration()]
}

fn policy_v1() -> Vec<Registration> {
    use registry::*;
    vec![poddisruptionbudget::registration()]
}

/// events.k8s.io/v1: the core Events under events.k8s.io's names.
fn events_v1(config: &CoreConfig) -> Vec<Registration> {
    use registry::*;
    vec![event_v1::registration(&event::registration(config.event_ttl))]
}

/// autoscaling/v2 and autoscaling/v1, one resource stored as v2.
fn autoscaling() -> Vec<Registration> {
    registry::horizontalpodautoscaler::registrations()
}

fn discovery_v1() -> Vec<Registration> {
    use registry::*;
    vec![endpointslice::registration()]
}

fn scheduling_v1() -> Vec<Registration> {
    use registry::*;
    vec![priorityclass::registration()]
}

fn coordination_v1() -> Vec<Registration> {
    use registry::*;
    vec![lease::registration()]
}

fn node_v1() -> Vec<Registration> {
    use registry::*;
    vec![runtimeclass::registration()]
}

fn networking_v1() -> Vec<Registration> {
    use registry::*;
    let mut r = vec![ingress::registration(), ingressclass::registration(), networkpolicy::registration()];
    r.extend(servicecidr::registrations());
    r
}

fn storage_v1() -> Vec<Registration> {
    use registry::*;
    let mut r = vec![storageclass::registration()];
    r.extend(csi::registrations());
    r
}

fn rbac_v1() -> Vec<Registration> {
    use registry::*;
    vec![
        role::registration(),
        role::cluster_registration(),
        rolebinding::registration(),
        rolebinding::cluster_registration(),
    ]
}

fn certificates_v1() -> Vec<Registration> {
    use registry::*;
    vec![certificatesigningrequest::registration()]
}

fn flowcontrol_v1() -> Vec<Registration> {
    use registry::*;
    vec![flowschema::registration(), prioritylevelconfiguration::registration()]
}

fn admissionregistration_v1() -> Vec<Registration> {
    use registry::*;
    vec![
        webhookconfiguration::validating_registration(),
        webhookconfiguration::mutating_registration(),
        validatingadmissionpolicy::registration(),
        validatingadmissionpolicybinding::registration(),
    ]
}

#[cfg(test)]
mod tests;
