//! `sample-apiserver`: an aggregated API server serving
//! wardle.example.com/v1alpha1 flunders (upstream's kubernetes/sample-apiserver),
//! built from generic-server's pieces the way kube-apiserver's servers are: a
//! ResourceServer with one Store on the embedded storage behind a watch cache,
//! root discovery and OpenAPI in front, the filter chain with the front proxy's
//! request-header authentication, and the TLS listener. With
//! --authentication-kubeconfig and --authorization-kubeconfig it delegates
//! bearer tokens and authorization to that kube-apiserver, as upstream's
//! sample-apiserver does.
//!
//! Prints `sample-apiserver ready: port=<port> ca=<cert-dir>/ca.crt` to stderr
//! once it accepts connections.

#[path = "../sample/mod.rs"]
mod sample;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use generic_server::authn::RequestHeaderAuthenticator;
use generic_server::authz::Authorizer;
use generic_server::delegation::{RemoteApi, SubjectAccessReviews, TokenReviews};
use generic_server::endpoints::ResourceServer;
use generic_server::filters::{self, Authentication, FilterConfig, VersionInfo};
use generic_server::handler::{DynHandler, NotFoundHandler};
use generic_server::registry::Store;
use generic_server::root::RootHandler;
use generic_server::serve;
use generic_server::storage::cacher::Cacher;
use generic_server::storage::embedded::EmbeddedStorage;
use generic_server::storage::Storage;

#[derive(Parser, Debug)]
#[command(name = "sample-apiserver", about = "An aggregated API server serving wardle.example.com flunders")]
struct Options {
    /// The port for HTTPS; 0 picks a free one.
    #[arg(long, default_value_t = 443)]
    secure_port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// Where the generated CA and serving certificate (and the stored objects,
    /// under data/) live; without it, a temporary directory.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Extra subject alternative names for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// The CA that issues the front proxy's client certificate.
    #[arg(long)]
    requestheader_client_ca_file: PathBuf,
    /// Common names allowed for the front proxy's certificate; empty allows any
    /// the CA issued.
    #[arg(long, value_delimiter = ',')]
    requestheader_allowed_names: Vec<String>,
    /// Headers naming the user, first present wins.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-User")]
    requestheader_username_headers: Vec<String>,
    /// Headers naming the groups, every value counts.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Group")]
    requestheader_group_headers: Vec<String>,
    /// Prefixes of headers carrying the user's extra fields.
    #[arg(long, value_delimiter = ',', default_value = "X-Remote-Extra-")]
    requestheader_extra_headers_prefix: Vec<String>,
    /// The kube-apiserver that checks bearer tokens (TokenReview); without
    /// it only the front proxy's users get in.
    #[arg(long)]
    authentication_kubeconfig: Option<PathBuf>,
    /// The kube-apiserver that authorizes requests (SubjectAccessReview);
    /// without it every authenticated user may do anything.
    #[arg(long)]
    authorization_kubeconfig: Option<PathBuf>,
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let opts = Options::parse();
    serve::run_to_exit("sample-apiserver", run(opts));
}

async fn run(opts: Options) -> Result<(), String> {
    // Held for the life of the process when there is no --cert-dir.
    let (cert_dir, _tmp) = match &opts.cert_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::tempdir().map_err(|e| format!("creating a temporary cert dir: {e}"))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let mut sans = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for s in &opts.tls_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    // Reused from the cert dir across restarts, so an APIService's caBundle
    // (<cert-dir>/ca.crt) stays valid.
    let (_, serving) =
        generic_server::pki::ca_and_serving(&cert_dir, "sample-apiserver-ca", "sample-apiserver", &sans, &[])?;

    let ca_path = &opts.requestheader_client_ca_file;
    let proxy_ca = std::fs::read(ca_path).map_err(|e| format!("reading {}: {e}", ca_path.display()))?;
    let request_header = RequestHeaderAuthenticator::new(
        &proxy_ca,
        opts.requestheader_allowed_names.clone(),
        opts.requestheader_username_headers.clone(),
        opts.requestheader_group_headers.clone(),
        opts.requestheader_extra_headers_prefix.clone(),
    )?;

    let data_dir = cert_dir.join("data");
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
    let db = data_dir.join("state.redb");
    let storage: Arc<dyn Storage> =
        Arc::new(EmbeddedStorage::open(&db).map_err(|e| format!("opening {}: {e}", db.display()))?);

    let registration = sample::flunder::registration();
    let cache = Cacher::new(storage.clone(), &format!("{}/", registration.info.key_root));
    let store = Arc::new(
        Store::new(registration, storage, generic_server::registry::AdmissionChain::empty()).with_cache(cache),
    );
    let resources = ResourceServer::new(Arc::new(NotFoundHandler)).with_openapi(sample::flunder::openapi);
    resources.install(store);
    let recorded: DynHandler = Arc::new(sample::caller::RecordCaller::new(Arc::new(resources)));
    let chain: DynHandler = Arc::new(RootHandler::new(recorded));

    let remote = |path: &Option<PathBuf>| path.as_deref().map(RemoteApi::from_kubeconfig).transpose();
    let token_reviews = remote(&opts.authentication_kubeconfig)?.map(|api| Arc::new(TokenReviews::new(api)));
    let authorizer: Arc<dyn Authorizer> = match remote(&opts.authorization_kubeconfig)? {
        Some(api) => Arc::new(SubjectAccessReviews::new(api)),
        None => Arc::new(generic_server::authz::AlwaysAllow),
    };
    let service = filters::build_with_request_header(
        chain,
        FilterConfig {
            // The front proxy's users, and tokens the main server vouches
            // for; never anonymous.
            authn: Authentication { tokens: None, anonymous: false, service_accounts: None, token_reviews },
            version: VersionInfo { major: "1".into(), minor: "33".into(), git_version: "v1.33.0".into() },
            ready_checks: Vec::new(),
            limits: Default::default(),
            authorizer,
            audit: None,
        },
        Arc::new(request_header),
    );
    let tls = serve::tls_config_requesting_client_certs(serving.cert.as_bytes(), serving.key.as_bytes())?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(opts.bind_address, opts.secure_port))
        .await
        .map_err(|e| format!("listening on {}:{}: {e}", opts.bind_address, opts.secure_port))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let server = tokio::spawn(serve::serve_tls_unverified_peers(
        listener,
        Arc::new(tls),
        service,
        serve::ServingLimits::default(),
    ));
    eprintln!("sample-apiserver ready: port={port} ca={}", cert_dir.join("ca.crt").display());
    tokio::select! {
        _ = server => Err("the listener stopped".into()),
        _ = serve::shutdown_signal() => Ok(()),
    }
}
