//! Auditing, as upstream's apiserver audit: every request gets an audit ID
//! (the client's `Audit-ID` header if it sent one) echoed in the `Audit-ID`
//! response header; when `--audit-policy-file` and `--audit-log-path` are
//! both given, the policy picks a level per request and audit.k8s.io/v1
//! Events are written at each stage: RequestReceived, ResponseStarted (only
//! for long-running requests, when the stream starts), ResponseComplete (when
//! the answer, or the stream, ends) and Panic.
//!
//! Two steps of the filter chain: [`begin`] (outermost) gives the request its
//! ID and, with a log, its [`AuditContext`]; [`start`] (right after
//! authentication) evaluates the policy for the authenticated user and
//! writes RequestReceived, and its [`Started`] the events after. Filters
//! behind it add to the
//! event through the context: [`add_annotation`] (authorization's decision)
//! and [`log_impersonated_user`] (impersonation). Authentication failures are
//! recorded by [`failed_authentication`], as upstream's failed-authentication
//! audit does: one ResponseStarted event.
//!
//! What goes where follows upstream's `audit/request.go`: the objectRef from
//! RequestInfo, completed (after RequestReceived, as upstream's handlers do)
//! from the object a create or update sends; the request object (decoded
//! body, or the patch) from level Request, in the events after
//! RequestReceived; the
//! response object (the JSON a non-streaming answer carries) only at
//! RequestResponse, so lower levels cost no copy of the answer.

pub mod policy;
pub mod sink;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http_body::Body as _;
use serde::Serialize;
use serde_json::{json, Value};

use crate::authn::UserInfo;
use crate::body;
use crate::context::RequestContext;
use crate::filters::is_long_running;
use crate::handler::{Request, Response};
use crate::request_info::RequestInfo;
use crate::status::StatusError;
pub use policy::{Level, Policy, RequestAuditConfig, Stage};
pub use sink::{LogOptions, LogSink, Mode};

/// The request and response header carrying the audit ID (`Audit-ID`).
pub const HEADER: http::HeaderName = http::HeaderName::from_static("audit-id");

/// Upstream cuts longer user agents and says so.
const MAX_USER_AGENT: usize = 1024;

/// The policy and the backend its events go to.
pub struct Auditor {
    policy: Policy,
    sink: LogSink,
    mode: Mode,
}

impl Auditor {
    pub fn new(policy: Policy, sink: LogSink, mode: Mode) -> Arc<Auditor> {
        Arc::new(Auditor { policy, sink, mode })
    }

    /// From the `--audit-*` flags: the policy is loaded and checked whenever
    /// given, the log opened whenever a path is; auditing is on (`Some`) only
    /// with both, as upstream.
    pub fn from_flags(policy_file: Option<&std::path::Path>, log: &LogOptions) -> Result<Option<Arc<Auditor>>, String> {
        let policy = match policy_file {
            Some(p) => Some(Policy::load(p).map_err(|e| format!("loading audit policy file: {e}"))?),
            None => None,
        };
        if log.path.is_empty() {
            return Ok(None);
        }
        let (sink, mode) = LogSink::open(log)?;
        match policy {
            Some(policy) => Ok(Some(Auditor::new(policy, sink, mode))),
            None => {
                tracing::info!("No audit policy file provided, no events will be recorded for log backend");
                Ok(None)
            }
        }
    }
}

/// An audit.k8s.io/v1 Event, its fields in upstream's order.
#[derive(Serialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    kind: &'static str,
    api_version: &'static str,
    level: Level,
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: Stage,
    #[serde(rename = "requestURI")]
    request_uri: String,
    verb: String,
    user: EventUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<EventUser>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_object: Option<Value>,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// authentication.k8s.io/v1 UserInfo.
