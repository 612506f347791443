//! Service cluster IPs as upstream 1.33 records them (MultiCIDRServiceAllocator
//! on): the default ServiceCIDR `kubernetes` from --service-cluster-ip-range,
//! Ready; an IPAddress per allocated cluster IP, made at allocation, removed
//! with its Service or IP, never left by a failed create; an address recorded
//! by hand is taken; all of it kept across a restart and on etcd. On a
//! dual-stack server (two ranges in the flag) Services get an address of each
//! family their ipFamilyPolicy asks for, and move between single- and
//! dual-stack as upstream allows; a single-stack server refuses what it
//! cannot give in upstream's words.

use e2e::{eventually, table, Server};
use serde_json::{json, Value};

/// The IPAddress `ip` as JSON, or None if there is none.
fn ip_address(s: &Server, ip: &str) -> Option<Value> {
    let r = s.run(&["get", "ipaddress", ip, "-o", "json"], None);
    if r.code != 0 {
        assert!(r.stderr.contains("NotFound"), "{r:?}");
        return None;
    }
    Some(serde_json::from_str(&r.stdout).expect("kubectl printed JSON"))
}

#[track_caller]
fn assert_recorded(s: &Server, ip: &str, service: &str) {
    let record = ip_address(s, ip).unwrap_or_else(|| panic!("no IPAddress {ip}"));
    assert_eq!(
        record["spec"]["parentRef"],
        json!({"group": "", "resource": "services", "namespace": "default", "name": service})
    );
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    assert_eq!(
        record["metadata"]["labels"],
        json!({"ipaddress.kubernetes.io/ip-family": family, "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"})
    );
}

fn cluster_ip(s: &Server, service: &str) -> String {
    s.kubectl(&["get", "svc", service, "-o", "jsonpath={.spec.clusterIP}"])
}

fn default_cidr_is_ready(s: &Server) -> bool {
    let r = s.run(&["get", "servicecidr", "kubernetes", "-o", "json"], None);
    if r.code != 0 {
        return false;
    }
    let cidr: Value = serde_json::from_str(&r.stdout).expect("kubectl printed JSON");
    let ready = cidr["status"]["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready")).cloned();
    cidr["spec"]["cidrs"] == json!(["10.0.0.0/24"])
        && ready.is_some_and(|c| {
            c["status"] == "True"
                && c["message"] == "Kubernetes default Service CIDR is ready"
                && c["lastTransitionTime"].is_string()
        })
}

#[test]
fn service_ips_are_ip_addresses() {
    let mut s = Server::start();
    let rows = table(&s.kubectl(&["get", "servicecidr"]));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0]["NAME"].as_str(), rows[0]["CIDRS"].as_str()), ("kubernetes", "10.0.0.0/24"));
    assert!(default_cidr_is_ready(&s));

    // The kubernetes service holds the first address.
    let rows = table(&s.kubectl(&["get", "ipaddress"]));
    let kubernetes = rows.iter().find(|r| r["NAME"] == "10.0.0.1").expect("an IPAddress for 10.0.0.1");
    assert_eq!(kubernetes["PARENTREF"], "services/default/kubernetes");
    assert_recorded(&s, "10.0.0.1", "kubernetes");

    // A fixed address: a random one could be one of those asked for below.
    s.kubectl(&["create", "service", "clusterip", "web", "--tcp=80", "--clusterip=10.0.0.10"]);
    let web = cluster_ip(&s, "web");
    assert_recorded(&s, &web, "web");

    // An address recorded by someone else is taken; the refused create leaves nothing.
    s.create("apiVersion: networking.k8s.io/v1\nkind: IPAddress\nmetadata: {name: 10.0.0.200}\nspec: {parentRef: {group: gateway.example.com, resource: gateways, namespace: default, name: gw}}\n");
    let svc = |name: &str, ip: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n")
    };
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&svc("taken", "10.0.0.200")),
        &["spec.clusterIPs: Invalid value: []string{\"10.0.0.200\"}: failed to allocate IP 10.0.0.200: provided IP is already allocated"],
    );
    assert_eq!(ip_address(&s, "10.0.0.200").unwrap()["spec"]["parentRef"]["name"], "gw");
    assert!(s.run(&["get", "svc", "taken"], None).code != 0);
    // A create refused by storage (the name is in use) takes its address back.
    s.kubectl_err(&["create", "-f", "-"], Some(&svc("web", "10.0.0.201")), &["AlreadyExists"]);
    assert!(ip_address(&s, "10.0.0.201").is_none());
    // Invalid services record nothing either.
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {clusterIP: 10.0.0.202, ports: [{port: 0}]}\n",
        ),
        &["spec.ports[0].port"],
    );
    assert!(ip_address(&s, "10.0.0.202").is_none());

    // Deleting the service, or making it ExternalName, gives the address up.
    s.kubectl(&["delete", "svc", "web"]);
    assert!(ip_address(&s, &web).is_none());
    s.create(&svc("moving", "10.0.0.203"));
    assert_recorded(&s, "10.0.0.203", "moving");
    s.kubectl(&[
        "patch",
        "svc",
        "moving",
        "--type=merge",
        "-p",
        r#"{"spec":{"type":"ExternalName","externalName":"example.com","clusterIP":"","clusterIPs":null,"ports":null}}"#,
    ]);
    assert!(ip_address(&s, "10.0.0.203").is_none());
    s.create(&svc("again", "10.0.0.203"));
    assert_recorded(&s, "10.0.0.203", "again");

    // After a restart the records and the default ServiceCIDR are still there,
    // and a recorded address is still taken.
    s.kubectl(&["create", "service", "clusterip", "db", "--tcp=5432"]);
    let db = cluster_ip(&s, "db");
    s.restart();
    assert_recorded(&s, &db, "db");
    assert_recorded(&s, "10.0.0.203", "again");
    assert!(default_cidr_is_ready(&s));
    s.kubectl_err(&["create", "-f", "-"], Some(&svc("copy", &db)), &["provided IP is already allocated"]);
    s.kubectl_err(&["create", "-f", "-"], Some(&svc("copy", "10.0.0.200")), &["provided IP is already allocated"]);

    // A deleted default ServiceCIDR comes back, Ready.
    s.kubectl(&["delete", "servicecidr", "kubernetes"]);
    eventually("the default ServiceCIDR is recreated", || default_cidr_is_ready(&s));
}

