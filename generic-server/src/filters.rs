//! The filter chain in front of the first server, as tower layers (upstream's
//! DefaultBuildHandlerChain), outermost first: the audit ID, panic recovery,
//! RequestInfo, the request timeout, authentication, audit (`crate::audit`),
//! admission's notes (Warning headers and audit annotations), impersonation, max-in-flight, authorization, the non-resource endpoints
//! every API server has (/healthz, /livez, /readyz, /version, /metrics;
//! authorized like any path, as upstream's are through its public-info
//! roles), and request metrics. Each layer does one thing and knows nothing
//! of the others; the decisions are `authz`'s and `impersonation`'s.
//!
//! Bodies are read (and bounded) before the chain, by the listener in
//! `serve`, so every layer sees a `Request` with its body in full.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::json;
use tower::{Layer, Service};

use crate::authn::{RequestHeaderAuthenticator, RequestHeaderRefusal, TokenAuthenticator, TokenFile, UserInfo};
use crate::authz::{Authorizer, PRIVILEGED_GROUP};
use crate::body;
use crate::handler::{DynHandler, Request, Response};
use crate::metrics::{self, RequestLabels};
use crate::request_info::{self, RequestInfo};
use crate::serviceaccount::{Discovery, ServiceAccountTokens};
use crate::status::StatusError;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The filter chain as the listener serves it: shared by every connection
/// and request (a request costs it one reference count).
pub type HttpService = Arc<dyn SharedService>;

/// The subject of the verified TLS client certificate, put into the request by
/// the listener.
#[derive(Clone, Debug)]
pub struct PeerCertificateUser(pub Arc<UserInfo>);

/// The client's address, put into the request by the listener.
#[derive(Clone, Copy, Debug)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// The client certificate chain (leaf first) as presented, unverified, put
/// into the request by [`crate::serve::serve_tls_unverified_peers`].
#[derive(Clone, Debug)]
pub struct PeerCertificates(pub Vec<rustls_pki_types::CertificateDer<'static>>);

/// How callers are authenticated.
#[derive(Clone, Default)]
pub struct Authentication {
    pub tokens: Option<TokenFile>,
    pub anonymous: bool,
    /// ServiceAccount JWTs (and the OIDC discovery documents of their issuer).
    pub service_accounts: Option<Arc<ServiceAccountTokens>>,
    /// Tokens no local authenticator knows, asked of the server this one
    /// extends (an aggregated server's delegated authentication).
    pub token_reviews: Option<Arc<crate::delegation::TokenReviews>>,
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
    pub limits: Limits,
    /// Decides every request (`--authorization-mode`) and every impersonation.
    pub authorizer: Arc<dyn Authorizer>,
    /// The audit policy and log (`--audit-*`); `None` writes no events.
    pub audit: Option<Arc<crate::audit::Auditor>>,
}

/// How much work the server takes on at once, and for how long
/// (--max-requests-inflight, --max-mutating-requests-inflight, --request-timeout).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Read-only requests served at once; 0 is no limit.
    pub max_requests_inflight: usize,
    /// Mutating requests served at once; 0 is no limit.
    pub max_mutating_requests_inflight: usize,
    /// How long a request that is not long-running may take; zero is no limit.
    pub request_timeout: Duration,
}

