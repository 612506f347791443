//! PodSpec defaulting and validation shared by pods and every pod template
//! (deployments now; replica sets, jobs and the rest later), after upstream's
//! SetDefaults_PodSpec/SetDefaults_Container and ValidatePodSpec.
//!
//! Field paths in causes are built from the caller's `path` ("spec" for a pod,
//! "spec.template.spec" for a template) so messages read exactly as upstream's.

use serde_json::{json, Map, Value};

use generic_server::meta::is_dns1123_label;
use generic_server::status::Cause;

use super::{arr_at, default_field, not_found_cause, port_name_problems, show, str_at, valid_port, PORT_RANGE_MSG};

pub const RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
pub const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
pub const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
pub const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
pub const TERMINATION_MESSAGE_POLICIES: &[&str] = &["File", "FallbackToLogsOnError"];

/// The defaults every PodSpec gets, pod or template (SetDefaults_PodSpec).
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    default_field(spec, "enableServiceLinks", json!(true));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool).unwrap_or(false);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                default_container(c, host_network);
            }
        }
    }
    if let Some(Value::Array(vols)) = spec.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            default_volume(v);
        }
    }
}

/// The image's tag as upstream's ParseImageName sees it: "latest" when the
/// reference names neither tag nor digest.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None if digest.is_some() => "",
        None => "latest",
    }
}

fn default_container(c: &mut Map<String, Value>, host_network: bool) {
    if c.get("imagePullPolicy").and_then(Value::as_str).unwrap_or("").is_empty() {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if !image.is_empty() && image_tag(image) == "latest" { "Always" } else { "IfNotPresent" };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_field(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "terminationMessagePolicy", json!("File"));
    default_field(c, "resources", json!({}));
    if let Some(Value::Array(ports)) = c.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default_field(p, "protocol", json!("TCP"));
            if host_network {
                if let Some(cp) = p.get("containerPort").cloned() {
                    default_field(p, "hostPort", cp);
                }
            }
        }
    }
    if let Some(Value::Array(env)) = c.get_mut("env") {
        for e in env.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(Value::Object(field_ref)) = e.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef")) {
                default_field(field_ref, "apiVersion", json!("v1"));
            }
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = c.get_mut(probe) {
            default_field(p, "timeoutSeconds", json!(1));
            default_field(p, "periodSeconds", json!(10));
            default_field(p, "successThreshold", json!(1));
            default_field(p, "failureThreshold", json!(3));
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                default_field(h, "scheme", json!("HTTP"));
                default_field(h, "path", json!("/"));
            }
        }
    }
}

fn default_volume(v: &mut Map<String, Value>) {
    // SetDefaults_Volume: a volume that names no source is an emptyDir.
    if v.keys().all(|k| k == "name") {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["configMap", "secret", "projected", "downwardAPI"] {
        if let Some(Value::Object(s)) = v.get_mut(source) {
            default_field(s, "defaultMode", json!(420));
        }
    }
    if let Some(Value::Object(h)) = v.get_mut("hostPath") {
        default_field(h, "type", json!(""));
    }
}

/// Pod-only defaults (SetDefaults_Pod): a container's limits stand in for the
/// requests it left out. Templates do not get this; their pods do.
pub fn default_requests_from_limits(spec: &mut Map<String, Value>) {
    for list in ["initContainers", "containers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(list) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let Some(Value::Object(res)) = c.get_mut("resources") else { continue };
                let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() else { continue };
                let requests = res.entry("requests").or_insert_with(|| json!({}));
                if let Value::Object(r) = requests {
                    for (k, v) in limits {
                        r.entry(k).or_insert(v);
                    }
                }
            }
        }
    }
}

/// A resource quantity ("100m", "1.5Gi", "2e3") as a number, for comparisons.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse::<i32>().ok()?),
        _ => return None,
    };
    Some(n * mult)
}

