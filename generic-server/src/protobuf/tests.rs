use prost::Message as _;
use serde_json::{json, Value};

use super::*;

fn roundtrip(obj: &Value) -> Value {
    let bytes = encode(obj).unwrap_or_else(|e| panic!("encode failed: {e}"));
    assert!(bytes.starts_with(MAGIC));
    decode(&bytes).unwrap_or_else(|e| panic!("decode failed: {e}"))
}

/// The envelope around a message built with k8s-pb's prost types.
fn wrap(api_version: &str, kind: &str, msg: &impl prost::Message) -> Vec<u8> {
    envelope(api_version, kind, &msg.encode_to_vec())
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "8e2c3c6a-1111-2222-3333-444455556666",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2024-01-02T03:04:05Z",
            "labels": {"app": "web", "tier": "frontend"},
            "annotations": {"note": ""},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "u1", "controller": true}],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Apply",
                "apiVersion": "v1",
                "time": "2024-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:app": {}}}}
            }]
        },
        "spec": {
            "containers": [{
                "name": "nginx",
                "image": "nginx:1.27",
                "command": ["nginx", "-g", "daemon off;"],
                "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
                "resources": {
                    "limits": {"cpu": "500m", "memory": "128Mi"},
                    "requests": {"cpu": "250m", "memory": "64Mi"}
                },
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "initialDelaySeconds": 3,
                    "periodSeconds": 10
                },
                "readinessProbe": {"tcpSocket": {"port": 80}},
                "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
                "securityContext": {"runAsUser": 0, "privileged": false, "allowPrivilegeEscalation": false}
            }],
            "volumes": [
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420, "items": [{"key": "a", "path": "a.txt"}]}}
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 0,
            "nodeSelector": {"disk": "ssd"},
            "enableServiceLinks": false,
            "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 300}]
        },
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "startTime": "2024-01-02T03:04:06Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-02T03:04:07Z"}]
        }
    })
}

#[test]
fn pod_roundtrip() {
    let p = pod();
    assert_eq!(roundtrip(&p), p);
}

#[test]
fn pod_decodes_like_prost() {
    // The same bytes prost produces for k8s-pb's types decode as expected.
    let bytes = encode(&pod()).unwrap();
    let (_, _, raw) = parse_envelope(&bytes).unwrap();
    let decoded = k8s_pb::api::core::v1::Pod::decode(raw).expect("prost decodes our encoding");
    let spec = decoded.spec.unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.name.as_deref(), Some("nginx"));
    let limits = &c.resources.as_ref().unwrap().limits;
    assert_eq!(limits["cpu"].string.as_deref(), Some("500m"));
    let probe_port =
        c.liveness_probe.as_ref().unwrap().handler.as_ref().unwrap().http_get.as_ref().unwrap().port.as_ref();
    assert_eq!(probe_port.unwrap().str_val.as_deref(), Some("http"));
    assert_eq!(spec.termination_grace_period_seconds, Some(0));
    let meta = decoded.metadata.unwrap();
    assert_eq!(meta.creation_timestamp.unwrap().seconds, Some(1704164645));
    assert_eq!(meta.labels["tier"], "frontend");
    let status = decoded.status.unwrap();
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
}

