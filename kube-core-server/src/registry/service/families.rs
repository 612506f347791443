//! A Service's IP families: which families it gets and which of its fields
//! say so, on single- and dual-stack clusters, as upstream decides them
//! (initIPFamilyFields and the cluster IP part of the allocation in
//! pkg/registry/core/service/storage, and the validation of clusterIPs,
//! ipFamilies and ipFamilyPolicy in pkg/apis/core/validation).
//!
//! The rules run on [`IpFields`], the three fields read out of the object,
//! and are written back once decided. A policy the client left out is
//! inferred (the old one on update; RequireDualStack for a headless Service
//! without a selector; SingleStack otherwise), then the families follow from
//! the cluster IPs asked for, the policy and the configured ranges.

use std::net::IpAddr;

use serde_json::{json, Value};

use generic_server::status::Cause;

use super::{svc_type, SINGLE_STACK};
use crate::allocator::{IpAllocator, IpFamily};
use crate::registry::{arr_at, child, go_string_slice, invalid_raw, map_at, str_at};

pub(super) const PREFER_DUAL_STACK: &str = "PreferDualStack";
pub(super) const REQUIRE_DUAL_STACK: &str = "RequireDualStack";
const POLICIES: &[&str] = &[PREFER_DUAL_STACK, REQUIRE_DUAL_STACK, SINGLE_STACK];
const FAMILIES: &[&str] = &["IPv4", "IPv6"];
const IP_MSG: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const NONE: &str = "None";

/// A Service's clusterIPs, ipFamilies and ipFamilyPolicy.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IpFields {
    pub policy: Option<String>,
    pub families: Vec<String>,
    pub ips: Vec<String>,
}

fn strings(obj: &Value, pointer: &str) -> Vec<String> {
    arr_at(obj, pointer).iter().map(|v| v.as_str().unwrap_or("").to_string()).collect()
}

impl IpFields {
    pub fn of(obj: &Value) -> Self {
        IpFields {
            policy: obj.pointer("/spec/ipFamilyPolicy").and_then(Value::as_str).map(str::to_string),
            families: strings(obj, "/spec/ipFamilies"),
            ips: strings(obj, "/spec/clusterIPs"),
        }
    }

    /// Writes the fields back; clusterIP follows clusterIPs[0].
    pub fn write(&self, obj: &mut Value) {
        let spec = child(obj, "spec");
        let mut set = |key: &str, v: Option<Value>| match v {
            Some(v) => spec.insert(key.into(), v),
            None => spec.remove(key),
        };
        set("ipFamilyPolicy", self.policy.as_ref().map(|p| json!(p)));
        set("ipFamilies", (!self.families.is_empty()).then(|| json!(self.families)));
        set("clusterIPs", (!self.ips.is_empty()).then(|| json!(self.ips)));
        set("clusterIP", self.ips.first().map(|ip| json!(ip)));
    }

    fn policy(&self) -> &str {
        self.policy.as_deref().unwrap_or("")
    }

    pub fn is_headless(&self) -> bool {
        self.ips.len() == 1 && self.ips[0] == NONE
    }
}

/// Whether the Service selects no pods and has no cluster IP: the one case
/// where families need no range behind them.
fn headless_without_selector(obj: &Value) -> bool {
    str_at(obj, "/spec/clusterIP") == NONE && map_at(obj, "/spec/selector").is_none_or(|m| m.is_empty())
}

fn family_of(ip: &str) -> Option<IpFamily> {
    ip.parse::<IpAddr>().ok().map(IpFamily::of)
}

fn show(s: &str) -> String {
    format!("{s:?}")
}

fn shown_policy(f: &IpFields) -> String {
    f.policy.as_deref().map(show).unwrap_or_else(|| "null".into())
}

fn shown_ips(f: &IpFields) -> String {
    go_string_slice(&f.ips.iter().map(|s| json!(s)).collect::<Vec<_>>())
}

