//! `net.IP` and `net.CIDR` for CEL: Go's netip parsing and predicates with
//! the Kubernetes library's restrictions (no zones, no IPv4-mapped IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

/// A prefix as netip.Prefix: the address as written (not masked) and the
/// prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

fn is_4in6(a: &Ipv6Addr) -> bool {
    a.to_ipv4_mapped().is_some()
}

/// netip.ParseAddr, zones included so they can be refused by name.
pub fn parse_ip(raw: &str) -> Result<Ip, String> {
    let parse_err = |why: &str| format!("IP Address {raw:?} parse error during conversion from string: {why}");
    if let Some((addr, zone)) = raw.split_once('%') {
        return match addr.parse::<Ipv6Addr>() {
            Ok(_) if zone.is_empty() => Err(parse_err(&format!("ParseAddr({raw:?}): zone must be a non-empty string"))),
            Ok(_) => Err(format!("IP address {raw:?} with zone value is not allowed")),
            Err(_) => Err(parse_err(&format!("ParseAddr({raw:?}): unable to parse IP"))),
        };
    }
    let addr: IpAddr = if raw.contains(':') {
        IpAddr::V6(raw.parse().map_err(|_| parse_err(&format!("ParseAddr({raw:?}): unable to parse IP")))?)
    } else {
        // Rust's parser, like Go's, refuses octal-looking leading zeros.
        IpAddr::V4(raw.parse().map_err(|_| parse_err(&format!("ParseAddr({raw:?}): unable to parse IP")))?)
    };
    if let IpAddr::V6(v6) = addr {
        if is_4in6(&v6) {
            return Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"));
        }
    }
    Ok(Ip(addr))
}

impl Ip {
    pub fn family(&self) -> i64 {
        if self.0.is_ipv4() {
            4
        } else {
            6
        }
    }

    pub fn is_unspecified(&self) -> bool {
        self.0.is_unspecified()
    }

    pub fn is_loopback(&self) -> bool {
        match self.0 {
            IpAddr::V4(a) => a.octets()[0] == 127,
            IpAddr::V6(a) => a == Ipv6Addr::LOCALHOST,
        }
    }

    fn is_multicast(&self) -> bool {
        match self.0 {
            IpAddr::V4(a) => a.octets()[0] & 0xf0 == 0xe0,
            IpAddr::V6(a) => a.octets()[0] == 0xff,
        }
    }

    pub fn is_link_local_multicast(&self) -> bool {
        match self.0 {
            IpAddr::V4(a) => a.octets()[..3] == [224, 0, 0],
            IpAddr::V6(a) => a.segments()[0] & 0xff0f == 0xff02,
        }
    }

    pub fn is_link_local_unicast(&self) -> bool {
        match self.0 {
            IpAddr::V4(a) => a.octets()[..2] == [169, 254],
            IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
        }
    }

    /// As Go: private IPv4 and unique-local IPv6 addresses count as global.
    pub fn is_global_unicast(&self) -> bool {
        if let IpAddr::V4(a) = self.0 {
            if a == Ipv4Addr::UNSPECIFIED || a == Ipv4Addr::BROADCAST {
                return false;
            }
        }
        !self.is_unspecified() && !self.is_loopback() && !self.is_multicast() && !self.is_link_local_unicast()
    }
}

/// netip.Addr.String: dotted IPv4, RFC 5952 IPv6 (Rust's formatting agrees
/// for every address the library accepts, IPv4-mapped ones being refused).
impl std::fmt::Display for Ip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

fn cidr_err(why: String) -> String {
    format!("network address parse error during conversion from string: {why}")
}