#[derive(Serialize, Clone, Debug, Default)]
struct EventUser {
    #[serde(skip_serializing_if = "String::is_empty")]
    username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for EventUser {
    fn from(u: &UserInfo) -> Self {
        EventUser {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: u.extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }
}

/// The object a resource request is about.
#[derive(Serialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    subresource: String,
}

/// metav1.MicroTime's form.
fn micro_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

impl Event {
    fn new(id: &str, req: &Request, info: &RequestInfo, user: Option<&UserInfo>, level: Level) -> Event {
        let received = match RequestContext::of(req) {
            Some(c) => chrono::Utc::now() - chrono::Duration::from_std(c.arrived.elapsed()).unwrap_or_default(),
            None => chrono::Utc::now(),
        };
        let mut user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if user_agent.len() > MAX_USER_AGENT {
            let mut cut = MAX_USER_AGENT;
            while !user_agent.is_char_boundary(cut) {
                cut -= 1;
            }
            user_agent.truncate(cut);
            user_agent.push_str("...TRUNCATED");
        }
        let object_ref = info.is_resource_request.then(|| ObjectRef {
            namespace: info.namespace.to_string(),
            name: info.name.to_string(),
            resource: info.resource.to_string(),
            subresource: info.subresource.to_string(),
            api_group: info.api_group.to_string(),
            api_version: info.api_version.to_string(),
            ..Default::default()
        });
        let received = micro_time(received);
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id: id.to_string(),
            stage: Stage::RequestReceived,
            request_uri: req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default(),
            verb: info.verb.to_string(),
            user: user.map(EventUser::from).unwrap_or_default(),
            impersonated_user: None,
            source_ips: source_ips(req),
            user_agent,
            object_ref,
            response_status: None,
            request_object: None,
            response_object: None,
            stage_timestamp: received.clone(),
            request_received_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// Upstream's legacy log format: one `AUDIT:` line of key="value" pairs.
    pub fn legacy_line(&self) -> String {
        let quoted = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(",");
        let (user, groups) = match self.user.username.as_str() {
            "" => ("<none>".to_string(), "<none>".to_string()),
            u => (u.to_string(), if self.user.groups.is_empty() { "<none>".into() } else { quoted(&self.user.groups) }),
        };
        let (as_user, as_groups) = match &self.impersonated_user {
            Some(i) => (i.username.clone(), if i.groups.is_empty() { "<lookup>".into() } else { quoted(&i.groups) }),
            None => ("<self>".to_string(), "<lookup>".to_string()),
        };
        let namespace = self.object_ref.as_ref().map(|o| o.namespace.as_str()).filter(|n| !n.is_empty());
        let response = match self.response_status.as_ref().and_then(|s| s.get("code")) {
            Some(c) => c.to_string(),
            None => "<deferred>".into(),
        };
        format!(
            "{} AUDIT: id={:?} stage={:?} ip={:?} method={:?} user={:?} groups={:?} as={:?} asgroups={:?} \
             user-agent={:?} namespace={:?} uri={:?} response=\"{}\"",
            rfc3339_nano(&self.request_received_timestamp),
            self.audit_id,
            format!("{:?}", self.stage),
            self.source_ips.first().map(String::as_str).unwrap_or("<unknown>"),
            self.verb,
            user,
            groups,
            as_user,
            as_groups,
            self.user_agent,
            namespace.unwrap_or("<none>"),
            self.request_uri,
            response
        )
    }
}

/// Go's RFC3339Nano form of a MicroTime: the fraction without trailing zeros.
fn rfc3339_nano(micro: &str) -> String {
    match micro.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((secs, frac)) => match frac.trim_end_matches('0') {
            "" => format!("{secs}Z"),
            f => format!("{secs}.{f}Z"),
        },
        None => micro.to_string(),
    }
}

/// Upstream's SourceIPs: the X-Forwarded-For chain, X-Real-Ip if not in it,
/// then the connection's address unless it already ends the chain.
fn source_ips(req: &Request) -> Vec<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut ips: Vec<std::net::IpAddr> =
        header("X-Forwarded-For").split(',').filter_map(|p| p.trim().parse().ok()).collect();
    if let Ok(ip) = header("X-Real-Ip").trim().parse::<std::net::IpAddr>() {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if let Some(addr) = RequestContext::of(req).and_then(|c| c.peer.addr) {
        let ip = addr.ip().to_canonical();
        if ips.last() != Some(&ip) {
            ips.push(ip);
        }
    }
    ips.iter().map(ToString::to_string).collect()
}

/// One request's audit state, shared (through the request's extensions) by
/// every filter and handler behind [`begin`]; only a server with an audit
/// log gives its requests one.
pub struct AuditContext {
    id: String,
    auditor: Arc<Auditor>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    annotations: BTreeMap<String, String>,
    /// Present once the policy chose a level above None.
    active: Option<(Event, RequestAuditConfig)>,
}

impl AuditContext {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, event: Event, config: RequestAuditConfig) {
        self.state().active = Some((event, config));
    }