/// The pod's QoS class (upstream's GetPodQOS), from cpu and memory only.
pub fn qos_class(spec: &Value) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    let containers = arr_at(spec, "/containers").iter().chain(arr_at(spec, "/initContainers"));
    for c in containers {
        let limits = c.pointer("/resources/limits").and_then(Value::as_object);
        let requests = c.pointer("/resources/requests").and_then(Value::as_object);
        for res in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(res)).and_then(Value::as_str).and_then(parse_quantity);
            // A missing request is defaulted from the limit.
            let request = requests.and_then(|r| r.get(res)).and_then(Value::as_str).and_then(parse_quantity).or(limit);
            if limit.is_some_and(|l| l != 0.0) || request.is_some_and(|r| r != 0.0) {
                any = true;
            }
            match (limit, request) {
                (Some(l), Some(r)) if l == r => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn check_supported(causes: &mut Vec<Cause>, field: String, value: &Value, allowed: &[&str]) {
    match value.as_str() {
        Some(s) if allowed.contains(&s) => {}
        _ => causes.push(Cause::not_supported(field, value, allowed)),
    }
}

/// ValidatePodSpec: the rules pods and templates share. `path` is where the
/// spec sits ("spec" or "spec.template.spec").
pub fn validate_pod_spec(spec: &Value, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    if !spec.is_object() {
        causes.push(Cause::required(path.to_string(), ""));
        return causes;
    }
    let volumes = validate_volumes(spec, path, &mut causes);
    let mut names: Vec<String> = Vec::new();
    let containers = arr_at(spec, "/containers");
    if containers.is_empty() {
        causes.push(Cause::required(format!("{path}.containers"), ""));
    }
    for (list, items) in [("initContainers", arr_at(spec, "/initContainers")), ("containers", containers)] {
        for (i, c) in items.iter().enumerate() {
            validate_container(c, &format!("{path}.{list}[{i}]"), &volumes, &mut names, &mut causes);
        }
    }
    if let Some(v) = spec.get("restartPolicy") {
        check_supported(&mut causes, format!("{path}.restartPolicy"), v, RESTART_POLICIES);
    } else {
        causes.push(Cause::required(format!("{path}.restartPolicy"), ""));
    }
    if let Some(v) = spec.get("dnsPolicy") {
        check_supported(&mut causes, format!("{path}.dnsPolicy"), v, DNS_POLICIES);
    }
    if let Some(v) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if !(1..=i64::from(i32::MAX)).contains(&v) {
            causes.push(Cause::invalid(
                format!("{path}.activeDeadlineSeconds"),
                &json!(v),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(h) = spec.get("hostname").and_then(Value::as_str).filter(|h| !h.is_empty()) {
        if let Some(m) = is_dns1123_label(h) {
            causes.push(Cause::invalid(format!("{path}.hostname"), &json!(h), &m));
        }
    }
    if let Some(sa) = spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        if let Some(m) = generic_server::meta::is_dns1123_subdomain(sa) {
            causes.push(Cause::invalid(format!("{path}.serviceAccountName"), &json!(sa), &m));
        }
    }
    causes
}

/// Checks volumes and returns their names, which volumeMounts must reference.
fn validate_volumes(spec: &Value, path: &str, causes: &mut Vec<Cause>) -> Vec<String> {
    let mut names = Vec::new();
    for (i, v) in arr_at(spec, "/volumes").iter().enumerate() {
        let field = format!("{path}.volumes[{i}]");
        let name = str_at(v, "/name");
        if name.is_empty() {
            causes.push(Cause::required(format!("{field}.name"), ""));
        } else if let Some(m) = is_dns1123_label(name) {
            causes.push(Cause::invalid(format!("{field}.name"), &json!(name), &m));
        } else if names.iter().any(|n| n == name) {
            causes.push(Cause::duplicate(format!("{field}.name"), &json!(name)));
        }
        let sources = v.as_object().map(|m| m.iter().filter(|(k, v)| *k != "name" && !v.is_null()).count());
        match sources.unwrap_or(0) {
            0 => causes.push(Cause::required(field.clone(), "must specify a volume type")),
            1 => {}
            _ => causes.push(Cause::forbidden(field.clone(), "may not specify more than 1 volume type")),
        }
        names.push(name.to_string());
    }
    names
}

fn validate_container(c: &Value, field: &str, volumes: &[String], names: &mut Vec<String>, causes: &mut Vec<Cause>) {
    let name = str_at(c, "/name");
    if name.is_empty() {
        causes.push(Cause::required(format!("{field}.name"), ""));
    } else if let Some(m) = is_dns1123_label(name) {
        causes.push(Cause::invalid(format!("{field}.name"), &json!(name), &m));
    } else if names.iter().any(|n| n == name) {
        causes.push(Cause::duplicate(format!("{field}.name"), &json!(name)));
    }
    names.push(name.to_string());
    let image = str_at(c, "/image");
    if image.is_empty() {
        causes.push(Cause::required(format!("{field}.image"), ""));
    } else if image.trim() != image {
        causes.push(Cause::invalid(
            format!("{field}.image"),
            &json!(image),
            "must not have leading or trailing whitespace",
        ));
    }
    if let Some(v) = c.get("imagePullPolicy") {
        check_supported(causes, format!("{field}.imagePullPolicy"), v, PULL_POLICIES);
    } else {
        causes.push(Cause::required(format!("{field}.imagePullPolicy"), ""));
    }
    if let Some(v) = c.get("terminationMessagePolicy") {
        check_supported(causes, format!("{field}.terminationMessagePolicy"), v, TERMINATION_MESSAGE_POLICIES);
    }
    let mut port_names: Vec<&str> = Vec::new();
    for (i, p) in arr_at(c, "/ports").iter().enumerate() {
        let pf = format!("{field}.ports[{i}]");
        let pname = str_at(p, "/name");
        if !pname.is_empty() {
            for m in port_name_problems(pname) {
                causes.push(Cause::invalid(format!("{pf}.name"), &json!(pname), &m));
            }
            if port_names.contains(&pname) {
                causes.push(Cause::duplicate(format!("{pf}.name"), &json!(pname)));
            }
            port_names.push(pname);
        }
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => causes.push(Cause::required(format!("{pf}.containerPort"), "")),
            Some(n) if !valid_port(n) => {
                causes.push(Cause::invalid(format!("{pf}.containerPort"), &json!(n), PORT_RANGE_MSG))
            }
            _ => {}
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64).filter(|n| *n != 0) {
            if !valid_port(n) {
                causes.push(Cause::invalid(format!("{pf}.hostPort"), &json!(n), PORT_RANGE_MSG));
            }
        }
        match p.get("protocol") {
            Some(v) => check_supported(causes, format!("{pf}.protocol"), v, PROTOCOLS),
            None => causes.push(Cause::required(format!("{pf}.protocol"), "")),
        }
    }
    for (i, e) in arr_at(c, "/env").iter().enumerate() {
        if str_at(e, "/name").is_empty() {
            causes.push(Cause::required(format!("{field}.env[{i}].name"), ""));
        }
    }
    for (i, m) in arr_at(c, "/volumeMounts").iter().enumerate() {
        let mf = format!("{field}.volumeMounts[{i}]");
        let vname = str_at(m, "/name");
        if vname.is_empty() {
            causes.push(Cause::required(format!("{mf}.name"), ""));
        } else if !volumes.iter().any(|v| v == vname) {
            causes.push(not_found_cause(format!("{mf}.name"), &json!(vname)));
        }
        if str_at(m, "/mountPath").is_empty() {
            causes.push(Cause::required(format!("{mf}.mountPath"), ""));
        }
    }
    validate_resources(c, &format!("{field}.resources"), causes);
}

fn validate_resources(c: &Value, field: &str, causes: &mut Vec<Cause>) {
    let limits = c.pointer("/resources/limits").and_then(Value::as_object);
    let requests = c.pointer("/resources/requests").and_then(Value::as_object);
    for (kind, m) in [("limits", limits), ("requests", requests)] {
        for (k, v) in m.into_iter().flatten() {
            let parsed = v.as_str().and_then(parse_quantity);
            match parsed {
                Some(n) if n < 0.0 => {
                    causes.push(Cause::invalid(format!("{field}.{kind}[{k}]"), v, "must be greater than or equal to 0"))
                }
                None => causes.push(Cause::invalid(
                    format!("{field}.{kind}[{k}]"),
                    v,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )),
                _ => {}
            }
        }
    }
    for (k, req) in requests.into_iter().flatten() {
        let limit = limits.and_then(|l| l.get(k));
        if let (Some(r), Some(l)) =
            (req.as_str().and_then(parse_quantity), limit.and_then(Value::as_str).and_then(parse_quantity))
        {
            if r > l {
                causes.push(Cause::invalid(
                    format!("{field}.requests"),
                    req,
                    &format!(
                        "must be less than or equal to {k} limit of {}",
                        limit.map(show_plain).unwrap_or_default()
                    ),
                ));
            }
        }
    }
}

fn show_plain(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| show(v))
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// ValidatePodUpdate's spec rule: only images, activeDeadlineSeconds,
/// added tolerations and terminationGracePeriodSeconds may change.
pub fn validate_pod_spec_update(new: &Value, old: &Value) -> Vec<Cause> {
    let (Some(new_spec), Some(old_spec)) = (new.get("spec"), old.get("spec")) else {
        return Vec::new();
    };
    let mut masked = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let old_list = arr_at(old_spec, &format!("/{list}"));
        if let Some(Value::Array(cs)) = masked.get_mut(list) {
            if cs.len() == old_list.len() {
                for (c, o) in cs.iter_mut().zip(old_list) {
                    if let (Some(cm), Some(img)) = (c.as_object_mut(), o.get("image")) {
                        cm.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    if let Some(m) = masked.as_object_mut() {
        for field in ["activeDeadlineSeconds", "terminationGracePeriodSeconds"] {
            match old_spec.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        // Tolerations may only grow: keep the new list if it holds every old one.
        let old_tol = arr_at(old_spec, "/tolerations");
        let new_tol = m.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            match old_spec.get("tolerations") {
                Some(v) => m.insert("tolerations".into(), v.clone()),
                None => m.remove("tolerations"),
            };
        }
    }
    if &masked != old_spec {
        return vec![Cause::forbidden("spec", POD_UPDATE_FORBIDDEN)];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(image_tag("nginx"), "latest");
        assert_eq!(image_tag("nginx:latest"), "latest");
        assert_eq!(image_tag("nginx:1.25"), "1.25");
        assert_eq!(image_tag("localhost:5000/app"), "latest");
        assert_eq!(image_tag("localhost:5000/app:v1"), "v1");
        assert_eq!(image_tag("app@sha256:abc"), "");
        let mut spec = json!({"containers": [{"name": "a", "image": "nginx"}, {"name": "b", "image": "nginx:1.25", "ports": [{"containerPort": 80}]}]});
        default_pod_spec(spec.as_object_mut().unwrap());
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(spec["containers"][1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(spec["containers"][1]["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["containers"][0]["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(spec["containers"][0]["terminationMessagePolicy"], "File");
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
    }

    #[test]
    fn a_volume_without_source_is_an_empty_dir() {
        let mut spec = json!({"volumes": [{"name": "scratch"}, {"name": "cm", "configMap": {"name": "x"}}]});
        default_pod_spec(spec.as_object_mut().unwrap());
        assert_eq!(spec["volumes"][0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(spec["volumes"][1], json!({"name": "cm", "configMap": {"name": "x", "defaultMode": 420}}));
    }

    #[test]
    fn quantities_and_qos() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(qos_class(&json!({"containers": [{"name": "a"}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }

    #[test]
    fn spec_causes_have_upstream_paths() {
        let spec = json!({"restartPolicy": "Sometimes", "containers": [
            {"name": "web", "imagePullPolicy": "Always", "ports": [{"containerPort": 70000, "protocol": "TCP"}],
             "volumeMounts": [{"name": "missing", "mountPath": "/x"}]},
            {"name": "web", "image": "x", "imagePullPolicy": "IfNotPresent"}
        ]});
        let causes = validate_pod_spec(&spec, "spec");
        let got: Vec<String> = causes.iter().map(|c| c.full_message()).collect();
        assert!(got.contains(&"spec.containers[0].image: Required value".to_string()), "{got:?}");
        assert!(got.contains(&"spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".to_string()), "{got:?}");
        assert!(
            got.contains(&"spec.containers[0].volumeMounts[0].name: Not found: \"missing\"".to_string()),
            "{got:?}"
        );
        assert!(got.contains(&"spec.containers[1].name: Duplicate value: \"web\"".to_string()), "{got:?}");
        assert!(got.contains(&"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_string()), "{got:?}");
        let empty = validate_pod_spec(&json!({"restartPolicy": "Always", "containers": []}), "spec.template.spec");
        assert_eq!(empty[0].full_message(), "spec.template.spec.containers: Required value");
    }

    #[test]
    fn requests_may_not_exceed_limits() {
        let spec = json!({"restartPolicy": "Always", "containers": [{"name": "a", "image": "x", "imagePullPolicy": "Always",
            "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}}]});
        let causes = validate_pod_spec(&spec, "spec");
        assert_eq!(
            causes[0].full_message(),
            "spec.containers[0].resources.requests: Invalid value: \"2\": must be less than or equal to cpu limit of 1"
        );
    }

    #[test]
    fn only_images_may_change() {
        let old = json!({"spec": {"containers": [{"name": "a", "image": "x:1"}], "restartPolicy": "Always"}});
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("x:2");
        assert!(validate_pod_spec_update(&new, &old).is_empty());
        new["spec"]["restartPolicy"] = json!("Never");
        let c = validate_pod_spec_update(&new, &old);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "spec");
        assert!(c[0].message.starts_with("Forbidden: pod updates may not change fields other than"));
    }
}
