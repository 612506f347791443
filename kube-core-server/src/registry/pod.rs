//! core/v1 pods (upstream pkg/registry/core/pod): decoding, the pod-only
//! defaults on top of PodSpec's (including what upstream's Priority,
//! ServiceAccount and DefaultTolerationSeconds admission plugins add, so a pod
//! reads as on a real cluster), the initial status, update rules, field
//! selectors and the `kubectl get pods` table.

use std::sync::Arc;

use serde_json::{json, Value};

use k8s_openapi::api::core::v1::Pod;

use generic_server::registry::{Registration, Strategy, Subresource, TableColumn};
use generic_server::status::Cause;

use super::binding::BindingHandler;
use super::connect::pod_handlers;
use super::eviction::EvictionHandler;
use super::peers::Peers;
use super::podparts;
use super::podspec::{
    default_pod_spec, default_requests_from_limits, qos_class, validate_pod_spec, validate_pod_spec_update,
};
use super::{age, arr_at, child, default_field, str_at};

pub struct PodStrategy;

/// Pods with their subresources: binding, eviction (answered from the
/// PodDisruptionBudgets among the `peers`) and the connect ones.
pub fn registration(peers: &Arc<Peers>) -> Registration {
    let r = Registration::of::<Pod>(PodStrategy)
        .short_names(&["po"])
        .categories(&["all"])
        .status()
        .subresource(Subresource::Part(podparts::EPHEMERAL))
        .subresource(Subresource::Part(podparts::RESIZE))
        .returns_deleted_object()
        .handler(BindingHandler)
        .handler(EvictionHandler { peers: peers.clone() });
    pod_handlers(peers).into_iter().fold(r, Registration::handler)
}

const PHASES: &[&str] = &["Pending", "Running", "Succeeded", "Failed", "Unknown"];

