//! `metav1.Status` errors: every failure a client sees carries upstream's reason
//! and code so that client libraries classify it the same way.

use serde_json::{json, Value};

use crate::body;
use crate::handler::Response;

/// One field-level cause of an Invalid error, as in `metav1.StatusCause`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// Upstream's cause types: FieldValueRequired, FieldValueInvalid, ...
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let msg = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired", message: msg, field: field.into() }
    }
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            Value::Null => "null".into(),
            other => other.to_string(),
        };
        Cause { reason: "FieldValueInvalid", message: format!("Invalid value: {shown}: {detail}"), field: field.into() }
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause { reason: "FieldValueForbidden", message: format!("Forbidden: {detail}"), field: field.into() }
    }
    pub fn not_supported(field: impl Into<String>, value: &Value, allowed: &[&str]) -> Self {
        let quoted: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
        let shown = match value {
            Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        };
        Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {shown}: supported values: {}", quoted.join(", ")),
            field: field.into(),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        Cause { reason: "FieldValueDuplicate", message: format!("Duplicate value: {value}"), field: field.into() }
    }
    pub fn immutable(field: impl Into<String>, value: &Value) -> Self {
        Cause::invalid(field, value, "field is immutable")
    }
    /// The message as upstream prints it in the aggregate: "field: detail".
    pub fn full_message(&self) -> String {
        if self.field.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.field, self.message)
        }
    }
}

/// Declares [`Reason`] from one list of upstream's named reasons: the
/// variant, its name in a Status and the lookup by name all come from it.
macro_rules! reasons {
    ($($r:ident),* $(,)?) => {
        /// upstream's metav1.StatusReason: what a client may act on without
        /// reading the message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            /// StatusReasonUnknown: the Status carries no reason.
            Unknown,
            $($r),*
        }

        impl Reason {
            /// Every reason with a name.
            pub const NAMED: &'static [Reason] = &[$(Reason::$r),*];

            /// The reason as a Status writes it; empty for Unknown.
            pub fn as_str(self) -> &'static str {
                match self {
                    Reason::Unknown => "",
                    $(Reason::$r => stringify!($r)),*
                }
            }
        }
    };
}

reasons!(
    Unauthorized,
    Forbidden,
    NotFound,
    AlreadyExists,
    Conflict,
    Gone,
    Invalid,
    ServerTimeout,
    StoreReadError,
    Timeout,
    TooManyRequests,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    InternalError,
    Expired,
    ServiceUnavailable,
);

impl Reason {
    /// The reason a Status names (a webhook's, a policy's); Unknown for a
    /// name upstream does not define.
    pub fn named(name: &str) -> Reason {
        Reason::NAMED.iter().copied().find(|r| r.as_str() == name).unwrap_or(Reason::Unknown)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct StatusError {
    pub code: u16,
    pub reason: Reason,
    pub message: String,
    /// Boxed: errors travel in every Result, so the common path stays small.
    pub details: Option<Box<Value>>,
    /// Seconds for a Retry-After header (429, 503).
    pub retry_after: Option<u64>,
    /// A fresh continue token, for an expired one (410).
    pub list_continue: Option<String>,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.reason, self.code, self.message)
    }
}

impl std::error::Error for StatusError {}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl StatusError {
    pub fn new(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        StatusError { code, reason, message: message.into(), details: None, retry_after: None, list_continue: None }
    }

    /// upstream's apierrors.IsNotFound.
    pub fn is_not_found(&self) -> bool {
        self.reason == Reason::NotFound
    }

    /// upstream's apierrors.IsAlreadyExists.
    pub fn is_already_exists(&self) -> bool {
        self.reason == Reason::AlreadyExists
    }