#[test]
fn hand_built_pod_decodes() {
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    // As Go writes it: non-pointer fields present even when empty.
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            generate_name: Some(String::new()),
            namespace: Some("ns".into()),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            labels: [("a".to_string(), "b".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("busybox".into()),
                ports: vec![core::ContainerPort {
                    container_port: Some(8080),
                    host_port: Some(0),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                resources: Some(core::ResourceRequirements {
                    requests: [("cpu".to_string(), Quantity { string: Some("100m".into()) })].into(),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        tcp_socket: Some(core::TcpSocketAction {
                            port: Some(IntOrString {
                                r#type: Some(0),
                                int_val: Some(8080),
                                str_val: Some(String::new()),
                            }),
                            host: Some(String::new()),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            dns_policy: Some(String::new()),
            termination_grace_period_seconds: Some(30),
            volumes: vec![core::Volume {
                name: Some("v".into()),
                volume_source: Some(core::VolumeSource {
                    secret: Some(core::SecretVolumeSource { secret_name: Some("s".into()), ..Default::default() }),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    };
    let got = decode(&wrap("v1", "Pod", &pod)).unwrap();
    let want = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {
            "volumes": [{"name": "v", "secret": {"secretName": "s"}}],
            "containers": [{
                "name": "c",
                "image": "busybox",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "100m"}},
                "readinessProbe": {"tcpSocket": {"port": 8080}}
            }],
            "terminationGracePeriodSeconds": 30
        },
        "status": {}
    });
    assert_eq!(got, want);
}

#[test]
fn secret_bytes_roundtrip() {
    let s = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default"},
        "type": "Opaque",
        "data": {"password": "c2VjcmV0", "empty": ""},
        "stringData": {"x": "y"},
        "immutable": true
    });
    assert_eq!(roundtrip(&s), s);
    let bytes = encode(&s).unwrap();
    let (_, _, raw) = parse_envelope(&bytes).unwrap();
    let decoded = k8s_pb::api::core::v1::Secret::decode(raw).unwrap();
    assert_eq!(decoded.data["password"], b"secret".to_vec());
}

#[test]
fn deployment_roundtrip() {
    let d = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "deletionTimestamp": "2025-06-07T08:09:10Z"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600
        },
        "status": {"observedGeneration": 1, "replicas": 1, "conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-02T03:04:05Z", "lastTransitionTime": "2024-01-02T03:04:05Z", "reason": "MinimumReplicasAvailable", "message": "ok"}]}
    });
    assert_eq!(roundtrip(&d), d);
}

#[test]
fn configmap_list_roundtrip() {
    let l = json!({
        "apiVersion": "v1",
        "kind": "ConfigMapList",
        "metadata": {"resourceVersion": "100", "continue": "abc", "remainingItemCount": 5},
        "items": [
            {"metadata": {"name": "a", "namespace": "default"}, "data": {"k": "v", "empty": ""}, "binaryData": {"b": "AAEC"}},
            {"metadata": {"name": "b", "namespace": "default"}}
        ]
    });
    assert_eq!(roundtrip(&l), l);
    assert!(supports("v1", "ConfigMapList"));
    assert!(supports("apps/v1", "DeploymentList"));
}

#[test]
fn delete_options_roundtrip_and_any_version() {
    let d = json!({
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "u", "resourceVersion": "7"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"]
    });
    assert_eq!(roundtrip(&d), d);
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let opts =
        meta::DeleteOptions { grace_period_seconds: Some(0), orphan_dependents: Some(false), ..Default::default() };
    let got = decode(&wrap("apps/v1", "DeleteOptions", &opts)).unwrap();
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "orphanDependents": false})
    );
}

#[test]
fn status_roundtrip() {
    let s = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": "pods \"x\" not found",
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods", "causes": [{"reason": "FieldValueInvalid", "message": "bad", "field": "spec"}], "retryAfterSeconds": 1},
        "code": 404
    });
    assert_eq!(roundtrip(&s), s);
}

#[test]
fn special_types() {
    // Event: MicroTime; Lease: MicroTime; CRD: JSONSchemaProps unions and JSON.
    let e = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "eventTime": "2024-01-02T03:04:05.123456Z",
        "reportingController": "c",
        "reportingInstance": "i",
        "action": "A",
        "reason": "R"
    });
    assert_eq!(roundtrip(&e), e);

    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["cronSpec"],
                            "properties": {
                                "cronSpec": {"type": "string", "default": "* * * * *", "pattern": "^.*$"},
                                "replicas": {"type": "integer", "minimum": 1, "maximum": 10.5, "enum": [1, 2, 3]},
                                "tags": {"type": "array", "items": {"type": "string"}},
                                "extra": {"type": "object", "additionalProperties": {"type": "string"}},
                                "free": {"type": "object", "additionalProperties": false},
                                "$ref_like": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
                            }
                        }
                    }
                }}
            }]
        }
    });
    assert_eq!(roundtrip(&crd), crd);
}