impl Strategy for PodStrategy {
    fn prepare_for_create(&self, object: &mut Value) {
        // A new pod has not been scheduled or run: status is the server's.
        let qos = qos_class(object.get("spec").unwrap_or(&Value::Null));
        if let Some(m) = object.as_object_mut() {
            m.insert("status".into(), json!({"phase": "Pending", "qosClass": qos}));
        }
        let spec = child(object, "spec");
        // Admission-time defaults upstream applies to pods only (not templates).
        default_field(spec, "priority", json!(0));
        default_field(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        // The deprecated serviceAccount mirrors serviceAccountName, as v1's
        // conversion does; the account itself is the ServiceAccount admission
        // plugin's to default.
        if let Some(sa) = spec.get("serviceAccount").filter(|v| v.as_str().is_some_and(|s| !s.is_empty())).cloned() {
            default_field(spec, "serviceAccountName", sa);
        }
        if let Some(sa) = spec.get("serviceAccountName").cloned() {
            spec.insert("serviceAccount".into(), sa);
        }
        // The default tolerations are the DefaultTolerationSeconds
        // admission plugin's (admission/defaults.rs).
    }

    fn default(&self, object: &mut Value) {
        let spec = child(object, "spec");
        default_pod_spec(spec);
        default_requests_from_limits(spec);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        let mut causes = validate_pod_spec(object.get("spec").unwrap_or(&Value::Null), "spec");
        if let Some(phase) = object.pointer("/status/phase") {
            if !phase.as_str().is_some_and(|p| PHASES.contains(&p) || p.is_empty()) {
                causes.push(Cause::not_supported("status.phase", phase, PHASES));
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(validate_pod_spec_update(new, old));
        causes
    }

    fn prepare_for_subresource_update(&self, subresource: &str, new: &mut Value, old: &Value) {
        podparts::prepare(subresource, new, old);
    }

    fn validate_subresource_update(&self, subresource: &str, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(podparts::validate(subresource, new, old));
        causes
    }

    fn field_labels(&self, o: &Value) -> Vec<(&'static str, String)> {
        let host_network = o.pointer("/spec/hostNetwork").and_then(Value::as_bool).unwrap_or(false);
        vec![
            ("spec.nodeName", str_at(o, "/spec/nodeName").to_string()),
            ("spec.restartPolicy", str_at(o, "/spec/restartPolicy").to_string()),
            ("spec.schedulerName", str_at(o, "/spec/schedulerName").to_string()),
            ("spec.serviceAccountName", str_at(o, "/spec/serviceAccountName").to_string()),
            ("spec.hostNetwork", host_network.to_string()),
            ("status.phase", str_at(o, "/status/phase").to_string()),
            ("status.podIP", str_at(o, "/status/podIP").to_string()),
            ("status.nominatedNodeName", str_at(o, "/status/nominatedNodeName").to_string()),
        ]
    }

    fn supported_field_labels(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            TableColumn::new("Status", "string", "The aggregate status of the containers in this pod."),
            TableColumn::new("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            TableColumn::age_column(),
            TableColumn::new("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
            TableColumn::new("Node", "string", "NodeName indicates in which node this pod is scheduled.").wide(),
            TableColumn::new("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.").wide(),
            TableColumn::new("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.").wide(),
        ]
    }

    fn table_row(&self, pod: &Value) -> Vec<Value> {
        let (ready, status, restarts) = pod_status_summary(pod);
        let or_none = |s: &str| if s.is_empty() { "<none>".to_string() } else { s.to_string() };
        let ip = arr_at(pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).unwrap_or("");
        let gates = arr_at(pod, "/spec/readinessGates");
        let gates_cell = if gates.is_empty() {
            "<none>".to_string()
        } else {
            let conditions = arr_at(pod, "/status/conditions");
            let ok = gates
                .iter()
                .filter(|g| {
                    conditions
                        .iter()
                        .find(|c| c.get("type") == g.get("conditionType"))
                        .is_some_and(|c| str_at(c, "/status") == "True")
                })
                .count();
            format!("{ok}/{}", gates.len())
        };
        vec![
            json!(generic_server::meta::name(pod)),
            json!(ready),
            json!(status),
            json!(restarts),
            age(pod),
            json!(or_none(ip)),
            json!(or_none(str_at(pod, "/spec/nodeName"))),
            json!(or_none(str_at(pod, "/status/nominatedNodeName"))),
            json!(gates_cell),
        ]
    }
}

fn is_restartable_init(spec_init: &[Value], name: &str) -> bool {
    spec_init.iter().any(|c| str_at(c, "/name") == name && str_at(c, "/restartPolicy") == "Always")
}

/// READY, STATUS and RESTARTS as upstream's printPod computes them.
pub fn pod_status_summary(pod: &Value) -> (String, String, String) {
    let spec_init = arr_at(pod, "/spec/initContainers");
    let mut total = arr_at(pod, "/spec/containers").len();
    total += spec_init.iter().filter(|c| str_at(c, "/restartPolicy") == "Always").count();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart = String::new();
    let mut sidecar_last_restart = String::new();
    let mut reason = str_at(pod, "/status/phase").to_string();
    let status_reason = str_at(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    let conditions = arr_at(pod, "/status/conditions");
    if conditions.iter().any(|c| str_at(c, "/type") == "PodScheduled" && str_at(c, "/reason") == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let later = |cur: &mut String, ts: &str| {
        if !ts.is_empty() && ts > cur.as_str() {
            *cur = ts.to_string();
        }
    };
    let mut initializing = false;
    for (i, c) in arr_at(pod, "/status/initContainerStatuses").iter().enumerate() {
        let count = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        restarts += count;
        let finished = str_at(c, "/lastState/terminated/finishedAt");
        later(&mut last_restart, finished);
        let name = str_at(c, "/name");
        let sidecar = is_restartable_init(spec_init, name);
        if sidecar {
            sidecar_restarts += count;
            later(&mut sidecar_last_restart, finished);
        }
        let terminated = c.pointer("/state/terminated");
        let exit = terminated.and_then(|t| t.get("exitCode")).and_then(Value::as_i64).unwrap_or(0);
        let waiting_reason = str_at(c, "/state/waiting/reason");
        if terminated.is_some() && exit == 0 {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = str_at(t, "/reason");
            let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if signal != 0 {
                format!("Init:Signal:{signal}")
            } else {
                format!("Init:ExitCode:{exit}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", spec_init.len());
        }
        initializing = true;
        break;
    }
    let initialized = conditions.iter().any(|c| str_at(c, "/type") == "Initialized" && str_at(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = sidecar_last_restart;
        let mut has_running = false;
        for c in arr_at(pod, "/status/containerStatuses").iter().rev() {
            restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            later(&mut last_restart, str_at(c, "/lastState/terminated/finishedAt"));
            let waiting = str_at(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if let Some(t) = terminated {
                let r = str_at(t, "/reason");
                let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
                let exit = t.get("exitCode").and_then(Value::as_i64).unwrap_or(0);
                reason = if !r.is_empty() {
                    r.to_string()
                } else if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{exit}")
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true) && c.pointer("/state/running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions.iter().any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True");
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }
    if !generic_server::meta::meta_str(pod, "deletionTimestamp").is_empty() {
        reason = if status_reason == "NodeLost" { "Unknown".into() } else { "Terminating".into() };
    }
    let restarts_cell = if restarts != 0 && !last_restart.is_empty() {
        format!("{restarts} ({} ago)", super::since(&last_restart))
    } else {
        restarts.to_string()
    };
    (format!("{ready}/{total}"), reason, restarts_cell)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(s: &PodStrategy, mut pod: Value) -> Value {
        pod = generic_server::registry::typed::decode_as::<k8s_openapi::api::core::v1::Pod>(pod).unwrap().object;
        s.prepare_for_create(&mut pod);
        s.default(&mut pod);
        pod
    }

    #[test]
    fn create_defaults_and_status() {
        let s = PodStrategy;
        let pod = create(
            &s,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "nginx", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]},
            "status": {"phase": "Running"}}),
        );
        assert_eq!(pod["status"], json!({"phase": "Pending", "qosClass": "Guaranteed"}));
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(pod["spec"].get("serviceAccountName"), None);
        assert_eq!(pod["spec"].get("tolerations"), None);
        assert_eq!(pod["spec"]["containers"][0]["resources"]["requests"], json!({"cpu": "1", "memory": "1Gi"}));
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(s.validate(&pod).is_empty(), "{:?}", s.validate(&pod));
    }

    #[test]
    fn table_row_for_a_pending_pod() {
        let s = PodStrategy;
        let pod = create(
            &s,
            json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}),
        );
        let row = s.table_row(&pod);
        assert_eq!(row.len(), s.table_columns().len());
        assert_eq!(&row[..4], &[json!("p"), json!("0/2"), json!("Pending"), json!("0")]);
        assert_eq!(&row[5..], &[json!("<none>"), json!("<none>"), json!("<none>"), json!("<none>")]);
    }

    #[test]
    fn running_and_crashing_status() {
        let running = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "state": {"running": {}}}]}});
        let (ready, status, restarts) = pod_status_summary(&running);
        assert_eq!((ready.as_str(), status.as_str(), restarts.as_str()), ("1/1", "Running", "0"));
        let crashing = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        let (_, status, restarts) = pod_status_summary(&crashing);
        assert_eq!((status.as_str(), restarts.as_str()), ("CrashLoopBackOff", "3"));
        let mut deleting = running.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(pod_status_summary(&deleting).1, "Terminating");
    }

    #[test]
    fn field_labels() {
        let s = PodStrategy;
        let pod = json!({"spec": {"nodeName": "n1", "hostNetwork": true}, "status": {"phase": "Running", "podIP": "10.1.0.4"}});
        let f = s.field_labels(&pod);
        assert!(f.contains(&("spec.nodeName", "n1".into())));
        assert!(f.contains(&("spec.hostNetwork", "true".into())));
        assert!(f.contains(&("status.phase", "Running".into())));
        assert!(f.contains(&("status.podIP", "10.1.0.4".into())));
        for (k, _) in &f {
            assert!(s.supported_field_labels().contains(k));
        }
    }

    #[test]
    fn malformed_pods_do_not_panic() {
        let s = PodStrategy;
        for v in [json!({}), json!({"spec": 5}), json!({"spec": {"containers": "x"}}), json!([1])] {
            let mut v2 = v.clone();
            s.prepare_for_create(&mut v2);
            s.default(&mut v2);
            let _ = s.validate(&v2);
            let _ = s.validate_update(&v2, &v);
            let _ = s.table_row(&v);
            let _ = s.field_labels(&v);
        }
    }
}
