//! The aggregator: the first server in the delegation chain (upstream's
//! kube-aggregator). It serves the apiregistration.k8s.io group (APIService,
//! in its own ResourceServer), proxies the group-versions of remote
//! APIServices to their backends, and owns the root discovery documents
//! (/api, /apis, legacy and aggregated) and the OpenAPI documents, merged from
//! what the servers behind it and the backends report. Everything else goes
//! to its delegate.
//!
//! - `apiservice`: the APIService resource (Strategy, validation, columns).
//! - `index`: the in-memory view of all APIServices.
//! - `autoregister`: Local APIServices for every group-version served here.
//! - `available`: the availability controller (the Available condition).
//! - `backend`: Service resolution and the TLS client to a backend.
//! - `proxy`: the proxy handler for remote group-versions.
//! - `discovery`: the merged discovery documents and the backends' cache.
//! - `authentication_configmap`: the extension-apiserver-authentication ConfigMap.

pub mod apiservice;
pub mod authentication_configmap;
pub mod autoregister;
pub mod available;
pub mod backend;
pub mod discovery;
pub mod index;
pub mod proxy;

use std::sync::Arc;

use generic_server::discovery as docs;
use generic_server::endpoints::{respond, respond_value, ResourceServer};
use generic_server::handler::{DynHandler, Handler, Request, Response};
use generic_server::negotiation::{self, Output};
use generic_server::openapi::OpenApiCache;
use generic_server::registry::{AdmissionChain, Store};
use generic_server::request_info::RequestInfo;
use generic_server::status::StatusError;
use generic_server::storage::cacher::Cacher;
use generic_server::storage::Storage;

pub use authentication_configmap::RequestHeaderConfig;

use crate::autoregister::AutoRegister;
use crate::available::AvailabilityController;
use crate::backend::{FrontProxyClient, IdentityHeaders, Resolver};
use crate::discovery::RemoteDiscovery;
use crate::index::ApiServiceIndex;
use crate::proxy::Proxy;

/// What the aggregator is configured with (kube-apiserver's flags).
#[derive(Debug, Clone, Default)]
pub struct AggregatorConfig {
    /// --proxy-client-cert-file / --proxy-client-key-file, as PEM.
    pub proxy_client_cert_pem: Vec<u8>,
    pub proxy_client_key_pem: Vec<u8>,
    /// --client-ca-file, as PEM, published for extension servers.
    pub client_ca_pem: String,
    /// The --requestheader-* flags.
    pub requestheader: RequestHeaderConfig,
    /// --enable-aggregator-routing.
    pub enable_aggregator_routing: bool,
}

pub struct Aggregator {
    /// apiregistration.k8s.io, in front of `delegate`.
    resources: Arc<ResourceServer>,
    /// The server behind (`resources`' delegate).
    delegate: DynHandler,
    apiservices: Arc<Store>,
    openapi: OpenApiCache,
    index: Arc<ApiServiceIndex>,
    remote: Arc<RemoteDiscovery>,
    proxy: Proxy,
}

/// Builds the aggregator in front of `core` (kube-core-server, which also
/// holds the Services and ConfigMaps it reads and writes), publishes the
/// authentication ConfigMap, registers the Local APIServices and starts the
/// controllers. Must run inside a tokio runtime.
pub async fn new_server(
    config: &AggregatorConfig,
    storage: Arc<dyn Storage>,
    admission: Arc<AdmissionChain>,
    core: Arc<ResourceServer>,
    served_changes: Vec<tokio::sync::watch::Receiver<u64>>,
) -> Result<Arc<Aggregator>, String> {
    let registration = apiservice::registration();
    let cache = Cacher::new(storage.clone(), &format!("{}/", registration.info.key_root));
    let apiservices = Arc::new(Store::new(registration, storage, admission).with_cache(cache));
    let delegate: DynHandler = core.clone();
    let resources =
        Arc::new(ResourceServer::new(delegate.clone()).with_openapi(generic_server::openapi::builtin_schemas));
    resources.install(apiservices.clone());

    let rh = &config.requestheader;
    let first = |v: &Vec<String>, default: &str| v.first().cloned().unwrap_or_else(|| default.to_string());
    let headers = IdentityHeaders {
        username: first(&rh.username_headers, "X-Remote-User"),
        group: first(&rh.group_headers, "X-Remote-Group"),
        extra_prefix: first(&rh.extra_headers_prefix, "X-Remote-Extra-"),
    };
    let client = Arc::new(FrontProxyClient::new(&config.proxy_client_cert_pem, &config.proxy_client_key_pem, headers)?);
    let resolver = Arc::new(Resolver { core: core.clone(), routing: config.enable_aggregator_routing });

    if let Some(configmaps) = core.store("", "v1", "configmaps") {
        let data = authentication_configmap::data(&config.client_ca_pem, rh);
        authentication_configmap::publish(&configmaps, data)
            .await
            .map_err(|e| format!("publishing {}: {e}", authentication_configmap::NAME))?;
    }

    let index = Arc::new(ApiServiceIndex::default());
    index.load(&apiservices).await;
    tokio::spawn(index.clone().run(apiservices.clone()));

    // Local APIServices exist before the first request is served.
    let own = vec![(apiservice::GROUP.to_string(), "v1".to_string())];
    let autoregister = AutoRegister::new(apiservices.clone(), AutoRegister::served_by(delegate.clone(), own));
    autoregister.sync().await;
    let mut prompts = served_changes;
    prompts.push(index.subscribe());
    tokio::spawn(autoregister.run(prompts));

    let remote = Arc::new(RemoteDiscovery::default());
    let controller = Arc::new(AvailabilityController {
        store: apiservices.clone(),
        index: index.clone(),
        resolver: resolver.clone(),
        client: client.clone(),
        discovery: remote.clone(),
    });
    tokio::spawn(controller.run());

    let proxy = Proxy { client, resolver };
    Ok(Arc::new(Aggregator { resources, delegate, apiservices, openapi: OpenApiCache::new(), index, remote, proxy }))
}

