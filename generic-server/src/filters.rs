//! The filter chain in front of the first server (upstream's
//! DefaultBuildHandlerChain), outermost first: the audit ID, panic recovery,
//! RequestInfo, the request timeout, authentication, audit (`crate::audit`),
//! admission's notes (Warning headers and audit annotations),
//! impersonation, max-in-flight, authorization, the non-resource endpoints
//! every API server has (/healthz, /livez, /readyz, /version, /metrics;
//! authorized like any path, as upstream's are through its public-info
//! roles), and request metrics. Each filter is a step of one async function
//! ([`Filters`]) and knows nothing of the others; the decisions are `authz`'s
//! and `impersonation`'s.
//!
//! Bodies are read (and bounded) before the chain, by the listener in
//! `serve`, so every filter sees a `Request` with its body in full.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use serde_json::json;

use crate::authn::{RequestHeaderAuthenticator, RequestHeaderRefusal, TokenAuthenticator, TokenFile, UserInfo};
use crate::authz::{Authorizer, PRIVILEGED_GROUP};
use crate::body;
use crate::context::RequestContext;
use crate::handler::{DynHandler, Request, Response};
use crate::metrics::{self, RequestLabels};
use crate::request_info::{self, RequestInfo};
use crate::serviceaccount::{Discovery, ServiceAccountTokens};
use crate::status::StatusError;

/// The filter chain as the listener serves it: shared by every connection
/// and request (a request costs it one reference count).
pub type HttpService = Arc<Filters>;

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
    Arc::new(Filters {
        auditor: config.audit,
        timeout: (!limits.request_timeout.is_zero()).then_some(limits.request_timeout),
        authn: Authenticators {
            tokens: Arc::new(TokenAuthenticator {
                file: config.authn.tokens.clone().map(Arc::new),
                service_accounts: config.authn.service_accounts.clone(),
                reviews: config.authn.token_reviews.clone(),
            }),
            config: config.authn,
            request_header,
        },
        authorizer: config.authorizer,
        in_flight: InFlight::new(&limits),
        non_resource: NonResource { discovery, version: config.version, ready_checks: config.ready_checks },
        handler: chain,
    })
}

/// The filter chain: what each filter decides with, and the first server of
/// the delegation chain behind them. One value, and a request is one async
/// function over it rather than a future per filter: each filter's own
/// future would box and move the request on its way in and the response on
/// its way out, which cost more than most of the filters' work.
pub struct Filters {
    /// The audit policy and log; `None` writes no events.
    auditor: Option<Arc<crate::audit::Auditor>>,
    /// --request-timeout; `None` is no limit.
    timeout: Option<Duration>,
    authn: Authenticators,
    /// Decides every request and every impersonation.
    authorizer: Arc<dyn Authorizer>,
    in_flight: InFlight,
    non_resource: NonResource,
    handler: DynHandler,
}