    /// Writes the event at `stage` unless the policy omits it; false if the
    /// backend lost it.
    fn emit(&self, stage: Stage) -> bool {
        let mut state = self.state();
        let annotations = state.annotations.clone();
        let Some((event, config)) = state.active.as_mut() else { return true };
        if config.omit_stages.contains(&stage) {
            return true;
        }
        event.stage = stage;
        event.stage_timestamp = if stage == Stage::RequestReceived {
            event.request_received_timestamp.clone()
        } else {
            micro_time(chrono::Utc::now())
        };
        event.annotations = annotations;
        let written = self.auditor.sink.process(event);
        crate::metrics::global().observe_audit_event(!written);
        written
    }

    fn update(&self, f: impl FnOnce(&mut Event, &RequestAuditConfig)) {
        if let Some((event, config)) = self.state().active.as_mut() {
            f(event, config);
        }
    }
}

fn context(req: &Request) -> Option<&Arc<AuditContext>> {
    req.extensions().get::<Arc<AuditContext>>()
}

/// Records an annotation on the request's audit event (upstream's
/// AddAuditAnnotation: the first value of a key stays).
pub fn add_annotation(req: &Request, key: &str, value: &str) {
    if let Some(ctx) = context(req) {
        ctx.annotate(key, value);
    }
}

/// Whether the request is audited at all (a log is configured): what
/// annotations would be read.
pub fn is_audited(req: &Request) -> bool {
    context(req).is_some()
}

/// The request's audit context, for a filter that annotates the event after
/// the request has been handed on.
pub fn context_of(req: &Request) -> Option<Arc<AuditContext>> {
    context(req).cloned()
}

impl AuditContext {
    /// Whether the event records the request's object (level Request and
    /// above): the Store then hands over the object it decoded.
    pub fn wants_request_object(&self) -> bool {
        self.state().active.as_ref().is_some_and(|(_, config)| config.level >= Level::Request)
    }

    /// The request's object as the server decoded and defaulted it, which
    /// upstream's handlers log in place of the body as sent.
    pub fn log_decoded_object(&self, mut obj: Value) {
        self.update(|ev, config| {
            if config.omit_managed_fields {
                drop_managed_fields(&mut obj);
            }
            ev.request_object = Some(obj);
        });
    }

    /// Adds an annotation to the event; the first value of a key stays.
    pub fn annotate(&self, key: &str, value: &str) {
        let mut state = self.state();
        match state.annotations.get(key) {
            Some(old) if old != value => {
                tracing::warn!(key, old, value, "audit annotation already set to a different value; keeping it")
            }
            Some(_) => {}
            None => {
                state.annotations.insert(key.to_string(), value.to_string());
            }
        }
    }
}

/// The hook for the impersonation filter: the user it acts as, shown as the
/// event's impersonatedUser (the event's user stays the authenticated one).
pub fn log_impersonated_user(req: &Request, user: &UserInfo) {
    if let Some(ctx) = context(req) {
        ctx.update(|ev, _| ev.impersonated_user = Some(EventUser::from(user)));
    }
}

/// The outermost filter: gives the request its audit ID and, when there is
/// a log to write, the context its event is gathered in. The ID returned
/// goes back in the response ([`echo_id`]).
pub fn begin(auditor: Option<&Arc<Auditor>>, req: &mut Request) -> http::HeaderValue {
    let sent = req.headers().get(&HEADER).filter(|v| !v.is_empty());
    let header = match sent {
        Some(v) => v.clone(),
        None => {
            let mut buf = [0; uuid::fmt::Hyphenated::LENGTH];
            let id: &str = crate::meta::new_uuid().hyphenated().encode_lower(&mut buf);
            let mut header = http::HeaderValue::from_str(id).unwrap_or_else(|_| http::HeaderValue::from_static(""));
            // Never the same twice: HTTP/2's header compression would search
            // its table for it and store it, evicting what does repeat.
            header.set_sensitive(true);
            header
        }
    };
    if let Some(auditor) = auditor {
        let id = String::from_utf8_lossy(header.as_bytes()).into_owned();
        let context = AuditContext { id, auditor: auditor.clone(), state: Mutex::new(State::default()) };
        req.extensions_mut().insert(Arc::new(context));
    }
    header
}

