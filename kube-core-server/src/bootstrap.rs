//! What a fresh control plane must contain before clients arrive (upstream's
//! system namespaces controller, the `kubernetes` service reconciler and the
//! scheduling bootstrap hook, run once at startup): the system namespaces,
//! `default/kubernetes` and the system PriorityClasses, created when missing,
//! so running it on every start is harmless.

use serde_json::{json, Value};

use generic_server::meta;
use generic_server::registry::{Store, WriteOptions};
use generic_server::status::StatusError;

use crate::registry::priorityclass::{system_priority_class, SYSTEM_PRIORITY_CLASSES};
use crate::registry::service::ServiceStrategy;
use crate::CoreConfig;

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

async fn create_if_missing(store: &Store, namespace: &str, obj: Value) -> Result<bool, StatusError> {
    let name = meta::name(&obj).to_string();
    match store.get(namespace, &name).await {
        Ok(_) => return Ok(false),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    match store.create(namespace, obj, &WriteOptions::default()).await {
        Ok(_) => Ok(true),
        // Another server of the same cluster got there first.
        Err(e) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// The `default/kubernetes` service as upstream's reconciler writes it.
pub fn kubernetes_service(cluster_ip: &str, secure_port: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"}
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "sessionAffinity": "None",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": secure_port}]
        }
    })
}

/// Seeds the allocators from stored services, then creates the system
/// namespaces and the `kubernetes` service if missing, and points the
/// service's port at the current secure port if it changed.
pub async fn bootstrap(
    config: &CoreConfig,
    service_strategy: &ServiceStrategy,
    namespaces: &Store,
    services: &Store,
) -> Result<(), StatusError> {
    service_strategy.seed_from_store(services).await?;
    for ns in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        if create_if_missing(namespaces, "", obj).await? {
            tracing::info!(namespace = ns, "created system namespace");
        }
    }
    let ip = service_strategy.ip_allocator().first().to_string();
    let svc = kubernetes_service(&ip, config.secure_port);
    if create_if_missing(services, "default", svc).await? {
        tracing::info!(cluster_ip = %ip, "created the kubernetes service");
        return Ok(());
    }
    let current = services.get("default", "kubernetes").await?;
    let target = current.pointer("/spec/ports/0/targetPort").and_then(Value::as_i64);
    if target != Some(i64::from(config.secure_port)) {
        let port = config.secure_port;
        services
            .update_with("default", "kubernetes", None, &WriteOptions::default(), |cur| {
                let mut next = cur.cloned().ok_or_else(|| StatusError::not_found("", "services", "kubernetes"))?;
                crate::registry::child(&mut next, "spec").insert(
                    "ports".into(),
                    json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]),
                );
                meta::remove_meta(&mut next, "resourceVersion");
                Ok(next)
            })
            .await?;
    }
    Ok(())
}

/// Creates `system-node-critical` and `system-cluster-critical` when missing
/// (upstream's scheduling/bootstrap-system-priority-classes hook).
pub async fn bootstrap_priority_classes(classes: &Store) -> Result<(), StatusError> {
    for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
        if create_if_missing(classes, "", system_priority_class(name, *value, description)).await? {
            tracing::info!(name, value, "created PriorityClass");
        }
    }
    Ok(())
}
