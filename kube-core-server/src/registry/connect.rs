//! The subresources upstream serves with a Connecter, which hand the request
//! to a kubelet or a pod (pods/log, exec, attach, portforward, proxy and
//! services/proxy; pkg/registry/core/pod/rest/log.go, subresources.go and
//! the pod strategy's *Location functions).
//!
//! A single binary has no kubelets and no pod network, so these answer what
//! upstream answers before it would dial: the object is looked up (404), the
//! options and the container are checked (400/422), and an unscheduled pod is
//! refused as upstream refuses it ("does not have a host assigned"; logs of
//! such a pod are an empty 204). Where upstream would then connect, this
//! server answers 503 quickly rather than hang.

use std::sync::Arc;

use serde_json::{json, Value};

use generic_server::registry::{
    ConnectOptions, OptionField, Store, SubresourceCall, SubresourceDiscovery, SubresourceHandler, SubresourceReply,
};
use generic_server::status::{Cause, StatusError};

use super::peers::Peers;
use super::{arr_at, str_at};

const GET: &[&str] = &["get"];
const CREATE_GET: &[&str] = &["create", "get"];
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

/// The streams of PodExecOptions and PodAttachOptions.
const STREAMS: [(&str, OptionField); 5] = [
    ("stdin", OptionField::Bool),
    ("stdout", OptionField::Bool),
    ("stderr", OptionField::Bool),
    ("tty", OptionField::Bool),
    ("container", OptionField::String),
];
const EXEC_OPTIONS: &[(&str, OptionField)] =
    &[STREAMS[0], STREAMS[1], STREAMS[2], STREAMS[3], STREAMS[4], ("command", OptionField::Strings)];

/// PodProxyOptions, ServiceProxyOptions and NodeProxyOptions: the path only.
pub const PROXY_OPTIONS: ConnectOptions = ConnectOptions { fields: &[], path: Some("path") };

async fn peer_get(store: Option<Arc<Store>>, resource: &str, ns: &str, name: &str) -> Result<Value, StatusError> {
    match store {
        Some(store) => store.get(ns, name).await,
        // Not served here at all: to a client that is the same as absent.
        None => Err(StatusError::not_found("", resource, name)),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum PodConnect {
    Log,
    Exec,
    Attach,
    PortForward,
    Proxy,
}

/// One of a pod's connect subresources.
pub struct PodHandler {
    what: PodConnect,
    peers: Arc<Peers>,
}

/// pods/log, exec, attach, portforward and proxy.
pub fn pod_handlers(peers: &Arc<Peers>) -> Vec<PodHandler> {
    use PodConnect::*;
    [Log, Exec, Attach, PortForward, Proxy].into_iter().map(|what| PodHandler { what, peers: peers.clone() }).collect()
}

/// services/proxy.
pub struct ServiceProxy {
    peers: Arc<Peers>,
}

impl ServiceProxy {
    pub fn new(peers: &Arc<Peers>) -> Self {
        ServiceProxy { peers: peers.clone() }
    }
}

/// Upstream's SplitSchemeNamePort: "name", "name:port" or "scheme:name:port".
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    (!name.is_empty() && matches!(scheme, "" | "http" | "https")).then_some((scheme, name, port))
}

/// Where this server would have to connect; it cannot, and says so at once.
fn unreachable(target: &str) -> StatusError {
    StatusError::service_unavailable(format!(
        "error trying to reach {target}: this API server runs without kubelets or a pod network"
    ))
}

fn container_names(pod: &Value) -> Vec<&str> {
    ["/spec/initContainers", "/spec/containers", "/spec/ephemeralContainers"]
        .iter()
        .flat_map(|p| arr_at(pod, p).iter().map(|c| str_at(c, "/name")))
        .collect()
}

/// Upstream's validateContainer: the named container must exist; with none
/// named, the pod must have exactly one.
fn validate_container(pod: &Value, wanted: &str) -> Result<(), StatusError> {
    let name = generic_server::meta::name(pod);
    if !wanted.is_empty() {
        if container_names(pod).contains(&wanted) {
            return Ok(());
        }
        return Err(StatusError::bad_request(format!("container {wanted} is not valid for pod {name}")));
    }
    match arr_at(pod, "/spec/containers").len() {
        1 => Ok(()),
        0 => Err(StatusError::bad_request(format!("a container name must be specified for pod {name}"))),
        _ => Err(StatusError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            container_names(pod).join(" ")
        ))),
    }
}

