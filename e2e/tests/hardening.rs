//! The server probed as an attacker would: slow clients are cut off at
//! upstream's timeouts while others are served, over-deep bodies are refused
//! before they cost anything, a JSON patch cannot amplify itself, headers are
//! limited as upstream's (1 MiB, HTTP/1.1 and HTTP/2 alike), and the data
//! directory keeps its keys to its owner.
//!
//! The server runs with the hidden --testing-read-header-timeout and
//! --testing-idle-timeout (upstream fixes them at 32 s and 90 s; a unit test in
//! bin asserts those defaults) so that waiting them out takes seconds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use e2e::{Cred, Server};

const HEADER_TIMEOUT_SECS: u64 = 2;
const IDLE_TIMEOUT_SECS: u64 = 4;

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        Server::start_with(&[
            &format!("--testing-read-header-timeout={HEADER_TIMEOUT_SECS}s"),
            &format!("--testing-idle-timeout={IDLE_TIMEOUT_SECS}s"),
        ])
    })
}

/// A raw TLS connection to the server as admin (HTTP/1.1 by ALPN), verified against its CA.
fn tls_connect(s: &Server) -> Tls {
    use rustls_pki_types::pem::PemObject;
    let (ca, cert, key) = s.admin_pem_paths();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(&ca).expect("reading the CA") {
        roots.add(c.expect("a CA certificate")).expect("adding the CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            rustls_pki_types::CertificateDer::pem_file_iter(&cert)
                .expect("reading the admin certificate")
                .collect::<Result<_, _>>()
                .expect("a certificate"),
            rustls_pki_types::PrivateKeyDer::from_pem_file(&key).expect("reading the admin key"),
        )
        .expect("a client certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let tcp = TcpStream::connect(("127.0.0.1", s.port())).expect("connecting");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.flush().expect("handshake");
    tls
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Writes `bytes` one at a time, a `pause` apart, until the server closes the
/// connection; returns how long that took (None if it stayed open for all of
/// `bytes`) and what the server sent meanwhile.
fn trickle(tls: &mut Tls, bytes: &[u8], pause: Duration) -> (Option<Duration>, String) {
    let started = Instant::now();
    let mut got = Vec::new();
    tls.get_ref().set_read_timeout(Some(Duration::from_millis(1))).expect("read timeout");
    for b in bytes {
        if tls.write_all(&[*b]).and_then(|_| tls.flush()).is_err() {
            return (Some(started.elapsed()), String::from_utf8_lossy(&got).into_owned());
        }
        loop {
            let mut buf = [0u8; 512];
            match tls.read(&mut buf) {
                Ok(0) => return (Some(started.elapsed()), String::from_utf8_lossy(&got).into_owned()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => break,
                // Reset, or closed without close_notify: the server hung up.
                Err(_) => return (Some(started.elapsed()), String::from_utf8_lossy(&got).into_owned()),
            }
        }
        std::thread::sleep(pause);
    }
    (None, String::from_utf8_lossy(&got).into_owned())
}

/// Reads until the server closes the connection.
fn read_to_close(tls: &mut Tls, within: Duration) -> String {
    tls.get_ref().set_read_timeout(Some(within)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                assert!(
                    !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
                    "still open after {within:?}"
                );
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn trickling_headers_are_cut_off_while_others_are_served() {
    let s = server();
    let head = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let mut tls = tls_connect(s);
            std::thread::spawn(move || trickle(&mut tls, head, Duration::from_millis(100)).0)
        })
        .collect();
    // Others are served while the trickling connections are open.
    std::thread::sleep(Duration::from_millis(300));
    let ns = s.kubectl(&["get", "namespace", "default", "-o", "name"]);
    assert_eq!(ns.trim(), "namespace/default");
    assert_eq!(s.curl("GET", "/readyz", Cred::Admin, &[], None).status, 200);
    for t in slow {
        let took = t.join().expect("trickling client").expect("the server closed the trickling connection");
        // At 10 bytes a second the head is never done; the header timeout ends it.
        assert!(took >= Duration::from_secs(HEADER_TIMEOUT_SECS) - Duration::from_millis(200), "closed after {took:?}");
        assert!(took < Duration::from_secs(HEADER_TIMEOUT_SECS + 5), "closed after {took:?}");
    }
}

#[test]
fn a_silent_connection_is_closed_after_the_header_timeout_and_an_idle_one_after_the_idle_timeout() {
    let s = server();
    // Nothing sent at all: the first request's header timeout.
    let mut silent = tls_connect(s);
    let started = Instant::now();
    read_to_close(&mut silent, Duration::from_secs(HEADER_TIMEOUT_SECS + 5));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(HEADER_TIMEOUT_SECS) - Duration::from_millis(200), "closed after {took:?}");
    assert!(took < Duration::from_secs(HEADER_TIMEOUT_SECS + 4), "closed after {took:?}");

    // A keep-alive connection outlives the header timeout between requests and
    // is closed at the idle timeout.
    let mut kept = tls_connect(s);
    let get = |tls: &mut Tls, path: &str| {
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).expect("request");
        tls.get_ref().set_read_timeout(Some(Duration::from_secs(5))).expect("read timeout");
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        // A short answer in full has a Content-Length, as Go's: the head, then that many bytes.
        let complete = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            let (head, body) = text.split_once("\r\n\r\n")?;
            let len = head.lines().find_map(|l| l.strip_prefix("content-length: "))?;
            (body.len() >= len.parse::<usize>().ok()?).then_some(())
        };
        while complete(&got).is_none() {
            let n = tls.read(&mut buf).expect("reading the response");
            assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    let first = get(&mut kept, "/readyz");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    std::thread::sleep(Duration::from_secs(HEADER_TIMEOUT_SECS + 1));
    let second = get(&mut kept, "/livez");
    assert!(second.starts_with("HTTP/1.1 200"), "the connection was kept past the header timeout: {second}");
    let idle_from = Instant::now();
    read_to_close(&mut kept, Duration::from_secs(IDLE_TIMEOUT_SECS + 5));
    let took = idle_from.elapsed();
    assert!(took >= Duration::from_secs(IDLE_TIMEOUT_SECS) - Duration::from_millis(300), "closed after {took:?}");
}

#[test]
fn trickled_bodies_end_with_the_request_timeout_and_the_data_dir_is_private() {
    use std::os::unix::fs::PermissionsExt;
    // Its own server: the body is bounded by --request-timeout, and the data dir is looked at across a restart.
    let mut s = Server::start_with(&["--request-timeout=2s"]);

    let mut tls = tls_connect(&s);
    let head = "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    tls.write_all(head.as_bytes()).expect("head");
    let (closed_after, answer) = trickle(&mut tls, &[b' '; 200], Duration::from_millis(50));
    let took = closed_after.expect("the server ended the trickled body");
    assert!(took >= Duration::from_millis(1800), "ended after {took:?}");
    assert!(took < Duration::from_secs(8), "ended after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("Timeout: request did not complete within the allotted timeout"), "{answer}");

    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let check = |s: &Server| {
        assert_eq!(mode(&s.data_dir), 0o700, "data dir");
        assert_eq!(mode(&s.data_dir.join("admin.kubeconfig")), 0o600, "admin.kubeconfig");
        assert_eq!(mode(&s.data_dir.join("pki")), 0o700, "pki");
        let keys: Vec<_> = std::fs::read_dir(s.data_dir.join("pki"))
            .expect("pki")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "key"))
            .collect();
        assert!(keys.len() >= 4, "{keys:?}");
        for k in keys {
            assert_eq!(mode(&k), 0o600, "{}", k.display());
        }
    };
    check(&s);
    // A data dir from an older start, open to others, is tightened at the next one.
    s.stop();
    let loosen =
        |p: &std::path::Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    loosen(&s.data_dir, 0o755);
    loosen(&s.data_dir.join("pki"), 0o755);
    loosen(&s.data_dir.join("pki/admin.key"), 0o644);
    loosen(&s.data_dir.join("admin.kubeconfig"), 0o644);
    s.restart();
    check(&s);
}

#[test]
fn over_deep_bodies_are_refused_quickly_and_others_still_work() {
    let s = server();
    s.kubectl(&["create", "namespace", "deep"]);
    let path = "/api/v1/namespaces/deep/configmaps";
    let deep_yaml = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_json = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    // Two at once, while /readyz answers: the refusal costs no parser time.
    let (yaml, json, ready) = std::thread::scope(|t| {
        let yaml = t.spawn(|| {
            s.curl("POST", path, Cred::Admin, &[("Content-Type", "application/yaml")], Some(deep_yaml.as_bytes()))
        });
        let json = t.spawn(|| {
            s.curl("POST", path, Cred::Admin, &[("Content-Type", "application/json")], Some(deep_json.as_bytes()))
        });
        let ready = s.curl_with(&["--max-time", "5"], "GET", "/readyz", Cred::Admin, &[], None);
        (yaml.join().expect("yaml"), json.join().expect("json"), ready)
    });
    assert_eq!(ready.status, 200);
    let status = yaml.assert_status(400, "BadRequest");
    assert_eq!(
        status["message"], "error decoding request body: yaml parse error: yaml: exceeded max depth of 127",
        "{status}"
    );
    let status = json.assert_status(400, "BadRequest");
    assert_eq!(
        status["message"], "error decoding request body: json parse error: invalid character '[' exceeded max depth",
        "{status}"
    );

    // Server-side apply and patches are checked the same way.
    s.kubectl(&["create", "configmap", "-n", "deep", "target", "--from-literal=a=b"]);
    let item = format!("{path}/target");
    let applied = s.curl(
        "PATCH",
        &format!("{item}?fieldManager=t"),
        Cred::Admin,
        &[("Content-Type", "application/apply-patch+yaml")],
        Some(deep_yaml.as_bytes()),
    );
    let status = applied.assert_status(400, "BadRequest");
    assert_eq!(status["message"], "error decoding YAML: yaml: exceeded max depth of 127", "{status}");
    let merged = s.curl(
        "PATCH",
        &item,
        Cred::Admin,
        &[("Content-Type", "application/merge-patch+json")],
        Some(deep_json.as_bytes()),
    );
    merged.assert_status(400, "BadRequest");
    let strategic = s.curl(
        "PATCH",
        &item,
        Cred::Admin,
        &[("Content-Type", "application/strategic-merge-patch+json")],
        Some(deep_json.as_bytes()),
    );
    let status = strategic.assert_status(400, "BadRequest");
    assert_eq!(status["message"], "invalid character '[' exceeded max depth", "{status}");

    // A custom resource nested 50 deep is an ordinary object.
    s.apply_crd(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: nests.hardening.example.com
spec:
  group: hardening.example.com
  scope: Namespaced
  names: {plural: nests, singular: nest, kind: Nest}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
",
        "nests.hardening.example.com",
    );
    let nested = (0..50).fold(serde_json::json!("leaf"), |v, _| serde_json::json!({"n": v}));
    let nest = serde_json::json!({
        "apiVersion": "hardening.example.com/v1", "kind": "Nest",
        "metadata": {"name": "n50", "namespace": "deep"}, "spec": nested,
    });
    let created = s.request("POST", "/apis/hardening.example.com/v1/namespaces/deep/nests", Some(&nest));
    assert_eq!(created.status, 201, "{}", created.text());
    let got = s.kubectl_json(&["get", "nest", "-n", "deep", "n50"]);
    assert_eq!(got["spec"], nested, "read back whole");
    let as_yaml = serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "hardening.example.com/v1", "kind": "Nest",
        "metadata": {"name": "y50", "namespace": "deep"}, "spec": nested,
    }))
    .expect("yaml");
    let created = s.curl(
        "POST",
        "/apis/hardening.example.com/v1/namespaces/deep/nests",
        Cred::Admin,
        &[("Content-Type", "application/yaml")],
        Some(as_yaml.as_bytes()),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(s.kubectl_json(&["get", "nest", "-n", "deep", "y50"])["spec"], nested);
}

