//! Service cluster IPs recorded as networking.k8s.io/v1 IPAddress objects,
//! and the default ServiceCIDR, as upstream 1.33 keeps them with
//! MultiCIDRServiceAllocator on (pkg/registry/core/service/ipallocator, its
//! RepairIPAddress controller, pkg/controlplane/controller/defaultservicecidr).
//!
//! An IP is taken by creating its IPAddress, named by the IP with the
//! Service as parentRef: a create that finds the name held by another parent
//! means the IP is taken. [`IpRecords`] are the Service registration's write
//! hooks, so a record is made before its Service is stored and removed when
//! the Service is not stored, goes, or gives the IP up. The in-memory
//! [`IpAllocator`] still picks free addresses, a cache learnt from storage:
//! [`IpRecords::repair`] seeds it from Services and IPAddresses and makes the
//! two agree after a crash between their writes (or data from before IPAddress
//! objects were written).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::mpsc::unbounded_channel;

use generic_server::informer::Informer;
use generic_server::meta;
use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{BoundStore, ListOptions, Store, Subresource, WriteHooks, WriteOptions};
use generic_server::status::StatusError;

use crate::allocator::{IpAllocator, PENDING_TTL};
use crate::registry::service::{cluster_ips, ip_failure_cause, ServiceStrategy, IP_ALLOCATED};
use crate::registry::str_at;

/// The ServiceCIDR made from --service-cluster-ip-range.
pub const DEFAULT_SERVICE_CIDR: &str = "kubernetes";
const LABEL_FAMILY: &str = "ipaddress.kubernetes.io/ip-family";
const LABEL_MANAGED_BY: &str = "ipaddress.kubernetes.io/managed-by";
/// The allocator's name in the managed-by label.
const MANAGED_BY: &str = "ipallocator.k8s.io";
const CIDR_CONTROLLER: &str = "kubernetes-service-cidr-controller";
const CIDR_READY_MESSAGE: &str = "Kubernetes default Service CIDR is ready";

/// The API server's own writes, recorded as upstream's loopback client's.
fn write_options(manager: &str) -> WriteOptions {
    WriteOptions { field_manager: Some(manager.into()), ..WriteOptions::default() }
}

async fn items(store: &Store) -> Result<Vec<Value>, StatusError> {
    let mut list = store.list("", &ListOptions::default()).await?;
    Ok(match list.get_mut("items").map(Value::take) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    })
}

/// Whether IPAddress `record` names `service` as its parent.
fn has_parent(record: &Value, service: &Value) -> bool {
    let p = |field: &str| str_at(record, &format!("/spec/parentRef/{field}"));
    p("group").is_empty()
        && p("resource") == "services"
        && p("namespace") == meta::namespace(service)
        && p("name") == meta::name(service)
}

/// The IPAddress that holds `ip` for `service`.
fn record(ip: IpAddr, service: &Value) -> Value {
    let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IPAddress",
        "metadata": {"name": ip.to_string(), "labels": {LABEL_FAMILY: family, LABEL_MANAGED_BY: MANAGED_BY}},
        "spec": {"parentRef": {
            "group": "",
            "resource": "services",
            "namespace": meta::namespace(service),
            "name": meta::name(service),
        }},
    })
}

