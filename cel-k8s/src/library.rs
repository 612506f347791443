//! Upstream's Kubernetes CEL libraries for quantities, URLs, IPs and CIDRs
//! (k8s.io/apiserver/pkg/cel/library: quantity, urls, ip, cidr), declared as
//! overloads on the environment with upstream's function names and type
//! names, so `quantity(self.memory).isLessThan(quantity('4Gi'))` or
//! `cidr(self.podCIDR).containsIP(self.ip)` evaluate as on a real cluster.
//!
//! Every function is linear in its string argument at worst: none expands an
//! exponent or allocates more than a small multiple of its input.

use std::collections::HashMap;
use std::sync::Arc;

use cel::common::types::{Type, INT_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map as CelMap, Opaque};
use cel::{DeclarationError, Env, ExecutionError, Value};

use super::net::{parse_cidr, parse_ip, Cidr, Ip};
use super::quantity::Quantity;
use super::url::{is_url, parse_url, Url};

const QUANTITY: &str = "kubernetes.Quantity";
const URL: &str = "kubernetes.URL";
const IP: &str = "net.IP";
const CIDR: &str = "net.CIDR";

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY
    }
}
impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        URL
    }
}
impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        IP
    }
}
impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        CIDR
    }
}

pub(crate) type Impl = fn(&[Value]) -> Result<Value, ExecutionError>;

/// Runs a library function on plain values: the overloads are chosen by
/// type before this is called, so the arguments are of the declared types.
pub(crate) fn call<'b, 'v>(args: Vec<CowVal<'b, 'v>>, f: Impl) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let values = args.iter().map(|a| Value::try_from(a.as_ref())).collect::<Result<Vec<_>, _>>()?;
    let out: Box<dyn Val> = f(&values)?.try_into()?;
    Ok(CowVal::from(out))
}

pub(crate) fn arg<'a, T: 'static>(args: &'a [Value], i: usize, function: &str) -> Result<&'a T, ExecutionError> {
    match args.get(i) {
        Some(Value::Opaque(o)) => o.downcast_ref::<T>(),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, "no such overload"))
}

pub(crate) fn str_arg<'a>(args: &'a [Value], i: usize, function: &str) -> Result<&'a str, ExecutionError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(ExecutionError::function_error(function, "no such overload")),
    }
}

fn int_arg(args: &[Value], i: usize, function: &str) -> Result<i64, ExecutionError> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        _ => Err(ExecutionError::function_error(function, "no such overload")),
    }
}

pub(crate) fn opaque<T: Opaque>(v: T) -> Value {
    Value::Opaque(Arc::new(v))
}

// --- quantity ---

fn quantity(a: &[Value]) -> Result<Value, ExecutionError> {
    let q = Quantity::parse(str_arg(a, 0, "quantity")?).map_err(|e| ExecutionError::function_error("quantity", e))?;
    Ok(opaque(q))
}
fn is_quantity(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(Quantity::parse(str_arg(a, 0, "isQuantity")?).is_ok()))
}
fn q_sign(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Int(arg::<Quantity>(a, 0, "sign")?.sign()))
}
fn q_cmp(a: &[Value], f: &str) -> Result<std::cmp::Ordering, ExecutionError> {
    Ok(arg::<Quantity>(a, 0, f)?.cmp(arg::<Quantity>(a, 1, f)?))
}
fn q_greater(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(q_cmp(a, "isGreaterThan")?.is_gt()))
}
fn q_less(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(q_cmp(a, "isLessThan")?.is_lt()))
}
fn q_compare(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Int(q_cmp(a, "compareTo")? as i64))
}
fn q_float(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Float(arg::<Quantity>(a, 0, "asApproximateFloat")?.as_approximate_f64()))
}
fn q_as_int(a: &[Value]) -> Result<Value, ExecutionError> {
    let q = arg::<Quantity>(a, 0, "asInteger")?;
    let i = q.as_i64().ok_or_else(|| ExecutionError::function_error("asInteger", "cannot convert value to integer"))?;
    Ok(Value::Int(i))
}
fn q_is_int(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(arg::<Quantity>(a, 0, "isInteger")?.as_i64().is_some()))
}
fn q_arith(a: &[Value], f: &str, sub: bool) -> Result<Value, ExecutionError> {
    let x = arg::<Quantity>(a, 0, f)?;
    let y = match a.get(1) {
        Some(Value::Int(_)) => Quantity::from_int(int_arg(a, 1, f)?),
        _ => arg::<Quantity>(a, 1, f)?.clone(),
    };
    let r = if sub { x.sub(&y) } else { x.add(&y) };
    Ok(opaque(r.map_err(|e| ExecutionError::function_error(f, e))?))
}
fn q_add(a: &[Value]) -> Result<Value, ExecutionError> {
    q_arith(a, "add", false)
}
fn q_sub(a: &[Value]) -> Result<Value, ExecutionError> {
    q_arith(a, "sub", true)
}

