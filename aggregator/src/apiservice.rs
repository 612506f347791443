//! The APIService resource (apiregistration.k8s.io/v1): its Strategy (upstream's
//! defaults, validation and printer columns), the parsed view the proxy and the
//! controllers work from, and the Available condition helpers.

use std::borrow::Cow;

use base64::Engine;
use serde_json::{json, Value};

use generic_server::meta::{self, str_at, NameRule};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

pub const GROUP: &str = "apiregistration.k8s.io";
pub const RESOURCE: &str = "apiservices";
/// The label upstream's autoregistration marks the APIServices it manages with.
pub const AUTOMANAGED_LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";

pub fn registration() -> Registration {
    Registration::of::<APIService>(ApiServiceStrategy)
        .categories(&["api-extensions"])
        .key_root("/registry/apiregistration.k8s.io/apiservices")
        .status()
}

/// Where a remote APIService's backend is: a Service reference.
pub use generic_server::backend::ServiceRef;

/// The parsed view of a stored (so valid) APIService.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiService {
    pub name: String,
    pub group: String,
    pub version: String,
    pub group_priority_minimum: i64,
    pub version_priority: i64,
    /// None for a Local APIService: served by this process.
    pub service: Option<ServiceRef>,
    /// PEM bytes (the decoded caBundle).
    pub ca_bundle: Vec<u8>,
    pub insecure_skip_tls_verify: bool,
    /// Whether the Available condition is True.
    pub available: bool,
    /// The Available condition's (status, reason, message), as stored.
    pub condition: Option<(String, String, String)>,
}

impl ApiService {
    pub fn parse(obj: &Value) -> ApiService {
        let service = obj.pointer("/spec/service").filter(|s| s.is_object()).map(|s| ServiceRef {
            namespace: str_at(s, "/namespace").to_string(),
            name: str_at(s, "/name").to_string(),
            port: s.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
        });
        let ca_bundle = obj
            .pointer("/spec/caBundle")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .unwrap_or_default();
        ApiService {
            name: meta::name(obj).to_string(),
            group: str_at(obj, "/spec/group").to_string(),
            version: str_at(obj, "/spec/version").to_string(),
            group_priority_minimum: obj.pointer("/spec/groupPriorityMinimum").and_then(Value::as_i64).unwrap_or(0),
            version_priority: obj.pointer("/spec/versionPriority").and_then(Value::as_i64).unwrap_or(0),
            service,
            ca_bundle,
            insecure_skip_tls_verify: obj.pointer("/spec/insecureSkipTLSVerify").and_then(Value::as_bool) == Some(true),
            available: condition(obj, "Available").and_then(|c| c.get("status")).and_then(Value::as_str)
                == Some("True"),
            condition: condition(obj, "Available").map(|c| {
                (str_at(c, "/status").to_string(), str_at(c, "/reason").to_string(), str_at(c, "/message").to_string())
            }),
        }
    }

    pub fn is_local(&self) -> bool {
        self.service.is_none()
    }
}

/// Upstream's name for the APIService of a group-version: `<version>.<group>`.
pub fn name_for(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

/// A condition of an APIService's status, or None.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Sets a condition, keeping lastTransitionTime when the status does not change.
pub fn set_condition(obj: &mut Value, type_: &str, status: &str, reason: &str, message: &str) {
    let time = match condition(obj, type_) {
        Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => {
            c.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(meta::now_rfc3339()))
        }
        _ => json!(meta::now_rfc3339()),
    };
    let new =
        json!({"type": type_, "status": status, "lastTransitionTime": time, "reason": reason, "message": message});
    if !obj.get("status").is_some_and(Value::is_object) {
        obj["status"] = json!({});
    }
    let mut conds = obj["status"].get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    match conds.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)) {
        Some(c) => *c = new,
        None => conds.push(new),
    }
    obj["status"]["conditions"] = Value::Array(conds);
}

pub struct ApiServiceStrategy;

impl Strategy for ApiServiceStrategy {
    fn name_rule(&self) -> NameRule {
        // "v1." (the core group's) is no DNS name.
        NameRule::PathSegment
    }