/// The audit ID in the `Audit-ID` response header, unless a server behind
/// (an aggregated one) already set it.
pub fn echo_id(resp: &mut Response, header: http::HeaderValue) {
    if !resp.headers().contains_key(&HEADER) {
        resp.headers_mut().insert(HEADER, header);
    }
}

/// The audit filter proper, behind authentication: evaluates the policy for
/// the authenticated user and, when it asks for events, writes
/// RequestReceived. `Ok(None)` when the request is not audited; an error
/// when the event could not be stored and the log is strict.
pub fn start(req: &Request) -> Result<Option<Started>, StatusError> {
    // Only what a request at level None needs is looked at before the policy
    // decides: most requests cost one evaluation and nothing else.
    let started = context(req).and_then(|ctx| {
        let auditor = &ctx.auditor;
        let info = RequestInfo::of(req)?;
        let user = req.extensions().get::<Arc<UserInfo>>().map(|u| &**u);
        let config = auditor.policy.evaluate(&policy::Attributes { user, info });
        crate::metrics::global().observe_audit_level(config.level.name());
        if config.level == Level::None {
            return None;
        }
        ctx.start(Event::new(&ctx.id, req, info, user, config.level), config.clone());
        Some((ctx.clone(), auditor.mode, info.clone(), config))
    });
    let Some((ctx, mode, info, config)) = started else { return Ok(None) };
    if !ctx.emit(Stage::RequestReceived) && mode == Mode::BlockingStrict {
        crate::metrics::global().observe_audit_rejected();
        return Err(StatusError::internal("failed to store audit event"));
    }
    // As upstream's handlers do once they have decoded the body: after
    // RequestReceived, which therefore never carries it.
    ctx.update(|ev, config| log_request_object(ev, req, &info, config));
    Ok(Some(Started { ctx, info, config }))
}

/// An audited request being served: its event is written when it ends.
pub struct Started {
    ctx: Arc<AuditContext>,
    info: Arc<RequestInfo>,
    config: RequestAuditConfig,
}

impl Started {
    /// Writes the Panic event for a panic behind the filter, which goes on
    /// to the recovery.
    pub fn panicked(&self, panic: &(dyn std::any::Any + Send)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        self.ctx.update(|ev, _| {
            ev.response_status = Some(json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("APIServer panic'd: {what}"),
                "reason": "InternalError",
                "code": 500,
            }))
        });
        self.ctx.emit(Stage::Panic);
    }

    /// Records the answer and writes ResponseComplete (and ResponseStarted
    /// for a long-running request), or has the answer's stream write it when
    /// it ends.
    pub async fn finish(self, resp: Response) -> Response {
        let Started { ctx, info, config } = self;
        let code = resp.status().as_u16();
        let long_running = is_long_running(&info);
        // A long-running request refused before its stream began answers with a
        // Status, whole.
        if long_running && !(code >= 400 && encoded_object(&resp)) {
            ctx.update(|ev, _| ev.response_status = Some(response_status(code, None)));
            ctx.emit(Stage::ResponseStarted);
            return crate::body::hold_until_sent(resp, EmitWhenDropped(ctx));
        }
        let resp = log_response(&ctx, &config, resp, long_running).await;
        if long_running {
            ctx.emit(Stage::ResponseStarted);
        }
        ctx.emit(Stage::ResponseComplete);
        resp
    }
}

/// Held by a long-running answer's body: its ResponseComplete is written
/// when the stream ends or its client leaves.
struct EmitWhenDropped(Arc<AuditContext>);

impl Drop for EmitWhenDropped {
    fn drop(&mut self) {
        self.0.emit(Stage::ResponseComplete);
    }
}

