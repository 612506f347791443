//! The filter chain in front of the first server, as tower layers (upstream's
//! DefaultBuildHandlerChain): panic recovery, authentication, the non-resource
//! endpoints every API server has (/healthz, /livez, /readyz, /version), and
//! RequestInfo. Each layer does one thing and knows nothing of the others.
//!
//! Bodies are read (and bounded) before the chain, by the listener in
//! `serve`, so every layer sees a `Request` with its body in full.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use serde_json::json;
use tower::{Layer, Service};

use crate::authn::{TokenFile, UserInfo};
use crate::body;
use crate::handler::{DynHandler, Request, Response};
use crate::request_info;
use crate::status::StatusError;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The whole chain as one cloneable service.
pub type HttpService = tower::util::BoxCloneSyncService<Request, Response, Infallible>;

/// The subject of the verified TLS client certificate, put into the request by
/// the listener.
#[derive(Clone, Debug)]
pub struct PeerCertificateUser(pub UserInfo);

/// How callers are authenticated.
#[derive(Clone, Default)]
pub struct Authentication {
    pub tokens: Option<TokenFile>,
    pub anonymous: bool,
}

/// The /version answer.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    pub major: String,
    pub minor: String,
    pub git_version: String,
}

/// A named readiness check for /readyz/<name>.
pub type ReadyCheck = (String, Arc<dyn Fn() -> bool + Send + Sync>);

/// What the filters need beyond the chain itself.
#[derive(Clone)]
pub struct FilterConfig {
    pub authn: Authentication,
    pub version: VersionInfo,
    pub ready_checks: Vec<ReadyCheck>,
}

/// Builds the filter chain around `chain`.
pub fn build(chain: DynHandler, config: FilterConfig) -> HttpService {
    let service = tower::ServiceBuilder::new()
        .layer(RecoverLayer(()))
        .layer(AuthenticationLayer(Arc::new(config.authn)))
        .layer(NonResourceLayer(Arc::new((config.version, config.ready_checks))))
        .layer(RequestInfoLayer(()))
        .service(HandlerService(chain));
    tower::util::BoxCloneSyncService::new(service)
}

/// The end of the filters: the first server of the delegation chain.
#[derive(Clone)]
pub struct HandlerService(pub DynHandler);

impl Service<Request> for HandlerService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> BoxFuture {
        let h = self.0.clone();
        Box::pin(async move { Ok(h.handle(req).await) })
    }
}

/// Declares a layer whose service runs `$body(inner, state, req)`.
macro_rules! filter_layer {
    ($(#[$doc:meta])* $layer:ident, $service:ident, $state:ty, $run:path) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $layer(pub $state);

        #[derive(Clone)]
        pub struct $service<S> {
            inner: S,
            state: $state,
        }

        impl<S> Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> $service<S> {
                $service { inner, state: self.0.clone() }
            }
        }

        impl<S> Service<Request> for $service<S>
        where
            S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
            S::Future: Send + 'static,
        {
            type Response = Response;
            type Error = Infallible;
            type Future = BoxFuture;

            fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                self.inner.poll_ready(cx)
            }

            fn call(&mut self, req: Request) -> BoxFuture {
                // Take the service that was polled ready, leave a fresh clone.
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                Box::pin($run(inner, self.state.clone(), req))
            }
        }
    };
}

filter_layer!(
    /// Turns a panic anywhere behind it into a 500 Status instead of a dropped
    /// connection.
    RecoverLayer, RecoverService, (), recover
);

async fn recover<S>(mut inner: S, _: (), req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let path = req.uri().path().to_string();
    match std::panic::AssertUnwindSafe(inner.call(req)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => {
            tracing::error!(path, "handler panicked");
            Ok(StatusError::internal("the server could not complete the request").into_response())
        }
    }
}

filter_layer!(
    /// Establishes who is calling: a bearer token, else the client
    /// certificate, else anonymous if allowed; otherwise 401.
    AuthenticationLayer, AuthenticationService, Arc<Authentication>, authenticate
);

async fn authenticate<S>(mut inner: S, authn: Arc<Authentication>, mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match identify(&authn, &req) {
        Ok(user) => {
            req.extensions_mut().insert(user);
            inner.call(req).await
        }
        Err(e) => Ok(e.into_response()),
    }
}