// --- url ---

fn url(a: &[Value]) -> Result<Value, ExecutionError> {
    let u = parse_url(str_arg(a, 0, "url")?).map_err(|e| {
        ExecutionError::function_error("url", format!("URL parse error during conversion from string: {e}"))
    })?;
    Ok(opaque(u))
}
fn is_url_fn(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(is_url(str_arg(a, 0, "isURL")?)))
}
fn url_part(a: &[Value], f: &str, part: fn(&Url) -> String) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(part(arg::<Url>(a, 0, f)?))))
}
fn get_scheme(a: &[Value]) -> Result<Value, ExecutionError> {
    url_part(a, "getScheme", |u| u.scheme.clone())
}
fn get_host(a: &[Value]) -> Result<Value, ExecutionError> {
    url_part(a, "getHost", |u| u.host.clone())
}
fn get_hostname(a: &[Value]) -> Result<Value, ExecutionError> {
    url_part(a, "getHostname", |u| u.hostname().to_string())
}
fn get_port(a: &[Value]) -> Result<Value, ExecutionError> {
    url_part(a, "getPort", |u| u.port().to_string())
}
fn get_escaped_path(a: &[Value]) -> Result<Value, ExecutionError> {
    url_part(a, "getEscapedPath", Url::escaped_path)
}
fn get_query(a: &[Value]) -> Result<Value, ExecutionError> {
    let q = arg::<Url>(a, 0, "getQuery")?.query();
    let map: HashMap<Key, Value> = q
        .into_iter()
        .map(|(k, vs)| {
            let list = vs.into_iter().map(|v| Value::String(Arc::new(v))).collect::<Vec<_>>();
            (Key::String(Arc::new(k)), Value::List(Arc::new(list)))
        })
        .collect();
    Ok(Value::Map(CelMap::from(map)))
}

// --- ip ---

fn ip_err(f: &str) -> impl Fn(String) -> ExecutionError + '_ {
    move |e| ExecutionError::function_error(f, e)
}
fn ip(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(opaque(parse_ip(str_arg(a, 0, "ip")?).map_err(ip_err("ip"))?))
}
fn is_ip(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(parse_ip(str_arg(a, 0, "isIP")?).is_ok()))
}
fn ip_is_canonical(a: &[Value]) -> Result<Value, ExecutionError> {
    let s = str_arg(a, 0, "ip.isCanonical")?;
    let parsed = parse_ip(s).map_err(ip_err("ip.isCanonical"))?;
    Ok(Value::Bool(parsed.to_string() == s))
}
fn ip_pred(a: &[Value], f: &str, pred: fn(&Ip) -> bool) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(pred(arg::<Ip>(a, 0, f)?)))
}
fn family(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Int(arg::<Ip>(a, 0, "family")?.family()))
}
fn is_unspecified(a: &[Value]) -> Result<Value, ExecutionError> {
    ip_pred(a, "isUnspecified", Ip::is_unspecified)
}
fn is_loopback(a: &[Value]) -> Result<Value, ExecutionError> {
    ip_pred(a, "isLoopback", Ip::is_loopback)
}
fn is_link_local_multicast(a: &[Value]) -> Result<Value, ExecutionError> {
    ip_pred(a, "isLinkLocalMulticast", Ip::is_link_local_multicast)
}
fn is_link_local_unicast(a: &[Value]) -> Result<Value, ExecutionError> {
    ip_pred(a, "isLinkLocalUnicast", Ip::is_link_local_unicast)
}
fn is_global_unicast(a: &[Value]) -> Result<Value, ExecutionError> {
    ip_pred(a, "isGlobalUnicast", Ip::is_global_unicast)
}
fn ip_string(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(arg::<Ip>(a, 0, "string")?.to_string())))
}

// --- cidr ---

