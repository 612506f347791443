//! Builds the delegation chain on the chosen storage:
//! aggregator -> kube-core-server -> apiextensions -> 404, with the
//! aggregator configured from the front-proxy and request-header flags.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use admission::webhook::Webhooks;
use generic_server::authz::{self, Authorizer};
use generic_server::backend::Resolver;
use generic_server::endpoints::ResourceServer;
use generic_server::filters::ReadyCheck;
use generic_server::handler::{DynHandler, NotFoundHandler};
use generic_server::registry::admission_config::AdmissionConfig;
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::etcd::{EtcdStorage, EtcdTls};
use generic_server::storage::Storage;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube_core_server::admission::Plugin;
use kube_core_server::server::Provided;
use kube_core_server::CoreConfig;

use crate::pki::Pki;
use crate::Options;

pub struct Chain {
    pub handler: DynHandler,
    pub ready_checks: Vec<ReadyCheck>,
    /// The authorizer `--authorization-mode` asked for, over the chain's RBAC.
    pub authorizer: Arc<dyn Authorizer>,
}

/// How often /readyz/etcd's answer is refreshed.
const ETCD_HEALTH_EVERY: Duration = Duration::from_secs(1);

async fn open_storage(opts: &Options, data_dir: &Path) -> Result<(Arc<dyn Storage>, Vec<ReadyCheck>), String> {
    if opts.etcd_servers.is_empty() {
        let path = data_dir.join("state.redb");
        let s = EmbeddedStorage::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
        return Ok((Arc::new(s), Vec::new()));
    }
    let tls =
        (opts.etcd_cafile.is_some() || opts.etcd_certfile.is_some() || opts.etcd_keyfile.is_some()).then(|| EtcdTls {
            ca_file: opts.etcd_cafile.clone(),
            cert_file: opts.etcd_certfile.clone(),
            key_file: opts.etcd_keyfile.clone(),
        });
    let etcd = EtcdStorage::connect(&opts.etcd_servers, &opts.etcd_prefix, tls)
        .await
        .map_err(|e| format!("connecting to etcd: {e}"))?;
    etcd.start_compactor(opts.etcd_compaction_interval);
    // Readiness is answered synchronously, so a task keeps the last result.
    let healthy = Arc::new(AtomicBool::new(etcd.health().await.is_ok()));
    {
        let etcd = etcd.clone();
        let healthy = healthy.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(ETCD_HEALTH_EVERY);
            loop {
                tick.tick().await;
                healthy.store(etcd.health().await.is_ok(), Ordering::Relaxed);
            }
        });
    }
    let check: ReadyCheck = ("etcd".into(), Arc::new(move || healthy.load(Ordering::Relaxed)));
    Ok((Arc::new(etcd), vec![check]))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// The aggregator's settings from the flags, the generated front-proxy PKI
/// standing in for whatever is not given.
fn aggregator_config(opts: &Options, pki: &Pki, client_ca: &[u8]) -> Result<aggregator::AggregatorConfig, String> {
    let (cert, key) = match (&opts.proxy_client_cert_file, &opts.proxy_client_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => {
            (pki.front_proxy_client.cert.clone().into_bytes(), pki.front_proxy_client.key.clone().into_bytes())
        }
        _ => return Err("--proxy-client-cert-file and --proxy-client-key-file go together".into()),
    };
    let requestheader_ca = match &opts.requestheader_client_ca_file {
        Some(f) => String::from_utf8_lossy(&read(f)?).into_owned(),
        None => pki.front_proxy_ca.cert.clone(),
    };
    let allowed_names = if opts.requestheader_allowed_names.is_empty() {
        vec!["front-proxy-client".to_string()]
    } else {
        opts.requestheader_allowed_names.clone()
    };
    Ok(aggregator::AggregatorConfig {
        proxy_client_cert_pem: cert,
        proxy_client_key_pem: key,
        client_ca_pem: String::from_utf8_lossy(client_ca).into_owned(),
        requestheader: aggregator::RequestHeaderConfig {
            client_ca_pem: requestheader_ca,
            allowed_names,
            username_headers: opts.requestheader_username_headers.clone(),
            group_headers: opts.requestheader_group_headers.clone(),
            extra_headers_prefix: opts.requestheader_extra_headers_prefix.clone(),
        },
        enable_aggregator_routing: opts.enable_aggregator_routing,
    })
}

/// Who may do what, from the flags: admission plugins, ServiceAccount
/// tokens and the authorization modes.
pub struct Access {
    pub plugins: kube_core_server::admission::AdmissionPlugins,
    /// --admission-control-config-file's configuration of each plugin.
    pub admission_config: AdmissionConfig,
    pub service_accounts: Arc<generic_server::serviceaccount::ServiceAccountTokens>,
    pub authorization_modes: Vec<authz::Mode>,
}