/// netip.ParsePrefix with the library's restrictions; the error is
/// upstream's parseCIDR's (which `cidr()` wraps once more).
pub fn parse_cidr(raw: &str) -> Result<Cidr, String> {
    let bad = |why: &str| cidr_err(format!("netip.ParsePrefix({raw:?}): {why}"));
    let Some((addr, bits)) = raw.rsplit_once('/') else {
        return Err(bad("no '/'"));
    };
    if addr.contains('%') {
        return Err(bad("IPv6 zones cannot be present in a prefix"));
    }
    let ip: IpAddr = if addr.contains(':') {
        IpAddr::V6(addr.parse().map_err(|_| bad(&format!("ParseAddr({addr:?}): unable to parse IP")))?)
    } else {
        IpAddr::V4(addr.parse().map_err(|_| bad(&format!("ParseAddr({addr:?}): unable to parse IP")))?)
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let well_formed = !bits.is_empty()
        && bits.len() <= 3
        && bits.bytes().all(|b| b.is_ascii_digit())
        && (bits == "0" || !bits.starts_with('0'));
    let bits: u8 = match bits.parse::<u16>() {
        Ok(b) if well_formed && b <= max => b as u8,
        _ => return Err(bad(&format!("bad bits after slash: {bits:?}"))),
    };
    if let IpAddr::V6(v6) = ip {
        if is_4in6(&v6) {
            return Err(format!("IPv4-mapped IPv6 address {raw:?} is not allowed"));
        }
    }
    Ok(Cidr { addr: ip, bits })
}

fn to_bits(a: IpAddr) -> (u128, u32) {
    match a {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn mask(width: u32, bits: u8) -> u128 {
    let all: u128 = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    if bits == 0 {
        0
    } else {
        all & !((1u128 << (width - u32::from(bits))) - 1)
    }
}

impl Cidr {
    pub fn masked(&self) -> Cidr {
        let (v, width) = to_bits(self.addr);
        let m = v & mask(width, self.bits);
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(m as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(m)),
        };
        Cidr { addr, bits: self.bits }
    }

    /// netip.Prefix.Contains: same family and inside the masked range.
    pub fn contains_ip(&self, ip: &Ip) -> bool {
        let ((a, wa), (b, wb)) = (to_bits(self.addr), to_bits(ip.0));
        wa == wb && (a ^ b) & mask(wa, self.bits) == 0
    }

    /// Upstream: the prefixes overlap and `other` is at least as long.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        let ((a, wa), (b, wb)) = (to_bits(self.addr), to_bits(other.addr));
        let common = self.bits.min(other.bits);
        wa == wb && (a ^ b) & mask(wa, common) == 0 && self.bits <= other.bits
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ip {
        parse_ip(s).unwrap_or_else(|e| panic!("{e}"))
    }
    fn cidr(s: &str) -> Cidr {
        parse_cidr(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn ip_parsing_and_refusals() {
        assert_eq!(ip("192.168.0.1").family(), 4);
        assert_eq!(ip("2001:db8::1").family(), 6);
        assert_eq!(ip("2001:DB8:0:0:0:0:0:1").to_string(), "2001:db8::1");
        assert!(parse_ip("192.168.0.01").is_err());
        assert!(parse_ip("1.2.3").is_err());
        assert_eq!(
            parse_ip("::ffff:1.2.3.4").unwrap_err(),
            "IPv4-mapped IPv6 address \"::ffff:1.2.3.4\" is not allowed"
        );
        assert_eq!(parse_ip("fe80::1%eth0").unwrap_err(), "IP address \"fe80::1%eth0\" with zone value is not allowed");
        assert!(parse_ip("nope").unwrap_err().contains("parse error during conversion from string"));
    }

    #[test]
    fn ip_predicates() {
        assert!(ip("0.0.0.0").is_unspecified() && ip("::").is_unspecified());
        assert!(ip("127.0.0.5").is_loopback() && ip("::1").is_loopback() && !ip("::2").is_loopback());
        assert!(ip("224.0.0.1").is_link_local_multicast() && ip("ff02::1").is_link_local_multicast());
        assert!(!ip("224.0.1.1").is_link_local_multicast() && !ip("ff05::1").is_link_local_multicast());
        assert!(ip("169.254.1.1").is_link_local_unicast() && ip("fe80::1").is_link_local_unicast());
        assert!(ip("10.0.0.1").is_global_unicast() && ip("2001:db8::1").is_global_unicast());
        assert!(ip("fd00::1").is_global_unicast());
        for s in ["255.255.255.255", "0.0.0.0", "127.0.0.1", "224.0.0.1", "169.254.0.1", "::1", "ff02::1", "fe80::1"] {
            assert!(!ip(s).is_global_unicast(), "{s}");
        }
    }

    #[test]
    fn cidrs() {
        let c = cidr("192.168.0.1/24");
        assert_eq!(c.to_string(), "192.168.0.1/24");
        assert_eq!(c.masked().to_string(), "192.168.0.0/24");
        assert_eq!(c.addr.to_string(), "192.168.0.1");
        assert!(c.contains_ip(&ip("192.168.0.200")) && !c.contains_ip(&ip("192.168.1.1")));
        assert!(!c.contains_ip(&ip("::1")));
        assert!(c.contains_cidr(&cidr("192.168.0.0/25")) && c.contains_cidr(&cidr("192.168.0.0/24")));
        assert!(!c.contains_cidr(&cidr("192.168.0.0/23")) && !c.contains_cidr(&cidr("10.0.0.0/25")));
        assert!(cidr("::/0").contains_ip(&ip("2001:db8::1")) && cidr("0.0.0.0/0").contains_ip(&ip("1.2.3.4")));
        assert_eq!(cidr("2001:db8::1/32").masked().to_string(), "2001:db8::/32");
        assert_ne!(cidr("10.0.0.1/8"), cidr("10.0.0.0/8"));
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/08", "::/129", "fe80::%eth0/64", "::ffff:1.2.3.4/120", "x/8"] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }
}