fn to_cidr(s: &str, f: &str) -> Result<Cidr, ExecutionError> {
    parse_cidr(s).map_err(|e| {
        ExecutionError::function_error(f, format!("network address parse error during conversion from string: {e}"))
    })
}
fn cidr(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(opaque(to_cidr(str_arg(a, 0, "cidr")?, "cidr")?))
}
fn is_cidr(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(parse_cidr(str_arg(a, 0, "isCIDR")?).is_ok()))
}
fn contains_ip(a: &[Value]) -> Result<Value, ExecutionError> {
    let c = arg::<Cidr>(a, 0, "containsIP")?;
    let ip = match a.get(1) {
        Some(Value::String(s)) => parse_ip(s).map_err(ip_err("containsIP"))?,
        _ => *arg::<Ip>(a, 1, "containsIP")?,
    };
    Ok(Value::Bool(c.contains_ip(&ip)))
}
fn contains_cidr(a: &[Value]) -> Result<Value, ExecutionError> {
    let c = arg::<Cidr>(a, 0, "containsCIDR")?;
    let other = match a.get(1) {
        Some(Value::String(s)) => to_cidr(s, "containsCIDR")?,
        _ => *arg::<Cidr>(a, 1, "containsCIDR")?,
    };
    Ok(Value::Bool(c.contains_cidr(&other)))
}
fn cidr_ip(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(opaque(Ip(arg::<Cidr>(a, 0, "ip")?.addr)))
}
fn masked(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(opaque(arg::<Cidr>(a, 0, "masked")?.masked()))
}
fn prefix_length(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Int(i64::from(arg::<Cidr>(a, 0, "prefixLength")?.bits)))
}
fn cidr_string(a: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(arg::<Cidr>(a, 0, "string")?.to_string())))
}

macro_rules! global {
    ($env:expr, $name:expr, $id:expr, [$($t:expr),*], $f:expr) => {
        $env.add_overload($name, $id, vec![$($t),*], |args| call(args, $f))?
    };
}
macro_rules! member {
    ($env:expr, $name:expr, $id:expr, $target:expr, [$($t:expr),*], $f:expr) => {
        $env.add_member_overload($name, $id, $target, vec![$($t),*], |args| $crate::library::call(args, $f))?
    };
}
pub(crate) use member;

/// Declares the libraries' types and functions on `env`.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    let (q, u, i, c) = (
        || Type::new_opaque_type(QUANTITY),
        || Type::new_opaque_type(URL),
        || Type::new_opaque_type(IP),
        || Type::new_opaque_type(CIDR),
    );
    for t in [q(), u(), i(), c()] {
        env.add_type(t)?;
    }

    global!(env, "quantity", "string_to_quantity", [STRING_TYPE], quantity);
    global!(env, "isQuantity", "is_quantity_string", [STRING_TYPE], is_quantity);
    // Upstream declares sign as a global overload while documenting it as a
    // method; both spellings are accepted here.
    global!(env, "sign", "quantity_sign", [q()], q_sign);
    member!(env, "sign", "quantity_sign_member", q(), [], q_sign);
    member!(env, "isGreaterThan", "quantity_is_greater_than", q(), [q()], q_greater);
    member!(env, "isLessThan", "quantity_is_less_than", q(), [q()], q_less);
    member!(env, "compareTo", "quantity_compare_to", q(), [q()], q_compare);
    member!(env, "asApproximateFloat", "quantity_get_float", q(), [], q_float);
    member!(env, "asInteger", "quantity_get_int", q(), [], q_as_int);
    member!(env, "isInteger", "quantity_is_integer", q(), [], q_is_int);
    member!(env, "add", "quantity_add", q(), [q()], q_add);
    member!(env, "add", "quantity_add_int", q(), [INT_TYPE], q_add);
    member!(env, "sub", "quantity_sub", q(), [q()], q_sub);
    member!(env, "sub", "quantity_sub_int", q(), [INT_TYPE], q_sub);

    global!(env, "url", "string_to_url", [STRING_TYPE], url);
    global!(env, "isURL", "is_url_string", [STRING_TYPE], is_url_fn);
    member!(env, "getScheme", "url_get_scheme", u(), [], get_scheme);
    member!(env, "getHost", "url_get_host", u(), [], get_host);
    member!(env, "getHostname", "url_get_hostname", u(), [], get_hostname);
    member!(env, "getPort", "url_get_port", u(), [], get_port);
    member!(env, "getEscapedPath", "url_get_escaped_path", u(), [], get_escaped_path);
    member!(env, "getQuery", "url_get_query", u(), [], get_query);

    global!(env, "ip", "string_to_ip", [STRING_TYPE], ip);
    global!(env, "isIP", "is_ip", [STRING_TYPE], is_ip);
    global!(env, "ip.isCanonical", "ip_is_canonical", [STRING_TYPE], ip_is_canonical);
    member!(env, "family", "ip_family", i(), [], family);
    member!(env, "isUnspecified", "ip_is_unspecified", i(), [], is_unspecified);
    member!(env, "isLoopback", "ip_is_loopback", i(), [], is_loopback);
    member!(env, "isLinkLocalMulticast", "ip_is_link_local_multicast", i(), [], is_link_local_multicast);
    member!(env, "isLinkLocalUnicast", "ip_is_link_local_unicast", i(), [], is_link_local_unicast);
    member!(env, "isGlobalUnicast", "ip_is_global_unicast", i(), [], is_global_unicast);
    global!(env, "string", "ip_to_string", [i()], ip_string);

    global!(env, "cidr", "string_to_cidr", [STRING_TYPE], cidr);
    global!(env, "isCIDR", "is_cidr", [STRING_TYPE], is_cidr);
    member!(env, "containsIP", "cidr_contains_ip_string", c(), [STRING_TYPE], contains_ip);
    member!(env, "containsIP", "cidr_contains_ip_ip", c(), [i()], contains_ip);
    member!(env, "containsCIDR", "cidr_contains_cidr_string", c(), [STRING_TYPE], contains_cidr);
    member!(env, "containsCIDR", "cidr_contains_cidr", c(), [c()], contains_cidr);
    member!(env, "ip", "cidr_ip", c(), [], cidr_ip);
    member!(env, "masked", "cidr_masked", c(), [], masked);
    member!(env, "prefixLength", "cidr_prefix_length", c(), [], prefix_length);
    global!(env, "string", "cidr_to_string", [c()], cidr_string);
    Ok(())
}