fn identify(authn: &Authentication, req: &Request) -> Result<UserInfo, StatusError> {
    if let Some(auth) = req.headers().get(http::header::AUTHORIZATION) {
        let token = auth.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        if let (Some(t), Some(tokens)) = (token, &authn.tokens) {
            if let Some(u) = tokens.authenticate(t) {
                return Ok(u);
            }
        }
        // A credential that fails is refused, even where a certificate or
        // anonymous access would have let the request through.
        if token.is_some() {
            return Err(StatusError::unauthorized());
        }
    }
    if let Some(PeerCertificateUser(u)) = req.extensions().get::<PeerCertificateUser>() {
        return Ok(u.clone());
    }
    if authn.anonymous {
        return Ok(UserInfo::anonymous());
    }
    Err(StatusError::unauthorized())
}

filter_layer!(
    /// /healthz, /livez, /readyz (with ?verbose and /<check>) and /version.
    NonResourceLayer, NonResourceService, Arc<(VersionInfo, Vec<ReadyCheck>)>, non_resource
);

async fn non_resource<S>(
    mut inner: S,
    state: Arc<(VersionInfo, Vec<ReadyCheck>)>,
    req: Request,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let path = req.uri().path();
    if let Some(resp) = health(&state.1, path, req.uri().query()) {
        return Ok(resp);
    }
    if path == "/version" || path == "/version/" {
        let v = &state.0;
        let info = json!({
            "major": v.major,
            "minor": v.minor,
            "gitVersion": v.git_version,
            "gitCommit": "",
            "gitTreeState": "clean",
            "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
        });
        return Ok(http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body::full(serde_json::to_vec(&info).unwrap_or_default()))
            .unwrap_or_else(|_| http::Response::new(body::empty())));
    }
    inner.call(req).await
}

/// The architecture as Go names it (GOARCH), which clients compare against.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn text(code: u16, s: impl Into<String>) -> Response {
    http::Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(body::full(s.into()))
        .unwrap_or_else(|_| http::Response::new(body::empty()))
}

/// The health endpoints: "ok", or with ?verbose one line a check.
fn health(ready_checks: &[ReadyCheck], path: &str, query: Option<&str>) -> Option<Response> {
    let trimmed = path.trim_end_matches('/');
    let (base, only) = match trimmed {
        p @ ("/healthz" | "/livez" | "/readyz") => (p, None),
        p => {
            let (b, rest) = p.rsplit_once('/')?;
            if !matches!(b, "/healthz" | "/livez" | "/readyz") {
                return None;
            }
            (b, Some(rest))
        }
    };
    let mut checks: Vec<(String, bool)> = vec![("ping".into(), true), ("log".into(), true)];
    if base != "/livez" {
        checks.extend(ready_checks.iter().map(|(name, f)| (name.clone(), f())));
    }
    if let Some(one) = only {
        return Some(match checks.iter().find(|(n, _)| n == one) {
            Some((_, true)) => text(200, "ok"),
            Some((n, false)) => text(500, format!("internal server error: {n} check failed")),
            None => text(404, "404 page not found"),
        });
    }
    let ok = checks.iter().all(|(_, ok)| *ok);
    if !ok || request_info::query_params(query).contains_key("verbose") {
        let mut s = String::new();
        for (n, good) in &checks {
            s.push_str(&format!("[{}]{n} {}\n", if *good { "+" } else { "-" }, if *good { "ok" } else { "failed" }));
        }
        let name = base.trim_start_matches('/');
        s.push_str(&format!("{name} check {}\n", if ok { "passed" } else { "failed" }));
        return Some(text(if ok { 200 } else { 500 }, s));
    }
    Some(text(200, "ok"))
}

filter_layer!(
    /// Parses the path and method into a RequestInfo for everything behind.
    RequestInfoLayer, RequestInfoService, (), with_request_info
);

async fn with_request_info<S>(mut inner: S, _: (), mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let info = request_info::parse(req.method(), req.uri().path(), req.uri().query());
    req.extensions_mut().insert(info);
    inner.call(req).await
}
