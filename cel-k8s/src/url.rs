//! `kubernetes.URL` for CEL: Go's net/url parsing as the Kubernetes library
//! uses it (a string is a URL when url.ParseRequestURI accepts it, and is
//! then read with url.Parse), with the accessors rules call.

use std::collections::BTreeMap;

/// The parts of a parsed URL that the accessors and equality read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: String,
    opaque: String,
    user: Option<String>,
    pub host: String,
    path: String,
    raw_path: String,
    force_query: bool,
    pub raw_query: String,
    fragment: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Path,
    Host,
    Zone,
    UserPassword,
    QueryComponent,
    Fragment,
}

/// RFC 3986's sub-delims.
fn is_sub_delim(c: u8) -> bool {
    matches!(c, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=')
}

fn should_escape(c: u8, mode: Mode) -> bool {
    if c.is_ascii_alphanumeric() {
        return false;
    }
    if matches!(mode, Mode::Host | Mode::Zone)
        && (is_sub_delim(c) || matches!(c, b':' | b'[' | b']' | b'<' | b'>' | b'"'))
    {
        return false;
    }
    match c {
        b'-' | b'_' | b'.' | b'~' => return false,
        b'$' | b'&' | b'+' | b',' | b'/' | b':' | b';' | b'=' | b'?' | b'@' => match mode {
            Mode::Path => return c == b'?',
            Mode::UserPassword => return matches!(c, b'@' | b'/' | b'?' | b':'),
            Mode::QueryComponent => return true,
            Mode::Fragment => return false,
            Mode::Host | Mode::Zone => {}
        },
        _ => {}
    }
    !(mode == Mode::Fragment && matches!(c, b'!' | b'(' | b')' | b'*'))
}

fn unhex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Go's unescape: percent-decoding with each mode's rules.
fn unescape(s: &str, mode: Mode) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let (hi, lo) = match (b.get(i + 1).copied().and_then(unhex), b.get(i + 2).copied().and_then(unhex)) {
                    (Some(h), Some(l)) => (h, l),
                    _ => {
                        let end = (i + 3).min(b.len());
                        return Err(format!("invalid URL escape {:?}", String::from_utf8_lossy(&b[i..end])));
                    }
                };
                // In a host only non-ASCII bytes may be escaped, and "%25"
                // for an IPv6 zone.
                if mode == Mode::Host && hi < 8 && &b[i..i + 3] != b"%25" {
                    return Err(format!("invalid URL escape {:?}", String::from_utf8_lossy(&b[i..i + 3])));
                }
                let v = hi << 4 | lo;
                if mode == Mode::Zone && v < 0x80 && &b[i..i + 3] != b"%25" && should_escape(v, Mode::Host) {
                    return Err(format!("invalid URL escape {:?}", String::from_utf8_lossy(&b[i..i + 3])));
                }
                out.push(v);
                i += 3;
            }
            b'+' => {
                out.push(if mode == Mode::QueryComponent { b' ' } else { b'+' });
                i += 1;
            }
            c => {
                if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape(c, mode) {
                    return Err(format!("invalid character {:?} in host name", (c as char).to_string()));
                }
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn escape(s: &str, mode: Mode) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if should_escape(c, mode) {
            out.push_str(&format!("%{c:02X}"));
        } else {
            out.push(c as char);
        }
    }
    out
}

fn valid_encoded(s: &str, mode: Mode) -> bool {
    s.bytes().all(|c| is_sub_delim(c) || matches!(c, b':' | b'@' | b'[' | b']' | b'%') || !should_escape(c, mode))
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|c| c.is_ascii_digit()))
}

fn get_scheme(raw: &str) -> Result<(&str, &str), String> {
    for (i, c) in raw.bytes().enumerate() {
        match c {
            b'a'..=b'z' | b'A'..=b'Z' => {}
            b'0'..=b'9' | b'+' | b'-' | b'.' if i > 0 => {}
            b':' if i == 0 => return Err("missing protocol scheme".into()),
            b':' => return Ok((&raw[..i], &raw[i + 1..])),
            _ => return Ok(("", raw)),
        }
    }
    Ok(("", raw))
}

fn parse_host(host: &str) -> Result<String, String> {
    if host.starts_with('[') {
        let Some(i) = host.rfind(']') else {
            return Err("missing ']' in host".into());
        };
        let colon_port = &host[i + 1..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
        if let Some(zone) = host[..i].find("%25") {
            return Ok(unescape(&host[..zone], Mode::Host)?
                + &unescape(&host[zone..i], Mode::Zone)?
                + &unescape(&host[i..], Mode::Host)?);
        }
    } else if let Some(i) = host.rfind(':') {
        let colon_port = &host[i..];
        if !valid_optional_port(colon_port) {
            return Err(format!("invalid port {colon_port:?} after host"));
        }
    }
    unescape(host, Mode::Host)
}

fn valid_userinfo(s: &str) -> bool {
    s.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b':'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
                    | b'@'
            )
    })
}