impl Default for Limits {
    /// Upstream's defaults.
    fn default() -> Self {
        Limits {
            max_requests_inflight: 400,
            max_mutating_requests_inflight: 200,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// Builds the filter chain around `chain`.
pub fn build(chain: DynHandler, config: FilterConfig) -> HttpService {
    build_with(chain, config, None)
}

/// The filter chain of a server behind a front proxy (an aggregated API
/// server): callers are the users `request_header` vouches for, then tokens
/// and anonymous as `config` says. Serve it with
/// [`crate::serve::serve_tls_unverified_peers`]: client certificates there
/// identify the proxy, never a user.
pub fn build_with_request_header(
    chain: DynHandler,
    config: FilterConfig,
    request_header: Arc<RequestHeaderAuthenticator>,
) -> HttpService {
    build_with(chain, config, Some(request_header))
}

fn build_with(
    chain: DynHandler,
    config: FilterConfig,
    request_header: Option<Arc<RequestHeaderAuthenticator>>,
) -> HttpService {
    crate::metrics::global().serve_resources_of(chain.clone());
    let limits = config.limits;
    let discovery = config.authn.service_accounts.as_ref().and_then(|s| s.discovery().cloned());
    let authorizer = config.authorizer;
    let service = tower::ServiceBuilder::new()
        .layer(AuditInitLayer(config.audit.clone()))
        .layer(RecoverLayer(()))
        .layer(RequestInfoLayer(()))
        .layer(TimeoutLayer((!limits.request_timeout.is_zero()).then_some(limits.request_timeout)))
        .layer(AuthenticationLayer(Arc::new(Authenticators {
            tokens: TokenAuthenticator {
                file: config.authn.tokens.clone().map(Arc::new),
                service_accounts: config.authn.service_accounts.clone(),
                reviews: config.authn.token_reviews.clone(),
            },
            config: config.authn,
            request_header,
        })))
        .layer(AuditLayer(()))
        .layer(NotesLayer(()))
        .layer(ImpersonationLayer(authorizer.clone()))
        .layer(MaxInFlightLayer(Arc::new(InFlight::new(&limits))))
        .layer(AuthorizationLayer(authorizer))
        .layer(NonResourceLayer(Arc::new(NonResource {
            discovery,
            version: config.version,
            ready_checks: config.ready_checks,
        })))
        .layer(InstrumentLayer(()))
        .service(HandlerService(chain));
    Arc::new(service)
}

/// The end of the filters: the first server of the delegation chain.
pub struct HandlerService(pub DynHandler);

/// A service of the chain that serves a request through a shared reference:
/// every filter and the handler are always ready and keep no per-call state.
pub trait SharedService: Send + Sync + 'static {
    fn call_shared(&self, req: Request) -> BoxFuture;
}

impl SharedService for HandlerService {
    fn call_shared(&self, req: Request) -> BoxFuture {
        let h = self.0.clone();
        Box::pin(async move { Ok(h.handle(req).await) })
    }
}

/// The rest of the chain as a filter holds it: shared, so the per-request
/// copy each filter's future owns is one reference count, not a copy of
/// every filter below it. The filters call it as a tower Service.
pub struct Next<S>(Arc<S>);

impl<S> Clone for Next<S> {
    fn clone(&self) -> Self {
        Next(self.0.clone())
    }
}

impl<S: SharedService> Service<Request> for Next<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> BoxFuture {
        self.0.call_shared(req)
    }
}

/// Declares a layer whose service runs `$body(inner, state, req)`.
macro_rules! filter_layer {
    ($(#[$doc:meta])* $layer:ident, $service:ident, $state:ty, $run:path) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $layer(pub $state);

        pub struct $service<S> {
            inner: Next<S>,
            state: $state,
        }

        impl<S> Clone for $service<S> {
            fn clone(&self) -> Self {
                $service { inner: self.inner.clone(), state: self.state.clone() }
            }
        }

        impl<S> Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> $service<S> {
                $service { inner: Next(Arc::new(inner)), state: self.0.clone() }
            }
        }

        impl<S: SharedService> SharedService for $service<S> {
            fn call_shared(&self, req: Request) -> BoxFuture {
                Box::pin($run(self.inner.clone(), self.state.clone(), req))
            }
        }
    };
}

filter_layer!(
    /// Gives every request its audit ID, echoed in the `Audit-ID` response header.
    AuditInitLayer, AuditInitService, Option<Arc<crate::audit::Auditor>>, crate::audit::init
);

filter_layer!(
    /// Writes the audit events the policy asks for, for the authenticated user.
    AuditLayer, AuditService, (), crate::audit::audit
);

filter_layer!(
    /// Gives the request the notes admission leaves (upstream's warning
    /// recorder and audit annotations) and puts them in the response's
    /// Warning headers and the audit event.
    NotesLayer, NotesService, (), record_notes
);

async fn record_notes<S>(mut inner: S, _: (), mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let notes = Arc::new(crate::registry::Notes::default());
    req.extensions_mut().insert(notes.clone());
    let audit = crate::audit::context_of(&req);
    // Upstream logs a created or replaced object as decoded; a patch is
    // logged as sent, by the audit filter.
    let writes_object = req
        .extensions()
        .get::<Arc<crate::request_info::RequestInfo>>()
        .is_some_and(|i| i.is_resource_request && matches!(i.verb.as_str(), "create" | "update"));
    if writes_object && audit.as_ref().is_some_and(|a| a.wants_request_object()) {
        notes.want_request_object();
    }
    let mut response = inner.call(req).await?;
    for w in notes.take_warnings() {
        if let Some(h) = crate::endpoints::output::warning_header(&w) {
            response.headers_mut().append("Warning", h);
        }
    }
    if let Some(audit) = audit {
        for (k, v) in notes.take_annotations() {
            audit.annotate(&k, &v);
        }
        if let Some(obj) = notes.take_request_object() {
            audit.log_decoded_object(obj);
        }
    }
    Ok(response)
}

filter_layer!(
    /// Turns a panic anywhere behind it into a 500 Status instead of a dropped
    /// connection, and gives every answer upstream's Cache-Control (its
    /// WithPanicRecovery and WithCacheControl, adjacent in its chain).
    RecoverLayer, RecoverService, (), recover
);

async fn recover<S>(mut inner: S, _: (), req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    // The Uri shares its bytes: nothing is copied unless there is a panic to log.
    let uri = req.uri().clone();
    let mut resp = match std::panic::AssertUnwindSafe(inner.call(req)).catch_unwind().await {
        Ok(Ok(r)) => r,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::error!(path = uri.path(), "handler panicked");
            StatusError::internal("the server could not complete the request").into_response()
        }
    };
    // Every server behind authentication answers private, revalidated
    // content, unless the handler chose otherwise (hashed OpenAPI documents).
    resp.headers_mut()
        .entry(http::header::CACHE_CONTROL)
        .or_insert(http::HeaderValue::from_static("no-cache, private"));
    Ok(resp)
}