#[cfg(test)]
mod tests {
    use cel::{Context, Value};

    fn eval(expr: &str) -> Result<Value, String> {
        let program = crate::env().compile(expr).map_err(|e| e.to_string())?;
        let ctx = Context::with_env(crate::env());
        program.execute(&ctx).map_err(|e| e.to_string())
    }

    fn truthy(expr: &str) {
        assert_eq!(eval(expr), Ok(Value::Bool(true)), "{expr}");
    }

    fn fails(expr: &str, want: &str) {
        match eval(expr) {
            Err(e) => assert!(e.contains(want), "{expr}: {e}"),
            Ok(v) => panic!("{expr} evaluated to {v:?}"),
        }
    }

    #[test]
    fn quantity_library() {
        truthy("quantity('1Gi') == quantity('1024Mi')");
        truthy("quantity('200M') == quantity('0.2G') && quantity('2000k') == quantity('2M')");
        truthy("quantity('200M') != quantity('0.3G')");
        truthy("isQuantity('20Mi') && !isQuantity('20Mo') && !isQuantity('10Mm') && !isQuantity('1e99999')");
        truthy("quantity('50M').isLessThan(quantity('50Mi')) && !quantity('100M').isLessThan(quantity('50M'))");
        truthy("quantity('50Mi').isGreaterThan(quantity('50M')) && !quantity('50M').isGreaterThan(quantity('100M'))");
        truthy(
            "quantity('200M').compareTo(quantity('0.2G')) == 0 && quantity('50M').compareTo(quantity('50Mi')) == -1",
        );
        truthy("quantity('50Mi').compareTo(quantity('50M')) == 1");
        truthy("quantity('50k').add(quantity('20')) == quantity('50.02k') && !quantity('50k').add(20).isLessThan(quantity('50020'))");
        truthy(
            "quantity('50k').sub(quantity('20')) == quantity('49.98k') && quantity('50k').sub(20) == quantity('49980')",
        );
        truthy("quantity('50k').add(20).sub(quantity('100k')).sub(-50000).asInteger() == 20");
        truthy("quantity('50k').asInteger() == 50000 && quantity('50').isInteger()");
        truthy("!quantity('9999999999999999999999999999999999999G').isInteger()");
        truthy("quantity('50.703k').asApproximateFloat() == 50703.0");
        truthy("sign(quantity('-5')) == -1 && quantity('5').sign() == 1 && quantity('0').sign() == 0");
        truthy("[quantity('9999999999999999999999999999999999999')].all(x, x.add(quantity('1')).compareTo(x.add(quantity('2'))) == -1)");
        fails("quantity('10Mo')", "quantities must match the regular expression");
        fails("quantity('10Mm')", "unable to parse quantity's suffix");
        fails("quantity('1e40')", "too large");
        fails("quantity('9999999999999999999999999999999999999G').asInteger()", "cannot convert value to integer");
        fails("isQuantity(1)", "isQuantity");
    }