/// The rules the three fields are held to on their own (upstream's
/// ValidateServiceClusterIPsRelatedFields), run before families are decided
/// and again when the Service is validated.
pub(super) fn validate(obj: &Value) -> Vec<Cause> {
    if svc_type(obj) == "ExternalName" {
        return Vec::new();
    }
    let f = IpFields::of(obj);
    let mut causes = Vec::new();
    let cluster_ip = str_at(obj, "/spec/clusterIP");
    if !cluster_ip.is_empty() {
        match f.ips.first() {
            None => causes.push(Cause::required("spec.clusterIPs", "")),
            Some(first) if first != cluster_ip => {
                causes.push(invalid_raw("spec.clusterIPs", &shown_ips(&f), "first value must match `clusterIP`"))
            }
            Some(_) => {}
        }
    } else if !f.ips.is_empty() {
        causes.push(invalid_raw("spec.clusterIPs", &shown_ips(&f), "must be empty when `clusterIP` is not specified"));
    }
    for (i, fam) in f.families.iter().enumerate() {
        if !FAMILIES.contains(&fam.as_str()) {
            causes.push(Cause::not_supported(format!("spec.ipFamilies[{i}]"), &json!(fam), FAMILIES));
        }
        if f.families[..i].contains(fam) {
            causes.push(Cause::duplicate(format!("spec.ipFamilies[{i}]"), &json!(fam)));
        }
    }
    if let Some(p) = &f.policy {
        if !POLICIES.contains(&p.as_str()) {
            causes.push(Cause::not_supported("spec.ipFamilyPolicy", &json!(p), POLICIES));
        }
    }
    let mut bad_ips = false;
    for (i, ip) in f.ips.iter().enumerate() {
        if i == 0 && ip == NONE {
            if f.ips.len() > 1 {
                bad_ips = true;
                causes.push(invalid_raw("spec.clusterIPs", &shown_ips(&f), "'None' must be the first and only value"));
            }
            continue;
        }
        if ip.parse::<IpAddr>().is_err() {
            bad_ips = true;
            causes.push(Cause::invalid(format!("spec.clusterIPs[{i}]"), &json!(ip), IP_MSG));
        }
    }
    if f.ips.len() > 2 {
        causes.push(invalid_raw("spec.clusterIPs", &shown_ips(&f), "may only hold up to 2 values"));
    }
    if bad_ips {
        return causes;
    }
    if f.ips.len() > 1 {
        let dual = f.ips.len() == 2 && family_of(&f.ips[0]) != family_of(&f.ips[1]);
        if !dual {
            causes.push(invalid_raw(
                "spec.clusterIPs",
                &shown_ips(&f),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !f.is_headless() {
        for (i, (ip, fam)) in f.ips.iter().zip(&f.families).enumerate() {
            let want = match IpFamily::parse(fam) {
                Some(w) if family_of(ip) != Some(w) => w,
                _ => continue,
            };
            let detail = format!("expected an {} value as indicated by `ipFamilies[{i}]`", want.as_str());
            causes.push(Cause::invalid(format!("spec.clusterIPs[{i}]"), &json!(ip), &detail));
        }
    }
    causes
}

/// Upstream's updates that must not lose a family or IP: the rules on how
/// clusterIPs and ipFamilies may change (validateUpgradeDowngradeClusterIPs
/// and validateUpgradeDowngradeIPFamilies).
pub(super) fn validate_update(new: &Value, old: &Value) -> Vec<Cause> {
    if svc_type(new) == "ExternalName" || svc_type(old) == "ExternalName" {
        return Vec::new();
    }
    let (n, o) = (IpFields::of(new), IpFields::of(old));
    let mut causes = Vec::new();
    let single = n.policy() == SINGLE_STACK;
    if !(o.is_headless() && n.is_headless()) {
        let changed_primary = |causes: &mut Vec<Cause>| {
            if !o.ips.is_empty() && !n.ips.is_empty() && n.ips[0] != o.ips[0] {
                causes.push(invalid_raw("spec.clusterIPs[0]", &shown_ips(&n), "may not change once set"));
            }
        };
        if o.ips.len() == n.ips.len() {
            for (i, ip) in o.ips.iter().enumerate() {
                if *ip != n.ips[i] {
                    causes.push(invalid_raw(
                        format!("spec.clusterIPs[{i}]"),
                        &shown_ips(&n),
                        "may not change once set",
                    ));
                }
            }
        } else if o.ips.len() > n.ips.len() {
            if n.ips.is_empty() {
                causes.push(invalid_raw("spec.clusterIPs[0]", &shown_ips(&n), "primary clusterIP can not be unset"));
            }
            changed_primary(&mut causes);
            if n.ips.len() == 1 && !single {
                causes.push(invalid_raw(
                    "spec.ipFamilyPolicy",
                    &shown_policy(&n),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else {
            changed_primary(&mut causes);
        }
    }
    if o.is_headless() != n.is_headless() || n.is_headless() {
        return causes;
    }
    let shown_families = go_string_slice(&n.families.iter().map(|s| json!(s)).collect::<Vec<_>>());
    if o.families.len() == n.families.len() {
        for (i, fam) in o.families.iter().enumerate() {
            if *fam != n.families[i] {
                causes.push(invalid_raw("spec.ipFamilies[0]", &shown_families, "may not change once set"));
            }
        }
    } else {
        if o.families.len() > n.families.len() && n.ips.is_empty() {
            causes.push(invalid_raw("spec.ipFamilies[0]", &shown_families, "primary ipFamily can not be unset"));
        }
        if !o.families.is_empty() && !n.families.is_empty() && n.families[0] != o.families[0] {
            causes.push(invalid_raw("spec.ipFamilies[0]", &shown_ips(&n), "may not change once set"));
        }
        if o.families.len() > n.families.len() && n.families.len() == 1 && !single {
            causes.push(invalid_raw(
                "spec.ipFamilyPolicy",
                &shown_policy(&n),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    }
    causes
}

/// Whether an update leaves a PreferDualStack Service's IPs as they are:
/// such a Service is not upgraded or downgraded because the cluster's
/// ranges changed, only on request.
fn keeps_prefer_dual_stack(obj: &Value, old: Option<&Value>, f: &IpFields) -> bool {
    let Some(old) = old else { return false };
    let o = IpFields::of(old);
    f.policy.is_some()
        && svc_type(old) == svc_type(obj)
        && f.policy() == PREFER_DUAL_STACK
        && o.policy.as_deref().is_none_or(|p| p == PREFER_DUAL_STACK)
        && o.ips == f.ips
        && o.families == f.families
}

/// Decides a Service's families and policy (upstream's initIPFamilyFields),
/// writing them into `obj`; the causes are why it cannot have them.
pub(super) fn init(obj: &mut Value, old: Option<&Value>, ips: &IpAllocator) -> Vec<Cause> {
    if svc_type(obj) == "ExternalName" {
        return Vec::new();
    }
    let mut f = IpFields::of(obj);
    if keeps_prefer_dual_stack(obj, old, &f) {
        return Vec::new();
    }
    let selectorless_headless = headless_without_selector(obj);
    if f.policy.is_none() {
        f.policy = Some(match old.and_then(|o| o.pointer("/spec/ipFamilyPolicy")).and_then(Value::as_str) {
            Some(p) => p.to_string(),
            None if selectorless_headless => REQUIRE_DUAL_STACK.into(),
            None => SINGLE_STACK.into(),
        });
        f.write(obj);
    }
    let causes = validate(obj);
    if !causes.is_empty() {
        return causes;
    }
    let mut causes = Vec::new();
    if let Some(old) = old {
        let o = IpFields::of(old);
        if f.policy() == SINGLE_STACK {
            // Single-stack with the secondary still listed as it was is a
            // clear request to give the secondary up.
            if o.ips == f.ips && f.ips.len() > 1 {
                f.ips.truncate(1);
            }
            if o.families == f.families && f.families.len() > 1 {
                f.families.truncate(1);
            }
        } else {
            if !f.ips.is_empty() && f.ips.len() < o.ips.len() {
                causes.push(invalid_raw(
                    "spec.ipFamilyPolicy",
                    &shown_policy(&f),
                    "must be 'SingleStack' to release the secondary cluster IP",
                ));
            }
            if !f.families.is_empty() && f.families.len() < o.families.len() {
                causes.push(invalid_raw(
                    "spec.ipFamilyPolicy",
                    &shown_policy(&f),
                    "must be 'SingleStack' to release the secondary IP family",
                ));
            }
        }
    }
    if f.policy() == SINGLE_STACK {
        if f.ips.len() == 2 {
            causes.push(invalid_raw(
                "spec.ipFamilyPolicy",
                &shown_policy(&f),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
            ));
        }
        if f.families.len() == 2 {
            causes.push(invalid_raw(
                "spec.ipFamilyPolicy",
                &shown_policy(&f),
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
            ));
        }
    }
    // Families follow the IPs asked for, where the client named none.
    for (i, ip) in f.ips.clone().iter().enumerate() {
        if ip == NONE {
            break;
        }
        if i < f.families.len() {
            continue;
        }
        let Some(fam) = family_of(ip) else { continue };
        if ips.has_family(fam) {
            f.families.push(fam.as_str().into());
        } else {
            let detail = format!("{} is not configured on this cluster", fam.as_str());
            causes.push(invalid_raw(format!("spec.clusterIPs[{i}]"), &shown_ips(&f), &detail));
        }
    }
    if !causes.is_empty() {
        return causes;
    }
    let default = ips.family().as_str();
    let other = |fam: &str| IpFamily::parse(fam).map(|f| f.other().as_str().to_string());
    if selectorless_headless {
        // Families here need no range: a headless Service may list both on
        // a single-stack cluster.
        if f.families.is_empty() {
            f.families.push(default.into());
        }
        if f.families.len() < 2 && f.policy() != SINGLE_STACK {
            f.families.extend(other(&f.families[0]));
        }
        f.write(obj);
        return Vec::new();
    }
    if f.policy() == REQUIRE_DUAL_STACK && !ips.is_dual_stack() {
        causes.push(invalid_raw(
            "spec.ipFamilyPolicy",
            &shown_policy(&f),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, fam) in f.families.iter().enumerate() {
        if !IpFamily::parse(fam).is_some_and(|x| ips.has_family(x)) {
            causes.push(Cause::invalid(format!("spec.ipFamilies[{i}]"), &json!(fam), "not configured on this cluster"));
        }
    }
    if !causes.is_empty() {
        return causes;
    }
    if f.families.is_empty() {
        f.families.push(default.into());
    }
    if f.policy() != SINGLE_STACK && f.families.len() == 1 && ips.is_dual_stack() {
        f.families.extend(other(&f.families[0]));
    }
    f.write(obj);
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "s"}, "spec": spec})
    }

    fn messages(c: &[Cause]) -> Vec<String> {
        c.iter().map(Cause::full_message).collect()
    }

    #[test]
    fn policies_and_families_are_inferred() {
        let single = IpAllocator::new("10.0.0.0/24").unwrap();
        let dual = IpAllocator::new("10.0.0.0/24,fd00::/108").unwrap();
        let mut s = svc(json!({"selector": {"a": "b"}}));
        assert!(init(&mut s, None, &dual).is_empty());
        assert_eq!((&s["spec"]["ipFamilyPolicy"], &s["spec"]["ipFamilies"]), (&json!("SingleStack"), &json!(["IPv4"])));
        // The family of a requested IP, on a cluster whose primary is the other.
        let v6_first = IpAllocator::new("fd00::/108,10.0.0.0/24").unwrap();
        let mut s = svc(json!({"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"]}));
        assert!(init(&mut s, None, &v6_first).is_empty());
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        let mut s = svc(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}));
        assert!(init(&mut s, None, &dual).is_empty());
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv6", "IPv4"]));
        let mut s = svc(json!({"ipFamilyPolicy": "PreferDualStack"}));
        assert!(init(&mut s, None, &single).is_empty());
        assert_eq!(s["spec"]["ipFamilies"], json!(["IPv4"]));
        // A policy the client leaves out on update is the old one.
        let old = svc(json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
            "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9", "fd00::9"]}));
        let mut new = svc(json!({"clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9", "fd00::9"]}));
        assert!(init(&mut new, Some(&old), &dual).is_empty());
        assert_eq!(new["spec"]["ipFamilyPolicy"], "RequireDualStack");
    }

    #[test]
    fn updates_keep_or_release_the_secondary_only_as_asked() {
        let dual = IpAllocator::new("10.0.0.0/24,fd00::/108").unwrap();
        let old = svc(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"],
            "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9", "fd00::9"]}));
        // SingleStack with the lists as they were drops the secondary.
        let mut new = old.clone();
        new["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        assert!(init(&mut new, Some(&old), &dual).is_empty());
        assert_eq!((&new["spec"]["clusterIPs"], &new["spec"]["ipFamilies"]), (&json!(["10.0.0.9"]), &json!(["IPv4"])));
        assert!(validate_update(&new, &old).is_empty());
        // Dropping it under another policy is refused, on both lists.
        let mut new = old.clone();
        new["spec"]["clusterIPs"] = json!(["10.0.0.9"]);
        new["spec"]["ipFamilies"] = json!(["IPv4"]);
        assert_eq!(
            messages(&init(&mut new, Some(&old), &dual)),
            [
                "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be 'SingleStack' to release the secondary cluster IP",
                "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be 'SingleStack' to release the secondary IP family",
            ]
        );
        assert_eq!(
            messages(&validate_update(&new, &old)),
            [
                "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be set to 'SingleStack' when releasing the secondary clusterIP",
                "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be set to 'SingleStack' when releasing the secondary ipFamily",
            ]
        );
        // A PreferDualStack Service left as it is is not touched.
        let mut same = old.clone();
        assert!(init(&mut same, Some(&old), &IpAllocator::new("10.0.0.0/24").unwrap()).is_empty());
        assert_eq!(same, old);
        // The primary address may not change.
        let mut moved = old.clone();
        moved["spec"]["clusterIPs"] = json!(["10.0.0.10", "fd00::9"]);
        moved["spec"]["clusterIP"] = json!("10.0.0.10");
        assert_eq!(
            messages(&validate_update(&moved, &old)),
            ["spec.clusterIPs[0]: Invalid value: []string{\"10.0.0.10\", \"fd00::9\"}: may not change once set"]
        );
    }

    #[test]
    fn field_rules() {
        let bad = svc(json!({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.2", "x", "10.0.0.3"],
            "ipFamilies": ["IPv4", "IPv4", "IPv5"], "ipFamilyPolicy": "Dual"}));
        assert_eq!(
            messages(&validate(&bad)),
            [
                "spec.clusterIPs: Invalid value: []string{\"10.0.0.2\", \"x\", \"10.0.0.3\"}: first value must match `clusterIP`",
                "spec.ipFamilies[1]: Duplicate value: \"IPv4\"",
                "spec.ipFamilies[2]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
                "spec.ipFamilyPolicy: Unsupported value: \"Dual\": supported values: \"PreferDualStack\", \"RequireDualStack\", \"SingleStack\"",
                "spec.clusterIPs[1]: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.clusterIPs: Invalid value: []string{\"10.0.0.2\", \"x\", \"10.0.0.3\"}: may only hold up to 2 values",
            ]
        );
        let none_first = svc(json!({"clusterIP": "None", "clusterIPs": ["None", "10.0.0.1"]}));
        assert_eq!(
            messages(&validate(&none_first)),
            ["spec.clusterIPs: Invalid value: []string{\"None\", \"10.0.0.1\"}: 'None' must be the first and only value"]
        );
        assert!(validate(&svc(json!({"type": "ExternalName", "clusterIPs": ["x"]}))).is_empty());
    }
}
