//! The kind check (e2e::kinds) for the cluster, storage, networking,
//! scheduling and coordination kinds on one shared server, and the behaviour
//! beyond it: the built-in PriorityClasses and Priority admission, node
//! status, cordon, field selectors and nodes/proxy, immutable fields, and the
//! `kubectl create` generators for these kinds.

use e2e::kinds::KindCase;
use e2e::Server;
use serde_json::json;

#[test]
fn cluster_kinds() {
    let mut s = Server::start();
    s.check_kind(&KindCase {
        resource: "nodes",
        kind: "Node",
        namespace: None,
        valid: "apiVersion: v1\nkind: Node\nmetadata: {name: worker-1, labels: {node-role.kubernetes.io/worker: ''}}\nstatus: {capacity: {cpu: '4', memory: 8Gi}}\n",
        name: "worker-1",
        defaults: &[("/status/allocatable/cpu", json!("4"))],
        columns: &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        wide_columns: &[
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
        ],
        invalid: "apiVersion: v1\nkind: Node\nmetadata: {name: tainted}\nspec: {taints: [{key: a, effect: Sometimes}]}\n",
        invalid_name: "tainted",
        invalid_causes: &["metadata.taints[0].effect: Unsupported value: \"Sometimes\""],
    });
    s.check_kind(&KindCase {
        resource: "persistentvolumes",
        kind: "PersistentVolume",
        namespace: None,
        valid: "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv1}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /data}}\n",
        name: "pv1",
        defaults: &[
            ("/spec/persistentVolumeReclaimPolicy", json!("Retain")),
            ("/spec/volumeMode", json!("Filesystem")),
            ("/spec/hostPath/type", json!("")),
            ("/status/phase", json!("Pending")),
        ],
        columns: &[
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
        ],
        wide_columns: &[
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
            "VOLUMEMODE",
        ],
        invalid: "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: nosource}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce]}\n",
        invalid_name: "nosource",
        invalid_causes: &["spec: Required value: must specify a volume type"],
    });
    s.check_kind(&KindCase {
        resource: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespace: Some("default"),
        valid: "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: claim}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
        name: "claim",
        defaults: &[("/spec/volumeMode", json!("Filesystem")), ("/status/phase", json!("Pending"))],
        columns: &["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE"],
        wide_columns: &[
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
            "VOLUMEMODE",
        ],
        invalid: "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: nosize}\nspec: {accessModes: [ReadWriteOnce]}\n",
        invalid_name: "nosize",
        invalid_causes: &["spec.resources[storage]: Required value"],
    });
    s.check_kind(&KindCase {
        resource: "limitranges",
        kind: "LimitRange",
        namespace: Some("default"),
        valid: "apiVersion: v1\nkind: LimitRange\nmetadata: {name: limits}\nspec: {limits: [{type: Container, max: {cpu: 500m}, min: {memory: 1Mi}}]}\n",
        name: "limits",
        defaults: &[
            ("/spec/limits/0/default/cpu", json!("500m")),
            ("/spec/limits/0/defaultRequest/cpu", json!("500m")),
            ("/spec/limits/0/defaultRequest/memory", json!("1Mi")),
        ],
        columns: &["NAME", "CREATED AT"],
        wide_columns: &["NAME", "CREATED AT"],
        invalid: "apiVersion: v1\nkind: LimitRange\nmetadata: {name: twice}\nspec: {limits: [{type: Container}, {type: Container}]}\n",
        invalid_name: "twice",
        invalid_causes: &["spec.limits[1].type: Duplicate value: \"Container\""],
    });
    s.check_kind(&KindCase {
        resource: "resourcequotas",
        kind: "ResourceQuota",
        namespace: Some("default"),
        valid: "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: counts}\nspec: {hard: {pods: '10', requests.cpu: '2'}}\nstatus: {hard: {pods: '99'}}\n",
        name: "counts",
        defaults: &[("/spec/hard/pods", json!("10"))],
        columns: &["NAME", "REQUEST", "LIMIT", "AGE"],
        wide_columns: &["NAME", "REQUEST", "LIMIT", "AGE"],
        invalid: "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: bogus}\nspec: {hard: {bogus: '1'}}\n",
        invalid_name: "bogus",
        invalid_causes: &["spec.hard[bogus]: Invalid value: \"bogus\": must be a standard resource for quota"],
    });
    s.check_kind(&KindCase {
        resource: "storageclasses.storage.k8s.io",
        kind: "StorageClass",
        namespace: None,
        valid:
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: fast}\nprovisioner: csi.example.com\n",
        name: "fast",
        defaults: &[("/reclaimPolicy", json!("Delete")), ("/volumeBindingMode", json!("Immediate"))],
        columns: &["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
        wide_columns: &["NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE"],
        invalid: "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: noprov}\nprovisioner: ''\n",
        invalid_name: "noprov",
        invalid_causes: &["provisioner: Required value"],
    });
    s.check_kind(&KindCase {
        resource: "csidrivers.storage.k8s.io",
        kind: "CSIDriver",
        namespace: None,
        valid: "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: csi.example.com}\nspec: {}\n",
        name: "csi.example.com",
        defaults: &[
            ("/spec/attachRequired", json!(true)),
            ("/spec/podInfoOnMount", json!(false)),
            ("/spec/fsGroupPolicy", json!("ReadWriteOnceWithFSType")),
            ("/spec/volumeLifecycleModes", json!(["Persistent"])),
        ],
        columns: &[
            "NAME",
            "ATTACHREQUIRED",
            "PODINFOONMOUNT",
            "STORAGECAPACITY",
            "TOKENREQUESTS",
            "REQUIRESREPUBLISH",
            "MODES",
            "AGE",
        ],
        wide_columns: &[
            "NAME",
            "ATTACHREQUIRED",
            "PODINFOONMOUNT",
            "STORAGECAPACITY",
            "TOKENREQUESTS",
            "REQUIRESREPUBLISH",
            "MODES",
            "AGE",
        ],
        invalid: "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: bad.example.com}\nspec: {volumeLifecycleModes: [Forever]}\n",
        invalid_name: "bad.example.com",
        invalid_causes: &["spec.volumeLifecycleModes[0]: Unsupported value: \"Forever\""],
    });
    s.check_kind(&KindCase {
        resource: "csinodes.storage.k8s.io",
        kind: "CSINode",
        namespace: None,
        valid: "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {name: worker-1}\nspec: {drivers: [{name: csi.example.com, nodeID: n1}]}\n",
        name: "worker-1",
        defaults: &[("/spec/drivers/0/nodeID", json!("n1"))],
        columns: &["NAME", "DRIVERS", "AGE"],
        wide_columns: &["NAME", "DRIVERS", "AGE"],
        invalid: "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {name: noid}\nspec: {drivers: [{name: csi.example.com}]}\n",
        invalid_name: "noid",
        invalid_causes: &["spec.drivers[0].nodeID: Required value"],
    });
    s.check_kind(&KindCase {
        resource: "csistoragecapacities.storage.k8s.io",
        kind: "CSIStorageCapacity",
        namespace: Some("default"),
        valid: "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata: {name: cap}\nstorageClassName: fast\ncapacity: 10Gi\n",
        name: "cap",
        defaults: &[("/capacity", json!("10Gi"))],
        columns: &["NAME", "STORAGECLASSNAME", "CAPACITY"],
        wide_columns: &["NAME", "STORAGECLASSNAME", "CAPACITY"],
        invalid: "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata: {name: negative}\nstorageClassName: fast\ncapacity: -1Gi\n",
        invalid_name: "negative",
        invalid_causes: &["capacity: Invalid value: \"-1Gi\": must be greater than or equal to 0"],
    });
    s.check_kind(&KindCase {
        resource: "volumeattachments.storage.k8s.io",
        kind: "VolumeAttachment",
        namespace: None,
        valid: "apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: va1}\nspec: {attacher: csi.example.com, nodeName: worker-1, source: {persistentVolumeName: pv1}}\nstatus: {attached: true}\n",
        name: "va1",
        defaults: &[("/spec/source/persistentVolumeName", json!("pv1"))],
        columns: &["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"],
        wide_columns: &["NAME", "ATTACHER", "PV", "NODE", "ATTACHED", "AGE"],
        invalid: "apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: nosource}\nspec: {attacher: csi.example.com, nodeName: worker-1, source: {}}\n",
        invalid_name: "nosource",
        invalid_causes: &["spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"],
    });
    s.check_kind(&KindCase {
        resource: "ingresses.networking.k8s.io",
        kind: "Ingress",
        namespace: Some("default"),
        valid: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - host: web.example.com\n    http: {paths: [{path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}]}\n",
        name: "web",
        defaults: &[("/metadata/generation", json!(1))],
        columns: &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        wide_columns: &["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        invalid: "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: notype}\nspec:\n  rules:\n  - http: {paths: [{path: /, backend: {service: {name: web, port: {number: 80}}}}]}\n",
        invalid_name: "notype",
        invalid_causes: &["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"],
    });
    s.check_kind(&KindCase {
        resource: "ingressclasses.networking.k8s.io",
        kind: "IngressClass",
        namespace: None,
        valid: "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: k8s.io/ingress-nginx, parameters: {kind: Params, name: p}}\n",
        name: "nginx",
        defaults: &[("/spec/parameters/scope", json!("Cluster"))],
        columns: &["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
        wide_columns: &["NAME", "CONTROLLER", "PARAMETERS", "AGE"],
        invalid: "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: plain}\nspec: {controller: nginx}\n",
        invalid_name: "plain",
        invalid_causes: &["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path"],
    });
    s.check_kind(&KindCase {
        resource: "networkpolicies.networking.k8s.io",
        kind: "NetworkPolicy",
        namespace: Some("default"),
        valid: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny}\nspec: {podSelector: {}, egress: [{ports: [{port: 53}]}]}\n",
        name: "deny",
        defaults: &[("/spec/policyTypes", json!(["Ingress", "Egress"])), ("/spec/egress/0/ports/0/protocol", json!("TCP"))],
        columns: &["NAME", "POD-SELECTOR", "AGE"],
        wide_columns: &["NAME", "POD-SELECTOR", "AGE"],
        invalid: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: sideways}\nspec: {podSelector: {}, policyTypes: [Sideways]}\n",
        invalid_name: "sideways",
        invalid_causes: &["spec.policyTypes[0]: Unsupported value: \"Sideways\""],
    });
    s.check_kind(&KindCase {
        resource: "ipaddresses.networking.k8s.io",
        kind: "IPAddress",
        namespace: None,
        valid: "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: 192.168.7.7}\nspec: {parentRef: {group: '', resource: services, namespace: default, name: web}}\n",
        name: "192.168.7.7",
        defaults: &[("/spec/parentRef/resource", json!("services"))],
        columns: &["NAME", "PARENTREF"],
        wide_columns: &["NAME", "PARENTREF"],
        invalid: "apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: 192.168.7.8}\nspec: {}\n",
        invalid_name: "192.168.7.8",
        invalid_causes: &["spec.parentRef: Required value"],
    });
    s.check_kind(&KindCase {
        resource: "servicecidrs.networking.k8s.io",
        kind: "ServiceCIDR",
        namespace: None,
        valid: "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: extra}\nspec: {cidrs: [10.96.0.0/16]}\n",
        name: "extra",
        defaults: &[("/spec/cidrs", json!(["10.96.0.0/16"]))],
        columns: &["NAME", "CIDRS", "AGE"],
        wide_columns: &["NAME", "CIDRS", "AGE"],
        invalid: "apiVersion: networking.k8s.io/v1\nkind: ServiceCIDR\nmetadata: {name: hostbits}\nspec: {cidrs: [10.97.0.1/16]}\n",
        invalid_name: "hostbits",
        invalid_causes: &["spec.cidrs[0]: Invalid value: \"10.97.0.1/16\": must be in canonical form (\"10.97.0.0/16\")"],
    });
    s.check_kind(&KindCase {
        resource: "runtimeclasses.node.k8s.io",
        kind: "RuntimeClass",
        namespace: None,
        valid: "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: sandboxed}\nhandler: kata\n",
        name: "sandboxed",
        defaults: &[("/handler", json!("kata"))],
        columns: &["NAME", "HANDLER", "AGE"],
        wide_columns: &["NAME", "HANDLER", "AGE"],
        invalid: "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: badhandler}\nhandler: Not_A_Label\n",
        invalid_name: "badhandler",
        invalid_causes: &["handler: Invalid value: \"Not_A_Label\""],
    });
    s.check_kind(&KindCase {
        resource: "priorityclasses.scheduling.k8s.io",
        kind: "PriorityClass",
        namespace: None,
        valid: "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\nvalue: 1000\n",
        name: "high",
        defaults: &[("/preemptionPolicy", json!("PreemptLowerPriority")), ("/value", json!(1000))],
        columns: &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        wide_columns: &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        invalid:
            "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: too-high}\nvalue: 1000000001\n",
        invalid_name: "too-high",
        invalid_causes: &["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"],
    });
    s.check_kind(&KindCase {
        resource: "leases.coordination.k8s.io",
        kind: "Lease",
        namespace: Some("default"),
        valid: "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: leader}\nspec: {holderIdentity: me, leaseDurationSeconds: 15}\n",
        name: "leader",
        defaults: &[("/spec/holderIdentity", json!("me"))],
        columns: &["NAME", "HOLDER", "AGE"],
        wide_columns: &["NAME", "HOLDER", "AGE"],
        invalid: "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: zero}\nspec: {leaseDurationSeconds: 0}\n",
        invalid_name: "zero",
        invalid_causes: &["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"],
    });

    // Cells as upstream prints them.
    let node = s.kubectl(&["get", "node", "worker-1", "--no-headers"]);
    assert!(node.starts_with("worker-1") && node.contains("Unknown") && node.contains("worker"), "{node}");
    let pv = s.kubectl(&["get", "pv", "pv1", "--no-headers", "-o", "wide"]);
    for cell in ["1Gi", "RWO", "Retain", "Pending", "<unset>", "Filesystem"] {
        assert!(pv.contains(cell), "pv row lacks {cell}: {pv}");
    }
    let ing = s.kubectl(&["get", "ingress", "web", "--no-headers"]);
    for cell in ["<none>", "web.example.com", "80"] {
        assert!(ing.contains(cell), "ingress row lacks {cell}: {ing}");
    }
    // A quota's status is the server's (the client's was dropped): hard from
    // the spec, and usage of what it tracks (admission_quota tests the counts).
    e2e::eventually("the quota's status", || {
        let quota = s.kubectl_json(&["get", "quota", "counts"]);
        quota["status"]["hard"] == quota["spec"]["hard"]
            && quota["status"]["used"]
                .as_object()
                .is_some_and(|u| u.contains_key("pods") && u.contains_key("requests.cpu"))
    });
    let va = s.kubectl_json(&["get", "volumeattachment", "va1"]);
    assert!(va.pointer("/status/attached").is_none(), "status is the attacher's: {va}");
    s.assert_healthy();
}