/// Every way the authentication filter may identify a caller.
pub struct Authenticators {
    pub config: Authentication,
    pub request_header: Option<Arc<RequestHeaderAuthenticator>>,
    /// `config.tokens`, shared with the handlers through request extensions.
    pub tokens: TokenAuthenticator,
}

filter_layer!(
    /// Establishes who is calling, as upstream's authenticator union: the
    /// front proxy's request headers, else the client certificate, else a
    /// bearer token, else anonymous if allowed and no credential failed;
    /// otherwise 401.
    AuthenticationLayer, AuthenticationService, Arc<Authenticators>, authenticate
);

async fn authenticate<S>(mut inner: S, authn: Arc<Authenticators>, mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    req.extensions_mut().insert(authn.tokens.clone());
    if let Some(rh) = &authn.request_header {
        let chain = req.extensions().get::<PeerCertificates>().map(|c| c.0.as_slice()).unwrap_or(&[]);
        match rh.authenticate(chain, req.headers()) {
            Ok(user) => {
                rh.clear_headers(req.headers_mut());
                req.extensions_mut().insert(Arc::new(user));
                return inner.call(req).await;
            }
            Err(RequestHeaderRefusal::Untrusted(why)) => {
                tracing::debug!("request-header authentication refused: {why}");
            }
            Err(RequestHeaderRefusal::NotApplicable) => {}
        }
    }
    match identify(&authn, &mut req).await {
        Ok(user) => {
            req.extensions_mut().insert(user);
            inner.call(req).await
        }
        Err(e) => {
            crate::audit::failed_authentication(&req);
            Ok(e.into_response())
        }
    }
}

async fn identify(authn: &Authenticators, req: &mut Request) -> Result<Arc<UserInfo>, StatusError> {
    if let Some(PeerCertificateUser(u)) = req.extensions().get::<PeerCertificateUser>() {
        return Ok(u.clone());
    }
    if let Some(token) = crate::authn::bearer_token(req.headers()).map(str::to_string) {
        // Boxed: token review's future is several kilobytes, which every
        // request's future would otherwise carry and move.
        return match Box::pin(authn.tokens.authenticate(&token, &[])).await {
            Ok(a) => {
                // As upstream: nothing behind may be tempted to reuse it.
                req.headers_mut().remove(http::header::AUTHORIZATION);
                Ok(Arc::new(a.user))
            }
            // A credential that fails is refused, even where anonymous access
            // would have let the request through (upstream's FailOnError).
            Err(why) => {
                tracing::debug!("bearer token refused: {why}");
                Err(StatusError::unauthorized())
            }
        };
    }
    if authn.config.anonymous {
        return Ok(Arc::new(UserInfo::anonymous()));
    }
    Err(StatusError::unauthorized())
}