/// Go's url.parse, minus the fields no accessor reads.
fn parse(raw: &str, via_request: bool) -> Result<Url, String> {
    if raw.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err("net/url: invalid control character in URL".into());
    }
    if raw.is_empty() && via_request {
        return Err("empty url".into());
    }
    let mut u = Url {
        scheme: String::new(),
        opaque: String::new(),
        user: None,
        host: String::new(),
        path: String::new(),
        raw_path: String::new(),
        force_query: false,
        raw_query: String::new(),
        fragment: String::new(),
    };
    if raw == "*" {
        u.path = "*".into();
        return Ok(u);
    }
    let (scheme, mut rest) = get_scheme(raw)?;
    u.scheme = scheme.to_ascii_lowercase();
    if rest.ends_with('?') && rest.matches('?').count() == 1 {
        u.force_query = true;
        rest = &rest[..rest.len() - 1];
    } else if let Some((r, q)) = rest.split_once('?') {
        u.raw_query = q.to_string();
        rest = r;
    }
    if !rest.starts_with('/') {
        if !u.scheme.is_empty() {
            u.opaque = rest.to_string();
            return Ok(u);
        }
        if via_request {
            return Err("invalid URI for request".into());
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return Err("first path segment in URL cannot contain colon".into());
        }
    }
    if (!u.scheme.is_empty() || !via_request && !rest.starts_with("///")) && rest.starts_with("//") {
        let (authority, path) = match rest[2..].find('/') {
            Some(i) => (&rest[2..2 + i], &rest[2 + i..]),
            None => (&rest[2..], ""),
        };
        rest = path;
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        u.host = parse_host(host)?;
        if let Some(info) = userinfo {
            if !valid_userinfo(info) {
                return Err("net/url: invalid userinfo".into());
            }
            let mut decoded = Vec::new();
            for part in info.splitn(2, ':') {
                decoded.push(unescape(part, Mode::UserPassword)?);
            }
            u.user = Some(decoded.join(":"));
        }
    }
    u.path = unescape(rest, Mode::Path)?;
    if escape(&u.path, Mode::Path) != rest {
        u.raw_path = rest.to_string();
    }
    Ok(u)
}

/// Upstream's url(): valid as a request URI, then read as url.Parse reads
/// it. The error is the text after "URL parse error during conversion
/// from string: ".
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let wrap = |e: String| format!("parse {raw:?}: {e}");
    parse(raw, true).map_err(wrap)?;
    let (body, frag) = match raw.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (raw, None),
    };
    let mut u = parse(body, false).map_err(wrap)?;
    if let Some(f) = frag {
        u.fragment = unescape(f, Mode::Fragment).map_err(wrap)?;
    }
    Ok(u)
}

pub fn is_url(raw: &str) -> bool {
    parse(raw, true).is_ok()
}

impl Url {
    /// Host without the port, IPv6 brackets removed.
    pub fn hostname(&self) -> &str {
        split_host_port(&self.host).0
    }

    pub fn port(&self) -> &str {
        split_host_port(&self.host).1
    }

    pub fn escaped_path(&self) -> String {
        if !self.raw_path.is_empty()
            && valid_encoded(&self.raw_path, Mode::Path)
            && unescape(&self.raw_path, Mode::Path).as_deref() == Ok(self.path.as_str())
        {
            return self.raw_path.clone();
        }
        if self.path == "*" {
            return "*".into();
        }
        escape(&self.path, Mode::Path)
    }

    /// url.ParseQuery, keeping what parses and dropping the rest, as
    /// URL.Query does.
    pub fn query(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in self.raw_query.split('&') {
            if pair.is_empty() || pair.contains(';') {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let (Ok(k), Ok(v)) = (unescape(k, Mode::QueryComponent), unescape(v, Mode::QueryComponent)) {
                out.entry(k).or_default().push(v);
            }
        }
        out
    }
}

fn split_host_port(host_port: &str) -> (&str, &str) {
    let (mut host, mut port) = (host_port, "");
    if let Some(colon) = host.rfind(':') {
        if valid_optional_port(&host[colon..]) {
            (host, port) = (&host_port[..colon], &host_port[colon + 1..]);
        }
    }
    if host.len() >= 2 && host.starts_with('[') && host.ends_with(']') {
        host = &host[1..host.len() - 1];
    }
    (host, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        parse_url(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn accessors() {
        let u = url("HTTPS://user:pw@example.com:8443/a%20b/c?x=1&x=2&y=a+b#frag");
        assert_eq!(u.scheme, "https");
        assert_eq!(u.host, "example.com:8443");
        assert_eq!(u.hostname(), "example.com");
        assert_eq!(u.port(), "8443");
        assert_eq!(u.escaped_path(), "/a%20b/c");
        let q = u.query();
        assert_eq!(q["x"], vec!["1", "2"]);
        assert_eq!(q["y"], vec!["a b"]);
        let v6 = url("https://[::1]:80/");
        assert_eq!((v6.hostname(), v6.port()), ("::1", "80"));
        assert_eq!(url("https://[::1]").hostname(), "::1");
        assert_eq!(url("/just/a/path").host, "");
        assert_eq!(url("/just/a/path").escaped_path(), "/just/a/path");
        assert_eq!(url("https://example.com").escaped_path(), "");
        assert_eq!(url("mailto:a@example.com").scheme, "mailto");
        assert_eq!(url("/p?a=1;b=2&c=3").query().len(), 1);
    }

    #[test]
    fn refusals() {
        assert!(!is_url(""));
        assert!(!is_url("relative/path"));
        assert!(!is_url("example.com"));
        assert!(!is_url(":foo"));
        assert!(!is_url("https://exa mple.com"));
        assert!(!is_url("https://example.com:port/"));
        assert!(!is_url("https://[::1/"));
        assert!(!is_url("https://a\u{7f}b/"));
        assert!(!is_url("/%zz"));
        assert!(is_url("https://example.com/"));
        assert_eq!(parse_url("example.com").unwrap_err(), "parse \"example.com\": invalid URI for request");
    }

    #[test]
    fn equality_is_by_parts() {
        assert_eq!(url("https://Example.com/a"), url("HTTPS://Example.com/a"));
        assert_ne!(url("https://example.com/a"), url("https://example.com/b"));
    }
}