/// The IPAddress records of Service cluster IPs.
pub struct IpRecords {
    addresses: BoundStore,
    ips: Arc<IpAllocator>,
    /// What the writes in flight created, by Service uid, for their finish to
    /// undo if the Service is not stored.
    created: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl IpRecords {
    pub fn new(ips: Arc<IpAllocator>) -> Self {
        IpRecords { addresses: BoundStore::new("ipaddresses"), ips, created: Mutex::default() }
    }

    /// Sets the IPAddress Store the records are written to.
    pub fn bind(&self, addresses: &Arc<Store>) {
        self.addresses.bind(addresses);
    }

    fn created(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<IpAddr>>> {
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `ips` for `service` by creating their records; when one is held
    /// by another parent, undoes the rest and refuses as upstream does.
    async fn take(&self, service: &Value, ips: Vec<IpAddr>) -> Result<(), StatusError> {
        let store = self.addresses.store()?;
        let uid = meta::uid(service).to_string();
        for ip in ips {
            let refusal = match store.create("", record(ip, service), &write_options("kube-apiserver")).await {
                Ok(_) => {
                    self.created().entry(uid.clone()).or_default().push(ip);
                    continue;
                }
                Err(e) if e.code == 409 => match store.get("", &ip.to_string()).await {
                    // Left by a write of this Service that died before its object.
                    Ok(held) if has_parent(&held, service) => continue,
                    _ => {
                        // Storage holds it: the allocator must not pick it again.
                        self.ips.claim(ip, &format!("ipaddress/{ip}"));
                        let cause = ip_failure_cause(service, &ip.to_string(), IP_ALLOCATED);
                        StatusError::invalid("", "Service", meta::name(service), vec![cause])
                    }
                },
                Err(e) => e,
            };
            self.undo(service).await;
            return Err(refusal);
        }
        Ok(())
    }

    /// Removes the records this write of `service` created.
    async fn undo(&self, service: &Value) {
        let made = self.created().remove(meta::uid(service)).unwrap_or_default();
        for ip in made {
            self.release(ip, service).await;
        }
    }

    /// Removes the record of `ip` if `service` is its parent.
    async fn release(&self, ip: IpAddr, service: &Value) {
        let Ok(store) = self.addresses.store() else { return };
        let name = ip.to_string();
        let Ok(held) = store.get("", &name).await else { return };
        if !has_parent(&held, service) {
            return;
        }
        let opts = DeleteOptions { precondition_uid: Some(meta::uid(&held).to_string()), ..DeleteOptions::default() };
        match store.delete("", &name, &opts).await {
            Ok(_) => {}
            // Gone or replaced meanwhile: no longer this Service's.
            Err(e) if e.is_not_found() || e.code == 409 => {}
            Err(e) => tracing::warn!(ip = %name, error = %e, "removing an IPAddress failed; the repair will"),
        }
    }

    /// Seeds the allocator from stored Services and IPAddresses and makes
    /// them agree: a Service IP without a record gets one; a record of this
    /// allocator whose Service no longer holds its IP (older than a write in
    /// flight could be) goes; any other record keeps its IP taken.
    pub async fn repair(&self, services: &Store, strategy: &ServiceStrategy) -> Result<(), StatusError> {
        let services = items(services).await?;
        strategy.seed(&services);
        let store = self.addresses.store()?;
        let mut held: HashMap<String, &Value> = HashMap::new();
        for s in &services {
            held.extend(cluster_ips(s).into_iter().map(|ip| (ip.to_string(), s)));
        }
        let now = chrono::Utc::now();
        for r in items(&store).await? {
            let name = meta::name(&r).to_string();
            if held.remove(&name).is_some() {
                // In step, or held by another parent too: nothing to decide here.
                continue;
            }
            let ours = r.pointer("/metadata/labels").and_then(|l| l.get(LABEL_MANAGED_BY)) == Some(&json!(MANAGED_BY));
            let created = meta::meta_str(&r, "creationTimestamp").parse::<chrono::DateTime<chrono::Utc>>();
            let settled = created.is_ok_and(|t| (now - t).to_std().is_ok_and(|age| age > PENDING_TTL));
            if ours && settled {
                let opts = DeleteOptions { precondition_uid: Some(meta::uid(&r).to_string()), ..Default::default() };
                if let Err(e) = store.delete("", &name, &opts).await.map(drop) {
                    tracing::warn!(ip = %name, error = %e, "removing an orphaned IPAddress failed");
                }
            } else if let Ok(ip) = name.parse::<IpAddr>() {
                self.ips.claim(ip, &format!("ipaddress/{name}"));
            }
        }
        for (name, service) in held {
            let Ok(ip) = name.parse::<IpAddr>() else { continue };
            match store.create("", record(ip, service), &write_options("kube-apiserver")).await {
                Ok(_) => {}
                Err(e) if e.code == 409 => {}
                Err(e) => tracing::warn!(ip = %name, error = %e, "recording a Service IP failed"),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl WriteHooks for IpRecords {
    async fn begin_create(&self, service: &Value) -> Result<(), StatusError> {
        self.take(service, cluster_ips(service)).await
    }

    async fn finish_create(&self, service: &Value, stored: bool) {
        if stored {
            self.created().remove(meta::uid(service));
        } else {
            self.undo(service).await;
        }
    }

    async fn begin_update(&self, new: &Value, old: &Value) -> Result<(), StatusError> {
        let before = cluster_ips(old);
        self.take(new, cluster_ips(new).into_iter().filter(|ip| !before.contains(ip)).collect()).await
    }

    async fn finish_update(&self, new: &Value, old: &Value, stored: bool) {
        if !stored {
            return self.undo(new).await;
        }
        self.created().remove(meta::uid(new));
        let after = cluster_ips(new);
        for ip in cluster_ips(old).into_iter().filter(|ip| !after.contains(ip)) {
            self.release(ip, old).await;
            self.ips.release(ip, meta::uid(old));
        }
    }

    async fn after_delete(&self, service: &Value) {
        for ip in cluster_ips(service) {
            self.release(ip, service).await;
        }
    }
}

/// Creates the default ServiceCIDR if it is missing and marks it Ready when
/// it matches `cidrs` (the flag's, primary first) and has no Ready condition
/// yet (upstream's controller).
pub async fn sync_default_service_cidr(store: &Store, cidrs: &[String]) -> Result<(), StatusError> {
    let current = match store.get("", DEFAULT_SERVICE_CIDR).await {
        Ok(obj) => obj,
        Err(e) if e.is_not_found() => {
            let obj = json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "ServiceCIDR",
                "metadata": {"name": DEFAULT_SERVICE_CIDR},
                "spec": {"cidrs": cidrs},
            });
            match store.create("", obj, &write_options("kube-apiserver")).await {
                Ok(w) => w.object,
                Err(e) if e.code == 409 => store.get("", DEFAULT_SERVICE_CIDR).await?,
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
    };
    if !meta::meta_str(&current, "deletionTimestamp").is_empty() {
        // Its deletion is the controller manager's to finish.
        return Ok(());
    }
    if current.pointer("/spec/cidrs") != Some(&json!(cidrs)) {
        tracing::info!(flag = ?cidrs, "the default ServiceCIDR does not match --service-cluster-ip-range; left as it is");
        return Ok(());
    }
    let ready = crate::registry::arr_at(&current, "/status/conditions")
        .iter()
        .find(|c| str_at(c, "/type") == "Ready")
        .map(|c| str_at(c, "/status").to_string());
    if ready.as_deref().is_some_and(|s| s != "Unknown") {
        return Ok(());
    }
    let opts = write_options(CIDR_CONTROLLER);
    store
        .update_with("", DEFAULT_SERVICE_CIDR, Some(&Subresource::Status), &opts, |cur| {
            let mut next = cur
                .cloned()
                .ok_or_else(|| StatusError::not_found("networking.k8s.io", "servicecidrs", DEFAULT_SERVICE_CIDR))?;
            let condition = json!({
                "type": "Ready",
                "status": "True",
                "lastTransitionTime": meta::now_rfc3339(),
                "reason": "",
                "message": CIDR_READY_MESSAGE,
            });
            crate::registry::child(&mut next, "status").insert("conditions".into(), json!([condition]));
            Ok(next)
        })
        .await
        .map(drop)
}

/// Keeps the default ServiceCIDR: synced now, then whenever it changes or
/// goes (upstream recreates a deleted one).
pub async fn spawn_default_service_cidr(store: Arc<Store>, cidrs: Vec<String>) -> Result<(), StatusError> {
    sync_default_service_cidr(&store, &cidrs).await?;
    let (tx, mut rx) = unbounded_channel::<()>();
    let retry = tx.clone();
    Informer::new(store.clone()).spawn(move |change| {
        if meta::name(change.object()) == DEFAULT_SERVICE_CIDR {
            let _ = tx.send(());
        }
    });
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            while rx.try_recv().is_ok() {}
            if let Err(e) = sync_default_service_cidr(&store, &cidrs).await {
                tracing::warn!(error = %e, "syncing the default ServiceCIDR failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                let _ = retry.send(());
            }
        }
    });
    Ok(())
}
