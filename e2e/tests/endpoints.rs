//! Endpoints (core/v1) and EndpointSlices (discovery.k8s.io/v1) with the real
//! kubectl: create, get (tables as upstream prints them), apply, delete, the
//! defaults, upstream's refusal of special addresses, and their discovery and
//! OpenAPI entries.

use e2e::{table, Server};
use serde_json::json;

const LOOPBACK_MSG: &str = "may not be in the loopback range (127.0.0.0/8, ::1/128)";

const WEB_ENDPOINTS: &str = r#"
apiVersion: v1
kind: Endpoints
metadata:
  name: web
  labels: {app: web}
subsets:
- addresses:
  - ip: 10.0.0.1
  - ip: 10.0.0.2
  ports:
  - {name: http, port: 80}
  - {name: https, port: 443}
"#;

#[test]
fn endpoints_workflow() {
    let mut s = Server::start();
    assert_eq!(s.create(WEB_ENDPOINTS), "endpoints/web created\n");
    assert_eq!(s.create("apiVersion: v1\nkind: Endpoints\nmetadata: {name: empty}\n"), "endpoints/empty created\n");

    // Every request to v1 Endpoints carries upstream 1.33's deprecation warning.
    let r = s.run(&["get", "endpoints"], None);
    let warning = "Warning: v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice";
    assert!(r.stderr.contains(warning), "{r:?}");
    assert_eq!(s.request("GET", "/api/v1/endpoints/nope", None).header("Warning").len(), 1, "a 404 too");
    assert!(s.request("GET", "/apis/discovery.k8s.io/v1/endpointslices", None).header("Warning").is_empty());

    // The table: NAME ENDPOINTS AGE, at most three host:port pairs then "+ N more...".
    let out = s.kubectl(&["get", "endpoints"]);
    let rows = table(&out);
    assert_eq!(rows[0].keys().cloned().collect::<Vec<_>>(), ["AGE", "ENDPOINTS", "NAME"], "{out}");
    assert!(out.starts_with("NAME"), "{out}");
    let row = |name: &str| rows.iter().find(|r| r["NAME"] == name).unwrap_or_else(|| panic!("{name}: {out}")).clone();
    assert_eq!(row("web")["ENDPOINTS"], "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...");
    assert_eq!(row("empty")["ENDPOINTS"], "<none>");
    // The short name, and defaults: the protocol is TCP.
    assert_eq!(e2e::table_names(&s.kubectl(&["get", "ep", "-l", "app=web"])), ["web"]);
    let web = s.kubectl_json(&["get", "endpoints", "web", "-o", "json"]);
    assert_eq!(web["subsets"][0]["ports"][0]["protocol"], "TCP", "{web}");
    assert_eq!(web["subsets"][0]["ports"][1]["protocol"], "TCP", "{web}");

    // apply creates, then changes.
    let single = |ip: &str| {
        format!("apiVersion: v1\nkind: Endpoints\nmetadata: {{name: api}}\nsubsets:\n- addresses: [{{ip: {ip}}}]\n  ports: [{{port: 8443}}]\n")
    };
    assert_eq!(s.apply(&single("10.0.1.1")), "endpoints/api created\n");
    assert_eq!(s.apply(&single("10.0.1.2")), "endpoints/api configured\n");
    let rows = table(&s.kubectl(&["get", "endpoints", "api"]));
    assert_eq!(rows[0]["ENDPOINTS"], "10.0.1.2:8443");
    let ipv6 = "apiVersion: v1\nkind: Endpoints\nmetadata: {name: v6}\nsubsets:\n- addresses: [{ip: 'fd00::5'}]\n  ports: [{port: 53, protocol: UDP}]\n";
    s.create(ipv6);
    assert_eq!(table(&s.kubectl(&["get", "endpoints", "v6"]))[0]["ENDPOINTS"], "[fd00::5]:53");

    // Special addresses are refused with upstream's field path and message.
    let err = s.kubectl_err(
        &["create", "-f", "-"],
        Some(&single("127.0.0.1")),
        &["Endpoints \"api\" is invalid", "subsets[0].addresses[0].ip", "Invalid value: \"127.0.0.1\"", LOOPBACK_MSG],
    );
    assert!(!err.contains("created"), "{err}");
    let body = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "lo"},
        "subsets": [{"notReadyAddresses": [{"ip": "::1"}], "ports": [{"port": 80}]}]});
    let r = s.request("POST", "/api/v1/namespaces/default/endpoints", Some(&body));
    let status = r.assert_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "subsets[0].notReadyAddresses[0].ip", "{status}");
    assert_eq!(status["details"]["causes"][0]["reason"], "FieldValueInvalid", "{status}");
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Endpoints\nmetadata: {name: x}\nsubsets:\n- addresses: [{ip: 169.254.10.1}]\n"),
        &["subsets[0].addresses[0].ip", "may not be in the link-local range (169.254.0.0/16, fe80::/10)"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Endpoints\nmetadata: {name: x}\nsubsets:\n- ports: [{port: 80}]\n"),
        &["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Endpoints\nmetadata: {name: x}\nsubsets:\n- addresses: [{ip: 10.0.0.9}]\n  ports: [{port: 0}]\n"),
        &["subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"],
    );

    // A controller's PUT creates endpoints that do not exist yet.
    let put = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "by-put", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.0.2.1"}], "ports": [{"port": 80}]}]});
    let r = s.request("PUT", "/api/v1/namespaces/default/endpoints/by-put", Some(&put));
    assert_eq!(r.status, 201, "{}", r.text());

    assert_eq!(
        s.kubectl(&["delete", "endpoints", "web", "empty"]),
        "endpoints \"web\" deleted\nendpoints \"empty\" deleted\n"
    );
    assert_eq!(e2e::table_names(&s.kubectl(&["get", "endpoints"])), ["api", "by-put", "v6"]);
    s.assert_healthy();
}