pub async fn build_chain(
    opts: &Options,
    data_dir: &Path,
    port: u16,
    pki: &Pki,
    client_ca: &[u8],
    access: Access,
) -> Result<Chain, String> {
    let aggregator_config = aggregator_config(opts, pki, client_ca)?;
    let pod_security_config = pod_security::Configuration::from_value(access.admission_config.plugin("PodSecurity"))?;
    let (storage, ready_checks) = open_storage(opts, data_dir).await?;
    // The backends time their own requests; /metrics counts objects in storage.
    generic_server::metrics::global().count_objects_in(storage.clone());
    let shared = kube_core_server::Shared::with_plugins(access.plugins);
    let policies = admission::policy::ValidatingAdmissionPolicy::new();
    shared.provide(
        Plugin::ValidatingAdmissionPolicy,
        Provided { validating: Some(policies.clone()), ..Default::default() },
    );
    let pod_security = Arc::new(pod_security::PodSecurity::new(pod_security_config));
    shared.provide(Plugin::PodSecurity, Provided { validating: Some(pod_security.clone()), ..Default::default() });
    shared
        .builtins
        .tolerations
        .set_seconds(opts.default_not_ready_toleration_seconds, opts.default_unreachable_toleration_seconds);
    let (mutating_webhooks, validating_webhooks) = (Webhooks::mutating(), Webhooks::validating());
    shared.provide(
        Plugin::MutatingAdmissionWebhook,
        Provided { mutating: Some(mutating_webhooks.clone()), ..Default::default() },
    );
    shared.provide(
        Plugin::ValidatingAdmissionWebhook,
        Provided { validating: Some(validating_webhooks.clone()), ..Default::default() },
    );
    let not_found: DynHandler = Arc::new(NotFoundHandler);
    let crds =
        apiextensions::new_server(storage.clone(), shared.admission(), shared.registry.clone(), not_found).await?;
    let apiext: DynHandler = crds.clone();
    let config = CoreConfig {
        service_cluster_ip_range: opts.service_cluster_ip_range.clone(),
        service_node_port_range: opts.service_node_port_range.clone(),
        secure_port: port,
        event_ttl: opts.event_ttl,
        // DATA_DIR/pki/ca.crt: the CA of the generated serving certificate and
        // the one the admin kubeconfig trusts, which is what
        // kube-controller-manager publishes without --root-ca-file.
        root_ca: pki.ca.cert.clone(),
        service_account_tokens: Some(access.service_accounts),
        node_authorization: access.authorization_modes.contains(&authz::Mode::Node),
    };
    let core = kube_core_server::new_server(&config, storage.clone(), &shared, apiext).await?;
    policies.start(core.registry.clone(), core.authorizer.clone())?;
    let (namespaces, pods) = (core.server.store_of::<Namespace>(), core.server.store_of::<Pod>());
    let (Some(namespaces), Some(pods)) = (namespaces, pods) else {
        return Err("the built-in resources lack namespaces or pods".into());
    };
    pod_security.bind(&namespaces, &pods);
    let by_objects = authz::ModeAuthorizers { rbac: core.rbac.clone(), node: core.node.clone() };
    let webhooks = [&mutating_webhooks, &validating_webhooks];
    bind_webhooks(&core.server, &core.registry, opts.enable_aggregator_routing, webhooks).await?;
    // Conversion webhooks' Services resolve as admission webhooks' do.
    crds.bind_resolver(Resolver { core: core.server.clone(), routing: opts.enable_aggregator_routing });
    let authorizer = authz::for_modes(&access.authorization_modes, &by_objects);
    core.authorizer.bind(authorizer.clone());
    let served_changes = vec![core.server.changes(), crds.served_changes()];
    let handler: DynHandler =
        aggregator::new_server(&aggregator_config, storage, core.admission.clone(), core.server, served_changes)
            .await?;
    Ok(Chain { handler, ready_checks, authorizer })
}

/// Binds the webhook plugins to their configuration Stores, the chain's
/// Stores (namespace labels, equivalent versions) and a Service resolver on
/// the built-in Stores (the one the aggregator uses for APIService backends).
async fn bind_webhooks(
    core: &Arc<ResourceServer>,
    stores: &Arc<kube_core_server::StoreRegistry>,
    routing: bool,
    [mutating, validating]: [&Arc<Webhooks>; 2],
) -> Result<(), String> {
    fn store<K: k8s_openapi::Resource>(core: &ResourceServer) -> Result<Arc<generic_server::registry::Store>, String> {
        core.store_of::<K>().ok_or_else(|| format!("no {} store for the admission webhooks", K::URL_PATH_SEGMENT))
    }
    let resolver = || Resolver { core: core.clone(), routing };
    mutating.bind(store::<MutatingWebhookConfiguration>(core)?, stores.clone(), resolver()).await;
    validating.bind(store::<ValidatingWebhookConfiguration>(core)?, stores.clone(), resolver()).await;
    Ok(())
}
