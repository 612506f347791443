//! End-to-end tests of the wiring through real generic Stores over the
//! embedded storage: bootstrap, NamespaceLifecycle, the namespace controller,
//! and service allocation across Store calls.

use std::sync::Arc;

use serde_json::{json, Value};

use generic_server::registry::store::DeleteOptions;
use generic_server::registry::{AdmissionChain, ListOptions, ResourceInfo, Store, Subresource, WriteOptions};
use generic_server::storage::cacher::Cacher;
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::Storage;

use super::*;

struct Cluster {
    _dir: tempfile::TempDir,
    core: CoreResources,
    stores: Vec<Arc<Store>>,
    /// The watch caches of a cached cluster, by plural.
    caches: std::collections::HashMap<String, Arc<Cacher>>,
}

impl Cluster {
    fn new() -> Self {
        let lifecycle = Arc::new(NamespaceLifecycle::new());
        let c = Cluster::build(Arc::new(AdmissionChain::default().validating(lifecycle.clone())), false);
        lifecycle.bind(c.store("namespaces"));
        c
    }

    /// Every built-in Store over one embedded storage, each with a watch
    /// cache of its own when `cached`, as the server wires them.
    fn build(admission: Arc<AdmissionChain>, cached: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&dir.path().join("db")).unwrap());
        let core = CoreResources::new(&CoreConfig::default()).unwrap();
        let mut caches = std::collections::HashMap::new();
        let mut stores = Vec::new();
        for r in core.registrations() {
            let mut store = Store::new(r, storage.clone(), admission.clone());
            if cached {
                let cache = Cacher::new(storage.clone(), &format!("{}/", store.info.key_root));
                caches.insert(store.info.plural.clone(), cache.clone());
                store = store.with_cache(cache);
            }
            stores.push(Arc::new(store));
        }
        bind_records(&core, &stores);
        Cluster { _dir: dir, core, stores, caches }
    }

    fn store(&self, plural: &str) -> &Arc<Store> {
        self.stores.iter().find(|s| s.info.plural == plural).unwrap()
    }

    async fn bootstrap(&self) {
        self.core.bootstrap(self.store("namespaces"), self.store("services")).await.unwrap();
    }
}

/// Points the services' IPAddress records at the IPAddress Store.
fn bind_records(core: &CoreResources, stores: &[Arc<Store>]) {
    let addresses = stores.iter().find(|s| s.info.is::<k8s_openapi::api::networking::v1::IPAddress>()).unwrap();
    core.ip_records.bind(addresses);
}

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn resource_infos_follow_upstream() {
    let core = CoreResources::new(&CoreConfig::default()).unwrap();
    let infos: Vec<ResourceInfo> = core.registrations().into_iter().map(|r| r.info).collect();
    let find = |p: &str| infos.iter().find(|i| i.plural == p).unwrap();
    assert_eq!(infos[0].plural, "namespaces");
    assert_eq!(find("services").key_root, "/registry/services/specs");
    assert_eq!(find("services").short_names, ["svc"]);
    assert_eq!(find("pods").categories, ["all"]);
    assert!(find("configmaps").categories.is_empty());
    let d = find("deployments");
    assert_eq!((d.group.as_str(), d.api_version().as_str(), d.singular.as_str()), ("apps", "apps/v1", "deployment"));
    assert!(d.has_subresource(&Subresource::Status));
    assert!(!find("namespaces").namespaced);
    assert!(CoreResources::new(&CoreConfig { service_cluster_ip_range: "bad".into(), ..Default::default() }).is_err());
}