/// Upstream's failed-authentication audit: the request as policy sees an
/// unknown user, one ResponseStarted event with the 401 and the credentials
/// tried. Called by the authentication filter before it refuses.
pub fn failed_authentication(req: &Request) {
    let Some(ctx) = context(req) else { return };
    let Some(info) = RequestInfo::of(req) else { return };
    let config = ctx.auditor.policy.evaluate(&policy::Attributes { user: None, info });
    crate::metrics::global().observe_audit_level(config.level.name());
    if config.level == Level::None {
        return;
    }
    let mut event = Event::new(&ctx.id, req, info, None, config.level);
    event.response_status = Some(json!({"metadata": {}, "message": auth_methods(req), "code": 401}));
    ctx.start(event, config);
    ctx.emit(Stage::ResponseStarted);
}

/// Which credentials a refused request carried, in upstream's words.
fn auth_methods(req: &Request) -> String {
    let mut methods = Vec::new();
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("").trim();
    let mut parts = auth.split(' ');
    if let (Some(scheme), Some(_)) = (parts.next(), parts.next()) {
        if scheme.eq_ignore_ascii_case("basic") {
            methods.push("basic");
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            methods.push("bearer");
        }
    }
    if crate::request_info::query_param(req.uri().query(), "access_token").is_some_and(|t| !t.trim().is_empty()) {
        methods.push("access_token");
    }
    if RequestContext::of(req).is_some_and(|c| c.peer.user.is_some() || c.peer.chain.is_some()) {
        methods.push("x509");
    }
    if methods.is_empty() {
        "Authentication failed, no credentials provided".into()
    } else {
        format!("Authentication failed, attempted: {}", methods.join(", "))
    }
}

/// A body in whichever of the API's encodings it came, as JSON.
fn decode(content_type: Option<&http::HeaderValue>, bytes: &[u8]) -> Option<Value> {
    let ct = content_type.and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ct.starts_with(crate::protobuf::CONTENT_TYPE) {
        return crate::protobuf::decode(bytes).ok();
    }
    serde_json::from_slice(bytes)
        .ok()
        .or_else(|| (ct.contains("yaml")).then(|| serde_yaml::from_slice::<Value>(bytes).ok()).flatten())
}

/// upstream's LogRequestObject and LogRequestPatch: a written object completes
/// the objectRef (name, namespace, uid, resourceVersion it carries) and, from
/// level Request, is the requestObject; a patch is the requestObject as sent.
/// A created or replaced object is replaced, once the Store has decoded and
/// defaulted it, by that object (`AuditContext::log_decoded_object`).
fn log_request_object(ev: &mut Event, req: &Request, info: &RequestInfo, config: &RequestAuditConfig) {
    let object = matches!(info.verb.as_str(), "create" | "update" | "delete" | "deletecollection");
    if !info.is_resource_request || req.body().is_empty() || !(object || info.verb == "patch") {
        return;
    }
    if !object && config.level < Level::Request {
        return;
    }
    let Some(mut obj) = decode(req.headers().get(http::header::CONTENT_TYPE), req.body()) else { return };
    if object {
        if let (Some(r), Some(meta)) = (ev.object_ref.as_mut(), crate::meta::metadata(&obj)) {
            let get = |k: &str| meta.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            for (field, key) in [
                (&mut r.namespace, "namespace"),
                (&mut r.name, "name"),
                (&mut r.uid, "uid"),
                (&mut r.resource_version, "resourceVersion"),
            ] {
                if field.is_empty() {
                    *field = get(key);
                }
            }
        }
        if config.omit_managed_fields {
            drop_managed_fields(&mut obj);
        }
        if info.verb.starts_with("delete") {
            // Upstream re-encodes the options it decoded: typed, in the
            // request's group version, whatever the body said.
            if let Value::Object(m) = &mut obj {
                m.remove("kind");
                m.remove("apiVersion");
                let mut typed = serde_json::Map::new();
                typed.insert("kind".into(), json!("DeleteOptions"));
                typed.insert("apiVersion".into(), json!(info.group_version()));
                typed.append(m);
                *m = typed;
            }
        }
    }
    if config.level >= Level::Request {
        ev.request_object = Some(obj);
    }
}