/// The system classes exist from the start and are reserved; a pod's class
/// resolves to its priority (the global default when it names none); an
/// update that leaves the priority out keeps it.
#[test]
fn priority_classes_and_admission() {
    let mut s = Server::start();
    let node = s.kubectl_json(&["get", "priorityclass", "system-node-critical"]);
    assert_eq!(node["value"], 2000001000, "{node}");
    let cluster = s.kubectl_json(&["get", "pc", "system-cluster-critical"]);
    assert_eq!(cluster["value"], 2000000000, "{cluster}");
    assert_eq!(cluster["preemptionPolicy"], "PreemptLowerPriority", "{cluster}");
    s.kubectl_err(
        &["delete", "pc", "system-node-critical"],
        None,
        &["Forbidden", "this is a system priority class and cannot be deleted"],
    );
    s.kubectl_err(
        &["create", "priorityclass", "system-mine", "--value=5"],
        None,
        &["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"],
    );

    // kubectl's generator, then the update rules.
    let out = s.kubectl(&[
        "create",
        "priorityclass",
        "high",
        "--value=1000",
        "--description=high",
        "--preemption-policy=Never",
    ]);
    assert!(out.contains("priorityclass.scheduling.k8s.io/high created"), "{out}");
    let high = s.kubectl_json(&["get", "pc", "high"]);
    assert_eq!((high["value"].as_i64(), high["preemptionPolicy"].as_str()), (Some(1000), Some("Never")), "{high}");
    s.kubectl_err(
        &["patch", "pc", "high", "--type=merge", "-p", r#"{"value":5}"#],
        None,
        &["value: Forbidden: may not be changed in an update."],
    );
    s.kubectl(&["patch", "pc", "high", "--type=merge", "-p", r#"{"description":"changed"}"#]);
    s.kubectl(&["create", "priorityclass", "fallback", "--value=10", "--global-default"]);
    s.kubectl_err(
        &["create", "priorityclass", "second", "--value=20", "--global-default"],
        None,
        &["is forbidden: PriorityClass fallback is already marked as default. Only one default can exist"],
    );
    s.kubectl_err(
        &["patch", "pc", "high", "--type=merge", "-p", r#"{"globalDefault":true}"#],
        None,
        &["PriorityClass fallback is already marked as default"],
    );

    let pod = |name: &str, class: &str| {
        let class = if class.is_empty() { String::new() } else { format!("  priorityClassName: {class}\n") };
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{class}  containers: [{{name: c, image: nginx}}]\n")
    };
    s.create(&pod("plain", ""));
    let plain = s.kubectl_json(&["get", "pod", "plain"]);
    assert_eq!(plain["spec"]["priority"], 10, "{plain}");
    assert_eq!(plain["spec"]["priorityClassName"], "fallback", "{plain}");
    assert_eq!(plain["spec"]["preemptionPolicy"], "PreemptLowerPriority", "{plain}");
    s.create(&pod("important", "high"));
    let important = s.kubectl_json(&["get", "pod", "important"]);
    assert_eq!(important["spec"]["priority"], 1000, "{important}");
    assert_eq!(important["spec"]["preemptionPolicy"], "Never", "{important}");
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&pod("lost", "nope")),
        &["Forbidden", "pods \"lost\" is forbidden: no PriorityClass with name nope was found"],
    );
    let wrong = pod("wrong", "high").replace("  containers:", "  priority: 7\n  containers:");
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&wrong),
        &["the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"],
    );
    assert_eq!(s.run(&["get", "pod", "lost"], None).code, 1, "a refused pod must not exist");

    // get | replace round trips; a manifest without the priority keeps it.
    let yaml = s.kubectl(&["get", "pod", "important", "-o", "yaml"]);
    let replaced = s.kubectl_stdin(&["replace", "-f", "-"], Some(&yaml));
    assert!(replaced.contains("pod/important replaced"), "{replaced}");
    let mut bare = s.kubectl_json(&["get", "pod", "important"]);
    let spec = bare["spec"].as_object_mut().expect("pod spec");
    spec.remove("priority");
    spec.remove("preemptionPolicy");
    let out = s.kubectl_stdin(&["replace", "-f", "-"], Some(&bare.to_string()));
    assert!(out.contains("replaced"), "{out}");
    let kept = s.kubectl_json(&["get", "pod", "important"]);
    assert_eq!(
        (kept["spec"]["priority"].as_i64(), kept["spec"]["preemptionPolicy"].as_str()),
        (Some(1000), Some("Never"))
    );

    // Without a global default, a pod gets priority 0.
    s.kubectl(&["delete", "pc", "fallback"]);
    s.create(&pod("zero", ""));
    let zero = s.kubectl_json(&["get", "pod", "zero"]);
    assert_eq!(zero["spec"]["priority"], 0, "{zero}");
    assert!(zero["spec"].get("priorityClassName").is_none_or(|c| c == ""), "{zero}");
    s.assert_healthy();
}