#[tokio::test]
async fn bootstrap_is_idempotent() {
    let c = Cluster::new();
    c.bootstrap().await;
    c.bootstrap().await;
    let ns = c.store("namespaces").list("", &ListOptions::default()).await.unwrap();
    assert_eq!(names(&ns), ["default", "kube-node-lease", "kube-public", "kube-system"]);
    let svc = c.store("services").get("default", "kubernetes").await.unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
    assert_eq!(svc["spec"]["ports"][0], json!({"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}));
    let default_ns = c.store("namespaces").get("", "default").await.unwrap();
    assert_eq!(default_ns["status"]["phase"], "Active");
    assert_eq!(default_ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "default");
}

#[tokio::test]
async fn restart_reseeds_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let ip;
    {
        let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&path).unwrap());
        let core = CoreResources::new(&CoreConfig::default()).unwrap();
        let stores: Vec<Arc<Store>> = core
            .registrations()
            .into_iter()
            .map(|r| Arc::new(Store::new(r, storage.clone(), AdmissionChain::empty())))
            .collect();
        bind_records(&core, &stores);
        core.bootstrap(&stores[0], &stores[3]).await.unwrap();
        let created = stores[3]
            .create(
                "default",
                json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        ip = created.object["spec"]["clusterIP"].as_str().unwrap().to_string();
    }
    let storage: Arc<dyn Storage> = Arc::new(EmbeddedStorage::open(&path).unwrap());
    let core = CoreResources::new(&CoreConfig::default()).unwrap();
    let stores: Vec<Arc<Store>> = core
        .registrations()
        .into_iter()
        .map(|r| Arc::new(Store::new(r, storage.clone(), AdmissionChain::empty())))
        .collect();
    bind_records(&core, &stores);
    core.bootstrap(&stores[0], &stores[3]).await.unwrap();
    assert!(core.services.ip_allocator().is_allocated(ip.parse().unwrap()));
    let err = stores[3]
        .create(
            "default",
            json!({"metadata": {"name": "other"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert!(err.message.contains("provided IP is already allocated"), "{}", err.message);
}

#[tokio::test]
async fn namespace_lifecycle_admission() {
    let c = Cluster::new();
    c.bootstrap().await;
    let cm = json!({"metadata": {"name": "c"}, "data": {"a": "b"}});
    let err = c.store("configmaps").create("missing", cm.clone(), &WriteOptions::default()).await.unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (404, "namespaces \"missing\" not found"));
    let err = c.store("namespaces").delete("", "kube-system", &DeleteOptions::default()).await.unwrap_err();
    assert_eq!(err.code, 403);
    assert_eq!(err.message, "namespaces \"kube-system\" is forbidden: this namespace may not be deleted");
    c.store("configmaps").create("default", cm, &WriteOptions::default()).await.unwrap();
}

/// NamespaceLifecycle reads namespaces from the watch cache, which trails
/// writes: a namespace created just before is found in storage, and one whose
/// deletion was just admitted is not taken as active from a stale copy.
#[tokio::test]
async fn namespace_lifecycle_reads_past_a_stale_cache() {
    let lifecycle = Arc::new(NamespaceLifecycle::new());
    let c = Cluster::build(Arc::new(AdmissionChain::default().validating(lifecycle.clone())), true);
    let (namespaces, configmaps) = (c.store("namespaces"), c.store("configmaps"));
    lifecycle.bind(namespaces);
    let w = WriteOptions::default();
    for i in 0..20 {
        let name = format!("ns{i}");
        let ns = json!({"metadata": {"name": name, "finalizers": ["e2e.example.com/hold"]}});
        namespaces.create("", ns, &w).await.unwrap();
        configmaps.create(&name, json!({"metadata": {"name": "early"}}), &w).await.unwrap();
        namespaces.delete("", &name, &DeleteOptions::default()).await.unwrap();
        let err = configmaps.create(&name, json!({"metadata": {"name": "late"}}), &w).await.unwrap_err();
        assert_eq!(err.code, 403, "{}", err.message);
        assert!(err.message.ends_with("because it is being terminated"), "{}", err.message);
    }
}

#[test]
fn the_registry_keeps_every_version_and_walks_each_key_root_once() {
    let c = Cluster::new();
    let registry = StoreRegistry::new();
    for s in &c.stores {
        registry.register(s.clone());
    }
    let hpa = |v: &str| registry.of_gvk("autoscaling", v, "HorizontalPodAutoscaler").map(|s| s.info.version.clone());
    assert_eq!((hpa("v1").as_deref(), hpa("v2").as_deref()), (Some("v1"), Some("v2")));
    let first = registry.of_kind("autoscaling", "HorizontalPodAutoscaler").map(|s| s.info.version.clone());
    assert_eq!(first.as_deref(), Some("v2"), "the first registered: the stored version");
    assert!(
        registry.of_gvr("", "v1", "events").is_some() && registry.of_gvr("events.k8s.io", "v1", "events").is_some()
    );
    // The other versions of a resource: those over its key root.
    let versions = |group: &str, plural: &str| {
        let Some(s) = registry.of_gvr(group, "v1", plural) else { panic!("no {plural}") };
        let v = registry.versions_of(&s.info);
        let others: Vec<String> = v.others.iter().map(|o| o.info.api_version()).collect();
        (v.own.map(|o| o.info.api_version()), others)
    };
    assert_eq!(versions("", "events"), (Some("v1".into()), vec!["events.k8s.io/v1".to_string()]));
    assert_eq!(versions("events.k8s.io", "events"), (Some("events.k8s.io/v1".into()), vec!["v1".to_string()]));
    assert_eq!(versions("", "configmaps"), (None, vec![]), "one version: nothing to convert");

    let roots = |r: &StoreRegistry| r.namespaced().iter().map(|s| s.info.key_root.clone()).collect::<Vec<_>>();
    let walked = roots(&registry);
    let unique: std::collections::HashSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "each key root once: {walked:?}");
    let events = registry.namespaced().into_iter().find(|s| s.info.plural == "events").map(|s| s.info.group.clone());
    assert_eq!(events.as_deref(), Some(""), "core Events, registered before events.k8s.io's");
    // Registering again replaces; unregistering a key root drops every version.
    for s in &c.stores {
        registry.register(s.clone());
    }
    assert_eq!(roots(&registry), walked);
    let Some(v2) = registry.of_gvk("autoscaling", "v2", "HorizontalPodAutoscaler") else { panic!("no v2") };
    registry.unregister(&v2.info.key_root);
    assert_eq!((hpa("v1"), hpa("v2")), (None, None));
    let Some(v1) = c.stores.iter().find(|s| s.info.is::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>())
    else {
        panic!("no autoscaling/v1")
    };
    registry.register(v1.clone());
    assert!(registry.versions_of(&v1.info).others.is_empty(), "alone again under its key root");
}

#[tokio::test]
async fn deleting_a_namespace_empties_it() {
    let c = Cluster::new();
    c.bootstrap().await;
    let registry = Arc::new(StoreRegistry::new());
    for s in &c.stores {
        registry.register(s.clone());
    }
    let (controller, _rx) = c.core.namespace_controller(c.store("namespaces").clone(), registry).unwrap();
    let ns = c.store("namespaces");
    ns.create("", json!({"metadata": {"name": "team"}}), &WriteOptions::default()).await.unwrap();
    let w = WriteOptions::default();
    c.store("configmaps").create("team", json!({"metadata": {"name": "c"}}), &w).await.unwrap();
    c.store("services")
        .create("team", json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}), &w)
        .await
        .unwrap();
    let svc_ip: std::net::IpAddr =
        c.store("services").get("team", "s").await.unwrap()["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    ns.delete("", "team", &DeleteOptions::default()).await.unwrap();
    // Whether the Store marks (spec-finalizer hook present) or removes at
    // once, a controller pass leaves neither the namespace nor its content.
    if let Ok(marked) = ns.get("", "team").await {
        let err = c.store("configmaps").create("team", json!({"metadata": {"name": "late"}}), &w).await.unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err.message.ends_with("unable to create new content in namespace team because it is being terminated"));
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
    }
    controller.sync_one("team").await.unwrap();
    assert!(ns.get("", "team").await.is_err());
    assert!(names(&c.store("configmaps").list("team", &ListOptions::default()).await.unwrap()).is_empty());
    assert!(names(&c.store("services").list("team", &ListOptions::default()).await.unwrap()).is_empty());
    assert!(!c.core.services.ip_allocator().is_allocated(svc_ip));
    controller.sweep().await.unwrap();
}

/// The sweep finds the namespaces in use from one key of each, skipping the
/// rest, through storage and through a filled watch cache alike, whatever
/// order the names sort in; and it empties the one whose namespace is gone.
#[tokio::test]
async fn the_sweep_reads_one_key_per_namespace() {
    use generic_server::storage::Freshness;
    let c = Cluster::build(AdmissionChain::empty(), true);
    let registry = Arc::new(StoreRegistry::new());
    for s in &c.stores {
        registry.register(s.clone());
    }
    let (namespaces, configmaps) = (c.store("namespaces"), c.store("configmaps"));
    let w = WriteOptions::default();
    // "a-b" sorts before "a/", and "a0" and "ab" after every key of "a".
    for ns in ["a", "a0", "ab"] {
        namespaces.create("", json!({"metadata": {"name": ns}}), &w).await.unwrap();
    }
    for ns in ["a-b", "a", "a0", "ab"] {
        for i in 0..3 {
            configmaps.create(ns, json!({"metadata": {"name": format!("c{i}")}}), &w).await.unwrap();
        }
    }
    let in_use = ["a", "a-b", "a0", "ab"].map(String::from).into_iter().collect::<std::collections::BTreeSet<_>>();
    assert!(!c.caches["configmaps"].filled());
    assert_eq!(configmaps.namespaces_in_use().await.unwrap(), in_use);
    configmaps.list("", &ListOptions { freshness: Freshness::Any, ..Default::default() }).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !c.caches["configmaps"].filled() {
        assert!(std::time::Instant::now() < deadline, "the configmaps cache never filled");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(configmaps.namespaces_in_use().await.unwrap(), in_use);
    let (controller, _rx) = c.core.namespace_controller(namespaces.clone(), registry.clone()).unwrap();
    controller.sweep().await.unwrap();
    let count = |ns: &'static str| {
        let configmaps = configmaps.clone();
        async move { names(&configmaps.list(ns, &ListOptions::default()).await.unwrap()).len() }
    };
    assert_eq!((count("a-b").await, count("a").await, count("a0").await, count("ab").await), (0, 3, 3, 3));
}

#[tokio::test]
async fn deletions_are_followed_by_key() {
    use futures::StreamExt;
    let c = Cluster::new();
    c.bootstrap().await;
    let w = WriteOptions::default();
    let configmaps = c.store("configmaps");
    configmaps.create("default", json!({"metadata": {"name": "before"}}), &w).await.unwrap();
    let mut deleted = configmaps.deleted_namespaces().await.unwrap();
    // Only deletions after the stream began, each with its namespace.
    configmaps.create("kube-public", json!({"metadata": {"name": "a"}}), &w).await.unwrap();
    configmaps
        .update("kube-public", "a", json!({"metadata": {"name": "a"}, "data": {"k": "v"}}), None, &w)
        .await
        .unwrap();
    configmaps.delete("kube-public", "a", &DeleteOptions::default()).await.unwrap();
    configmaps.delete("default", "before", &DeleteOptions::default()).await.unwrap();
    let wait = std::time::Duration::from_secs(5);
    let first = tokio::time::timeout(wait, deleted.next()).await.unwrap();
    let second = tokio::time::timeout(wait, deleted.next()).await.unwrap();
    assert_eq!((first.as_deref(), second.as_deref()), (Some("kube-public"), Some("default")));
}

#[tokio::test]
async fn objects_round_trip_through_stores() {
    let c = Cluster::new();
    c.bootstrap().await;
    let w = WriteOptions::default();
    let pod = c
        .store("pods")
        .create("default", json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}), &w)
        .await
        .unwrap()
        .object;
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(pod["status"]["qosClass"], "BestEffort");
    let err = c
        .store("pods")
        .create("default", json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c"}]}}), &w)
        .await
        .unwrap_err();
    assert_eq!(err.code, 422);
    assert_eq!(err.message, "Pod \"q\" is invalid: spec.containers[0].image: Required value");
    let sel = generic_server::selectors::FieldSelector::parse("status.phase=Pending").unwrap();
    let list = c.store("pods").list("", &ListOptions { field_selector: sel, ..Default::default() }).await.unwrap();
    assert_eq!(names(&list), ["p"]);
    let bad = generic_server::selectors::FieldSelector::parse("spec.bogus=x").unwrap();
    assert_eq!(
        c.store("pods").list("", &ListOptions { field_selector: bad, ..Default::default() }).await.unwrap_err().code,
        400
    );

    let d = c
        .store("deployments")
        .create("default", json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}}}), &w)
        .await
        .unwrap()
        .object;
    assert_eq!(d["metadata"]["generation"], 1);
    let scale = c.store("deployments").to_scale(&d).unwrap();
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=web");
}