    #[test]
    fn url_library() {
        truthy("isURL('https://example.com:80/path?query=val#fragment') && isURL('/absolute-path')");
        truthy("!isURL('relative/path') && !isURL('') && !isURL('https://exa mple.com')");
        truthy("url('https://example.com:80/').getScheme() == 'https'");
        truthy("url('https://example.com:80/').getHost() == 'example.com:80'");
        truthy("url('https://[::1]:80/').getHostname() == '::1' && url('https://example.com/').getPort() == ''");
        truthy("url('https://example.com:80/').getPort() == '80'");
        truthy("url('https://example.com/with%20space/').getEscapedPath() == '/with%20space/'");
        truthy("url('https://example.com/path?k1=a&k2=b&k2=c').getQuery() == {'k1': ['a'], 'k2': ['b', 'c']}");
        truthy("url('https://example.com/').getQuery() == {}");
        truthy("url('https://example.com/a') == url('https://example.com/a') && url('https://example.com/a') != url('https://example.com/b')");
        fails(
            "url('../relative')",
            "URL parse error during conversion from string: parse \"../relative\": invalid URI for request",
        );
        fails("url('https://a b/')", "invalid character");
    }

    #[test]
    fn ip_library() {
        truthy("isIP('192.168.0.1') && isIP('::1') && !isIP('1.2.3.4.5') && !isIP('::ffff:1.2.3.4') && !isIP('fe80::1%eth0')");
        truthy("ip.isCanonical('127.0.0.1') && ip.isCanonical('2001:db8::abcd') && !ip.isCanonical('2001:DB8::ABCD')");
        truthy("!ip.isCanonical('2001:db8:0:0:0:0:0:1')");
        truthy("ip('192.168.0.1').family() == 4 && ip('::1').family() == 6");
        truthy("ip('0.0.0.0').isUnspecified() && !ip('127.0.0.1').isUnspecified()");
        truthy("ip('127.0.0.1').isLoopback() && ip('::1').isLoopback() && !ip('10.0.0.1').isLoopback()");
        truthy("ip('224.0.0.1').isLinkLocalMulticast() && !ip('224.0.1.1').isLinkLocalMulticast()");
        truthy("ip('fe80::1').isLinkLocalUnicast() && !ip('fec0::1').isLinkLocalUnicast()");
        truthy("ip('192.168.0.1').isGlobalUnicast() && !ip('255.255.255.255').isGlobalUnicast()");
        truthy("string(ip('2001:DB8::1')) == '2001:db8::1' && string(1) == '1'");
        truthy("ip('10.0.0.1') == ip('10.0.0.1') && ip('10.0.0.1') != ip('10.0.0.2')");
        fails("ip('::ffff:1.2.3.4')", "IPv4-mapped IPv6 address \"::ffff:1.2.3.4\" is not allowed");
        fails("ip('fe80::1%eth0')", "with zone value is not allowed");
        fails("ip('1.2.3')", "parse error during conversion from string");
        fails("ip.isCanonical('x')", "parse error");
    }

    #[test]
    fn cidr_library() {
        truthy("isCIDR('192.168.0.0/24') && isCIDR('::1/128') && !isCIDR('192.168.0.0/33') && !isCIDR('::ffff:1.2.3.4/96')");
        truthy(
            "cidr('192.168.0.0/24').containsIP(ip('192.168.0.1')) && cidr('192.168.0.0/24').containsIP('192.168.0.1')",
        );
        truthy("!cidr('192.168.0.0/24').containsIP('192.168.1.1')");
        truthy("cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/25')) && cidr('192.168.0.0/24').containsCIDR('192.168.0.0/24')");
        truthy("!cidr('192.168.0.0/24').containsCIDR('192.168.0.0/23')");
        truthy("cidr('192.168.0.1/24').ip() == ip('192.168.0.1') && cidr('192.168.0.1/24').ip().family() == 4");
        truthy("cidr('192.168.0.1/24').masked() == cidr('192.168.0.0/24') && cidr('192.168.0.1/24') != cidr('192.168.0.0/24')");
        truthy("cidr('192.168.0.0/24').prefixLength() == 24");
        truthy("string(cidr('2001:DB8::/32')) == '2001:db8::/32'");
        fails("cidr('192.168.0.0/33')", "network address parse error during conversion from string");
        fails("cidr('::ffff:1.2.3.4/96')", "IPv4-mapped IPv6 address");
        fails("cidr('10.0.0.0/8').containsIP('nope')", "parse error");
        fails("cidr('10.0.0.0/8').containsCIDR('nope')", "network address parse error");
    }
}