filter_layer!(
    /// Acts as the user the Impersonate-* headers name, when the caller may.
    ImpersonationLayer, ImpersonationService, Arc<dyn Authorizer>, impersonate
);

async fn impersonate<S>(mut inner: S, authorizer: Arc<dyn Authorizer>, mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match crate::impersonation::impersonate(authorizer.as_ref(), &mut req) {
        None => inner.call(req).await,
        Some(refused) => Ok(refused),
    }
}

filter_layer!(
    /// Serves a request only if the authorizer allows it; otherwise 403.
    AuthorizationLayer, AuthorizationService, Arc<dyn Authorizer>, authorize
);

async fn authorize<S>(mut inner: S, authorizer: Arc<dyn Authorizer>, req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    match crate::authz::check_request(authorizer.as_ref(), &req) {
        None => inner.call(req).await,
        Some(refused) => Ok(refused),
    }
}

filter_layer!(
    /// /healthz, /livez, /readyz (with ?verbose and /<check>), /version and
    /// /metrics and OIDC discovery, for callers the authorizer let through.
    NonResourceLayer, NonResourceService, Arc<NonResource>, non_resource
);

/// What the non-resource endpoints answer from.
pub struct NonResource {
    version: VersionInfo,
    ready_checks: Vec<ReadyCheck>,
    /// The ServiceAccount issuer's OIDC documents, when its issuer is an
    /// https URL (upstream serves them only then).
    discovery: Option<Arc<Discovery>>,
}