#[test]
fn json_patch_copies_are_bounded_even_in_dry_run() {
    let s = server();
    s.kubectl(&["create", "namespace", "amplify"]);
    s.kubectl(&["create", "configmap", "-n", "amplify", "cm", "--from-literal=seed=x"]);
    // 20 doubling copies of a 1 KiB list: a 2 KB patch asking for a 1 GiB object.
    let mut ops = vec![serde_json::json!({"op": "add", "path": "/spec", "value": ["x".repeat(1024)]})];
    ops.extend((0..20).map(|_| serde_json::json!({"op": "copy", "from": "/spec", "path": "/spec/-"})));
    let patch = serde_json::to_string(&ops).expect("patch");
    assert!(patch.len() < 2200, "{}", patch.len());
    for dry_run in [true, false] {
        let mut args = vec!["patch", "configmap", "-n", "amplify", "cm", "--type=json", "-p", &patch];
        if dry_run {
            args.push("--dry-run=server");
        }
        let err = s.kubectl_fails(&args, None);
        assert!(
            err.contains("the server rejected our request due to an error in our request"),
            "dry run {dry_run}: {err}"
        );
    }
    let cm = s.kubectl_json(&["get", "configmap", "-n", "amplify", "cm"]);
    assert_eq!(cm["data"], serde_json::json!({"seed": "x"}), "nothing was written");
    assert_eq!(s.curl("GET", "/readyz", Cred::Admin, &[], None).status, 200);
}