/// A free local port nothing listens on: a kubelet that is not there.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    l.local_addr().expect("local address").port()
}

/// Node status is written through /status only; cordon sets
/// spec.unschedulable, which field selectors see; podCIDR is set once; and
/// nodes/proxy answers with upstream's errors when no kubelet is reachable.
#[test]
fn nodes() {
    let mut s = Server::start();
    let port = closed_port();
    s.create(&format!(
        "apiVersion: v1\nkind: Node\nmetadata: {{name: n1}}\nstatus:\n  addresses: [{{type: InternalIP, address: 127.0.0.1}}]\n  daemonEndpoints: {{kubeletEndpoint: {{Port: {port}}}}}\n"
    ));
    s.create("apiVersion: v1\nkind: Node\nmetadata: {name: bare}\n");

    // Status moves through the subresource only.
    s.kubectl(&[
        "patch",
        "node",
        "n1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"nodeInfo":{"kubeletVersion":"v1.33.0"},"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    s.kubectl(&["patch", "node", "n1", "--type=merge", "-p", r#"{"status":{"nodeInfo":{"kubeletVersion":"v9"}}}"#]);
    let row = s.kubectl(&["get", "node", "n1", "--no-headers", "-o", "wide"]);
    assert!(row.contains("Ready") && row.contains("v1.33.0") && row.contains("127.0.0.1"), "{row}");

    // cordon / uncordon and the spec.unschedulable field selector.
    let out = s.kubectl(&["cordon", "n1"]);
    assert!(out.contains("node/n1 cordoned"), "{out}");
    let row = s.kubectl(&["get", "node", "n1", "--no-headers"]);
    assert!(row.contains("Ready,SchedulingDisabled"), "{row}");
    let cordoned = s.kubectl(&["get", "nodes", "--field-selector", "spec.unschedulable=true", "-o", "name"]);
    assert_eq!(cordoned.trim(), "node/n1");
    let open = s.kubectl(&["get", "nodes", "--field-selector", "spec.unschedulable=false", "-o", "name"]);
    assert_eq!(open.trim(), "node/bare");
    s.kubectl(&["uncordon", "n1"]);
    let n1 = s.kubectl_json(&["get", "node", "n1"]);
    assert!(n1["spec"].get("unschedulable").is_none_or(|u| u == false), "{n1}");
    s.kubectl_err(&["get", "nodes", "--field-selector", "spec.bogus=x"], None, &["spec.bogus"]);

    // podCIDR: from unset to valid once, then fixed.
    s.kubectl(&[
        "patch",
        "node",
        "n1",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.244.0.0/24","podCIDRs":["10.244.0.0/24"]}}"#,
    ]);
    s.kubectl_err(
        &[
            "patch",
            "node",
            "n1",
            "--type=merge",
            "-p",
            r#"{"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]}}"#,
        ],
        None,
        &["spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"],
    );

    // nodes/proxy without a kubelet: never a 404 or a hang.
    let r = s.request("GET", "/api/v1/nodes/n1/proxy", None);
    let st = r.assert_status(503, "ServiceUnavailable");
    assert_eq!(
        st["message"],
        format!("error trying to reach service: dial tcp 127.0.0.1:{port}: connect: connection refused"),
        "{st}"
    );
    let r = s.request("GET", "/api/v1/nodes/bare/proxy", None);
    let st = r.assert_status(500, "InternalError");
    assert!(st["message"].as_str().unwrap_or("").contains("no preferred addresses found; known addresses: []"), "{st}");
    s.request("GET", "/api/v1/nodes/ghost/proxy", None).assert_status(404, "NotFound");
    let out = s.kubectl_err(&["get", "--raw", "/api/v1/nodes/n1/proxy"], None, &["error trying to reach service"]);
    assert!(!out.contains("NotFound"), "{out}");
    s.assert_healthy();
}

/// kubectl's generators for quotas and ingresses, and the fields that stay as
/// created.
#[test]
fn create_commands_and_fixed_fields() {
    let mut s = Server::start();
    let out = s.kubectl(&["create", "quota", "q1", "--hard=cpu=1,memory=1G,pods=2,services=3"]);
    assert!(out.contains("resourcequota/q1 created"), "{out}");
    let q1 = s.kubectl_json(&["get", "quota", "q1"]);
    assert_eq!(q1["spec"]["hard"], json!({"cpu": "1", "memory": "1G", "pods": "2", "services": "3"}), "{q1}");
    s.kubectl(&["create", "quota", "q2", "--hard=pods=2", "--scopes=BestEffort"]);
    assert_eq!(s.kubectl_json(&["get", "quota", "q2"])["spec"]["scopes"], json!(["BestEffort"]));
    s.kubectl_err(
        &["create", "quota", "q3", "--hard=pods=-1"],
        None,
        &["spec.hard[pods]", "must be greater than or equal to 0"],
    );

    let out = s.kubectl(&["create", "ingress", "simple", "--rule=foo.com/bar=svc1:8080,tls=my-cert"]);
    assert!(out.contains("ingress.networking.k8s.io/simple created"), "{out}");
    let simple = s.kubectl_json(&["get", "ingress", "simple"]);
    let path = &simple["spec"]["rules"][0]["http"]["paths"][0];
    assert_eq!(simple["spec"]["rules"][0]["host"], "foo.com", "{simple}");
    assert_eq!((path["path"].as_str(), path["pathType"].as_str()), (Some("/bar"), Some("Exact")), "{simple}");
    assert_eq!(path["backend"]["service"], json!({"name": "svc1", "port": {"number": 8080}}), "{simple}");
    assert_eq!(simple["spec"]["tls"][0]["secretName"], "my-cert", "{simple}");
    s.kubectl(&[
        "create",
        "ingress",
        "catch",
        "--class=default",
        "--default-backend=defaultsvc:http",
        "--rule=/path*=svc:8080",
    ]);
    let catch = s.kubectl_json(&["get", "ingress", "catch"]);
    assert_eq!(catch["spec"]["rules"][0]["http"]["paths"][0]["pathType"], "Prefix", "{catch}");
    let row = s.kubectl(&["get", "ingress", "simple", "--no-headers"]);
    assert!(row.contains("foo.com") && row.contains("80, 443"), "{row}");
    s.kubectl(&["patch", "ingress", "simple", "--type=merge", "-p", r#"{"spec":{"ingressClassName":"nginx"}}"#]);
    assert_eq!(s.kubectl_json(&["get", "ingress", "simple"])["metadata"]["generation"], 2);

    s.create("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: std, annotations: {storageclass.kubernetes.io/is-default-class: 'true'}}\nprovisioner: a.example.com\n");
    let row = s.kubectl(&["get", "sc", "--no-headers"]);
    assert!(row.starts_with("std (default)"), "{row}");
    s.kubectl_err(
        &["patch", "sc", "std", "--type=merge", "-p", r#"{"provisioner":"b.example.com"}"#],
        None,
        &["provisioner: Forbidden: updates to provisioner are forbidden."],
    );
    s.create("apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: rc}\nhandler: runc\n");
    s.kubectl_err(
        &["patch", "runtimeclass", "rc", "--type=merge", "-p", r#"{"handler":"kata"}"#],
        None,
        &["handler: Invalid value: \"kata\": field is immutable"],
    );
    s.create(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: ic}\nspec: {controller: k8s.io/a}\n",
    );
    s.kubectl_err(
        &["patch", "ingressclass", "ic", "--type=merge", "-p", r#"{"spec":{"controller":"k8s.io/b"}}"#],
        None,
        &["spec.controller: Invalid value: \"k8s.io/b\": field is immutable"],
    );
    s.create("apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pv}\nspec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], hostPath: {path: /a}}\n");
    s.kubectl_err(
        &["patch", "pv", "pv", "--type=merge", "-p", r#"{"spec":{"hostPath":{"path":"/b"}}}"#],
        None,
        &["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"],
    );
    s.create("apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: pvc}\nspec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n");
    s.kubectl_err(
        &["patch", "pvc", "pvc", "--type=merge", "-p", r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#],
        None,
        &["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"],
    );
    s.kubectl(&["patch", "pvc", "pvc", "--type=merge", "-p", r#"{"spec":{"volumeName":"pv"}}"#]);
    assert_eq!(s.kubectl(&["get", "pvc", "pvc", "-o", "jsonpath={.status.phase}"]), "Pending");
    s.assert_healthy();
}

/// componentstatuses are computed on read: the storage's health as etcd-0,
/// nothing can be written, and every answer carries upstream's deprecation
/// warning.
#[test]
fn component_statuses() {
    const WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";
    let s = Server::start();
    let r = s.run(&["get", "componentstatuses"], None);
    assert_eq!(e2e::kinds::header(&r.stdout), ["NAME", "STATUS", "MESSAGE", "ERROR"], "{r:?}");
    assert!(r.stderr.contains(&format!("Warning: {WARNING}")), "{r:?}");
    let row = s.kubectl(&["get", "cs", "etcd-0", "--no-headers"]);
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["etcd-0", "Healthy", "ok"], "{row}");
    let cs = s.kubectl_json(&["get", "cs", "etcd-0"]);
    assert_eq!(cs["conditions"], json!([{"type": "Healthy", "status": "True", "message": "ok"}]), "{cs}");
    let yaml = s.kubectl(&["get", "cs", "etcd-0", "-o", "yaml"]);
    for line in ["apiVersion: v1", "kind: ComponentStatus", "  name: etcd-0", "- message: ok", "  type: Healthy"] {
        assert!(yaml.lines().any(|l| l == line), "no {line:?} in:\n{yaml}");
    }
    s.kubectl_err(&["get", "cs", "scheduler"], None, &["NotFound"]);
    // Lists: selectors apply; computed objects carry no resourceVersion.
    let list = s.request("GET", "/api/v1/componentstatuses", None);
    assert_eq!(list.status, 200);
    assert_eq!(list.header("Warning"), [format!("299 - \"{WARNING}\"")]);
    let list = list.json();
    assert_eq!((list["kind"].as_str(), list["apiVersion"].as_str()), (Some("ComponentStatusList"), Some("v1")));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");
    assert!(list["items"][0]["metadata"].get("resourceVersion").is_none(), "{list}");
    let by_name = s.kubectl(&["get", "cs", "--field-selector", "metadata.name=etcd-0", "-o", "name"]);
    assert_eq!(by_name.trim(), "componentstatus/etcd-0");
    let r = s.run(&["get", "cs", "-l", "tier=control-plane"], None);
    assert!(r.stderr.contains("No resources found"), "{r:?}");
    let pb = s.curl(
        "GET",
        "/api/v1/componentstatuses/etcd-0",
        e2e::Cred::Admin,
        &[("Accept", "application/vnd.kubernetes.protobuf")],
        None,
    );
    assert_eq!(pb.status, 200);
    assert!(pb.headers.contains("application/vnd.kubernetes.protobuf"), "{}", pb.headers);
    assert!(pb.body.windows(6).any(|w| w == b"etcd-0"));
    // Read only, refusals warned about too.
    let refused = s.request("DELETE", "/api/v1/componentstatuses/etcd-0", None);
    assert_eq!(refused.header("Warning"), [format!("299 - \"{WARNING}\"")]);
    refused.assert_status(405, "MethodNotAllowed");
    s.request("POST", "/api/v1/componentstatuses", Some(&json!({"metadata": {"name": "x"}})))
        .assert_status(405, "MethodNotAllowed");
    s.request("GET", "/api/v1/componentstatuses?watch=true", None).assert_status(405, "MethodNotAllowed");
}
e2e::on_etcd!(nodes, component_statuses);