/// An integer query parameter of PodLogOptions; a malformed one is the
/// BadRequest upstream's query conversion gives.
fn int_param(call: &SubresourceCall<'_>, key: &str) -> Result<Option<i64>, StatusError> {
    match call.params.get(key).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| StatusError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))),
    }
}

/// Upstream's ValidatePodLogOptions (the fields kubectl sends).
fn validate_log_options(call: &SubresourceCall<'_>) -> Result<(), StatusError> {
    let mut causes = Vec::new();
    if let Some(n) = int_param(call, "tailLines")?.filter(|n| *n < 0) {
        causes.push(Cause::invalid("tailLines", &json!(n), "must be greater than or equal to 0"));
    }
    if let Some(n) = int_param(call, "limitBytes")?.filter(|n| *n < 1) {
        causes.push(Cause::invalid("limitBytes", &json!(n), "must be greater than 0"));
    }
    let since_seconds = int_param(call, "sinceSeconds")?;
    let since_time = call.params.get("sinceTime").is_some_and(|t| !t.is_empty());
    match since_seconds {
        Some(_) if since_time => {
            causes.push(Cause::forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
        }
        Some(n) if n < 1 => causes.push(Cause::invalid("sinceSeconds", &json!(n), "must be greater than 0")),
        _ => {}
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(StatusError::invalid("", "PodLogOptions", call.name, causes))
}

impl PodHandler {
    /// The node a scheduled pod runs on: upstream fetches it for the
    /// kubelet's address before connecting.
    async fn to_node(&self, pod: &Value, path: &str) -> Result<SubresourceReply, StatusError> {
        let node = str_at(pod, "/spec/nodeName");
        if node.is_empty() {
            let name = generic_server::meta::name(pod);
            return Err(StatusError::bad_request(format!("pod {name} does not have a host assigned")));
        }
        peer_get(self.peers.nodes(), "nodes", "", node).await?;
        Err(unreachable(&format!("the kubelet on node {node} ({path})")))
    }
}

#[async_trait::async_trait]
impl SubresourceHandler for PodHandler {
    fn name(&self) -> &'static str {
        match self.what {
            PodConnect::Log => "log",
            PodConnect::Exec => "exec",
            PodConnect::Attach => "attach",
            PodConnect::PortForward => "portforward",
            PodConnect::Proxy => "proxy",
        }
    }

    fn discovery(&self) -> SubresourceDiscovery {
        let (kind, verbs) = match self.what {
            PodConnect::Log => ("Pod", GET),
            PodConnect::Exec => ("PodExecOptions", CREATE_GET),
            PodConnect::Attach => ("PodAttachOptions", CREATE_GET),
            PodConnect::PortForward => ("PodPortForwardOptions", CREATE_GET),
            PodConnect::Proxy => ("PodProxyOptions", PROXY),
        };
        SubresourceDiscovery { kind, group: "", version: "", verbs }
    }

    fn connect(&self) -> bool {
        true
    }

    fn takes_path(&self) -> bool {
        self.what == PodConnect::Proxy
    }

    fn connect_options(&self) -> Option<ConnectOptions> {
        Some(match self.what {
            PodConnect::Log => return None,
            PodConnect::Exec => ConnectOptions { fields: EXEC_OPTIONS, path: None },
            PodConnect::Attach => ConnectOptions { fields: &STREAMS, path: None },
            PodConnect::PortForward => ConnectOptions { fields: &[("ports", OptionField::Int32s)], path: None },
            PodConnect::Proxy => PROXY_OPTIONS,
        })
    }

    async fn serve(&self, store: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let container = call.params.get("container").map(String::as_str).unwrap_or("");
        match self.what {
            PodConnect::Log => {
                validate_log_options(&call)?;
                let pod = store.get(call.namespace, call.name).await?;
                validate_container(&pod, container)?;
                if str_at(&pod, "/spec/nodeName").is_empty() {
                    // Upstream streams from no location: nothing, 204.
                    return Ok(SubresourceReply { code: 204, object: Value::Null });
                }
                self.to_node(&pod, "containerLogs").await
            }
            PodConnect::Exec | PodConnect::Attach => {
                let pod = store.get(call.namespace, call.name).await?;
                validate_container(&pod, container)?;
                self.to_node(&pod, self.name()).await
            }
            PodConnect::PortForward => {
                let pod = store.get(call.namespace, call.name).await?;
                self.to_node(&pod, "portForward").await
            }
            PodConnect::Proxy => {
                let Some((_, name, port)) = split_scheme_name_port(call.name) else {
                    return Err(StatusError::bad_request(format!("invalid pod request {:?}", call.name)));
                };
                let pod = store.get(call.namespace, name).await?;
                let ip = arr_at(&pod, "/status/podIPs").first().map(|p| str_at(p, "/ip")).unwrap_or("");
                let routable = ip.parse::<std::net::IpAddr>().is_ok_and(|a| is_global_unicast(&a));
                if !routable {
                    return Err(StatusError::bad_request("address not allowed"));
                }
                let target = if port.is_empty() { ip.to_string() } else { format!("{ip}:{port}") };
                Err(unreachable(&format!("pod {name} at {target}")))
            }
        }
    }
}

/// Go's IP.IsGlobalUnicast: not unspecified, loopback, multicast, link-local
/// or the IPv4 broadcast address.
fn is_global_unicast(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_link_local() || a.is_broadcast())
        }
        std::net::IpAddr::V6(a) => {
            !(a.is_unspecified() || a.is_loopback() || a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[async_trait::async_trait]
impl SubresourceHandler for ServiceProxy {
    fn name(&self) -> &'static str {
        "proxy"
    }

    fn discovery(&self) -> SubresourceDiscovery {
        SubresourceDiscovery { kind: "ServiceProxyOptions", group: "", version: "", verbs: PROXY }
    }

    fn connect(&self) -> bool {
        true
    }

    fn takes_path(&self) -> bool {
        true
    }

    fn connect_options(&self) -> Option<ConnectOptions> {
        Some(PROXY_OPTIONS)
    }

    /// Upstream's service ResourceLocation: a port number is first resolved
    /// to the service's port name; then the service's Endpoints must have an
    /// address on that port.
    async fn serve(&self, store: &Arc<Store>, call: SubresourceCall<'_>) -> Result<SubresourceReply, StatusError> {
        let Some((_, name, port)) = split_scheme_name_port(call.name) else {
            return Err(StatusError::bad_request(format!("invalid service request {:?}", call.name)));
        };
        let mut port_name = port.to_string();
        if let Ok(number) = port.parse::<i64>() {
            let svc = store.get(call.namespace, name).await?;
            let found =
                arr_at(&svc, "/spec/ports").iter().find(|p| p.get("port").and_then(Value::as_i64) == Some(number));
            match found {
                Some(p) => port_name = str_at(p, "/name").to_string(),
                None => {
                    return Err(StatusError::service_unavailable(format!(
                        "no service port {number} found for service {name:?}"
                    )))
                }
            }
        }
        let eps = peer_get(self.peers.endpoints(), "endpoints", call.namespace, name).await?;
        let reachable = arr_at(&eps, "/subsets").iter().any(|s| {
            !arr_at(s, "/addresses").is_empty() && arr_at(s, "/ports").iter().any(|p| str_at(p, "/name") == port_name)
        });
        if !reachable {
            return Err(StatusError::service_unavailable(format!("no endpoints available for service {name:?}")));
        }
        Err(unreachable(&format!("service {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_as_upstream() {
        assert_eq!(split_scheme_name_port("web"), Some(("", "web", "")));
        assert_eq!(split_scheme_name_port("web:80"), Some(("", "web", "80")));
        assert_eq!(split_scheme_name_port("https:web:443"), Some(("https", "web", "443")));
        assert_eq!(split_scheme_name_port("ftp:web:21"), None);
        assert_eq!(split_scheme_name_port(":80"), None);
        assert_eq!(split_scheme_name_port("a:b:c:d"), None);
    }

    #[test]
    fn containers_are_checked_as_upstream() {
        let one = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}});
        assert!(validate_container(&one, "").is_ok());
        assert!(validate_container(&one, "a").is_ok());
        assert_eq!(validate_container(&one, "b").unwrap_err().message, "container b is not valid for pod p");
        let two = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            validate_container(&two, "").unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [i a b]"
        );
    }

    #[test]
    fn only_global_unicast_addresses_are_proxied() {
        for (ip, ok) in [
            ("10.1.2.3", true),
            ("127.0.0.1", false),
            ("0.0.0.0", false),
            ("169.254.1.1", false),
            ("fe80::1", false),
            ("2001:db8::1", true),
        ] {
            assert_eq!(is_global_unicast(&ip.parse().unwrap()), ok, "{ip}");
        }
    }
}