    fn default(&self, object: &mut Value) {
        if let Some(s) = object.pointer_mut("/spec/service").and_then(Value::as_object_mut) {
            s.entry("port").or_insert(json!(443));
        }
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        validate(object)
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn {
                name: Cow::Borrowed("Service"),
                type_: Cow::Borrowed("string"),
                format: Cow::Borrowed(""),
                description: Cow::Borrowed("The reference to the service that hosts this API endpoint."),
                priority: 0,
            },
            TableColumn::new("Available", "string", "Whether this service is available."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, object: &Value) -> Vec<Value> {
        let service = match object.pointer("/spec/service").filter(|s| s.is_object()) {
            Some(s) => format!("{}/{}", str_at(s, "/namespace"), str_at(s, "/name")),
            None => "Local".to_string(),
        };
        let available = match condition(object, "Available") {
            Some(c) => match str_at(c, "/status") {
                "True" => "True".to_string(),
                status => format!("{status} ({})", str_at(c, "/reason")),
            },
            None => "Unknown".to_string(),
        };
        vec![
            json!(meta::name(object)),
            json!(service),
            json!(available),
            json!(generic_server::registry::table::age(object)),
        ]
    }
}

/// Upstream's ValidateAPIService, beyond ObjectMeta.
pub fn validate(obj: &Value) -> Vec<Cause> {
    let mut c = Vec::new();
    let group = str_at(obj, "/spec/group");
    let version = str_at(obj, "/spec/version");
    let name = meta::name(obj);
    if name != name_for(group, version) {
        c.push(Cause::invalid("metadata.name", &json!(name), "must be `spec.version+\".\"+spec.group`"));
    }
    if group.is_empty() && version != "v1" {
        c.push(Cause::required("spec.group", "only v1 may have an empty group and it better be legacy kube"));
    }
    if !group.is_empty() {
        if let Some(m) = meta::is_dns1123_subdomain(group) {
            c.push(Cause::invalid("spec.group", &json!(group), &m));
        }
    }
    if version.is_empty() {
        c.push(Cause::required("spec.version", ""));
    } else if let Some(m) = meta::is_dns1035_label(version) {
        c.push(Cause::invalid("spec.version", &json!(version), &m));
    }
    let gpm = obj.pointer("/spec/groupPriorityMinimum").and_then(Value::as_i64).unwrap_or(0);
    if gpm <= 0 || gpm > 20000 {
        c.push(Cause::invalid("spec.groupPriorityMinimum", &json!(gpm), "must be positive and less than 20000"));
    }
    let vp = obj.pointer("/spec/versionPriority").and_then(Value::as_i64).unwrap_or(0);
    if vp <= 0 || vp > 1000 {
        c.push(Cause::invalid("spec.versionPriority", &json!(vp), "must be positive and less than 1000"));
    }
    let ca = str_at(obj, "/spec/caBundle");
    let insecure = obj.pointer("/spec/insecureSkipTLSVerify").and_then(Value::as_bool) == Some(true);
    match obj.pointer("/spec/service").filter(|s| s.is_object()) {
        None => {
            if !ca.is_empty() {
                c.push(Cause::invalid("spec.caBundle", &json!(ca), "local APIServices may not have a caBundle"));
            }
            if insecure {
                c.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "local APIServices may not have insecureSkipTLSVerify",
                ));
            }
        }
        Some(s) => {
            if str_at(s, "/namespace").is_empty() {
                c.push(Cause::required("spec.service.namespace", ""));
            }
            if str_at(s, "/name").is_empty() {
                c.push(Cause::required("spec.service.name", ""));
            }
            let port = s.get("port").and_then(Value::as_i64).unwrap_or(443);
            if !(1..=65535).contains(&port) {
                c.push(Cause::invalid(
                    "spec.service.port",
                    &json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
            if insecure && !ca.is_empty() {
                c.push(Cause::invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "may not be true if caBundle is present",
                ));
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        let name = format!(
            "{}.{}",
            spec.get("version").and_then(Value::as_str).unwrap_or(""),
            spec.get("group").and_then(Value::as_str).unwrap_or("")
        );
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn validation_follows_upstream() {
        let ok = svc(json!({"group": "wardle.example.com", "version": "v1alpha1", "groupPriorityMinimum": 1000,
            "versionPriority": 15, "service": {"namespace": "ns", "name": "api", "port": 443}, "caBundle": "Zm9v"}));
        assert!(validate(&ok).is_empty(), "{:?}", validate(&ok));
        let mut bad_name = ok.clone();
        bad_name["metadata"]["name"] = json!("v1.other");
        assert_eq!(validate(&bad_name)[0].field, "metadata.name");
        let mut both = ok.clone();
        both["spec"]["insecureSkipTLSVerify"] = json!(true);
        assert_eq!(validate(&both)[0].field, "spec.insecureSkipTLSVerify");
        let local_with_ca = svc(json!({"group": "x.io", "version": "v1", "groupPriorityMinimum": 1,
            "versionPriority": 1, "caBundle": "Zm9v"}));
        assert_eq!(validate(&local_with_ca)[0].field, "spec.caBundle");
        let priorities =
            svc(json!({"group": "x.io", "version": "v1", "groupPriorityMinimum": 0, "versionPriority": 1001}));
        let fields: Vec<String> = validate(&priorities).into_iter().map(|c| c.field).collect();
        assert_eq!(fields, vec!["spec.groupPriorityMinimum", "spec.versionPriority"]);
        let core_group = svc(json!({"group": "", "version": "v2", "groupPriorityMinimum": 1, "versionPriority": 1}));
        assert!(validate(&core_group).iter().any(|c| c.field == "spec.group"));
    }

    #[test]
    fn table_shows_service_and_availability() {
        let mut o = svc(json!({"group": "x.io", "version": "v1", "groupPriorityMinimum": 1, "versionPriority": 1,
            "service": {"namespace": "ns", "name": "api"}}));
        set_condition(&mut o, "Available", "False", "ServiceNotFound", "gone");
        let row = ApiServiceStrategy.table_row(&o);
        assert_eq!(row[1], "ns/api");
        assert_eq!(row[2], "False (ServiceNotFound)");
        let local = svc(json!({"group": "x.io", "version": "v1", "groupPriorityMinimum": 1, "versionPriority": 1}));
        assert_eq!(ApiServiceStrategy.table_row(&local)[1], "Local");
        assert_eq!(ApiServiceStrategy.table_row(&local)[2], "Unknown");
    }
}