impl Aggregator {
    /// The APIService Store (for tests and wiring).
    pub fn apiservices(&self) -> &Arc<Store> {
        &self.apiservices
    }

    fn root_discovery(&self, req: &Request) -> Option<Response> {
        let path = req.uri().path().trim_end_matches('/');
        if req.method() != http::Method::GET || !(path == "/api" || path == "/apis") {
            return None;
        }
        let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
        let output = match negotiation::negotiate(accept, false, true) {
            Some(o) => o,
            None => return Some(StatusError::not_acceptable(accept.unwrap_or("")).into_response()),
        };
        let groups = self.resources.api_groups();
        let core = path == "/api";
        let value = match &output {
            Output::AggregatedDiscovery(v) if core => {
                let selected: Vec<_> = groups.into_iter().filter(|g| g.name.is_empty()).collect();
                docs::aggregated(&selected, v)
            }
            Output::AggregatedDiscovery(v) => discovery::aggregated(&groups, &self.index.all(), &self.remote, v),
            _ if core => docs::api_versions(),
            _ => discovery::group_list(&groups, &self.index.all()),
        };
        Some(respond(req, 200, &value, &output))
    }

    /// The remote APIService a request is for: /apis/<group>/<version>/...
    /// of a group-version whose APIService names a Service.
    fn remote_for(&self, req: &Request) -> Option<apiservice::ApiService> {
        let mut parts = req.uri().path().trim_start_matches('/').split('/');
        if parts.next() != Some("apis") {
            return None;
        }
        let (group, version) = (parts.next()?, parts.next().filter(|v| !v.is_empty())?);
        self.index.for_group_version(group, version).filter(|a| !a.is_local())
    }

    /// /apis/<group> of a group only remote APIServices serve (upstream's
    /// apiGroupHandler); groups served here answer from their own server.
    fn remote_group(&self, req: &Request) -> Option<Response> {
        if req.method() != http::Method::GET {
            return None;
        }
        let path = req.uri().path().trim_matches('/');
        let group = path.strip_prefix("apis/").filter(|g| !g.is_empty() && !g.contains('/'))?;
        let services = self.index.for_group(group);
        if services.is_empty() || services.iter().any(|s| s.is_local()) {
            return None;
        }
        let value = discovery::remote_group(group, &services)?;
        Some(respond_value(req, 200, &value))
    }
}

#[async_trait::async_trait]
impl Handler for Aggregator {
    async fn handle(&self, req: Request) -> Response {
        if let Some(resp) = self.root_discovery(&req) {
            return resp;
        }
        if let Some(resp) = generic_server::root::openapi(&self.openapi, self.resources.as_ref(), &req) {
            return resp;
        }
        if let Some(api) = self.remote_for(&req) {
            // Boxed: the proxy's future would otherwise make every local
            // request's future kilobytes larger.
            return Box::pin(self.proxy.serve(&api, req)).await;
        }
        if let Some(resp) = self.remote_group(&req) {
            return resp;
        }
        // A resource of a group not served here goes straight to the server
        // behind, as it would through `resources`, without the hop's lookups
        // and boxed future on every request.
        let elsewhere =
            RequestInfo::of(&req).is_some_and(|i| i.is_resource_request && !self.resources.serves_group(&i.api_group));
        if elsewhere {
            return self.delegate.handle(req).await;
        }
        self.resources.handle(req).await
    }

    fn api_groups(&self) -> Vec<docs::ApiGroup> {
        self.resources.api_groups()
    }

    fn openapi_schemas(&self) -> Vec<docs::OpenApiPart> {
        self.resources.openapi_schemas()
    }
}
