//! networking.k8s.io/v1 servicecidrs and ipaddresses, the API of upstream's
//! MultiCIDRServiceAllocator (pkg/registry/networking/servicecidr and
//! ipaddress): canonical CIDRs, at most one per IP family, growing only to
//! dual-stack; IPAddresses named by a canonical IP with a fixed parentRef.
//! The server writes the default ServiceCIDR and the IPAddress of every
//! Service cluster IP itself ([`crate::service_ips`]).

use std::net::IpAddr;

use serde_json::{json, Value};

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};

use generic_server::meta::{is_dns1123_subdomain, path_segment_problem, NameRule};
use generic_server::registry::{Registration, Strategy, TableColumn};
use generic_server::status::Cause;

use super::networkpolicy::{parse_cidr, CIDR_MSG};
use super::{age, arr_at, go_string_slice, go_struct, invalid_raw, str_at};

pub fn registrations() -> Vec<Registration> {
    vec![
        Registration::of::<IPAddress>(IPAddressStrategy).short_names(&["ip"]),
        Registration::of::<ServiceCIDR>(ServiceCIDRStrategy).status(),
    ]
}

/// A CIDR in canonical form (host bits cleared, shortest address form).
fn canonical_cidr(ip: IpAddr, bits: u8) -> String {
    let masked = match ip {
        IpAddr::V4(v4) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits)) };
            IpAddr::from((u32::from(v4) & mask).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits)) };
            IpAddr::from((u128::from(v6) & mask).to_be_bytes())
        }
    };
    format!("{masked}/{bits}")
}

pub struct ServiceCIDRStrategy;

