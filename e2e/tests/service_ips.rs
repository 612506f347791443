//! Service cluster IPs as upstream 1.33 records them (MultiCIDRServiceAllocator
//! on): the default ServiceCIDR `kubernetes` from --service-cluster-ip-range,
//! Ready; an IPAddress per allocated cluster IP, made at allocation, removed
//! with its Service or IP, never left by a failed create; an address recorded
//! by hand is taken; all of it kept across a restart and on etcd.

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
    assert_eq!(
        record["metadata"]["labels"],
        json!({"ipaddress.kubernetes.io/ip-family": "IPv4", "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"})
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

    s.kubectl(&["create", "service", "clusterip", "web", "--tcp=80"]);
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
