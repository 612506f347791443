//! The availability controller (upstream's AvailableConditionController): for
//! every APIService it decides the Available condition. Local ones are always
//! available; a remote one needs its Service to resolve (ServiceNotFound,
//! ServicePortError, MissingEndpoints) and its backend to answer discovery of
//! its group-version with the front-proxy identity (FailedDiscoveryCheck).
//! The condition is written through the status subresource only when it
//! changes. Checks run every few seconds and promptly when an APIService or a
//! Service changes; each successful check also refreshes the group-version's
//! cached discovery document.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use generic_server::meta;
use generic_server::registry::store::WatchStart;
use generic_server::registry::{ListOptions, Store, Subresource, WriteOptions};
use generic_server::status::StatusError;

use crate::apiservice::{self, ApiService};
use crate::backend::{self, FrontProxyClient, Resolver};
use crate::discovery::RemoteDiscovery;
use crate::index::ApiServiceIndex;

/// How often every APIService is re-checked without any change to prompt it.
const RECHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a discovery check may take in all.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The identity the checks are made as (upstream's).
const CHECK_USER: &str = "system:kube-aggregator";
const CHECK_GROUP: &str = "system:masters";
/// What a client that prefers aggregated discovery asks for.
const AGGREGATED_ACCEPT: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

pub struct AvailabilityController {
    pub store: Arc<Store>,
    pub index: Arc<ApiServiceIndex>,
    pub resolver: Arc<Resolver>,
    pub client: Arc<FrontProxyClient>,
    pub discovery: Arc<RemoteDiscovery>,
}

/// An Available condition: status, reason, message.
type Verdict = (&'static str, &'static str, String);

impl AvailabilityController {
    pub async fn run(self: Arc<Self>) {
        let wake = Arc::new(tokio::sync::Notify::new());
        for resource in [("", "services"), ("", "endpoints"), ("discovery.k8s.io", "endpointslices")] {
            let (core, wake) = (self.resolver.core.clone(), wake.clone());
            tokio::spawn(async move {
                loop {
                    // Stores can appear later only through wiring; look each time.
                    if let Some(store) = core.store(resource.0, "v1", resource.1) {
                        if let Ok(mut s) = store.watch("", &ListOptions::default(), WatchStart::Now).await {
                            while s.next().await.is_some() {
                                wake.notify_one();
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
        }
        let mut changed = self.index.subscribe();
        loop {
            self.pass().await;
            tokio::select! {
                _ = tokio::time::sleep(RECHECK_EVERY) => {}
                _ = wake.notified() => {}
                r = changed.changed() => {
                    if r.is_err() {
                        tokio::time::sleep(RECHECK_EVERY).await;
                    }
                }
            }
        }
    }

    /// Checks every APIService at once and writes what changed.
    pub async fn pass(&self) {
        let all = self.index.all();
        self.discovery.retain(&all.iter().map(|a| a.name.clone()).collect::<Vec<_>>());
        let checks = all.iter().map(|api| async move {
            let verdict = self.check(api).await;
            self.write(api, verdict).await;
        });
        futures::future::join_all(checks).await;
    }

    async fn check(&self, api: &ApiService) -> Verdict {
        let Some(svc) = &api.service else {
            return ("True", "Local", "Local APIServices are always available".into());
        };
        let target = match self.resolver.resolve(svc, true).await {
            Ok(t) => t,
            Err(e) => {
                self.discovery.mark_stale(&api.name);
                return ("False", e.reason, e.message);
            }
        };
        let path = format!("/apis/{}/{}", api.group, api.version);
        let url = target.url(&path);
        let result = tokio::time::timeout(CHECK_TIMEOUT, self.discover(api, &target, &path)).await;
        let failure = match result {
            Ok(Ok(list)) => {
                // The backend's aggregated document where it serves one (it
                // carries what the legacy list cannot), else the legacy list.
                let aggregated = tokio::time::timeout(CHECK_TIMEOUT, self.aggregated_version(api, &target)).await;
                match aggregated {
                    Ok(Some(entry)) => self.discovery.record_aggregated(api, entry),
                    _ => self.discovery.record(api, &list),
                }
                return ("True", "Passed", "all checks passed".into());
            }
            Ok(Err(e)) => e,
            Err(_) => format!("Get {url:?}: context deadline exceeded"),
        };
        self.discovery.mark_stale(&api.name);
        ("False", "FailedDiscoveryCheck", format!("failing or missing response from {url}: {failure}"))
    }

    /// GET /apis/<group>/<version> on the backend, as the aggregator itself.
    async fn discover(&self, api: &ApiService, target: &backend::Target, path: &str) -> Result<Value, String> {
        let tls = self.client.tls_config(api)?;
        let ids = &self.client.headers;
        let req = http::Request::get(path)
            .header(http::header::HOST, &target.server_name)
            .header(http::header::ACCEPT, "application/json")
            .header(ids.username.as_str(), CHECK_USER)
            .header(ids.group.as_str(), CHECK_GROUP)
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = backend::send(target, tls, req, Some(CHECK_TIMEOUT)).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("bad status from {}: {}", target.url(path), status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|e| format!("decoding the discovery document: {e}"))
    }

    /// This group-version's entry of the backend's aggregated /apis, if it
    /// serves aggregated discovery (apidiscovery.k8s.io/v2).
    async fn aggregated_version(&self, api: &ApiService, target: &backend::Target) -> Option<Value> {
        let tls = self.client.tls_config(api).ok()?;
        let ids = &self.client.headers;
        let req = http::Request::get("/apis")
            .header(http::header::HOST, &target.server_name)
            .header(http::header::ACCEPT, AGGREGATED_ACCEPT)
            .header(ids.username.as_str(), CHECK_USER)
            .header(ids.group.as_str(), CHECK_GROUP)
            .body(Full::new(Bytes::new()))
            .ok()?;
        let resp = backend::send(target, tls, req, Some(CHECK_TIMEOUT)).await.ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let doc: Value = serde_json::from_slice(&body).ok()?;
        if doc.get("kind").and_then(Value::as_str) != Some("APIGroupDiscoveryList") {
            return None;
        }
        let group = doc
            .get("items")?
            .as_array()?
            .iter()
            .find(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(api.group.as_str()))?;
        group
            .get("versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("version").and_then(Value::as_str) == Some(api.version.as_str()))
            .cloned()
    }

    async fn write(&self, api: &ApiService, (status, reason, message): Verdict) {
        let same = api.condition.as_ref().is_some_and(|(s, r, m)| s == status && r == reason && *m == message);
        if same {
            return;
        }
        let result = self
            .store
            .update_with("", &api.name, Some(&Subresource::Status), &WriteOptions::default(), |cur| {
                let mut cur = cur
                    .cloned()
                    .ok_or_else(|| StatusError::not_found(apiservice::GROUP, apiservice::RESOURCE, &api.name))?;
                apiservice::set_condition(&mut cur, "Available", status, reason, &message);
                meta::remove_meta(&mut cur, "resourceVersion");
                Ok(cur)
            })
            .await;
        match result {
            Ok(_) => tracing::info!(apiservice = %api.name, status, reason, "APIService availability changed"),
            Err(e) => tracing::debug!(apiservice = %api.name, "updating the Available condition: {}", e.message),
        }
    }
}
