//! The relationships the Node authorizer decides by (upstream's node
//! authorizer Graph): which objects each node's pods use, kept as indexes
//! rather than a general graph, because every path upstream's graph can hold
//! has one of a few fixed shapes:
//!
//! ```text
//! secret | configmap | pvc | serviceaccount | resourceclaim -> pod -> node
//! secret -> pv -> pvc -> pod -> node
//! pod -> node, volumeattachment -> node
//! ```
//!
//! Only pods bound to a node (spec.nodeName) count; a mirror pod (the
//! kubelet's own, `kubernetes.io/config.mirror`) reaches its node but grants
//! nothing else, so a node cannot grant itself objects by creating one.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use generic_server::meta;

/// What the graph can relate to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Pod,
    Secret,
    ConfigMap,
    PersistentVolumeClaim,
    PersistentVolume,
    ServiceAccount,
    ResourceClaim,
    VolumeAttachment,
    ResourceSlice,
}

const MIRROR_POD: &str = "kubernetes.io/config.mirror";

type Key = (String, String);

#[derive(Default)]
pub struct Graph {
    /// A bound pod (namespace, name) -> its node and what it uses (each in
    /// the pod's namespace).
    pods: HashMap<Key, (String, Vec<(Kind, String)>)>,
    /// (kind, namespace, name) of what pods use -> the names of those pods.
    used_by: HashMap<(Kind, String, String), HashSet<String>>,
    /// A bound PersistentVolume -> its claim and the secrets the kubelet reads for it.
    pvs: HashMap<String, (Key, Vec<Key>)>,
    pvs_by_claim: HashMap<Key, HashSet<String>>,
    pvs_by_secret: HashMap<Key, HashSet<String>>,
    /// A VolumeAttachment -> its node.
    attachments: HashMap<String, String>,
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn each<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

/// The objects a pod uses, as upstream's VisitPodSecretNames,
/// VisitPodConfigmapNames and the graph's volume and claim walks find them.
fn pod_uses(pod: &Value) -> Vec<(Kind, String)> {
    let mut out = Vec::new();
    let mut add = |kind, name: &str| {
        if !name.is_empty() {
            out.push((kind, name.to_string()));
        }
    };
    add(Kind::ServiceAccount, s(pod, "/spec/serviceAccountName"));
    for p in each(pod, "/spec/imagePullSecrets") {
        add(Kind::Secret, s(p, "/name"));
    }
    for list in ["/spec/initContainers", "/spec/containers", "/spec/ephemeralContainers"] {
        for c in each(pod, list) {
            for from in each(c, "/envFrom") {
                add(Kind::Secret, s(from, "/secretRef/name"));
                add(Kind::ConfigMap, s(from, "/configMapRef/name"));
            }
            for env in each(c, "/env") {
                add(Kind::Secret, s(env, "/valueFrom/secretKeyRef/name"));
                add(Kind::ConfigMap, s(env, "/valueFrom/configMapKeyRef/name"));
            }
        }
    }
    let pod_name = meta::name(pod);
    for v in each(pod, "/spec/volumes") {
        add(Kind::Secret, s(v, "/secret/secretName"));
        add(Kind::Secret, s(v, "/azureFile/secretName"));
        for source in ["cephfs", "cinder", "flexVolume", "rbd", "scaleIO", "iscsi", "storageos"] {
            add(Kind::Secret, s(v, &format!("/{source}/secretRef/name")));
        }
        add(Kind::Secret, s(v, "/csi/nodePublishSecretRef/name"));
        add(Kind::ConfigMap, s(v, "/configMap/name"));
        for p in each(v, "/projected/sources") {
            add(Kind::Secret, s(p, "/secret/name"));
            add(Kind::ConfigMap, s(p, "/configMap/name"));
        }
        add(Kind::PersistentVolumeClaim, s(v, "/persistentVolumeClaim/claimName"));
        if v.get("ephemeral").is_some_and(|e| !e.is_null()) {
            // The claim the ephemeral volume controller makes for it.
            add(Kind::PersistentVolumeClaim, &format!("{pod_name}-{}", s(v, "/name")));
        }
    }
    for claim in each(pod, "/spec/resourceClaims") {
        let direct = s(claim, "/resourceClaimName");
        if !direct.is_empty() {
            add(Kind::ResourceClaim, direct);
            continue;
        }
        // A claim made from a template is named in the pod's status.
        let name = s(claim, "/name");
        if let Some(status) = each(pod, "/status/resourceClaimStatuses").find(|st| s(st, "/name") == name) {
            add(Kind::ResourceClaim, s(status, "/resourceClaimName"));
        }
    }
    out
}

/// The secrets the kubelet reads for a PersistentVolume (upstream's
/// VisitPVSecretNames, kubelet-visible ones), each with its namespace: the
/// reference's own, else the claim's where upstream falls back to it.
fn pv_secrets(pv: &Value, claim_ns: &str) -> Vec<Key> {
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    let mut add = |ns: &str, name: &str| {
        if !name.is_empty() {
            out.push((ns.to_string(), name.to_string()));
        }
    };
    let or_claim = |ns: &'_ str| if ns.is_empty() { claim_ns.to_string() } else { ns.to_string() };
    if let Some(af) = spec.get("azureFile").filter(|v| !v.is_null()) {
        add(&or_claim(s(af, "/secretNamespace")), s(af, "/secretName"));
    }
    for source in ["cephfs", "flexVolume", "rbd", "scaleIO", "iscsi"] {
        if let Some(r) = spec.pointer(&format!("/{source}/secretRef")).filter(|v| !v.is_null()) {
            add(&or_claim(s(r, "/namespace")), s(r, "/name"));
        }
    }
    for source in ["cinder", "storageos"] {
        if let Some(r) = spec.pointer(&format!("/{source}/secretRef")).filter(|v| !v.is_null()) {
            add(s(r, "/namespace"), s(r, "/name"));
        }
    }
    for reference in ["nodePublishSecretRef", "nodeStageSecretRef"] {
        if let Some(r) = spec.pointer(&format!("/csi/{reference}")).filter(|v| !v.is_null()) {
            add(s(r, "/namespace"), s(r, "/name"));
        }
    }
    out
}

fn key(obj: &Value) -> Key {
    (meta::namespace(obj).to_string(), meta::name(obj).to_string())
}

fn unindex<K: std::hash::Hash + Eq>(index: &mut HashMap<K, HashSet<String>>, k: K, name: &str) {
    if let Some(set) = index.get_mut(&k) {
        set.remove(name);
        if set.is_empty() {
            index.remove(&k);
        }
    }
}

impl Graph {
    /// Records a pod as it is now (an unbound pod relates to nothing).
    pub fn put_pod(&mut self, pod: &Value) {
        let (ns, name) = key(pod);
        self.remove_pod(&ns, &name);
        let node = s(pod, "/spec/nodeName");
        if node.is_empty() {
            return;
        }
        let mirror = pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_POD)).is_some();
        let uses = if mirror { Vec::new() } else { pod_uses(pod) };
        for (kind, used) in &uses {
            self.used_by.entry((*kind, ns.clone(), used.clone())).or_default().insert(name.clone());
        }
        self.pods.insert((ns, name), (node.to_string(), uses));
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some((_, uses)) = self.pods.remove(&(namespace.to_string(), name.to_string())) else { return };
        for (kind, used) in uses {
            unindex(&mut self.used_by, (kind, namespace.to_string(), used), name);
        }
    }

    /// Records a PersistentVolume: bound to a claim, it relates that claim's
    /// pods' nodes to itself and its secrets.
    pub fn put_pv(&mut self, pv: &Value) {
        let name = meta::name(pv).to_string();
        self.remove_pv(&name);
        let Some(claim) = pv.pointer("/spec/claimRef").filter(|c| c.is_object()) else { return };
        let claim = (s(claim, "/namespace").to_string(), s(claim, "/name").to_string());
        let secrets = pv_secrets(pv, &claim.0);
        for secret in &secrets {
            self.pvs_by_secret.entry(secret.clone()).or_default().insert(name.clone());
        }
        self.pvs_by_claim.entry(claim.clone()).or_default().insert(name.clone());
        self.pvs.insert(name, (claim, secrets));
    }

    pub fn remove_pv(&mut self, name: &str) {
        let Some((claim, secrets)) = self.pvs.remove(name) else { return };
        unindex(&mut self.pvs_by_claim, claim, name);
        for secret in secrets {
            unindex(&mut self.pvs_by_secret, secret, name);
        }
    }

    /// Records a VolumeAttachment (spec.nodeName).
    pub fn put_attachment(&mut self, va: &Value) {
        let (name, node) = (meta::name(va), s(va, "/spec/nodeName"));
        if node.is_empty() {
            self.attachments.remove(name);
        } else {
            self.attachments.insert(name.to_string(), node.to_string());
        }
    }

    pub fn remove_attachment(&mut self, name: &str) {
        self.attachments.remove(name);
    }

    /// Whether the object is related to `node` (upstream's hasPathFrom).
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        let on_node =
            |ns: &str, pod: &str| self.pods.get(&(ns.to_string(), pod.to_string())).is_some_and(|(n, _)| n == node);
        let used_on_node = |kind: Kind| {
            self.used_by
                .get(&(kind, namespace.to_string(), name.to_string()))
                .is_some_and(|pods| pods.iter().any(|p| on_node(namespace, p)))
        };
        let pv_reaches = |pv: &str| {
            self.pvs.get(pv).is_some_and(|((ns, claim), _)| {
                self.used_by
                    .get(&(Kind::PersistentVolumeClaim, ns.clone(), claim.clone()))
                    .is_some_and(|pods| pods.iter().any(|p| on_node(ns, p)))
            })
        };
        match kind {
            Kind::Pod => on_node(namespace, name),
            Kind::Secret => {
                used_on_node(kind)
                    || self
                        .pvs_by_secret
                        .get(&(namespace.to_string(), name.to_string()))
                        .is_some_and(|pvs| pvs.iter().any(|pv| pv_reaches(pv)))
            }
            Kind::ConfigMap | Kind::PersistentVolumeClaim | Kind::ServiceAccount | Kind::ResourceClaim => {
                used_on_node(kind)
            }
            Kind::PersistentVolume => pv_reaches(name),
            Kind::VolumeAttachment => self.attachments.get(name).is_some_and(|n| n == node),
            // No ResourceSlice is served (resource.k8s.io is off in 1.33), so none relates.
            Kind::ResourceSlice => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, node: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["nodeName"] = json!(node);
        json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
    }

    #[test]
    fn a_bound_pod_relates_what_it_uses_to_its_node() {
        let mut g = Graph::default();
        g.put_pod(&pod(
            "a",
            "web",
            "n1",
            json!({
                "serviceAccountName": "sa",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{"name": "c",
                    "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-s", "key": "k"}}},
                            {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "env-c", "key": "k"}}}],
                    "envFrom": [{"configMapRef": {"name": "from-c"}}]}],
                "ephemeralContainers": [{"name": "e", "envFrom": [{"secretRef": {"name": "eph-s"}}]}],
                "volumes": [
                    {"name": "v1", "secret": {"secretName": "vol-s"}},
                    {"name": "v2", "projected": {"sources": [{"configMap": {"name": "proj-c"}}, {"secret": {"name": "proj-s"}}]}},
                    {"name": "v3", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
                    {"name": "v5", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "csi-s"}}}
                ],
                "resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu-claim"}]
            }),
        ));
        for (kind, name) in [
            (Kind::Pod, "web"),
            (Kind::ServiceAccount, "sa"),
            (Kind::Secret, "pull"),
            (Kind::Secret, "env-s"),
            (Kind::ConfigMap, "env-c"),
            (Kind::ConfigMap, "from-c"),
            (Kind::Secret, "eph-s"),
            (Kind::Secret, "vol-s"),
            (Kind::ConfigMap, "proj-c"),
            (Kind::Secret, "proj-s"),
            (Kind::PersistentVolumeClaim, "data"),
            (Kind::PersistentVolumeClaim, "web-scratch"),
            (Kind::Secret, "csi-s"),
            (Kind::ResourceClaim, "gpu-claim"),
        ] {
            assert!(g.reaches("n1", kind, "a", name), "{kind:?} {name}");
            assert!(!g.reaches("n2", kind, "a", name), "{kind:?} {name} on n2");
            assert!(!g.reaches("n1", kind, "b", name), "{kind:?} {name} in b");
        }
        // A secret's name is no configmap's.
        assert!(!g.reaches("n1", Kind::ConfigMap, "a", "vol-s"));
        g.remove_pod("a", "web");
        assert!(!g.reaches("n1", Kind::Secret, "a", "vol-s"));
        assert!(g.used_by.is_empty());
    }

    #[test]
    fn unbound_and_mirror_pods_grant_nothing() {
        let mut g = Graph::default();
        let spec = json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}]});
        g.put_pod(&pod("a", "p", "", spec.clone()));
        assert!(!g.reaches("", Kind::Secret, "a", "s"));
        let mut mirror = pod("a", "m", "n1", spec.clone());
        mirror["metadata"]["annotations"] = json!({MIRROR_POD: "x"});
        g.put_pod(&mirror);
        assert!(g.reaches("n1", Kind::Pod, "a", "m"));
        assert!(!g.reaches("n1", Kind::Secret, "a", "s"));
        // Binding the pod later relates it.
        g.put_pod(&pod("a", "p", "n1", spec));
        assert!(g.reaches("n1", Kind::Secret, "a", "s"));
    }

    #[test]
    fn a_pv_relates_through_its_claim() {
        let mut g = Graph::default();
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {
            "claimRef": {"namespace": "a", "name": "data"},
            "csi": {"driver": "d", "nodeStageSecretRef": {"namespace": "creds", "name": "stage"},
                    "controllerPublishSecretRef": {"namespace": "creds", "name": "controller"}},
            "rbd": {"secretRef": {"name": "ceph"}}}});
        g.put_pv(&pv);
        assert!(!g.reaches("n1", Kind::PersistentVolume, "", "pv1"));
        g.put_pod(&pod(
            "a",
            "p",
            "n1",
            json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}]}),
        ));
        assert!(g.reaches("n1", Kind::PersistentVolume, "", "pv1"));
        assert!(g.reaches("n1", Kind::Secret, "creds", "stage"));
        // Only the secrets the kubelet reads, in the claim's namespace when unnamed.
        assert!(!g.reaches("n1", Kind::Secret, "creds", "controller"));
        assert!(g.reaches("n1", Kind::Secret, "a", "ceph"));
        assert!(!g.reaches("n2", Kind::PersistentVolume, "", "pv1"));
        g.remove_pv("pv1");
        assert!(!g.reaches("n1", Kind::Secret, "creds", "stage"));
        assert!(g.pvs_by_secret.is_empty() && g.pvs_by_claim.is_empty());
    }

    #[test]
    fn attachments_name_their_node() {
        let mut g = Graph::default();
        g.put_attachment(&json!({"metadata": {"name": "va"}, "spec": {"nodeName": "n1"}}));
        assert!(g.reaches("n1", Kind::VolumeAttachment, "", "va"));
        assert!(!g.reaches("n2", Kind::VolumeAttachment, "", "va"));
        g.remove_attachment("va");
        assert!(!g.reaches("n1", Kind::VolumeAttachment, "", "va"));
    }
}