/// upstream's LogResponseObject: a Status answer's fields go to
/// responseStatus at any level; the answer itself is the responseObject at
/// RequestResponse. Only answers known to be whole (`whole`, or sized) are
/// read, never a stream.
async fn log_response(ctx: &AuditContext, config: &RequestAuditConfig, resp: Response, whole: bool) -> Response {
    let code = resp.status().as_u16();
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    if !(whole || resp.body().size_hint().exact().is_some()) || !encoded_object(&resp) {
        ctx.update(|ev, _| ev.response_status = Some(response_status(code, None)));
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = match http_body_util::BodyExt::collect(body).await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            ctx.update(|ev, _| ev.response_status = Some(response_status(code, None)));
            return StatusError::internal(format!("reading the response: {e}")).into_response();
        }
    };
    let is_json =
        content_type.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/json"));
    // The JSON writer leads with kind, so a Status shows in its first bytes.
    let maybe_status = if is_json { bytes.starts_with(br#"{"kind":"Status""#) } else { code >= 300 };
    let parsed = if config.level >= Level::RequestResponse || maybe_status {
        decode(content_type.as_ref(), &bytes)
    } else {
        None
    };
    let status = parsed.as_ref().filter(|v| v.get("kind").and_then(Value::as_str) == Some("Status"));
    let response_status = response_status(code, status);
    let response_object = (config.level >= Level::RequestResponse).then_some(parsed).flatten().map(|mut v| {
        if config.omit_managed_fields {
            drop_managed_fields(&mut v);
        }
        v
    });
    ctx.update(|ev, _| {
        ev.response_status = Some(response_status);
        ev.response_object = response_object;
    });
    http::Response::from_parts(parts, body::full(bytes))
}

/// Whether an answer is one object in JSON or protobuf (not a watch stream,
/// not text).
fn encoded_object(resp: &Response) -> bool {
    let ct = resp.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    (ct.starts_with("application/json") || ct.starts_with(crate::protobuf::CONTENT_TYPE)) && !ct.contains("stream=")
}

/// metav1.Status as the event carries it: the code, and a Status answer's
/// status, message, reason and details.
fn response_status(code: u16, status: Option<&Value>) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("metadata".into(), json!({}));
    if let Some(s) = status {
        for key in ["status", "message", "reason", "details"] {
            match s.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(v)) if v.is_empty() => {}
                Some(v) => {
                    out.insert(key.into(), v.clone());
                }
            }
        }
    }
    out.insert("code".into(), json!(code));
    Value::Object(out)
}

