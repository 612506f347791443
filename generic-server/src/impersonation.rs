//! Impersonation (upstream's WithImpersonation filter): a caller allowed the
//! `impersonate` verb on users, groups, serviceaccounts, uids and userextras
//! acts as the user its `Impersonate-User`, `-Group`, `-Uid` and
//! `-Extra-<key>` headers name. Each thing asked for is authorized on its
//! own; the first refusal is upstream's 403.

use std::sync::Arc;

use crate::authn::UserInfo;
use crate::authz::{Attributes, Authorizer};
use crate::handler::{Request, Response};
use crate::request_info::path_unescape;

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// The ServiceAccount user name prefix (upstream's ServiceAccountUsernamePrefix).
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const ANONYMOUS: &str = "system:anonymous";

/// The namespace and name of a ServiceAccount user name, when it is a valid
/// one (upstream's serviceaccount.SplitUsername).
pub fn split_service_account(username: &str) -> Option<(&str, &str)> {
    let (ns, name) = username.strip_prefix(SERVICE_ACCOUNT_PREFIX)?.split_once(':')?;
    if name.contains(':') || crate::meta::is_dns1123_label(ns).is_some() {
        return None;
    }
    if crate::meta::is_dns1123_subdomain(name).is_some() {
        return None;
    }
    Some((ns, name))
}

/// One thing asked for (upstream builds a v1.ObjectReference for each).
#[derive(Debug, Clone, PartialEq)]
enum Wanted {
    ServiceAccount { namespace: String, name: String },
    User(String),
    Group(String),
    Extra { key: String, value: String },
    Uid(String),
}

impl Wanted {
    /// Go's `%v` of the ObjectReference upstream builds, for its error text:
    /// {Kind Namespace Name UID APIVersion ResourceVersion FieldPath}.
    fn go_value(&self) -> String {
        let (kind, ns, name, version, field) = match self {
            Wanted::ServiceAccount { namespace, name } => ("ServiceAccount", namespace.as_str(), name.as_str(), "", ""),
            Wanted::User(n) => ("User", "", n.as_str(), "", ""),
            Wanted::Group(n) => ("Group", "", n.as_str(), "", ""),
            Wanted::Extra { key, value } => ("UserExtra", "", value.as_str(), "authentication.k8s.io/v1", key.as_str()),
            Wanted::Uid(u) => ("UID", "", u.as_str(), "authentication.k8s.io/v1", ""),
        };
        format!("{{{kind} {ns} {name}  {version}  {field}}}")
    }
}

/// The impersonation the headers ask for, in upstream's order; an error when
/// groups, extras or a uid come without a user.
fn requested(headers: &http::HeaderMap) -> Result<Vec<Wanted>, String> {
    // One pass over the headers rather than a lookup of each impersonation
    // header: every request comes here, and almost none impersonates.
    let (mut user, mut uid) = (None, None);
    let (mut groups, mut extras) = (Vec::new(), Vec::new());
    let lossy = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    for (name, value) in headers {
        match name.as_str() {
            // The first value, as a lookup by name gives it.
            USER => _ = user.get_or_insert(value),
            UID => _ = uid.get_or_insert(value),
            GROUP => groups.push(Wanted::Group(lossy(value))),
            other => {
                if let Some(key) = other.strip_prefix(EXTRA_PREFIX) {
                    extras.push(Wanted::Extra { key: path_unescape(key), value: lossy(value) });
                }
            }
        }
    }
    let [user, uid] = [user, uid].map(|v| v.and_then(|v| v.to_str().ok()).unwrap_or(""));
    let mut out = Vec::new();
    if !user.is_empty() {
        out.push(match split_service_account(user) {
            Some((ns, name)) => Wanted::ServiceAccount { namespace: ns.into(), name: name.into() },
            None => Wanted::User(user.into()),
        });
    }
    out.extend(groups);
    out.extend(extras);
    if !uid.is_empty() {
        out.push(Wanted::Uid(uid.into()));
    }
    if !user.is_empty() || out.is_empty() {
        return Ok(out);
    }
    let shown: Vec<String> = out.iter().map(Wanted::go_value).collect();
    Err(format!("requested [{}] without impersonating a user", shown.join(" ")))
}