#[test]
fn headers_up_to_a_mebibyte_are_served_over_http1_and_http2() {
    let s = server();
    // A 31 KB labelSelector: kubectl (HTTP/2) and curl on either protocol.
    let query = long_selector(s, "selectors", 3000);
    assert!(query.len() > 31_000, "{}", query.len());
    for proto in ["--http2", "--http1.1"] {
        let r = s.curl_with(&[proto], "GET", &query, Cred::Admin, &[], None);
        assert_eq!(r.status, 200, "{proto}: {}", r.text());
        assert_eq!(r.json()["items"][0]["metadata"]["name"], "picked", "{proto}");
    }
    // 60 KiB of headers over HTTP/2 (hyper's default list was 16 KiB; curl sends at most 64 KiB).
    let headers: String = (0..60).map(|i| format!("X-H{i}: {}\n", "x".repeat(1000))).collect();
    let file = s.write_file("headers-h2", headers);
    let r = s.curl_with(&["--http2", "-H", &format!("@{}", file.display())], "GET", "/readyz", Cred::Admin, &[], None);
    assert_eq!(r.status, 200, "{}", r.text());

    // Over HTTP/1.1, 900 KiB of headers are served (hyper's default was 400 KiB)
    // and more than a mebibyte is 431, as Go's MaxHeaderBytes; Go counts no
    // fields, so 300 small ones are served too (hyper's default was 100).
    for (fields, size, status) in [(225, 4096, "HTTP/1.1 200"), (300, 16, "HTTP/1.1 200"), (275, 4096, "HTTP/1.1 431")]
    {
        let lines: String = (0..fields).map(|i| format!("X-H{i:03}: {}\r\n", "x".repeat(size - 11))).collect();
        let mut tls = tls_connect(s);
        tls.write_all(format!("GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}\r\n").as_bytes())
            .expect("writing the head");
        tls.get_ref().set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
        let mut buf = [0u8; 64];
        let n = tls.read(&mut buf).expect("a response");
        let got = String::from_utf8_lossy(&buf[..n]);
        assert!(got.starts_with(status), "{fields} fields of {size} bytes: {got}");
    }
}