e2e::on_etcd!(service_ips_are_ip_addresses);

/// (ipFamilyPolicy, ipFamilies, clusterIPs) of a Service.
fn families(s: &Server, service: &str) -> (String, Vec<String>, Vec<String>) {
    let svc: Value = serde_json::from_str(&s.kubectl(&["get", "svc", service, "-o", "json"])).expect("JSON");
    let list = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let spec = &svc["spec"];
    (spec["ipFamilyPolicy"].as_str().unwrap_or("").into(), list(&spec["ipFamilies"]), list(&spec["clusterIPs"]))
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{selector: {{app: x}}, ports: [{{port: 80}}], {spec}}}\n")
}

#[test]
fn single_stack_servers_refuse_what_they_cannot_give() {
    let s = Server::start();
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&service("req", "ipFamilyPolicy: RequireDualStack")),
        &[r#"The Service "req" is invalid: spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for dual-stack services"#],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&service("v6", "ipFamilies: [IPv6]")),
        &[r#"spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster"#],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&service("v6ip", "clusterIP: fd00::10")),
        &[r#"spec.clusterIPs[0]: Invalid value: []string{"fd00::10"}: IPv6 is not configured on this cluster"#],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&service("both", "ipFamilyPolicy: SingleStack, ipFamilies: [IPv4, IPv6]")),
        &[r#"spec.ipFamilyPolicy: Invalid value: "SingleStack": must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified"#],
    );
    // Nothing refused was stored or left an address behind.
    assert_eq!(table(&s.kubectl(&["get", "ipaddress"])).len(), 1);
    // PreferDualStack settles for the one family there is.
    s.create(&service("pref", "ipFamilyPolicy: PreferDualStack"));
    let (policy, fams, ips) = families(&s, "pref");
    assert_eq!((policy.as_str(), fams), ("PreferDualStack", vec!["IPv4".to_string()]));
    assert_eq!(ips.len(), 1);
    // A headless Service without a selector needs no range: both families.
    s.create("apiVersion: v1\nkind: Service\nmetadata: {name: hl}\nspec: {clusterIP: None, ports: [{port: 80}]}\n");
    assert_eq!(
        families(&s, "hl"),
        ("RequireDualStack".into(), vec!["IPv4".into(), "IPv6".into()], vec!["None".into()])
    );
    // A NodePort Service patched to ClusterIP, then to ExternalName, drops
    // what no longer applies instead of being refused for it.
    s.kubectl(&["create", "service", "nodeport", "np", "--tcp=80"]);
    let np_ip = cluster_ip(&s, "np");
    s.kubectl(&["patch", "svc", "np", "-p", r#"{"spec":{"type":"ClusterIP"}}"#]);
    let np: Value = serde_json::from_str(&s.kubectl(&["get", "svc", "np", "-o", "json"])).expect("JSON");
    assert!(
        np["spec"]["ports"][0].get("nodePort").is_none() && np["spec"].get("externalTrafficPolicy").is_none(),
        "{np}"
    );
    s.kubectl(&["patch", "svc", "np", "-p", r#"{"spec":{"type":"ExternalName","externalName":"db.example.com"}}"#]);
    assert_eq!(families(&s, "np"), (String::new(), vec![], vec![]));
    assert!(ip_address(&s, &np_ip).is_none(), "the address went with the type");
}

#[test]
fn dual_stack_services_get_an_address_of_each_family() {
    let s = Server::start_with(&["--service-cluster-ip-range", "fd00:10::/108,10.0.0.0/24"]);
    let cidr: Value =
        serde_json::from_str(&s.kubectl(&["get", "servicecidr", "kubernetes", "-o", "json"])).expect("JSON");
    assert_eq!(cidr["spec"]["cidrs"], json!(["fd00:10::/108", "10.0.0.0/24"]));
    // The primary range is the first: the kubernetes service and any
    // Service that names no family are IPv6.
    assert_eq!(families(&s, "kubernetes"), ("SingleStack".into(), vec!["IPv6".into()], vec!["fd00:10::1".into()]));
    // Fixed addresses first, so no random one can have taken them.
    s.create(&service(
        "fixed",
        "ipFamilyPolicy: RequireDualStack, clusterIP: 10.0.0.77, clusterIPs: [10.0.0.77, 'fd00:10::77']",
    ));
    assert_eq!(families(&s, "fixed").2, ["10.0.0.77", "fd00:10::77"]);
    s.create(&service("single", "ports: [{port: 80}]"));
    let (_, fams, single) = families(&s, "single");
    assert_eq!((fams, single.len()), (vec!["IPv6".to_string()], 1));

    s.create(&service("req", "ipFamilyPolicy: RequireDualStack"));
    let (_, fams, ips) = families(&s, "req");
    assert_eq!(fams, ["IPv6", "IPv4"]);
    assert!(ips[0].contains(':') && ips[1].parse::<std::net::Ipv4Addr>().is_ok(), "{ips:?}");
    for ip in &ips {
        assert_recorded(&s, ip, "req");
    }
    s.create(&service("pref4", "ipFamilyPolicy: PreferDualStack, ipFamilies: [IPv4]"));
    assert_eq!(families(&s, "pref4").1, ["IPv4", "IPv6"]);
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&service("two4", "ipFamilyPolicy: RequireDualStack, clusterIP: 10.0.0.78, clusterIPs: [10.0.0.78, 10.0.0.79]")),
        &[r#"spec.clusterIPs: Invalid value: []string{"10.0.0.78", "10.0.0.79"}: may specify no more than one IP for each IP family"#],
    );

    // Upgrade: asking for dual-stack adds the secondary address.
    s.kubectl(&["patch", "svc", "single", "-p", r#"{"spec":{"ipFamilyPolicy":"PreferDualStack"}}"#]);
    let (_, fams, up) = families(&s, "single");
    assert_eq!((fams.len(), &up[0]), (2, &single[0]));
    assert_recorded(&s, &up[1], "single");
    // Giving the secondary up needs SingleStack; then its address goes.
    s.kubectl_err(
        &["patch", "svc", "single", "--type=json", "-p", r#"[{"op":"remove","path":"/spec/clusterIPs/1"}]"#],
        None,
        &[r#"spec.ipFamilyPolicy: Invalid value: "PreferDualStack": must be 'SingleStack' to release the secondary cluster IP"#],
    );
    s.kubectl(&["patch", "svc", "single", "-p", r#"{"spec":{"ipFamilyPolicy":"SingleStack"}}"#]);
    assert_eq!(families(&s, "single").2, [up[0].clone()]);
    assert!(ip_address(&s, &up[1]).is_none(), "the released secondary is no longer recorded");
    // The families are fixed for the Service's life: swapping them is
    // refused for the addresses they no longer match.
    s.kubectl_err(
        &["patch", "svc", "req", "-p", r#"{"spec":{"ipFamilies":["IPv4","IPv6"]}}"#],
        None,
        &[&format!(
            "spec.clusterIPs[0]: Invalid value: \"{}\": expected an IPv4 value as indicated by `ipFamilies[0]`",
            ips[0]
        )],
    );
}