    fn with_details(mut self, name: &str, group: &str, kind: &str) -> Self {
        let mut d = serde_json::Map::new();
        if !name.is_empty() {
            d.insert("name".into(), json!(name));
        }
        if !group.is_empty() {
            d.insert("group".into(), json!(group));
        }
        d.insert("kind".into(), json!(kind));
        self.details = Some(Box::new(Value::Object(d)));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, Reason::BadRequest, message)
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(500, Reason::InternalError, format!("Internal error occurred: {message}"))
    }
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(404, Reason::NotFound, format!("{} {name:?} not found", qualified(group, resource)))
            .with_details(name, group, resource)
    }
    /// A resource path no route serves: upstream's router error, as its
    /// serviceErrorHandler turns it into a Status (empty details).
    pub fn no_route() -> Self {
        Self::path_not_found().with_empty_details()
    }
    /// A path nothing serves outside the API's routes (upstream's
    /// NotFoundHandler, an OpenAPI document nobody has): no details.
    pub fn path_not_found() -> Self {
        Self::new(404, Reason::NotFound, "the server could not find the requested resource")
    }
    /// A method no route serves at a path that has routes, as upstream's router
    /// answers it.
    pub fn method_not_allowed() -> Self {
        Self::new(405, Reason::MethodNotAllowed, "the server does not allow this method on the requested resource")
            .with_empty_details()
    }
    fn with_empty_details(mut self) -> Self {
        self.details = Some(Box::new(json!({})));
        self
    }
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(409, Reason::AlreadyExists, format!("{} {name:?} already exists", qualified(group, resource)))
            .with_details(name, group, resource)
    }
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            Reason::Conflict,
            format!("Operation cannot be fulfilled on {} {name:?}: {why}", qualified(group, resource)),
        )
        .with_details(name, group, resource)
    }
    pub fn stale_update(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn forbidden(group: &str, resource: &str, name: &str, why: &str) -> Self {
        if group.is_empty() && resource.is_empty() {
            // No resource (a non-resource path): upstream's message names none.
            return Self::new(403, Reason::Forbidden, format!("forbidden: {why}")).with_empty_details();
        }
        let what = if name.is_empty() {
            qualified(group, resource)
        } else {
            format!("{} {name:?}", qualified(group, resource))
        };
        Self::new(403, Reason::Forbidden, format!("{what} is forbidden: {why}")).with_details(name, group, resource)
    }
    pub fn method_not_supported(group: &str, resource: &str, verb: &str) -> Self {
        Self::new(
            405,
            Reason::MethodNotAllowed,
            format!("{verb} is not supported on resources of kind {:?}", qualified(group, resource)),
        )
        .with_details("", group, resource)
    }
    pub fn unauthorized() -> Self {
        Self::new(401, Reason::Unauthorized, "Unauthorized")
    }
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, Reason::UnsupportedMediaType, format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {content_type:?}"))
    }
    pub fn not_acceptable(accept: &str) -> Self {
        Self::new(406, Reason::NotAcceptable, format!("only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {accept:?}"))
    }
    pub fn too_large() -> Self {
        Self::new(413, Reason::RequestEntityTooLarge, "Request entity too large: limit is 3145728")
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, Reason::Expired, message)
    }
    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, Reason::ServiceUnavailable, message)
    }
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, Reason::Timeout, message)
    }

    /// 422 Invalid with field causes, message formatted as upstream's
    /// `Kind "name" is invalid: [a, b]`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let parts: Vec<String> = causes.iter().map(Cause::full_message).collect();
        let joined = if parts.len() == 1 { parts[0].clone() } else { format!("[{}]", parts.join(", ")) };
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = Self::new(422, Reason::Invalid, format!("{gk} {name:?} is invalid: {joined}"))
            .with_details(name, group, kind);
        if let Some(Value::Object(d)) = e.details.as_deref_mut() {
            let cs: Vec<Value> =
                causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect();
            d.insert("causes".into(), Value::Array(cs));
        }
        e
    }

    /// The metav1.Status, fields in the order upstream writes them.
    pub fn to_status(&self) -> Value {
        let metadata = match &self.list_continue {
            Some(c) => json!({"continue": c}),
            None => json!({}),
        };
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
            "status": "Failure",
            "message": self.message,
        });
        // metav1.Status omits an empty (unknown) reason.
        if self.reason != Reason::Unknown {
            v["reason"] = json!(self.reason.as_str());
        }
        if let Some(d) = &self.details {
            v["details"] = (**d).clone();
        }
        v["code"] = json!(self.code);
        v
    }

    pub fn into_response(self) -> Response {
        let mut b = http::Response::builder().status(self.code).header(http::header::CONTENT_TYPE, "application/json");
        if let Some(s) = self.retry_after {
            b = b.header(http::header::RETRY_AFTER, s.to_string());
        }
        let bytes = crate::wire::json(&self.to_status());
        b.body(body::full(bytes)).unwrap_or_else(|_| http::Response::new(body::empty()))
    }
}

/// A successful Status, as returned by delete of a collection or some deletes.
pub fn success_status(details: Option<Value>) -> Value {
    let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

pub type Result<T> = std::result::Result<T, StatusError>;

/// Go's `%q` of a []string, `["a" "b"]`, as upstream's messages print lists.
pub fn go_quoted(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_by_name() {
        assert_eq!(Reason::NAMED.len(), 19, "metav1 names nineteen reasons");
        for r in Reason::NAMED {
            assert_eq!(Reason::named(r.as_str()), *r);
        }
        assert_eq!(Reason::NotFound.as_str(), "NotFound");
        assert_eq!(Reason::named("Teapot"), Reason::Unknown, "a name upstream does not define");
        assert_eq!(Reason::named(""), Reason::Unknown);
        let unknown = StatusError::new(500, Reason::Unknown, "x").to_status();
        assert!(unknown.get("reason").is_none(), "an unknown reason is left out: {unknown}");
        let gone = StatusError::gone("too old").to_status();
        assert_eq!((gone["reason"].as_str(), gone["code"].as_u64()), (Some("Expired"), Some(410)));
        assert!(StatusError::not_found("apps", "deployments", "d").is_not_found());
        assert!(StatusError::already_exists("", "pods", "p").is_already_exists());
        assert!(!StatusError::conflict("", "pods", "p", "why").is_already_exists(), "both are 409s");
    }
}