#[test]
fn long_urls_are_served_over_http1_and_http2() {
    // Upstream bounds a URL only by its header limit. The released `http`
    // and `hyper` crates stop at 64 KiB (414, or a reset h2 stream); the
    // workspace patches them (vendor/README.md).
    let s = server();
    // kubectl speaks HTTP/2 (curl's HTTP/2 sends at most 64 KiB of headers).
    let query = long_selector(s, "long-urls", 8000);
    assert!(query.len() > 100_000, "{}", query.len());
    let r = s.curl_with(&["--http1.1"], "GET", &query, Cred::Admin, &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["items"][0]["metadata"]["name"], "picked");
    // The request line counts toward the mebibyte of head (and Go's 4 KiB
    // of slack), as Go's.
    let mut tls = tls_connect(s);
    let path = format!("/api/v1/namespaces/long-urls/configmaps?labelSelector={}", "x".repeat((1 << 20) + 8192));
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).expect("writing the head");
    tls.get_ref().set_read_timeout(Some(Duration::from_secs(20))).expect("read timeout");
    let mut buf = [0u8; 64];
    let n = tls.read(&mut buf).expect("a response");
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("HTTP/1.1 431"), "a request line over a mebibyte: {got}");
}

/// A namespace `ns` holding one ConfigMap, `picked`, which a labelSelector
/// of `values` values picks (kubectl's list over HTTP/2 is checked here);
/// returns the list's path with that selector.
fn long_selector(s: &Server, ns: &str, values: usize) -> String {
    s.kubectl(&["create", "namespace", ns]);
    s.kubectl(&["create", "configmap", "-n", ns, "picked", "--from-literal=a=b"]);
    s.kubectl(&["label", "configmap", "-n", ns, "picked", &format!("k=value-{}", values - 1)]);
    let listed: Vec<String> = (0..values).map(|i| format!("value-{i}")).collect();
    let selector = format!("k in ({})", listed.join(","));
    let names = s.kubectl(&["get", "configmap", "-n", ns, "-l", &selector, "-o", "name"]);
    assert_eq!(names.trim(), "configmap/picked");
    format!("/api/v1/namespaces/{ns}/configmaps?labelSelector={}", urlencode(&selector))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