#[tokio::test]
async fn versions_share_one_stored_form() {
    use futures::StreamExt;
    use generic_server::registry::store::WatchStart;
    let c = Cluster::new();
    c.bootstrap().await;
    let hpa = |version: &str| {
        c.stores.iter().find(|s| s.info.plural == "horizontalpodautoscalers" && s.info.version == version).unwrap()
    };
    let (v1, v2) = (hpa("v1"), hpa("v2"));
    let mut watch = v2.watch("default", &ListOptions::default(), WatchStart::Now).await.unwrap();
    let spec = json!({"scaleTargetRef": {"kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}, "maxReplicas": 4, "targetCPUUtilizationPercentage": 50});
    let obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"}, "spec": spec});
    let created = v1.create("default", obj, &WriteOptions::default()).await.unwrap().object;
    assert_eq!(created["spec"]["minReplicas"], 1);
    assert_eq!(created["status"], json!({"currentReplicas": 0, "desiredReplicas": 0}));
    let seen = watch.next().await.unwrap();
    assert_eq!(
        (seen.event_type, seen.object.value()["apiVersion"].as_str()),
        (generic_server::registry::WatchEventType::Added, Some("autoscaling/v2"))
    );
    assert_eq!(seen.object.value()["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);

    // A metric v1 cannot express survives a v1 update made from a v1 read.
    let mut as_v2 = v2.get("default", "web").await.unwrap();
    as_v2["spec"]["metrics"].as_array_mut().unwrap().insert(0, json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}));
    v2.update("default", "web", as_v2, None, &WriteOptions::default()).await.unwrap();
    let mut as_v1 = v1.get("default", "web").await.unwrap();
    assert!(as_v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap()
        .contains("qps"));
    as_v1["spec"]["maxReplicas"] = json!(6);
    v1.update("default", "web", as_v1, None, &WriteOptions::default()).await.unwrap();
    let after = v2.get("default", "web").await.unwrap();
    assert_eq!(after["spec"]["maxReplicas"], 6);
    assert_eq!(after["spec"]["metrics"][0]["pods"]["metric"]["name"], "qps");
    assert!(after["metadata"].get("annotations").is_none());
}

/// Names, scope, verbs and subresources as upstream's 1.33 discovery lists
/// them, for every built-in resource the facts know.
#[test]
fn registrations_match_upstream_discovery() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/facts/api-resources-1.33.json");
    let facts: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("shared/facts beside the clone"))
        .expect("api-resources facts are JSON");
    let core = CoreResources::new(&CoreConfig::default()).unwrap();
    let mut unknown = Vec::new();
    for info in core.registrations().into_iter().map(|r| r.info) {
        let Some(want) = facts["resources"].as_array().unwrap().iter().find(|r| {
            r["group"] == info.group.as_str()
                && r["version"] == info.version.as_str()
                && r["resource"] == info.plural.as_str()
        }) else {
            unknown.push(info.plural.clone());
            continue;
        };
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
        };
        assert_eq!(info.short_names, strings(&want["shortNames"]), "{}", info.plural);
        assert_eq!(info.categories, strings(&want["categories"]), "{}", info.plural);
        assert_eq!(info.namespaced, want["namespaced"], "{}", info.plural);
        assert_eq!(info.kind, want["kind"].as_str().unwrap(), "{}", info.plural);
        let mut verbs: Vec<String> = info.verbs.iter().map(|v| v.to_string()).collect();
        let mut want_verbs = strings(&want["verbs"]);
        verbs.sort();
        want_verbs.sort();
        assert_eq!(verbs, want_verbs, "{}", info.plural);
        let mut subs: Vec<&str> = info.subresources.iter().map(|s| s.name()).collect();
        let mut want_subs: Vec<&str> =
            want["subresources"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
        subs.sort_unstable();
        want_subs.sort_unstable();
        // Subresources other helpers add later (pods/log, ...) may be missing.
        assert!(subs.iter().all(|s| want_subs.contains(s)), "{}: {subs:?} not in {want_subs:?}", info.plural);
    }
    assert!(unknown.is_empty(), "not in upstream's discovery: {unknown:?}");
    let nodes = core.registrations().into_iter().find(|r| r.info.plural == "nodes").unwrap();
    assert_eq!(nodes.info.key_root, "/registry/minions");
    let ingresses = core.registrations().into_iter().find(|r| r.info.plural == "ingresses").unwrap();
    assert_eq!(ingresses.info.key_root, "/registry/ingress");
}

#[tokio::test]
async fn cluster_ips_are_recorded_as_ip_addresses() {
    let c = Cluster::new();
    c.bootstrap().await;
    let (services, addresses) = (c.store("services"), c.store("ipaddresses"));
    let kubernetes = addresses.get("", "10.0.0.1").await.unwrap();
    assert_eq!(
        kubernetes["spec"]["parentRef"],
        json!({"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"})
    );
    assert_eq!(
        kubernetes["metadata"]["labels"],
        json!({"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"})
    );
    let svc =
        |name: &str, ip: &str| json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
    // A fixed address: a random one could be one of those asked for below.
    let web = services.create("default", svc("web", "10.0.0.10"), &WriteOptions::default()).await.unwrap().object;
    let ip = web["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(addresses.get("", &ip).await.unwrap()["spec"]["parentRef"]["name"], "web");
    // An address someone recorded by hand is taken, and the refused create leaves nothing.
    let by_hand = json!({"metadata": {"name": "10.0.0.77"},
        "spec": {"parentRef": {"group": "example.com", "resource": "gateways", "name": "gw"}}});
    addresses.create("", by_hand, &WriteOptions::default()).await.unwrap();
    let err = services.create("default", svc("taken", "10.0.0.77"), &WriteOptions::default()).await.unwrap_err();
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("failed to allocate IP 10.0.0.77: provided IP is already allocated"),
        "{}",
        err.message
    );
    assert_eq!(addresses.get("", "10.0.0.77").await.unwrap()["spec"]["parentRef"]["name"], "gw");
    assert!(services.get("default", "taken").await.is_err());
    // A create that fails in storage (the name exists) takes its record back.
    let err = services.create("default", svc("web", "10.0.0.88"), &WriteOptions::default()).await.unwrap_err();
    assert_eq!(err.code, 409);
    assert_eq!(addresses.get("", "10.0.0.88").await.unwrap_err().code, 404);
    // Becoming ExternalName gives the IP up; deletion removes the record.
    let mut external = web.clone();
    external["spec"] = json!({"type": "ExternalName", "externalName": "example.com"});
    services.update("default", "web", external, None, &WriteOptions::default()).await.unwrap();
    assert_eq!(addresses.get("", &ip).await.unwrap_err().code, 404);
    let db = services.create("default", svc("db", "10.0.0.99"), &WriteOptions::default()).await.unwrap().object;
    assert_eq!(addresses.get("", "10.0.0.99").await.unwrap()["spec"]["parentRef"]["name"], "db");
    services.delete("default", "db", &DeleteOptions::default()).await.unwrap();
    assert_eq!(addresses.get("", "10.0.0.99").await.unwrap_err().code, 404);
    assert!(!c.core.services.ip_allocator().is_allocated("10.0.0.99".parse().unwrap()), "{db}");
    // A record lost (as by a crash, or data from before records) comes back at repair.
    addresses.delete("", "10.0.0.1", &DeleteOptions::default()).await.unwrap();
    c.bootstrap().await;
    assert_eq!(addresses.get("", "10.0.0.1").await.unwrap()["spec"]["parentRef"]["name"], "kubernetes");
    assert!(c.core.services.ip_allocator().is_allocated("10.0.0.77".parse().unwrap()));
}