#[test]
fn api_resource_list_verbs() {
    let l = json!({
        "apiVersion": "v1",
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [{"name": "deployments", "singularName": "deployment", "namespaced": true, "kind": "Deployment", "verbs": ["get", "list"], "shortNames": ["deploy"]}]
    });
    assert_eq!(roundtrip(&l), l);
}

#[test]
fn zero_values_of_non_pointer_fields() {
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 0, "nodePort": 0, "protocol": ""}], "type": ""}
    });
    let got = roundtrip(&svc);
    assert_eq!(got["spec"], json!({"ports": [{"port": 80}]}));
}

#[test]
fn watch_event_frame() {
    let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
    let frame = encode_watch_event("ADDED", &obj).unwrap();
    let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    assert_eq!(len, frame.len() - 4);
    let ev = k8s_pb::apimachinery::pkg::apis::meta::v1::WatchEvent::decode(&frame[4..]).unwrap();
    assert_eq!(ev.r#type.as_deref(), Some("ADDED"));
    let raw = ev.object.unwrap().raw.unwrap();
    assert_eq!(decode(&raw).unwrap(), obj);
}

#[test]
fn unknown_kinds_are_not_supported() {
    assert!(!supports("stable.example.com/v1", "CronTab"));
    assert!(supports("v1", "Pod"));
    assert!(supports("apps/v1", "Deployment"));
    assert!(supports("v1", "Status"));
    assert!(supports("policy/v1", "Eviction"));
    assert!(supports("autoscaling/v1", "Scale"));
    assert!(supports("storage.k8s.io/v1", "CSIDriver"));
    assert!(supports("apiregistration.k8s.io/v1", "APIService"));
    let e = encode(&json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab"})).unwrap_err();
    assert_eq!(e.code, 406);
    let e = encode(&json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "nope"}})).unwrap_err();
    assert_eq!(e.code, 500);
}

#[test]
fn malformed_input_is_bad_request() {
    let good = encode(&pod()).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        vec![],
        b"k8s".to_vec(),
        b"k8s\0".to_vec(),
        b"{\"kind\":\"Pod\"}".to_vec(),
        b"k8s\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"k8s\0\x0a\x05\x0a\x02v1".to_vec(),
    ];
    for cut in [5, 10, 20, good.len() / 2, good.len() - 1] {
        cases.push(good[..cut].to_vec());
    }
    // Wrong kind for the bytes, unknown kind, garbage after the magic.
    cases.push(wrap("v1", "Nope", &k8s_pb::api::core::v1::Pod::default()));
    let mut garbage = MAGIC.to_vec();
    let mut x: u32 = 12345;
    for _ in 0..4096 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        garbage.push((x >> 16) as u8);
    }
    cases.push(garbage);
    for case in cases {
        let err = decode(&case).expect_err("malformed input must fail");
        assert_eq!(err.code, 400, "{err}");
    }
    // Every truncation and single-byte corruption of a valid body: never a panic,
    // and any error is a 400.
    for i in 0..good.len() {
        if let Err(e) = decode(&good[..i]) {
            assert_eq!(e.code, 400);
        }
        let mut c = good.clone();
        c[i] ^= 0xa5;
        if let Err(e) = decode(&c) {
            assert_eq!(e.code, 400);
        }
    }
}