/// omitManagedFields: an object's, a list's items' and a Table's rows' objects'.
fn drop_managed_fields(v: &mut Value) {
    fn strip(o: &mut Value) {
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
    }
    strip(v);
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip);
    }
    if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
        for row in rows {
            if let Some(o) = row.get_mut("object") {
                strip(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    /// The audit steps of the filter chain around `inner`, writing to `log`.
    async fn serve(
        log: &std::path::Path,
        policy: &str,
        req: Request,
        inner: impl FnOnce(Request) -> Response,
    ) -> Response {
        let opts = LogOptions { path: log.display().to_string(), ..Default::default() };
        let (sink, mode) = LogSink::open(&opts).expect("log");
        let auditor = Arc::new(Auditor::new(Policy::from_bytes(policy.as_bytes()).expect("policy"), sink, mode));
        // The audit steps of the filter chain, in its order.
        let mut req = req;
        let id = begin(Some(&auditor), &mut req);
        let started = start(&req).expect("stored").expect("audited");
        let served = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner(req))) {
            Ok(r) => r,
            Err(panic) => {
                started.panicked(panic.as_ref());
                std::panic::resume_unwind(panic)
            }
        };
        let mut resp = started.finish(served).await;
        echo_id(&mut resp, id);
        resp
    }

    fn request(path: &str) -> Request {
        let mut req = http::Request::builder().uri(path).body(bytes::Bytes::new()).expect("request");
        let info = crate::request_info::parse(&http::Method::GET, path, None);
        RequestContext::of_mut(&mut req).set_info(Arc::new(info));
        req.extensions_mut().insert(Arc::new(UserInfo {
            name: "alice".into(),
            groups: vec!["devs".into()],
            ..Default::default()
        }));
        req
    }

    fn lines(log: &std::path::Path) -> Vec<Value> {
        let text = std::fs::read_to_string(log).expect("log");
        text.lines().map(|l| serde_json::from_str(l).expect("json")).collect()
    }

    const ALL_METADATA: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";

    #[tokio::test]
    async fn hooks_reach_the_event() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("audit.log");
        let resp = serve(&log, ALL_METADATA, request("/api/v1/namespaces/a/pods/p"), |r| {
            log_impersonated_user(&r, &UserInfo { name: "bob".into(), groups: vec!["g".into()], ..Default::default() });
            add_annotation(&r, "authorization.k8s.io/decision", "allow");
            add_annotation(&r, "authorization.k8s.io/decision", "forbid");
            http::Response::new(body::empty())
        })
        .await;
        let events = lines(&log);
        assert_eq!(events.len(), 2);
        assert_eq!(resp.headers().get(&HEADER).and_then(|v| v.to_str().ok()), events[0]["auditID"].as_str());
        // Impersonation happens after the audit filter has written RequestReceived.
        assert!(events[0].get("impersonatedUser").is_none(), "{}", events[0]);
        assert_eq!(events[1]["user"], json!({"username": "alice", "groups": ["devs"]}));
        assert_eq!(events[1]["impersonatedUser"], json!({"username": "bob", "groups": ["g"]}));
        assert_eq!(events[1]["annotations"], json!({"authorization.k8s.io/decision": "allow"}));
    }

    #[tokio::test]
    async fn a_panic_is_recorded_and_passed_on() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("audit.log");
        let served = std::panic::AssertUnwindSafe(serve(&log, ALL_METADATA, request("/version"), |_| {
            panic!("boom");
        }))
        .catch_unwind()
        .await;
        assert!(served.is_err(), "the panic goes on to the recovery filter");
        let events = lines(&log);
        let stages: Vec<&Value> = events.iter().map(|e| &e["stage"]).collect();
        assert_eq!(stages, [&json!("RequestReceived"), &json!("Panic")]);
        assert_eq!(
            events[1]["responseStatus"],
            json!({"metadata": {}, "status": "Failure", "message": "APIServer panic'd: boom", "reason": "InternalError", "code": 500})
        );
    }

    #[test]
    fn legacy_timestamps_are_rfc3339_nano() {
        assert_eq!(rfc3339_nano("2026-12-02T10:22:05.278500Z"), "2026-12-02T10:22:05.2785Z");
        assert_eq!(rfc3339_nano("2026-12-02T10:22:05.000000Z"), "2026-12-02T10:22:05Z");
    }

    #[test]
    fn source_ips_follow_upstream() {
        let mut req = http::Request::builder()
            .header("X-Forwarded-For", "10.0.0.1, bogus, 10.0.0.2")
            .header("X-Real-Ip", "10.0.0.2")
            .body(bytes::Bytes::new())
            .expect("request");
        let from = |addr: &str| {
            let peer = crate::context::Peer { addr: Some(addr.parse().expect("addr")), ..Default::default() };
            RequestContext::new(std::time::Instant::now(), Arc::new(peer))
        };
        req.extensions_mut().insert(from("127.0.0.1:4000"));
        assert_eq!(source_ips(&req), vec!["10.0.0.1", "10.0.0.2", "127.0.0.1"]);
        req.extensions_mut().insert(from("10.0.0.2:4000"));
        assert_eq!(source_ips(&req), vec!["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn managed_fields_dropped_from_objects_lists_and_tables() {
        let mut v = json!({"metadata": {"name": "a", "managedFields": [1]},
            "items": [{"metadata": {"managedFields": [1], "name": "b"}}],
            "rows": [{"object": {"metadata": {"managedFields": [1]}}}]});
        drop_managed_fields(&mut v);
        assert_eq!(
            v,
            json!({"metadata": {"name": "a"}, "items": [{"metadata": {"name": "b"}}], "rows": [{"object": {"metadata": {}}}]})
        );
    }

    #[test]
    fn response_status_copies_a_failure() {
        let s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "m",
                       "reason": "NotFound", "details": {"name": "x"}, "code": 404});
        assert_eq!(
            serde_json::to_string(&response_status(404, Some(&s))).expect("json"),
            r#"{"metadata":{},"status":"Failure","message":"m","reason":"NotFound","details":{"name":"x"},"code":404}"#
        );
        assert_eq!(serde_json::to_string(&response_status(200, None)).expect("json"), r#"{"metadata":{},"code":200}"#);
    }
}