async fn non_resource<S>(mut inner: S, state: Arc<NonResource>, req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let path = req.uri().path();
    if let Some(resp) = health(&state.ready_checks, path, req.uri().query()) {
        return Ok(resp);
    }
    if let (Some(d), &http::Method::GET) = (&state.discovery, req.method()) {
        let doc = match path {
            crate::serviceaccount::OPENID_CONFIG_PATH => Some((&d.configuration, "application/json")),
            crate::serviceaccount::JWKS_PATH => Some((&d.jwks, "application/jwk-set+json")),
            _ => None,
        };
        if let Some((body, content_type)) = doc {
            return Ok(http::Response::builder()
                .status(200)
                .header(http::header::CONTENT_TYPE, content_type)
                // Upstream overrides the usual `no-cache` for these documents.
                .header(http::header::CACHE_CONTROL, "public, max-age=3600")
                .body(body::full(body.clone()))
                .unwrap_or_else(|_| http::Response::new(body::empty())));
        }
    }
    if path == "/metrics" && req.method() == http::Method::GET {
        return Ok(metrics::global().serve().await);
    }
    if path == "/version" || path == "/version/" {
        let v = &state.version;
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
    if !ok || request_info::query_param(query, "verbose").is_some() {
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
    /// Parses the path and method into a RequestInfo for everything behind,
    /// and notes when the request arrived.
    RequestInfoLayer, RequestInfoService, (), with_request_info
);

async fn with_request_info<S>(mut inner: S, _: (), mut req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let info = request_info::parse(req.method(), req.uri().path(), req.uri().query());
    // Shared: the filters and handlers behind read it, several cloning it.
    req.extensions_mut().insert(Arc::new(info));
    // The listener notes the head's arrival, before the body is read.
    if req.extensions().get::<Received>().is_none() {
        req.extensions_mut().insert(Received(Instant::now()));
    }
    inner.call(req).await
}

/// When the request arrived (upstream's ReceivedTimestamp): the request
/// timeout and the latency metrics count from here.
#[derive(Clone, Copy, Debug)]
pub struct Received(pub Instant);

fn received(req: &Request) -> Instant {
    req.extensions().get::<Received>().map(|r| r.0).unwrap_or_else(Instant::now)
}

/// Upstream's BasicLongRunningRequestCheck: watches and the streaming
/// subresources, which neither time out nor count against max-in-flight.
pub fn is_long_running(info: &RequestInfo) -> bool {
    matches!(info.verb.as_str(), "watch" | "proxy")
        || (info.is_resource_request
            && matches!(info.subresource.as_str(), "attach" | "exec" | "proxy" | "log" | "portforward"))
}

/// Whether a request may add series to the request metrics: not a resource
/// request for something nobody serves (any path a client makes up).
fn reportable(info: &RequestInfo) -> bool {
    !info.is_resource_request || metrics::global().is_served(&info.api_group, &info.api_version, &info.resource)
}

filter_layer!(
    /// Answers 504 Timeout for a request that is not long-running once
    /// --request-timeout (or a shorter `?timeout=`) has passed since it arrived.
    TimeoutLayer, TimeoutService, Option<Duration>, with_timeout
);

/// The `?timeout=` a client asked for, a Go duration (upstream's parseTimeout).
fn requested_timeout(query: Option<&str>) -> Result<Option<Duration>, StatusError> {
    let Some(value) = request_info::query_param(query, "timeout").filter(|v| !v.is_empty()) else { return Ok(None) };
    let nanos = crate::duration::parse_duration(&value)
        .map_err(|e| StatusError::bad_request(format!("invalid timeout specified in the request URL - time: {e}")))?;
    Ok(u64::try_from(nanos).ok().filter(|n| *n > 0).map(Duration::from_nanos))
}

async fn with_timeout<S>(mut inner: S, limit: Option<Duration>, req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else { return inner.call(req).await };
    if is_long_running(&info) {
        return inner.call(req).await;
    }
    let Some(limit) = limit else { return inner.call(req).await };
    let timeout = match requested_timeout(req.uri().query()) {
        Ok(Some(t)) => t.min(limit),
        Ok(None) => limit,
        Err(e) => return Ok(e.into_response()),
    };
    let deadline = tokio::time::Instant::from_std(received(&req) + timeout);
    // A deadline already past when the request is served (`?timeout=1ns`)
    // is a 504 at once, however quickly the handler could answer; the
    // timer alone would let a fast handler win the race.
    let past = deadline <= tokio::time::Instant::now();
    if matches!(info.verb.as_str(), "get" | "list") {
        // A read is served in place: dropped at its deadline it leaves
        // nothing half-done, and a task of its own would cost every GET a
        // spawn. Its labels are only needed for a 504, so only what they are
        // made from is kept.
        let head = (req.method().clone(), req.uri().clone());
        let answer = if past { None } else { tokio::time::timeout_at(deadline, inner.call(req)).await.ok() };
        return match answer {
            Some(r) => r,
            None => {
                let mut req = Request::default();
                (*req.method_mut(), *req.uri_mut()) = head;
                Ok(timed_out(&RequestLabels::of(&req, &info), &info))
            }
        };
    }
    let labels = RequestLabels::of(&req, &info);
    let path = req.uri().path().to_string();
    // A write runs on as its own task when its client stops waiting, as
    // upstream's goroutine does: a request is a sequence of storage
    // transactions (an allocation, then the object), and stopping it between
    // two would leave the first without the second. Each transaction is whole
    // either way; the client learns the outcome by reading.
    let mut task = tokio::spawn(inner.call(req));
    let waited = match past {
        false => tokio::time::timeout_at(deadline, &mut task).await,
        true => tokio::time::timeout_at(deadline, std::future::pending()).await,
    };
    match waited {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            // The task is outside the recovery layer's reach.
            tracing::error!(path, "handler panicked: {e}");
            Ok(StatusError::internal("the server could not complete the request").into_response())
        }
        Err(_) => Ok(timed_out(&labels, &info)),
    }
}

/// The 504 for a request past its deadline, counted as upstream's
/// apiserver_request_terminations_total counts it.
fn timed_out(labels: &RequestLabels, info: &RequestInfo) -> Response {
    if reportable(info) {
        metrics::global().observe_termination(labels, 504);
    }
    request_timed_out().into_response()
}

/// The timeout filter's 504.
pub(crate) fn request_timed_out() -> StatusError {
    let mut e = StatusError::timeout("Timeout: request did not complete within the allotted timeout");
    e.details = Some(Box::new(json!({})));
    e
}

/// The two in-flight pools of upstream's max-in-flight filter, each with its
/// limit; `None` is no limit.
pub struct InFlight {
    read_only: Option<(Arc<tokio::sync::Semaphore>, usize)>,
    mutating: Option<(Arc<tokio::sync::Semaphore>, usize)>,
}

impl InFlight {
    pub fn new(limits: &Limits) -> Self {
        let pool = |n: usize| (n > 0).then(|| (Arc::new(tokio::sync::Semaphore::new(n)), n));
        InFlight {
            read_only: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
        }
    }
}

filter_layer!(
    /// Serves at most --max-requests-inflight read-only and
    /// --max-mutating-requests-inflight other requests at once; one more gets
    /// 429 with Retry-After. Long-running requests do not count.
    MaxInFlightLayer, MaxInFlightService, Arc<InFlight>, limit_in_flight
);

async fn limit_in_flight<S>(mut inner: S, pools: Arc<InFlight>, req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>() else { return inner.call(req).await };
    if is_long_running(info) {
        return inner.call(req).await;
    }
    let mutating = !matches!(info.verb.as_str(), "get" | "list" | "watch");
    let Some((pool, limit)) = (if mutating { &pools.mutating } else { &pools.read_only }) else {
        return inner.call(req).await;
    };
    let m = metrics::global();
    let in_use = |pool: &tokio::sync::Semaphore| limit.saturating_sub(pool.available_permits()) as i64;
    match pool.clone().try_acquire_owned() {
        Ok(permit) => {
            m.note_inflight(mutating, in_use(pool));
            let r = inner.call(req).await;
            drop(permit);
            m.note_inflight(mutating, in_use(pool));
            r
        }
        Err(_) => {
            let privileged =
                req.extensions().get::<Arc<UserInfo>>().is_some_and(|u| u.groups.iter().any(|g| g == PRIVILEGED_GROUP));
            if privileged {
                return inner.call(req).await;
            }
            if reportable(info) {
                let labels = RequestLabels::of(&req, info);
                m.observe_dropped(&labels, 429);
                m.observe_termination(&labels, 429);
            }
            Ok(too_many_requests().into_response())
        }
    }
}

/// Upstream's answer when the server is at its in-flight limit.
fn too_many_requests() -> StatusError {
    let mut e = StatusError::new(429, "TooManyRequests", "Too many requests, please try again later.");
    e.details = Some(Box::new(json!({"retryAfterSeconds": 1})));
    e.retry_after = Some(1);
    e
}

filter_layer!(
    /// Records every served resource request in the request metrics when it
    /// ends (a watch when its stream does), and long-running ones while they last.
    InstrumentLayer, InstrumentService, (), instrument
);

async fn instrument<S>(mut inner: S, _: (), req: Request) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let Some(info) = req.extensions().get::<Arc<RequestInfo>>().cloned() else { return inner.call(req).await };
    if !info.is_resource_request {
        return inner.call(req).await;
    }
    let labels = RequestLabels::of(&req, &info);
    let started = received(&req);
    let resp = inner.call(req).await?;
    let code = resp.status().as_u16();
    // A 404 may mean nobody serves the resource; anything else says someone does.
    if code == 404 && !reportable(&info) {
        return Ok(resp);
    }
    let m = metrics::global();
    if !is_long_running(&info) {
        m.observe_request(&labels, code, started.elapsed());
        return Ok(resp);
    }
    let finished = WhenStreamEnds { long_running: Some(m.long_running(&labels)), labels, code, started };
    let (parts, body) = resp.into_parts();
    let body = http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_frame(body, move |f| {
        let _ = &finished;
        f
    }));
    Ok(http::Response::from_parts(parts, body))
}

/// Held by a long-running response's body: counts it in
/// apiserver_longrunning_requests until the stream ends or its client leaves,
/// then records the request as upstream does when a watch returns.
struct WhenStreamEnds {
    long_running: Option<metrics::GaugeGuard>,
    labels: RequestLabels,
    code: u16,
    started: Instant,
}

impl Drop for WhenStreamEnds {
    fn drop(&mut self) {
        self.long_running.take();
        metrics::global().observe_request(&self.labels, self.code, self.started.elapsed());
    }
}