/// Applies the request's impersonation headers: None with the request now
/// carrying the impersonated user (and the headers removed), or the answer
/// that refuses it.
pub fn impersonate(authorizer: &dyn Authorizer, req: &mut Request) -> Option<Response> {
    let wanted = match requested(req.headers()) {
        Ok(w) if w.is_empty() => return None,
        Ok(w) => w,
        Err(e) => return Some(crate::authz::internal_error(req, &e)),
    };
    let requestor = req.extensions().get::<Arc<UserInfo>>().cloned().unwrap_or_default();
    let groups_given = req.headers().contains_key(GROUP);
    let mut next = UserInfo::default();
    for w in &wanted {
        let (group, resource, subresource, namespace, name) = match w {
            Wanted::ServiceAccount { namespace, name } => {
                next.name = format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}");
                if !groups_given {
                    next.groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")];
                }
                ("", "serviceaccounts", "", namespace.as_str(), name.as_str())
            }
            Wanted::User(name) => {
                next.name = name.clone();
                ("", "users", "", "", name.as_str())
            }
            Wanted::Group(g) => {
                next.groups.push(g.clone());
                ("", "groups", "", "", g.as_str())
            }
            Wanted::Extra { key, value } => {
                next.extra.entry(key.clone()).or_default().push(value.clone());
                ("authentication.k8s.io", "userextras", key.as_str(), "", value.as_str())
            }
            Wanted::Uid(uid) => {
                next.uid = uid.clone();
                ("authentication.k8s.io", "uids", "", "", uid.as_str())
            }
        };
        let mut attrs = Attributes::resource(&requestor, "impersonate", group, resource, namespace, name);
        attrs.subresource = subresource;
        attrs.api_version = "v1";
        let verdict = authorizer.authorize(&attrs);
        if verdict.error.is_some() || !verdict.allowed() {
            tracing::debug!(requestor = %requestor.name, reason = %verdict.reason, "impersonation forbidden");
            return Some(attrs.forbidden(&verdict.reason).into_response());
        }
    }
    // Every impersonated user is authenticated, unless it is anonymous or
    // the caller said otherwise.
    let has = |g: &str| next.groups.iter().any(|x| x == g);
    if next.name != ANONYMOUS {
        if !has(AUTHENTICATED) && !has(UNAUTHENTICATED) {
            next.groups.push(AUTHENTICATED.into());
        }
    } else if !has(UNAUTHENTICATED) {
        next.groups.push(UNAUTHENTICATED.into());
    }
    tracing::debug!(requestor = %requestor.name, acting_as = %next.name, "impersonating");
    let headers = req.headers_mut();
    headers.remove(USER);
    headers.remove(GROUP);
    headers.remove(UID);
    let extra: Vec<http::HeaderName> =
        headers.keys().filter(|k| k.as_str().starts_with(EXTRA_PREFIX)).cloned().collect();
    for k in extra {
        headers.remove(k);
    }
    req.extensions_mut().insert(Arc::new(next));
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{Decision, Verdict};

    /// Allows impersonating only what `allowed` names (resource/name).
    struct Only(Vec<&'static str>);

    impl Authorizer for Only {
        fn authorize(&self, a: &Attributes<'_>) -> Verdict {
            let key = format!("{}/{}", a.resource, a.name);
            if a.verb == "impersonate" && self.0.contains(&key.as_str()) {
                Verdict::allow("")
            } else {
                Verdict { decision: Decision::NoOpinion, reason: String::new(), error: None }
            }
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut b = http::Request::builder().uri("/api/v1/namespaces/ns/pods");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b.body(bytes::Bytes::new()).unwrap();
        req.extensions_mut().insert(Arc::new(UserInfo { name: "boss".into(), ..Default::default() }));
        req
    }

    #[test]
    fn service_accounts_bring_their_groups() {
        let a = Only(vec!["serviceaccounts/sa"]);
        let mut req = request(&[("Impersonate-User", "system:serviceaccount:ns:sa")]);
        assert!(impersonate(&a, &mut req).is_none());
        let u = req.extensions().get::<Arc<UserInfo>>().unwrap();
        assert_eq!(u.name, "system:serviceaccount:ns:sa");
        assert_eq!(u.groups, ["system:serviceaccounts", "system:serviceaccounts:ns", "system:authenticated"]);
        assert!(req.headers().get("impersonate-user").is_none());
    }

    #[test]
    fn each_part_is_authorized() {
        let a = Only(vec!["users/dave", "groups/qa"]);
        let mut req = request(&[("Impersonate-User", "dave"), ("Impersonate-Group", "qa")]);
        assert!(impersonate(&a, &mut req).is_none());
        let u = req.extensions().get::<Arc<UserInfo>>().unwrap();
        assert_eq!((u.name.as_str(), u.groups.clone()), ("dave", vec!["qa".into(), "system:authenticated".into()]));
        let mut req = request(&[("Impersonate-User", "dave"), ("Impersonate-Group", "ops")]);
        let resp = impersonate(&a, &mut req).unwrap();
        assert_eq!(resp.status(), 403);
        let mut req = request(&[("Impersonate-Extra-Scopes", "view")]);
        assert_eq!(impersonate(&a, &mut req).unwrap().status(), 500);
        assert_eq!(
            requested(request(&[("Impersonate-Group", "g")]).headers()).unwrap_err(),
            "requested [{Group  g    }] without impersonating a user"
        );
    }
}