const WEB_SLICE: &str = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
- addresses: [10.0.0.2]
  conditions: {ready: false}
ports:
- {name: http, port: 80}
"#;

#[test]
fn endpointslice_workflow() {
    let mut s = Server::start();
    assert_eq!(s.apply(WEB_SLICE), "endpointslice.discovery.k8s.io/web-abc created\n");
    let many = r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: many, labels: {kubernetes.io/service-name: other}}
addressType: IPv6
endpoints:
- addresses: ["fd00::1", "fd00::2"]
- addresses: ["fd00::3"]
- addresses: ["fd00::4", "fd00::5"]
ports: [{name: a, port: 1}, {name: b, port: 2}, {name: c, port: 3}, {name: d, port: 4}, {name: all}]
"#;
    assert_eq!(s.create(many), "endpointslice.discovery.k8s.io/many created\n");
    s.create("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: bare}\naddressType: FQDN\nendpoints: []\n");

    // NAME ADDRESSTYPE PORTS ENDPOINTS AGE, as upstream prints them.
    let out = s.kubectl(&["get", "endpointslices"]);
    assert!(out.starts_with("NAME"), "{out}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]);
    let rows = table(&out);
    let row = |name: &str| rows.iter().find(|r| r["NAME"] == name).unwrap_or_else(|| panic!("{name}: {out}")).clone();
    let web = row("web-abc");
    assert_eq!(
        (web["ADDRESSTYPE"].as_str(), web["PORTS"].as_str(), web["ENDPOINTS"].as_str()),
        ("IPv4", "80", "10.0.0.1,10.0.0.2")
    );
    let many = row("many");
    assert_eq!(many["PORTS"], "1,2,3 + 2 more...");
    assert_eq!(many["ENDPOINTS"], "fd00::1,fd00::2,fd00::3 + 2 more...");
    let bare = row("bare");
    assert_eq!(
        (bare["ADDRESSTYPE"].as_str(), bare["PORTS"].as_str(), bare["ENDPOINTS"].as_str()),
        ("FQDN", "<unset>", "<unset>")
    );

    // The service-name label is an ordinary label: selectors find slices by it.
    let by_service = s.kubectl(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "name"]);
    assert_eq!(by_service, "endpointslice.discovery.k8s.io/web-abc\n");

    // Defaults and generation.
    let got = s.kubectl_json(&["get", "endpointslice", "web-abc", "-o", "json"]);
    assert_eq!(got["ports"][0]["protocol"], "TCP", "{got}");
    assert_eq!(got["metadata"]["generation"], 1, "{got}");
    assert_eq!(got["endpoints"][1]["conditions"]["ready"], false, "{got}");
    let moved = WEB_SLICE.replace("10.0.0.2", "10.0.0.3");
    assert_eq!(s.apply(&moved), "endpointslice.discovery.k8s.io/web-abc configured\n");
    let got = s.kubectl_json(&["get", "endpointslice", "web-abc", "-o", "json"]);
    assert_eq!(got["endpoints"][1]["addresses"], json!(["10.0.0.3"]), "{got}");
    assert_eq!(got["metadata"]["generation"], 2, "{got}");
    s.kubectl(&["label", "endpointslice", "web-abc", "extra=yes"]);
    let got = s.kubectl_json(&["get", "endpointslice", "web-abc", "-o", "json"]);
    assert_eq!(got["metadata"]["generation"], 2, "a metadata change keeps the generation: {got}");

    // addressType is required and immutable.
    s.kubectl_err(
        &["apply", "-f", "-"],
        Some(&moved.replace("addressType: IPv4", "addressType: IPv6")),
        &["addressType: Invalid value: \"IPv6\": field is immutable"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: untyped}\nendpoints: []\n"),
        &["The EndpointSlice \"untyped\" is invalid: addressType: Required value"],
    );

    // Special and mistyped addresses are refused with upstream's field paths.
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&WEB_SLICE.replace("web-abc", "lo").replace("10.0.0.1", "127.0.0.1")),
        &["endpoints[0].addresses[0]: Invalid value: \"127.0.0.1\"", LOOPBACK_MSG],
    );
    let body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "lo6"},
        "addressType": "IPv6", "endpoints": [{"addresses": ["fd00::9", "::1"]}]});
    let r = s.request("POST", "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", Some(&body));
    let status = r.assert_status(422, "Invalid");
    assert_eq!(status["details"]["causes"][0]["field"], "endpoints[0].addresses[1]", "{status}");
    let message = status["message"].as_str().unwrap();
    assert!(message.starts_with("EndpointSlice.discovery.k8s.io \"lo6\" is invalid: "), "{status}");
    assert!(message.contains(LOOPBACK_MSG), "{status}");
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&WEB_SLICE.replace("web-abc", "mixed").replace("10.0.0.1", "fd00::1")),
        &["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"],
    );
    s.kubectl_err(
        &["create", "-f", "-"],
        Some(&WEB_SLICE.replace("web-abc", "dup").replace("{name: http, port: 80}", "{port: 80}\n- {port: 81}")),
        &["ports[1].name: Duplicate value: \"\""],
    );

    assert_eq!(
        s.kubectl(&["delete", "endpointslices", "web-abc"]),
        "endpointslice.discovery.k8s.io \"web-abc\" deleted\n"
    );
    assert_eq!(e2e::table_names(&s.kubectl(&["get", "endpointslices"])), ["bare", "many"]);
    s.assert_healthy();
}

