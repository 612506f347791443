//! The `kube-apiserver` binary: flags named as upstream's, certificates and the
//! admin kubeconfig for the embedded default, and the wiring of the delegation
//! chain filters -> aggregator -> kube-core-server -> apiextensions -> 404.

mod kubeconfig;
mod pki;
mod wiring;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use generic_server::authn::TokenFile;
use generic_server::filters::{self, Authentication, FilterConfig, VersionInfo};
use generic_server::registry::admission_config::AdmissionConfig;
use generic_server::serve;
use generic_server::serviceaccount::ServiceAccountTokens;
use kube_core_server::admission::AdmissionPlugins;

/// The API level this server implements, reported by /version.
const KUBE_MAJOR: &str = "1";
const KUBE_MINOR: &str = "33";

#[derive(Parser, Debug, Clone)]
#[command(name = "kube-apiserver", about = "A Kubernetes API server", version)]
pub struct Options {
    /// Directory for the embedded store, certificates and the admin kubeconfig.
    #[arg(long, default_value = "./kube-apiserver-data")]
    pub data_dir: PathBuf,
    /// The port for HTTPS; 0 picks a free one.
    #[arg(long, default_value_t = 6443)]
    pub secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Extra subject alternative names for the generated serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_sans: Vec<String>,
    /// Serving certificate (PEM); replaces the generated one.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// Serving key (PEM), with --tls-cert-file.
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle that client certificates are verified against; replaces the generated CA.
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// Static bearer tokens: CSV lines token,user,uid,"group1,group2".
    #[arg(long)]
    pub token_auth_file: Option<PathBuf>,
    /// Whether requests without credentials are served as system:anonymous
    /// (group system:unauthenticated), for authorization to decide.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// The CIDR that service cluster IPs are allocated from; two, comma
    /// separated and of different IP families, make the cluster dual-stack.
    #[arg(long, default_value = "10.0.0.0/24")]
    pub service_cluster_ip_range: String,
    /// The port range NodePort services are allocated from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// etcd endpoints; without them the embedded store in --data-dir is used.
    #[arg(long, value_delimiter = ',')]
    pub etcd_servers: Vec<String>,
    /// The key prefix in etcd.
    #[arg(long, default_value = "/registry")]
    pub etcd_prefix: String,
    /// CA bundle that etcd's serving certificate is verified against.
    #[arg(long)]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    pub etcd_keyfile: Option<PathBuf>,
    /// How often etcd history is compacted (Go duration; 0 disables).
    #[arg(long, default_value = "5m0s", value_parser = parse_duration)]
    pub etcd_compaction_interval: std::time::Duration,
    /// How long Events are kept after their last write (Go duration).
    #[arg(long, default_value = "1h0m0s", value_parser = parse_duration)]
    pub event_ttl: std::time::Duration,
    /// Read-only requests served at once; more get 429 (0 is no limit).
    #[arg(long, default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests served at once; more get 429 (0 is no limit).
    #[arg(long, default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
    /// How long a request that is not a watch may take before it gets 504 (Go duration).
    #[arg(long, default_value = "1m0s", value_parser = parse_duration)]
    pub request_timeout: std::time::Duration,
    /// Client certificate the aggregator presents to extension API servers
    /// (default: the generated DATA_DIR/pki/front-proxy-client.crt).
    #[arg(long)]
    pub proxy_client_cert_file: Option<PathBuf>,
    /// Key of --proxy-client-cert-file.
    #[arg(long)]
    pub proxy_client_key_file: Option<PathBuf>,
    /// CA that signs request-header client certificates (default: the
    /// generated DATA_DIR/pki/front-proxy-ca.crt).
    #[arg(long)]
    pub requestheader_client_ca_file: Option<PathBuf>,
    /// Common names allowed to carry request headers (default: front-proxy-client).
    #[arg(long, value_delimiter = ',')]
    pub requestheader_allowed_names: Vec<String>,
    /// Request headers to read the user name from.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    pub requestheader_username_headers: Vec<String>,
    /// Request headers to read groups from.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    pub requestheader_group_headers: Vec<String>,
    /// Request header prefixes to read extra user information from.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    pub requestheader_extra_headers_prefix: Vec<String>,
    /// Proxy APIService requests to an endpoint address rather than the cluster IP.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub enable_aggregator_routing: bool,
    /// Authorizers, in order, that decide each request: AlwaysAllow,
    /// AlwaysDeny, Node, RBAC (members of system:masters are always allowed).
    /// Upstream's flag defaults to AlwaysAllow; every real cluster runs RBAC,
    /// and a server that lets any authenticated caller do anything is not
    /// what a drop-in should hand a newcomer.
    #[arg(long, value_delimiter = ',', default_value = "RBAC")]
    pub authorization_mode: Vec<String>,
    /// Admission plugins to enable besides the default-on ones (upstream's names).
    #[arg(long, value_delimiter = ',')]
    pub enable_admission_plugins: Vec<String>,
    /// Admission plugins to turn off, default-on ones included.
    #[arg(long, value_delimiter = ',')]
    pub disable_admission_plugins: Vec<String>,
    /// The admission plugins' configuration (an apiserver.config.k8s.io/v1
    /// AdmissionConfiguration), e.g. PodSecurity's defaults and exemptions.
    #[arg(long)]
    pub admission_control_config_file: Option<PathBuf>,
    /// The tolerationSeconds of the not-ready:NoExecute toleration the
    /// DefaultTolerationSeconds plugin adds to every pod without one.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true)]
    pub default_not_ready_toleration_seconds: i64,
    /// The tolerationSeconds of the unreachable:NoExecute toleration the
    /// DefaultTolerationSeconds plugin adds to every pod without one.
    #[arg(long, default_value_t = 300, allow_negative_numbers = true)]
    pub default_unreachable_toleration_seconds: i64,
    /// The audit policy (audit.k8s.io/v1 Policy); without it nothing is audited.
    #[arg(long)]
    pub audit_policy_file: Option<PathBuf>,
    /// Where audit events are written, `-` for stdout; without it nothing is audited.
    #[arg(long, default_value = "")]
    pub audit_log_path: String,
    /// Days to keep rotated audit logs (0: no limit).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub audit_log_maxage: i64,
    /// Rotated audit logs to keep (0: no limit).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub audit_log_maxbackup: i64,
    /// Megabytes an audit log grows to before it is rotated (0: 100).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub audit_log_maxsize: i64,
    /// `json` (one Event a line) or `legacy` (one text line an event).
    #[arg(long, default_value = "json")]
    pub audit_log_format: String,
    /// `blocking`, `blocking-strict` or `batch` (written by a background thread).
    #[arg(long, default_value = "blocking")]
    pub audit_log_mode: String,
    /// Events the batch mode buffers before it drops them.
    #[arg(long, default_value_t = 10000)]
    pub audit_log_batch_buffer_size: usize,
    /// The issuer of ServiceAccount tokens, repeatable: the first signs new
    /// tokens, all are accepted (default: https://kubernetes.default.svc.cluster.local).
    #[arg(long)]
    pub service_account_issuer: Vec<String>,
    /// PEM files of keys that verify ServiceAccount tokens, repeatable
    /// (default: the signing key's public half).
    #[arg(long)]
    pub service_account_key_file: Vec<PathBuf>,
    /// The private key ServiceAccount tokens are signed with (default: the
    /// generated DATA_DIR/pki/sa.key).
    #[arg(long)]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// What tokens must be meant for to be accepted (default: the issuers).
    #[arg(long, value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The longest a requested token may last (Go duration; 0 is no limit).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub service_account_max_token_expiration: std::time::Duration,
    /// Whether pods' projected tokens are extended to a year, warning after their hour.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub service_account_extend_token_expiration: bool,
    /// The jwks_uri OIDC discovery names (default: this server's /openid/v1/jwks).
    #[arg(long)]
    pub service_account_jwks_uri: Option<String>,
    /// Not an upstream flag (upstream fixes ReadHeaderTimeout at 32 s): how
    /// long a client may take to send a request head. Hidden; for tests that
    /// cannot wait upstream's time.
    #[arg(long, hide = true, default_value = "32s", value_parser = parse_duration)]
    pub testing_read_header_timeout: std::time::Duration,
    /// Not an upstream flag (upstream fixes IdleTimeout at 90 s): how long a
    /// connection may wait between requests. Hidden; for tests.
    #[arg(long, hide = true, default_value = "90s", value_parser = parse_duration)]
    pub testing_idle_timeout: std::time::Duration,
}

