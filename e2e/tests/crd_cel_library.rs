//! CRD validation rules using the Kubernetes CEL libraries (quantity, URL,
//! IP, CIDR), applied and exercised with kubectl: valid objects are stored,
//! each invalid one is refused with its rule's message at upstream's field
//! path.

use e2e::Server;

/// NetPools, whose rules use the quantity, URL, IP and CIDR libraries.
fn netpools_crd() -> String {
    e2e::namespaced_crd(
        "example.com",
        "netpools",
        "NetPool",
        r#"            type: object
            x-kubernetes-validations:
            - rule: "cidr(self.podCIDR).containsIP(self.nodeIP)"
              message: nodeIP must be inside podCIDR
              fieldPath: .nodeIP
            - rule: "!has(self.reserved) || quantity(self.reserved) == quantity('1Gi')"
              message: reserved must equal 1Gi
            properties:
              memory:
                type: string
                x-kubernetes-validations:
                - rule: "isQuantity(self) && quantity(self).isLessThan(quantity('4Gi')) && quantity(self).sign() == 1"
                  message: memory must be a positive quantity under 4Gi
              reserved: {type: string}
              endpoint:
                type: string
                x-kubernetes-validations:
                - rule: "isURL(self) && url(self).getScheme() == 'https' && url(self).getHostname().endsWith('.example.com')"
                  message: endpoint must be an https URL under example.com
              podCIDR:
                type: string
                x-kubernetes-validations:
                - rule: "isCIDR(self) && cidr(self).prefixLength() <= (cidr(self).ip().family() == 4 ? 24 : 64) && cidr(self).masked() == cidr(self)"
                  message: podCIDR must be a masked prefix of at most 24 bits, 64 for IPv6
              nodeIP:
                type: string
                x-kubernetes-validations:
                - rule: "isIP(self) && ip.isCanonical(self) && ip(self).isGlobalUnicast()"
                  message: nodeIP must be a canonical global unicast address
"#,
    )
}

fn pool(name: &str, memory: &str, endpoint: &str, pod_cidr: &str, node_ip: &str, reserved: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: NetPool\nmetadata: {{name: {name}}}\nspec:\n  memory: {memory:?}\n  \
         endpoint: {endpoint:?}\n  podCIDR: {pod_cidr:?}\n  nodeIP: {node_ip:?}\n  reserved: {reserved:?}\n"
    )
}