#[test]
fn endpoints_are_discovered_and_described() {
    let s = Server::start();
    let out = s.run(&["api-resources"], None);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{out:?}");
    let rows = table(&out.stdout);
    let row = |name: &str| {
        rows.iter().find(|r| r["NAME"] == name).unwrap_or_else(|| panic!("{name}: {}", out.stdout)).clone()
    };
    let ep = row("endpoints");
    assert_eq!(
        (ep["SHORTNAMES"].as_str(), ep["APIVERSION"].as_str(), ep["NAMESPACED"].as_str(), ep["KIND"].as_str()),
        ("ep", "v1", "true", "Endpoints")
    );
    let eps = row("endpointslices");
    assert_eq!(
        (eps["SHORTNAMES"].as_str(), eps["APIVERSION"].as_str(), eps["NAMESPACED"].as_str(), eps["KIND"].as_str()),
        ("", "discovery.k8s.io/v1", "true", "EndpointSlice")
    );

    let v2 = s.raw("/openapi/v2");
    for def in [
        "io.k8s.api.core.v1.Endpoints",
        "io.k8s.api.discovery.v1.EndpointSlice",
        "io.k8s.api.discovery.v1.EndpointSliceList",
    ] {
        assert!(v2["definitions"].get(def).is_some(), "/openapi/v2 lacks {def}");
    }
    assert!(v2["paths"].get("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices").is_some());
    assert!(v2["paths"].get("/api/v1/namespaces/{namespace}/endpoints/{name}").is_some());
    let v3 = s.raw("/openapi/v3");
    assert!(v3["paths"].get("apis/discovery.k8s.io/v1").is_some(), "{v3}");

    let explained = s.kubectl(&["explain", "endpointslice.addressType"]);
    assert!(explained.contains("EndpointSlice") && explained.contains("addressType"), "{explained}");
    let explained = s.kubectl(&["explain", "endpoints.subsets.addresses.ip"]);
    assert!(explained.contains("Endpoints") && explained.contains("ip"), "{explained}");
}

e2e::on_etcd!(endpoints_workflow, endpointslice_workflow, endpoints_are_discovered_and_described);