/// The issuer when none is given: kubeadm's, an https URL so OIDC discovery is served.
const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The ServiceAccount token settings from the flags, keys read or generated.
fn service_account_tokens(
    opts: &Options,
    pki_dir: &std::path::Path,
    external_address: &str,
) -> Result<ServiceAccountTokens, String> {
    use generic_server::serviceaccount::{public_keys_from_pem, Signer};
    let max = opts.service_account_max_token_expiration;
    if !max.is_zero() && (max < std::time::Duration::from_secs(3600) || max.as_secs() > 1 << 32) {
        return Err("the service-account-max-token-expiration must be between 1 hour and 2^32 seconds".into());
    }
    let signing_pem = match &opts.service_account_signing_key_file {
        Some(f) => read(f)?,
        None => pki::service_account_key(pki_dir)?,
    };
    let signer = Signer::from_pem(&signing_pem).map_err(|e| format!("service-account-signing-key-file: {e}"))?;
    let mut verify = Vec::new();
    for f in &opts.service_account_key_file {
        verify.extend(public_keys_from_pem(&read(f)?).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    let issuers = if opts.service_account_issuer.is_empty() {
        vec![DEFAULT_ISSUER.to_string()]
    } else {
        opts.service_account_issuer.clone()
    };
    let mut tokens = ServiceAccountTokens::new(
        issuers,
        opts.api_audiences.clone(),
        signer,
        verify,
        opts.service_account_jwks_uri.as_deref(),
        external_address,
    )?;
    tokens.max_expiration_seconds = max.as_secs() as i64;
    tokens.extend_expiration = opts.service_account_extend_token_expiration;
    Ok(tokens)
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    generic_server::duration::parse_std(s)
}

/// mimalloc rather than glibc's malloc: a request allocates and frees many
/// small pieces across worker threads, which glibc's arenas served with
/// locking and consolidation (a third of the server's CPU in a create
/// profile), and memory freed by one thread stayed resident in that thread's
/// arena while the watch cache held long-lived objects in all of them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h's `mi_option_t` (the same
/// place in its v2 and v3).
#[cfg(target_os = "linux")]
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Arenas committed up front are purged by resetting pages, which Linux
/// still counts as resident until it needs the memory: an empty server
/// showed 90 MiB resident instead of 45, and one holding 100k objects
/// stayed above twice their JSON. Committed on demand, a purge gives pages
/// back. Runs before `main` (an ELF constructor), because mimalloc decides
/// an arena's commit when it reserves it, at the first allocation.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_on_demand() {
        // SAFETY: sets one of mimalloc's options; nothing has allocated yet.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) }
    }
    commit_on_demand
};