impl Filters {
    /// Serves one request through every filter, outermost first: the audit
    /// ID, panic recovery (and upstream's Cache-Control), RequestInfo, the
    /// request timeout, then [`Filters::authenticated`]. The future owns what
    /// it needs: a write the timeout gives up on runs on as its own task.
    ///
    /// The request lives here and the filters borrow it until the handler
    /// takes it: held by value in each filter's future, it would be moved
    /// into each and would make each larger.
    pub fn serve(self: &Arc<Self>, mut req: Request) -> impl Future<Output = Response> + Send + 'static {
        let this = self.clone();
        async move {
            let audit_id = crate::audit::begin(this.auditor.as_ref(), &mut req);
            // The Uri shares its bytes: nothing is copied unless there is a panic to log.
            let uri = req.uri().clone();
            let served = std::panic::AssertUnwindSafe(this.within_deadline(&mut req)).catch_unwind().await;
            let mut resp = served.unwrap_or_else(|_| panicked(uri.path(), "recovered"));
            // Every server behind authentication answers private, revalidated
            // content, unless the handler chose otherwise (hashed OpenAPI documents).
            resp.headers_mut()
                .entry(http::header::CACHE_CONTROL)
                .or_insert(http::HeaderValue::from_static("no-cache, private"));
            crate::audit::echo_id(&mut resp, audit_id);
            resp
        }
    }

    /// RequestInfo for everything behind, and the request timeout: a 504
    /// Timeout for a request that is not long-running once --request-timeout
    /// (or a shorter `?timeout=`) has passed since it arrived.
    async fn within_deadline(self: &Arc<Self>, req: &mut Request) -> Response {
        let info = Arc::new(request_info::parse(req.method(), req.uri().path(), req.uri().query()));
        // Shared: the filters and handlers behind read it, several cloning it.
        RequestContext::of_mut(req).set_info(info.clone());
        let Some(limit) = self.timeout.filter(|_| !is_long_running(&info)) else {
            return self.authenticated(req).await;
        };
        let timeout = match requested_timeout(req.uri().query()) {
            Ok(Some(t)) => t.min(limit),
            Ok(None) => limit,
            Err(e) => return e.into_response(),
        };
        let deadline = tokio::time::Instant::from_std(received(req) + timeout);
        // A deadline already past when the request is served (`?timeout=1ns`)
        // is a 504 at once, however quickly the handler could answer; the
        // timer alone would let a fast handler win the race.
        let past = deadline <= tokio::time::Instant::now();
        if matches!(info.verb.as_str(), "get" | "list") {
            // A read is served in place: dropped at its deadline it leaves
            // nothing half-done, and a task of its own would cost every GET a
            // spawn. Its labels are only needed for a 504, so only what they
            // are made from is kept.
            let head = (req.method().clone(), req.uri().clone());
            let answer =
                if past { None } else { tokio::time::timeout_at(deadline, self.authenticated(req)).await.ok() };
            return answer.unwrap_or_else(|| {
                let mut req = Request::default();
                (*req.method_mut(), *req.uri_mut()) = head;
                timed_out(&RequestLabels::of(&req, &info), &info)
            });
        }
        let labels = RequestLabels::of(req, &info);
        let path = req.uri().path().to_string();
        // A write runs on as its own task when its client stops waiting, as
        // upstream's goroutine does: a request is a sequence of storage
        // transactions (an allocation, then the object), and stopping it
        // between two would leave the first without the second. Each
        // transaction is whole either way; the client learns the outcome by
        // reading.
        let (this, mut req) = (self.clone(), std::mem::take(req));
        let mut task = tokio::spawn(async move { this.authenticated(&mut req).await });
        let waited = match past {
            false => tokio::time::timeout_at(deadline, &mut task).await,
            true => tokio::time::timeout_at(deadline, std::future::pending()).await,
        };
        match waited {
            Ok(Ok(r)) => r,
            // The task is outside the recovery's reach.
            Ok(Err(e)) => panicked(&path, &e.to_string()),
            Err(_) => timed_out(&labels, &info),
        }
    }

    /// Authentication, then audit (`crate::audit`) for the authenticated user
    /// and admission's notes (Warning headers and audit annotations) around
    /// [`Filters::authorized`].
    async fn authenticated(&self, req: &mut Request) -> Response {
        if let Err(refused) = self.authenticate(req).await {
            return refused.into_response();
        }
        let started = match crate::audit::start(req) {
            Ok(s) => s,
            Err(refused) => return refused.into_response(),
        };
        let notes = take_notes(req);
        let Some(started) = started else { return notes.finish(self.authorized(req).await) };
        match std::panic::AssertUnwindSafe(self.authorized(req)).catch_unwind().await {
            // Boxed: only an audited request carries its future.
            Ok(resp) => Box::pin(started.finish(notes.finish(resp))).await,
            Err(panic) => {
                started.panicked(panic.as_ref());
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Establishes who is calling, as upstream's authenticator union: the
    /// front proxy's request headers, else the client certificate, else a
    /// bearer token, else anonymous if allowed and no credential failed;
    /// otherwise 401.
    async fn authenticate(&self, req: &mut Request) -> Result<(), StatusError> {
        let authn = &self.authn;
        // For TokenReview, the only handler that checks a token for its
        // client; only a create can be one.
        if req.method() == http::Method::POST {
            req.extensions_mut().insert(authn.tokens.clone());
        }
        if let Some(rh) = &authn.request_header {
            let chain = RequestContext::of(req).and_then(|c| c.peer.chain.as_deref()).unwrap_or(&[]);
            match rh.authenticate(chain, req.headers()) {
                Ok(user) => {
                    rh.clear_headers(req.headers_mut());
                    req.extensions_mut().insert(Arc::new(user));
                    return Ok(());
                }
                Err(RequestHeaderRefusal::Untrusted(why)) => {
                    tracing::debug!("request-header authentication refused: {why}");
                }
                Err(RequestHeaderRefusal::NotApplicable) => {}
            }
        }
        match identify(authn, req).await {
            Ok(user) => {
                req.extensions_mut().insert(user);
                Ok(())
            }
            Err(e) => {
                crate::audit::failed_authentication(req);
                Err(e)
            }
        }
    }

    /// Impersonation, max-in-flight, authorization, the non-resource
    /// endpoints, and request metrics around the handler, which is given
    /// the request.
    async fn authorized(&self, req: &mut Request) -> Response {
        if let Some(refused) = crate::impersonation::impersonate(self.authorizer.as_ref(), req) {
            return refused;
        }
        let _permit = match self.in_flight.admit(req) {
            Ok(p) => p,
            Err(refused) => return refused.into_response(),
        };
        if let Some(refused) = crate::authz::check_request(self.authorizer.as_ref(), req) {
            return refused;
        }
        // Records every served resource request in the request metrics when
        // it ends (a watch when its stream does), and long-running ones while
        // they last.
        let Some(info) = RequestInfo::of(req).filter(|i| i.is_resource_request).cloned() else {
            if let Some(resp) = self.non_resource.serve(req).await {
                return resp;
            }
            return self.handler.handle(std::mem::take(req)).await;
        };
        let labels = RequestLabels::of(req, &info);
        let started = received(req);
        let resp = self.handler.handle(std::mem::take(req)).await;
        let code = resp.status().as_u16();
        // A 404 may mean nobody serves the resource; anything else says someone does.
        if code == 404 && !reportable(&info) {
            return resp;
        }
        let m = metrics::global();
        if !is_long_running(&info) {
            m.observe_request(&labels, code, started.elapsed());
            return resp;
        }
        let finished = WhenStreamEnds { long_running: Some(m.long_running(&labels)), labels, code, started };
        body::hold_until_sent(resp, finished)
    }
}

/// The notes admission leaves (upstream's warning recorder and audit
/// annotations), given to the request and put in the response's Warning
/// headers and the audit event.
struct TakenNotes {
    notes: Arc<crate::registry::Notes>,
    audit: Option<Arc<crate::audit::AuditContext>>,
}

fn take_notes(req: &mut Request) -> TakenNotes {
    let notes = Arc::new(crate::registry::Notes::default());
    RequestContext::of_mut(req).set_notes(notes.clone());
    let audit = crate::audit::context_of(req);
    // Upstream logs a created or replaced object as decoded; a patch is
    // logged as sent, by the audit filter.
    let writes_object =
        RequestInfo::of(req).is_some_and(|i| i.is_resource_request && matches!(i.verb.as_str(), "create" | "update"));
    if writes_object && audit.as_ref().is_some_and(|a| a.wants_request_object()) {
        notes.want_request_object();
    }
    TakenNotes { notes, audit }
}

impl TakenNotes {
    fn finish(self, mut response: Response) -> Response {
        let TakenNotes { notes, audit } = self;
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
        response
    }
}

/// Every way the authentication filter may identify a caller.
pub struct Authenticators {
    pub config: Authentication,
    pub request_header: Option<Arc<RequestHeaderAuthenticator>>,
    /// `config.tokens`, shared with the handlers through request extensions.
    pub tokens: Arc<TokenAuthenticator>,
}

async fn identify(authn: &Authenticators, req: &mut Request) -> Result<Arc<UserInfo>, StatusError> {
    if let Some(u) = RequestContext::of(req).and_then(|c| c.peer.user.as_ref()) {
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

/// What the non-resource endpoints answer from.
pub struct NonResource {
    version: VersionInfo,
    ready_checks: Vec<ReadyCheck>,
    /// The ServiceAccount issuer's OIDC documents, when its issuer is an
    /// https URL (upstream serves them only then).
    discovery: Option<Arc<Discovery>>,
}

impl NonResource {
    /// /healthz, /livez, /readyz (with ?verbose and /<check>), /version,
    /// /metrics and OIDC discovery, for callers the authorizer let through;
    /// None for every other path.
    async fn serve(&self, req: &Request) -> Option<Response> {
        let path = req.uri().path();
        if let Some(resp) = health(&self.ready_checks, path, req.uri().query()) {
            return Some(resp);
        }
        if let (Some(d), &http::Method::GET) = (&self.discovery, req.method()) {
            let doc = match path {
                crate::serviceaccount::OPENID_CONFIG_PATH => Some((&d.configuration, "application/json")),
                crate::serviceaccount::JWKS_PATH => Some((&d.jwks, "application/jwk-set+json")),
                _ => None,
            };
            if let Some((body, content_type)) = doc {
                return Some(
                    http::Response::builder()
                        .status(200)
                        .header(http::header::CONTENT_TYPE, content_type)
                        // Upstream overrides the usual `no-cache` for these documents.
                        .header(http::header::CACHE_CONTROL, "public, max-age=3600")
                        .body(body::full(body.clone()))
                        .unwrap_or_else(|_| http::Response::new(body::empty())),
                );
            }
        }
        if path == "/metrics" && req.method() == http::Method::GET {
            // Boxed: every request's future would otherwise carry it.
            return Some(Box::pin(metrics::global().serve()).await);
        }
        if path == "/version" || path == "/version/" {
            let v = &self.version;
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
            return Some(
                http::Response::builder()
                    .status(200)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body::full(serde_json::to_vec(&info).unwrap_or_default()))
                    .unwrap_or_else(|_| http::Response::new(body::empty())),
            );
        }
        None
    }
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

/// When the request arrived: `within_deadline` sees that every request has
/// a [`RequestContext`] before the filters that ask.
fn received(req: &Request) -> Instant {
    RequestContext::of(req).map_or_else(Instant::now, |c| c.arrived)
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

/// The `?timeout=` a client asked for, a Go duration (upstream's parseTimeout).
fn requested_timeout(query: Option<&str>) -> Result<Option<Duration>, StatusError> {
    let Some(value) = request_info::query_param(query, "timeout").filter(|v| !v.is_empty()) else { return Ok(None) };
    let nanos = crate::duration::parse_duration(&value)
        .map_err(|e| StatusError::bad_request(format!("invalid timeout specified in the request URL - time: {e}")))?;
    Ok(u64::try_from(nanos).ok().filter(|n| *n > 0).map(Duration::from_nanos))
}

/// The 500 for a request whose handler panicked (upstream's
/// WithPanicRecovery), logged with its path.
fn panicked(path: &str, how: &str) -> Response {
    tracing::error!(path, "handler panicked: {how}");
    StatusError::internal("the server could not complete the request").into_response()
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
    read_only: Option<(tokio::sync::Semaphore, usize)>,
    mutating: Option<(tokio::sync::Semaphore, usize)>,
}

impl InFlight {
    pub fn new(limits: &Limits) -> Self {
        let pool = |n: usize| (n > 0).then(|| (tokio::sync::Semaphore::new(n), n));
        InFlight {
            read_only: pool(limits.max_requests_inflight),
            mutating: pool(limits.max_mutating_requests_inflight),
        }
    }

    /// Upstream's max-in-flight filter: at most --max-requests-inflight
    /// read-only and --max-mutating-requests-inflight other requests at once;
    /// one more gets 429 with Retry-After. Long-running requests do not count.
    fn admit(&self, req: &Request) -> Result<Option<Admitted<'_>>, StatusError> {
        let Some(info) = RequestInfo::of(req).filter(|i| !is_long_running(i)) else {
            return Ok(None);
        };
        let mutating = !matches!(info.verb.as_str(), "get" | "list" | "watch");
        let Some((pool, limit)) = (if mutating { &self.mutating } else { &self.read_only }) else { return Ok(None) };
        if let Ok(permit) = pool.try_acquire() {
            let admitted = Admitted { pool, limit: *limit, mutating, permit: Some(permit) };
            admitted.note();
            return Ok(Some(admitted));
        }
        let privileged =
            req.extensions().get::<Arc<UserInfo>>().is_some_and(|u| u.groups.iter().any(|g| g == PRIVILEGED_GROUP));
        if privileged {
            return Ok(None);
        }
        if reportable(info) {
            let labels = RequestLabels::of(req, info);
            metrics::global().observe_dropped(&labels, 429);
            metrics::global().observe_termination(&labels, 429);
        }
        Err(too_many_requests())
    }
}

/// A request's place in its in-flight pool, given back when it is served.
struct Admitted<'a> {
    pool: &'a tokio::sync::Semaphore,
    limit: usize,
    mutating: bool,
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl Admitted<'_> {
    /// Updates the pool's watermark in the metrics.
    fn note(&self) {
        let in_use = self.limit.saturating_sub(self.pool.available_permits());
        metrics::global().note_inflight(self.mutating, in_use as i64);
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.permit.take();
        self.note();
    }
}

/// Upstream's answer when the server is at its in-flight limit.
fn too_many_requests() -> StatusError {
    let mut e =
        StatusError::new(429, crate::status::Reason::TooManyRequests, "Too many requests, please try again later.");
    e.details = Some(Box::new(json!({"retryAfterSeconds": 1})));
    e.retry_after = Some(1);
    e
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