#[test]
fn deep_nesting_is_bounded() {
    // A JSONSchemaProps nested far deeper than MAX_DEPTH: each level is
    // properties{"a": <next>}.
    let mut inner: Vec<u8> = vec![];
    for _ in 0..1000 {
        let mut entry = vec![];
        wire::put_len(&mut entry, 1, b"a");
        wire::put_len(&mut entry, 2, &inner);
        let mut props = vec![];
        wire::put_len(&mut props, 29, &entry);
        if props.len() > 1 << 20 {
            break;
        }
        inner = props;
    }
    let mut validation = vec![];
    wire::put_len(&mut validation, 1, &inner);
    let mut version = vec![];
    wire::put_len(&mut version, 1, b"v1");
    wire::put_len(&mut version, 4, &validation);
    let mut spec = vec![];
    wire::put_len(&mut spec, 7, &version);
    let mut crd = vec![];
    wire::put_len(&mut crd, 2, &spec);
    let err = decode(&envelope("apiextensions.k8s.io/v1", "CustomResourceDefinition", &crd)).unwrap_err();
    assert_eq!(err.code, 400);
    assert!(err.message.contains("nesting"), "{}", err.message);
}

#[test]
fn durations() {
    use convert::{format_duration, parse_duration};
    for (n, s) in [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (1_500_000, "1.5ms"),
        (1_000_000_000, "1s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (3_723_500_000_000, "1h2m3.5s"),
        (-2_000_000_000, "-2s"),
    ] {
        assert_eq!(format_duration(n), s);
        assert_eq!(parse_duration(s).unwrap(), n, "{s}");
    }
}

#[test]
fn schema_table_is_up_to_date() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    // The sources are in the registry whenever this crate was built from it;
    // not finding them is a broken environment, not a reason to pass.
    let (Some(pb), Some(oa)) = (gen::locate_crate(&lock, "k8s-pb"), gen::locate_crate(&lock, "k8s-openapi")) else {
        panic!("k8s-pb or k8s-openapi sources not found in the Cargo registry: cannot check schema.txt");
    };
    let (text, _notes) = gen::generate(&pb, &oa);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/protobuf/schema.txt");
    if std::env::var_os("REGENERATE_PROTOBUF_SCHEMA").is_some() {
        std::fs::write(&path, &text).expect("write schema.txt");
        return;
    }
    assert!(
        text == include_str!("schema.txt"),
        "src/protobuf/schema.txt is stale; run REGENERATE_PROTOBUF_SCHEMA=1 cargo test -p generic-server protobuf"
    );
}

#[test]
fn every_plain_bool_listed_is_a_bool_of_its_message() {
    let s = schema::schema();
    for (message, fields) in convert::FALSE_MEANS_UNSET {
        let found: Vec<_> = s.messages.iter().filter(|m| m.name.rsplit('.').next() == Some(message)).collect();
        assert!(!found.is_empty(), "no message {message}");
        for f in *fields {
            let ok = found.iter().any(|m| m.fields.iter().any(|x| x.json == *f && x.ty == schema::Ty::Bool));
            assert!(ok, "{message} has no bool {f}");
        }
    }
}

/// What kubectl sends for `kubectl create deployment`: Go's encoder puts
/// plain bools and ints on the wire even when zero; the JSON form drops them
/// as upstream's omitempty does, and keeps a pointer's explicit false.
#[test]
fn zero_plain_fields_from_go_clients_are_unset() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"minReadySeconds": 0, "paused": false, "template": {"spec": {
            "hostNetwork": false, "hostPID": false, "hostIPC": false, "enableServiceLinks": false,
            "containers": [{"name": "c", "image": "nginx", "stdin": false, "tty": false, "stdinOnce": false,
                "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": false}]}],
            "volumes": [{"name": "v", "csi": {"driver": "d", "readOnly": false}}]}}}
    });
    let back = roundtrip(&deployment);
    let spec = &back["spec"];
    assert!(spec.get("minReadySeconds").is_none() && spec.get("paused").is_none(), "{spec}");
    let pod = &spec["template"]["spec"];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod.get(f).is_none(), "{f}: {pod}");
    }
    assert_eq!(pod["enableServiceLinks"], false, "a pointer's false stays");
    assert_eq!(
        pod["containers"][0],
        json!({"name": "c", "image": "nginx", "volumeMounts": [{"name": "v", "mountPath": "/v"}]})
    );
    assert_eq!(pod["volumes"][0]["csi"]["readOnly"], false, "CSIVolumeSource.readOnly is a pointer");
}