/// mimalloc gives freed memory back to the OS only when an allocation
/// later finds its purge delay passed, so a server gone quiet after a burst
/// (a large LIST, a relist, a watch replay) kept it resident for as long as
/// it stayed quiet. This thread lets the purges that are due happen, as Go's
/// background scavenger does for the kube-apiserver.
fn scavenge_freed_memory() {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(500);
    let scavenger = std::thread::Builder::new().name("scavenger".into()).spawn(|| {
        // mimalloc collects only for a thread that has allocated.
        let warm = std::hint::black_box(vec![0u8; 64]);
        drop(warm);
        loop {
            std::thread::sleep(EVERY);
            // SAFETY: mimalloc's collect takes no pointers and may run on any thread.
            unsafe { libmimalloc_sys::mi_collect(false) }
        }
    });
    if let Err(e) = scavenger {
        tracing::warn!("no thread to return freed memory: {e}");
    }
}

fn main() {
    let started = Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = Options::parse();
    scavenge_freed_memory();
    serve::run_to_exit("kube-apiserver", run(opts, started));
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

async fn run(opts: Options, started: Instant) -> Result<(), String> {
    let plugins = AdmissionPlugins::from_flags(&opts.enable_admission_plugins, &opts.disable_admission_plugins)
        .map_err(|errs| match errs.as_slice() {
            // Upstream's aggregate error: one message alone, several in brackets.
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        })?;
    let admission_config = match &opts.admission_control_config_file {
        Some(f) => AdmissionConfig::load(f)?,
        None => AdmissionConfig::default(),
    };
    let authorization_modes = generic_server::authz::parse_modes(&opts.authorization_mode)?;
    let audit = generic_server::audit::Auditor::from_flags(
        opts.audit_policy_file.as_deref(),
        &generic_server::audit::LogOptions {
            path: opts.audit_log_path.clone(),
            max_age_days: opts.audit_log_maxage,
            max_backups: opts.audit_log_maxbackup,
            max_size_mb: opts.audit_log_maxsize,
            format: opts.audit_log_format.clone(),
            mode: opts.audit_log_mode.clone(),
            batch_buffer_size: opts.audit_log_batch_buffer_size,
        },
    )?;
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| format!("creating {}: {e}", opts.data_dir.display()))?;
    // It holds the store and the keys: its owner's only (a directory from an older start too).
    generic_server::pki::restrict(&opts.data_dir, 0o700)
        .map_err(|e| format!("restricting {}: {e}", opts.data_dir.display()))?;
    let data_dir = opts.data_dir.canonicalize().map_err(|e| e.to_string())?;

    let mut sans = vec!["127.0.0.1".to_string(), "::1".to_string(), "localhost".to_string()];
    if !opts.bind_address.is_unspecified() && !opts.bind_address.is_loopback() {
        sans.push(opts.bind_address.to_string());
    }
    sans.extend(opts.tls_sans.iter().cloned());
    sans.dedup();
    let pki = pki::load_or_create(&data_dir.join("pki"), &sans)?;

    let (cert_pem, key_pem) = match (&opts.tls_cert_file, &opts.tls_private_key_file) {
        (Some(c), Some(k)) => (read(c)?, read(k)?),
        (None, None) => (pki.serving.cert.clone().into_bytes(), pki.serving.key.clone().into_bytes()),
        _ => return Err("--tls-cert-file and --tls-private-key-file go together".into()),
    };
    let client_ca = match &opts.client_ca_file {
        Some(f) => read(f)?,
        None => pki.ca.cert.clone().into_bytes(),
    };
    let tls = serve::tls_config(&cert_pem, &key_pem, Some(&client_ca))?;

    let tokens = match &opts.token_auth_file {
        Some(f) => Some(TokenFile::load(f)?),
        None => None,
    };

    let listener = tokio::net::TcpListener::bind(SocketAddr::new(opts.bind_address, opts.secure_port))
        .await
        .map_err(|e| format!("listening on {}:{}: {e}", opts.bind_address, opts.secure_port))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let host = match local.ip() {
        ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
        ip if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let service_accounts =
        Arc::new(service_account_tokens(&opts, &data_dir.join("pki"), &format!("{host}:{}", local.port()))?);

    let access =
        wiring::Access { plugins, admission_config, service_accounts: service_accounts.clone(), authorization_modes };
    let wiring::Chain { handler: chain, ready_checks, authorizer } =
        wiring::build_chain(&opts, &data_dir, local.port(), &pki, &client_ca, access).await?;
    let service = filters::build(
        chain,
        FilterConfig {
            authn: Authentication {
                tokens,
                anonymous: opts.anonymous_auth,
                service_accounts: Some(service_accounts),
                token_reviews: None,
            },
            version: VersionInfo {
                major: KUBE_MAJOR.into(),
                minor: KUBE_MINOR.into(),
                git_version: format!("v{KUBE_MAJOR}.{KUBE_MINOR}.0"),
            },
            ready_checks,
            limits: filters::Limits {
                max_requests_inflight: opts.max_requests_inflight,
                max_mutating_requests_inflight: opts.max_mutating_requests_inflight,
                request_timeout: opts.request_timeout,
            },
            authorizer,
            audit,
        },
    );

    let url = format!("https://{host}:{}", local.port());
    let kubeconfig_path = data_dir.join("admin.kubeconfig");
    let kc = kubeconfig::render(&url, &pki.ca.cert, &pki.admin.cert, &pki.admin.key)?;
    // It holds the system:masters key.
    generic_server::pki::write_private(&kubeconfig_path, kc.as_bytes())
        .map_err(|e| format!("writing {}: {e}", kubeconfig_path.display()))?;

    let serving = serve::ServingLimits {
        header_timeout: opts.testing_read_header_timeout,
        idle_timeout: opts.testing_idle_timeout,
        body_timeout: opts.request_timeout,
        ..serve::ServingLimits::default()
    };
    let server = tokio::spawn(serve::serve_tls(listener, Arc::new(tls), service, serving));
    tracing::info!(
        "kube-apiserver ready: url={url} kubeconfig={} (started in {} ms)",
        kubeconfig_path.display(),
        started.elapsed().as_millis()
    );
    tokio::select! {
        _ = server => Err("the listener stopped".into()),
        _ = serve::shutdown_signal() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_limits_default_to_upstreams() {
        let opts = Options::try_parse_from(["kube-apiserver"]).expect("no flags");
        let upstream = serve::ServingLimits::default();
        assert_eq!(opts.testing_read_header_timeout, upstream.header_timeout);
        assert_eq!(opts.testing_idle_timeout, upstream.idle_timeout);
        assert_eq!(opts.request_timeout, upstream.body_timeout);
    }

    #[test]
    fn anonymous_auth_defaults_to_upstreams() {
        assert!(Options::try_parse_from(["kube-apiserver"]).expect("no flags").anonymous_auth);
        let off = Options::try_parse_from(["kube-apiserver", "--anonymous-auth=false"]).expect("a bool");
        assert!(!off.anonymous_auth);
        let modes = Options::try_parse_from(["kube-apiserver", "--authorization-mode=Node,RBAC"]).expect("modes");
        assert_eq!(
            generic_server::authz::parse_modes(&modes.authorization_mode),
            Ok(vec![generic_server::authz::Mode::Node, generic_server::authz::Mode::Rbac])
        );
    }
}