#[test]
fn crd_rules_with_quantity_url_ip_and_cidr() {
    let s = Server::start();
    s.apply_crd(&netpools_crd(), "netpools.example.com");

    // "1024Mi" equals 1Gi as a quantity, though not as a string.
    let good = [
        pool("v4", "3Gi", "https://api.example.com:8443/v1?x=1", "10.1.0.0/16", "10.1.2.3", "1024Mi"),
        pool("v6", "512M", "https://v6.example.com/", "2001:db8::/32", "2001:db8::7", "1Gi"),
    ];
    for g in &good {
        s.create(g);
    }
    let names = s.kubectl(&["get", "netpools", "-o", "name"]);
    assert_eq!(names.split_whitespace().collect::<Vec<_>>(), ["netpool.example.com/v4", "netpool.example.com/v6"]);

    let cases = [
        (
            pool("m1", "4Gi", "https://a.example.com/", "10.1.0.0/16", "10.1.2.3", "1Gi"),
            r#"spec.memory: Invalid value: "string": memory must be a positive quantity under 4Gi"#,
        ),
        (
            pool("m2", "lots", "https://a.example.com/", "10.1.0.0/16", "10.1.2.3", "1Gi"),
            r#"spec.memory: Invalid value: "string": memory must be a positive quantity under 4Gi"#,
        ),
        (
            pool("m3", "1e400", "https://a.example.com/", "10.1.0.0/16", "10.1.2.3", "1Gi"),
            r#"spec.memory: Invalid value: "string": memory must be a positive quantity under 4Gi"#,
        ),
        (
            pool("u1", "1Gi", "http://a.example.com/", "10.1.0.0/16", "10.1.2.3", "1Gi"),
            r#"spec.endpoint: Invalid value: "string": endpoint must be an https URL under example.com"#,
        ),
        (
            pool("u2", "1Gi", "a.example.com/path", "10.1.0.0/16", "10.1.2.3", "1Gi"),
            r#"spec.endpoint: Invalid value: "string": endpoint must be an https URL under example.com"#,
        ),
        (
            pool("c1", "1Gi", "https://a.example.com/", "10.1.0.0/25", "10.1.0.3", "1Gi"),
            r#"spec.podCIDR: Invalid value: "string": podCIDR must be a masked prefix of at most 24 bits, 64 for IPv6"#,
        ),
        (
            pool("c3", "1Gi", "https://a.example.com/", "2001:db8::/96", "2001:db8::3", "1Gi"),
            r#"spec.podCIDR: Invalid value: "string": podCIDR must be a masked prefix of at most 24 bits, 64 for IPv6"#,
        ),
        (
            pool("c2", "1Gi", "https://a.example.com/", "10.1.0.1/16", "10.1.0.3", "1Gi"),
            r#"spec.podCIDR: Invalid value: "string": podCIDR must be a masked prefix of at most 24 bits, 64 for IPv6"#,
        ),
        (
            pool("i1", "1Gi", "https://a.example.com/", "10.1.0.0/16", "127.0.0.1", "1Gi"),
            r#"spec.nodeIP: Invalid value: "string": nodeIP must be a canonical global unicast address"#,
        ),
        (
            pool("i2", "1Gi", "https://a.example.com/", "2001:db8::/32", "2001:DB8::7", "1Gi"),
            r#"spec.nodeIP: Invalid value: "string": nodeIP must be a canonical global unicast address"#,
        ),
        (
            pool("i3", "1Gi", "https://a.example.com/", "10.1.0.0/16", "10.2.0.1", "1Gi"),
            r#"spec.nodeIP: Invalid value: "object": nodeIP must be inside podCIDR"#,
        ),
        (
            pool("r1", "1Gi", "https://a.example.com/", "10.1.0.0/16", "10.1.2.3", "1G"),
            r#"spec: Invalid value: "object": reserved must equal 1Gi"#,
        ),
    ];
    for (yaml, want) in &cases {
        let err = s.kubectl_fails(&["create", "-f", "-"], Some(yaml));
        assert!(err.contains("is invalid") && err.contains(want), "want {want:?} in:\n{err}");
    }
    // Only the valid objects were stored.
    let names = s.kubectl(&["get", "netpools", "-o", "name"]);
    assert_eq!(names.split_whitespace().count(), 2, "{names}");
}

/// Pairs of integers, every pair summing to at least zero.
fn pairs_crd() -> String {
    e2e::namespaced_crd(
        "example.com",
        "pairs",
        "Pair",
        r#"            type: object
            x-kubernetes-validations:
            - rule: "self.items.all(x, self.items.all(y, x + y >= 0))"
              message: no two items may sum below zero
            - rule: "size(self.items) < 5000"
            properties:
              items:
                type: array
                maxItems: 1000
                items: {type: integer}
"#,
    )
}

fn pair(name: &str, n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    format!(
        "apiVersion: example.com/v1\nkind: Pair\nmetadata: {{name: {name}}}\nspec:\n  items: [{}]\n",
        items.join(", ")
    )
}

/// A rule whose worst case is within the per-rule estimate limit, so the CRD
/// is accepted, still stops at upstream's per-call limit when an object
/// makes it that expensive: the write is refused with upstream's error and
/// no later rule runs. A cheaper object passes.
#[test]
fn runtime_cost_is_metered_per_call() {
    let s = Server::start();
    s.apply_crd(&pairs_crd(), "pairs.example.com");
    s.create(&pair("small", 100));
    let err = s.kubectl_err(
        &["create", "-f", "-"],
        Some(&pair("large", 1000)),
        &[r#"spec: Invalid value: "object": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: no two items may sum below zero"#],
    );
    assert!(!err.contains("size(self.items)"), "no rule runs after the limit: {err}");
    assert!(s.run(&["get", "pair", "large"], None).code != 0, "nothing stored");
}