impl Strategy for ServiceCIDRStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let cidrs = arr_at(obj, "/spec/cidrs");
        if cidrs.is_empty() {
            causes.push(Cause::required("spec.cidrs", "at least one CIDR required"));
            return causes;
        }
        if cidrs.len() > 2 {
            causes.push(invalid_raw("spec.cidrs", &go_string_slice(cidrs), "may only hold up to 2 values"));
            return causes;
        }
        let mut families = Vec::new();
        for (i, c) in cidrs.iter().enumerate() {
            let s = c.as_str().unwrap_or("");
            match parse_cidr(s) {
                None => causes.push(Cause::invalid(format!("spec.cidrs[{i}]"), c, CIDR_MSG)),
                Some((ip, bits)) => {
                    families.push(ip.is_ipv4());
                    let canonical = canonical_cidr(ip, bits);
                    if canonical != s {
                        causes.push(Cause::invalid(
                            format!("spec.cidrs[{i}]"),
                            c,
                            &format!("must be in canonical form ({canonical:?})"),
                        ));
                    }
                }
            }
        }
        if families.len() == 2 && families[0] == families[1] {
            causes.push(invalid_raw(
                "spec.cidrs",
                &go_string_slice(cidrs),
                "may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            ));
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let (n, o) = (arr_at(new, "/spec/cidrs"), arr_at(old, "/spec/cidrs"));
        let immutable = "field is immutable";
        if n.len() == o.len() || (o.len() == 1 && n.len() == 2) {
            // Same length: nothing changes; one to two: dual-stack is added.
            for (i, (a, b)) in n.iter().zip(o.iter()).enumerate() {
                if a != b {
                    causes.push(Cause::invalid(format!("spec.cidrs[{i}]"), a, immutable));
                }
            }
        } else {
            causes.push(invalid_raw("spec.cidrs", &go_string_slice(n), immutable));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("CIDRs", "string", "CIDRs defines the IP blocks in CIDR notation (e.g. \"192.168.0.0/24\" or \"2001:db8::/64\") from which to assign service cluster IPs. Max of two CIDRs is allowed, one of each IP family. This field is immutable."),
            TableColumn::age_column(),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let cidrs: Vec<&str> = arr_at(obj, "/spec/cidrs").iter().filter_map(Value::as_str).collect();
        vec![json!(generic_server::meta::name(obj)), json!(cidrs.join(",")), age(obj)]
    }
}

pub struct IPAddressStrategy;

impl Strategy for IPAddressStrategy {
    // The name is an IP address, checked in `validate`.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = generic_server::meta::name(obj);
        if !name.is_empty() {
            match name.parse::<IpAddr>() {
                Err(_) => causes.push(Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
                Ok(ip) if ip.to_string() != name => causes.push(Cause::invalid(
                    "metadata.name",
                    &json!(name),
                    &format!("must be in canonical form ({:?})", ip.to_string()),
                )),
                Ok(_) => {}
            }
        }
        // The typed decoding fills a left-out parentRef with empty strings;
        // one with nothing in it was not given.
        let given = |p: &&Value| p.as_object().is_some_and(|m| m.values().any(|v| v.as_str() != Some("")));
        let Some(parent) = obj.pointer("/spec/parentRef").filter(given) else {
            causes.push(Cause::required("spec.parentRef", ""));
            return causes;
        };
        let group = str_at(parent, "/group");
        if let Some(p) = (!group.is_empty()).then(|| is_dns1123_subdomain(group)).flatten() {
            causes.push(Cause::invalid("spec.parentRef.group", &json!(group), &p));
        }
        for field in ["resource", "name"] {
            let v = str_at(parent, &format!("/{field}"));
            if v.is_empty() {
                causes.push(Cause::required(format!("spec.parentRef.{field}"), ""));
            } else if let Some(p) = path_segment_problem(v) {
                causes.push(Cause::invalid(format!("spec.parentRef.{field}"), &json!(v), &p));
            }
        }
        let ns = str_at(parent, "/namespace");
        if let Some(p) = (!ns.is_empty()).then(|| path_segment_problem(ns)).flatten() {
            causes.push(Cause::invalid("spec.parentRef.namespace", &json!(ns), &p));
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let parent = |o: &Value| o.pointer("/spec/parentRef").cloned().unwrap_or(Value::Null);
        if parent(new) != parent(old) {
            // Upstream prints the reference as Go's %#v does.
            let p = parent(new);
            let shown = if p.is_object() {
                let f = |k: &str| format!("{:?}", str_at(&p, &format!("/{k}")));
                let fields = [
                    ("Group", f("group")),
                    ("Resource", f("resource")),
                    ("Namespace", f("namespace")),
                    ("Name", f("name")),
                ];
                go_struct("networking.ParentReference", &fields)
            } else {
                "null".into()
            };
            causes.push(invalid_raw("spec.parentRef", &shown, "field is immutable"));
        }
        causes
    }

    fn table_columns(&self) -> Vec<TableColumn> {
        vec![
            TableColumn::name_column(),
            TableColumn::new("ParentRef", "string", "ParentRef references the resource that an IPAddress is attached to. An IPAddress must reference a parent object."),
        ]
    }

    fn table_row(&self, obj: &Value) -> Vec<Value> {
        let parent = match obj.pointer("/spec/parentRef").filter(|p| p.is_object()) {
            None => "<none>".to_string(),
            Some(p) => {
                let (group, resource) = (str_at(p, "/group"), str_at(p, "/resource"));
                let gr = if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") };
                format!("{}/{}/{}", gr.to_lowercase(), str_at(p, "/namespace"), str_at(p, "/name"))
            }
        };
        vec![json!(generic_server::meta::name(obj)), json!(parent)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(causes: Vec<Cause>) -> Vec<String> {
        causes.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn service_cidrs() {
        let s = ServiceCIDRStrategy;
        assert_eq!(
            messages(s.validate(&json!({"spec": {"cidrs": ["10.0.0.1/24", "10.1.0.0/16"]}}))),
            [
                "spec.cidrs[0]: Invalid value: \"10.0.0.1/24\": must be in canonical form (\"10.0.0.0/24\")",
                "spec.cidrs: Invalid value: []string{\"10.0.0.1/24\", \"10.1.0.0/16\"}: may specify no more than one IP for each IP family, i.e 192.168.0.0/24 and 2001:db8::/64",
            ]
        );
        let old = json!({"spec": {"cidrs": ["10.0.0.0/24"]}});
        assert!(s.validate_update(&json!({"spec": {"cidrs": ["10.0.0.0/24", "fd00::/108"]}}), &old).is_empty());
        assert_eq!(
            messages(s.validate_update(&json!({"spec": {"cidrs": ["10.9.0.0/24"]}}), &old)),
            ["spec.cidrs[0]: Invalid value: \"10.9.0.0/24\": field is immutable"]
        );
    }

    #[test]
    fn ip_addresses() {
        let s = IPAddressStrategy;
        let missing = json!({"metadata": {"name": "10.0.0.1"}, "spec": {"parentRef": {"name": "", "resource": ""}}});
        assert_eq!(messages(s.validate(&missing)), ["spec.parentRef: Required value"]);
        let ip = json!({"metadata": {"name": "10.0.0.010"}, "spec": {"parentRef": {"resource": "services"}}});
        assert_eq!(
            messages(s.validate(&ip)),
            [
                "metadata.name: Invalid value: \"10.0.0.010\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.parentRef.name: Required value",
            ]
        );
        let ok = json!({"metadata": {"name": "2001:db8::1"}, "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "web"}}});
        assert!(s.validate(&ok).is_empty());
        assert_eq!(s.table_row(&ok)[1], "services/default/web");
        let mut moved = ok.clone();
        moved["spec"]["parentRef"]["name"] = json!("db");
        assert_eq!(
            messages(s.validate_update(&moved, &ok)),
            [
                r#"spec.parentRef: Invalid value: networking.ParentReference{Group:"", Resource:"services", Namespace:"default", Name:"db"}: field is immutable"#
            ]
        );
    }
}
