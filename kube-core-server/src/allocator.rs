//! Service cluster IP and node port allocators (upstream pkg/registry/core/
//! service/ipallocator and portallocator), in memory.
//!
//! Storage holds the truth (the services themselves, and for cluster IPs the
//! IPAddress objects that [`crate::service_ips`] writes for them); the
//! allocators are a cache of which values are taken, learnt at startup with
//! `seed` and re-learnt by `repair` (upstream runs the same repair loop). An allocation
//! made while a create is in flight is *pending* under the new object's uid
//! until `commit` (after the create is stored); a pending allocation whose
//! create failed, was a dry run or lost a race simply expires after
//! [`PENDING_TTL`], because the Strategy hooks cannot tell which happened.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;

/// How long an uncommitted allocation is held for the create that made it.
pub const PENDING_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllocError {
    /// Taken by another object.
    Allocated,
    NotInRange,
    Full,
}

#[derive(Debug, Clone)]
struct Slot {
    owner: String,
    committed: bool,
    since: Instant,
}

/// A set of integer offsets `lo..=hi`, some reserved from random allocation.
#[derive(Debug)]
struct Pool {
    lo: u128,
    hi: u128,
    /// Offsets only an explicit request may take (the kubernetes service's IP).
    reserved: Vec<u128>,
    used: Mutex<HashMap<u128, Slot>>,
}

impl Pool {
    fn new(lo: u128, hi: u128, reserved: Vec<u128>) -> Self {
        Pool { lo, hi, reserved, used: Mutex::new(HashMap::new()) }
    }

    fn with_used<T>(&self, f: impl FnOnce(&mut HashMap<u128, Slot>) -> T) -> T {
        // A poisoned lock only means another thread panicked mid-update of a
        // plain map; the map itself is still consistent.
        let mut g = self.used.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|_, s| s.committed || s.since.elapsed() < PENDING_TTL);
        f(&mut g)
    }

    fn in_range(&self, n: u128) -> bool {
        (self.lo..=self.hi).contains(&n)
    }

    fn allocate(&self, n: u128, owner: &str, committed: bool) -> Result<(), AllocError> {
        if !self.in_range(n) {
            return Err(AllocError::NotInRange);
        }
        self.with_used(|used| match used.get_mut(&n) {
            Some(s) if s.owner == owner => {
                s.committed |= committed;
                Ok(())
            }
            Some(_) => Err(AllocError::Allocated),
            None => {
                used.insert(n, Slot { owner: owner.to_string(), committed, since: Instant::now() });
                Ok(())
            }
        })
    }

    fn allocate_next(&self, owner: &str, committed: bool) -> Result<u128, AllocError> {
        let free_count = |used: &HashMap<u128, Slot>| {
            let total = self.hi - self.lo + 1;
            let taken = used.len() as u128 + self.reserved.iter().filter(|r| !used.contains_key(r)).count() as u128;
            total.saturating_sub(taken)
        };
        self.with_used(|used| {
            if free_count(used) == 0 {
                return Err(AllocError::Full);
            }
            let mut rng = rand::rng();
            let ok = |n: &u128, used: &HashMap<u128, Slot>| !used.contains_key(n) && !self.reserved.contains(n);
            // Random probing finds a free value quickly unless nearly full;
            // then a scan from a random start settles it.
            let mut pick = None;
            for _ in 0..64 {
                let n = rng.random_range(self.lo..=self.hi);
                if ok(&n, used) {
                    pick = Some(n);
                    break;
                }
            }
            if pick.is_none() {
                let start = rng.random_range(self.lo..=self.hi);
                let span = self.hi - self.lo + 1;
                // Bounded so a huge (IPv6) range cannot spin for long.
                for i in 0..span.min(1 << 20) {
                    let n = self.lo + (start - self.lo + i) % span;
                    if ok(&n, used) {
                        pick = Some(n);
                        break;
                    }
                }
            }
            let n = pick.ok_or(AllocError::Full)?;
            used.insert(n, Slot { owner: owner.to_string(), committed, since: Instant::now() });
            Ok(n)
        })
    }

    /// Marks `n` taken by `owner` whoever held it (storage says so).
    fn claim(&self, n: u128, owner: &str) {
        if self.in_range(n) {
            self.with_used(|used| {
                used.insert(n, Slot { owner: owner.to_string(), committed: true, since: Instant::now() })
            });
        }
    }

    fn commit(&self, owner: &str) {
        self.with_used(|used| {
            for s in used.values_mut().filter(|s| s.owner == owner) {
                s.committed = true;
            }
        })
    }

    fn release(&self, n: u128, owner: &str) {
        self.with_used(|used| {
            if used.get(&n).is_some_and(|s| s.owner == owner) {
                used.remove(&n);
            }
        })
    }

    fn release_owner(&self, owner: &str) {
        self.with_used(|used| used.retain(|_, s| s.owner != owner))
    }

    fn is_allocated(&self, n: u128) -> bool {
        self.with_used(|used| used.contains_key(&n))
    }

    fn owned_by(&self, owner: &str) -> Vec<u128> {
        let mut v: Vec<u128> =
            self.with_used(|used| used.iter().filter(|(_, s)| s.owner == owner).map(|(n, _)| *n).collect());
        v.sort_unstable();
        v
    }

    /// Replaces every committed allocation with `entries` (from storage),
    /// keeping pending ones, whose creates may still be in flight.
    fn reset(&self, entries: &[(u128, String)]) {
        self.with_used(|used| {
            used.retain(|_, s| !s.committed);
            for (n, owner) in entries {
                if self.in_range(*n) {
                    used.insert(*n, Slot { owner: owner.clone(), committed: true, since: Instant::now() });
                }
            }
        })
    }
}

/// Cluster IPs of one CIDR. The network address (and, for IPv4, the
/// broadcast address) are never handed out; the first address after the
/// network address is kept for the `kubernetes` service.
#[derive(Debug)]
struct IpRange {
    cidr: String,
    base: u128,
    v6: bool,
    pool: Pool,
}

impl IpRange {
    fn new(cidr: &str) -> Result<Self, String> {
        let (addr, bits) =
            cidr.split_once('/').ok_or_else(|| format!("invalid CIDR {cidr:?}: missing prefix length"))?;
        let ip: IpAddr = addr.parse().map_err(|e| format!("invalid CIDR {cidr:?}: {e}"))?;
        let bits: u32 = bits.parse().map_err(|e| format!("invalid CIDR {cidr:?}: {e}"))?;
        let (v6, width, raw) = match ip {
            IpAddr::V4(a) => (false, 32u32, u128::from(u32::from(a))),
            IpAddr::V6(a) => (true, 128u32, u128::from(a)),
        };
        if bits > width {
            return Err(format!("invalid CIDR {cidr:?}: prefix length above {width}"));
        }
        let host_bits = width - bits;
        if host_bits < 2 {
            return Err(format!("service CIDR {cidr:?} is too small"));
        }
        // Upstream's limit: at most 2^20 addresses (a /12 for IPv4, /108 for IPv6).
        if host_bits > 20 {
            return Err(format!("service CIDR {cidr:?} is too large; the mask must leave at most 20 host bits"));
        }
        let size: u128 = 1u128 << host_bits;
        let mask = !(size - 1);
        let base = raw & mask;
        // IPv4 loses the broadcast address; IPv6 has none.
        let last = if v6 { size - 1 } else { size - 2 };
        Ok(IpRange { cidr: format!("{}/{bits}", Self::render(v6, base)), base, v6, pool: Pool::new(1, last, vec![1]) })
    }

    fn render(v6: bool, n: u128) -> IpAddr {
        if v6 {
            IpAddr::V6(n.into())
        } else {
            IpAddr::V4((n as u32).into())
        }
    }

    fn offset(&self, ip: IpAddr) -> Option<u128> {
        let raw = match (ip, self.v6) {
            (IpAddr::V4(a), false) => u128::from(u32::from(a)),
            (IpAddr::V6(a), true) => u128::from(a),
            _ => return None,
        };
        raw.checked_sub(self.base).filter(|o| self.pool.in_range(*o))
    }

    fn cidr(&self) -> &str {
        &self.cidr
    }

    fn family(&self) -> IpFamily {
        if self.v6 {
            IpFamily::V6
        } else {
            IpFamily::V4
        }
    }

    /// The address kept for the `kubernetes` service.
    fn first(&self) -> IpAddr {
        Self::render(self.v6, self.base + 1)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.offset(ip).is_some()
    }

    fn allocate(&self, ip: IpAddr, owner: &str) -> Result<(), AllocError> {
        let o = self.offset(ip).ok_or(AllocError::NotInRange)?;
        self.pool.allocate(o, owner, false)
    }

    fn allocate_next(&self, owner: &str) -> Result<IpAddr, AllocError> {
        let o = self.pool.allocate_next(owner, false)?;
        Ok(Self::render(self.v6, self.base + o))
    }

    /// Allocates and commits at once (for writes with no after-hook: updates).
    fn allocate_next_committed(&self, owner: &str) -> Result<IpAddr, AllocError> {
        let o = self.pool.allocate_next(owner, true)?;
        Ok(Self::render(self.v6, self.base + o))
    }

    fn commit(&self, owner: &str) {
        self.pool.commit(owner)
    }

    fn release(&self, ip: IpAddr, owner: &str) {
        if let Some(o) = self.offset(ip) {
            self.pool.release(o, owner)
        }
    }

    fn release_owner(&self, owner: &str) {
        self.pool.release_owner(owner)
    }

    /// Records `ip` as taken by `owner`, committed, replacing any holder: an
    /// IPAddress object found in storage.
    fn claim(&self, ip: IpAddr, owner: &str) {
        if let Some(o) = self.offset(ip) {
            self.pool.claim(o, owner)
        }
    }

    fn is_allocated(&self, ip: IpAddr) -> bool {
        self.offset(ip).is_some_and(|o| self.pool.is_allocated(o))
    }

    fn owned_by(&self, owner: &str) -> Vec<IpAddr> {
        self.pool.owned_by(owner).into_iter().map(|o| Self::render(self.v6, self.base + o)).collect()
    }

    /// Replaces the committed allocations with (ip, owner uid) pairs read from
    /// storage; addresses outside the range are ignored.
    fn reset(&self, entries: &[(IpAddr, String)]) {
        let e: Vec<(u128, String)> =
            entries.iter().filter_map(|(ip, o)| self.offset(*ip).map(|n| (n, o.clone()))).collect();
        self.pool.reset(&e)
    }

    /// The message upstream gives for an address outside the range.
    fn not_in_range_message(&self, ip: &str) -> String {
        format!("the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}", self.cidr)
    }
}

/// An IP family, as spec.ipFamilies names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

impl IpFamily {
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }

    /// The family spec.ipFamilies names `name`, if it is one.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    pub fn other(self) -> Self {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }
}

/// Service cluster IPs from --service-cluster-ip-range: one CIDR, or two of
/// different families for a dual-stack cluster, the first the primary
/// (upstream's serviceIPAllocatorsByFamily and defaultServiceIPFamily).
pub struct IpAllocator {
    ranges: Vec<IpRange>,
}

impl IpAllocator {
    /// Parses the flag: one CIDR, or two separated by a comma.
    pub fn new(flag: &str) -> Result<Self, String> {
        let ranges = flag.split(',').map(|c| IpRange::new(c.trim())).collect::<Result<Vec<_>, _>>()?;
        match ranges.as_slice() {
            [_] => {}
            [a, b] if a.family() != b.family() => {}
            [_, _] => {
                return Err(format!(
                    "--service-cluster-ip-range {flag:?}: the two CIDRs must be of different IP families"
                ))
            }
            _ => return Err(format!("--service-cluster-ip-range {flag:?}: at most two CIDRs, one of each IP family")),
        }
        Ok(IpAllocator { ranges })
    }

    fn primary(&self) -> &IpRange {
        &self.ranges[0]
    }

    fn range_of(&self, ip: IpAddr) -> Option<&IpRange> {
        self.ranges.iter().find(|r| r.family() == IpFamily::of(ip))
    }

    /// The primary CIDR.
    pub fn cidr(&self) -> &str {
        self.primary().cidr()
    }

    /// Every CIDR, the primary first, as the default ServiceCIDR lists them.
    pub fn cidrs(&self) -> Vec<String> {
        self.ranges.iter().map(|r| r.cidr().to_string()).collect()
    }

    /// The primary family: what a Service that names none gets.
    pub fn family(&self) -> IpFamily {
        self.primary().family()
    }

    pub fn has_family(&self, family: IpFamily) -> bool {
        self.ranges.iter().any(|r| r.family() == family)
    }

    pub fn is_dual_stack(&self) -> bool {
        self.ranges.len() == 2
    }

    /// The primary range's address kept for the `kubernetes` service.
    pub fn first(&self) -> IpAddr {
        self.primary().first()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some_and(|r| r.contains(ip))
    }

    pub fn allocate(&self, ip: IpAddr, owner: &str) -> Result<(), AllocError> {
        self.range_of(ip).ok_or(AllocError::NotInRange)?.allocate(ip, owner)
    }

    /// A free address of `family`, held for `owner` until committed.
    pub fn allocate_next(&self, family: IpFamily, owner: &str) -> Result<IpAddr, AllocError> {
        self.range(family)?.allocate_next(owner)
    }

    /// Allocates and commits at once (for writes with no after-hook: updates).
    pub fn allocate_next_committed(&self, family: IpFamily, owner: &str) -> Result<IpAddr, AllocError> {
        self.range(family)?.allocate_next_committed(owner)
    }

    fn range(&self, family: IpFamily) -> Result<&IpRange, AllocError> {
        self.ranges.iter().find(|r| r.family() == family).ok_or(AllocError::NotInRange)
    }

    pub fn commit(&self, owner: &str) {
        self.ranges.iter().for_each(|r| r.commit(owner))
    }

    pub fn release(&self, ip: IpAddr, owner: &str) {
        if let Some(r) = self.range_of(ip) {
            r.release(ip, owner)
        }
    }

    pub fn release_owner(&self, owner: &str) {
        self.ranges.iter().for_each(|r| r.release_owner(owner))
    }

    /// Records `ip` as taken by `owner`, committed, replacing any holder: an
    /// IPAddress object found in storage.
    pub fn claim(&self, ip: IpAddr, owner: &str) {
        if let Some(r) = self.range_of(ip) {
            r.claim(ip, owner)
        }
    }

    pub fn is_allocated(&self, ip: IpAddr) -> bool {
        self.range_of(ip).is_some_and(|r| r.is_allocated(ip))
    }

    pub fn owned_by(&self, owner: &str) -> Vec<IpAddr> {
        self.ranges.iter().flat_map(|r| r.owned_by(owner)).collect()
    }

    /// Replaces the committed allocations with (ip, owner uid) pairs read from
    /// storage; addresses outside the ranges are ignored.
    pub fn reset(&self, entries: &[(IpAddr, String)]) {
        self.ranges.iter().for_each(|r| r.reset(entries))
    }

    /// The message upstream gives for an address outside the range of its family.
    pub fn not_in_range_message(&self, ip: &str) -> String {
        let range = ip.parse().ok().and_then(|ip| self.range_of(ip)).unwrap_or(self.primary());
        range.not_in_range_message(ip)
    }
}

/// Node ports from an inclusive range (default 30000-32767).
#[derive(Debug)]
pub struct PortAllocator {
    pool: Pool,
    lo: u16,
    hi: u16,
}

impl PortAllocator {
    pub fn new(lo: u16, hi: u16) -> Result<Self, String> {
        if lo == 0 || lo > hi {
            return Err(format!("invalid node port range {lo}-{hi}"));
        }
        Ok(PortAllocator { pool: Pool::new(u128::from(lo), u128::from(hi), Vec::new()), lo, hi })
    }

    /// Parses upstream's "30000-32767" form (a single port is a range of one).
    pub fn parse(range: &str) -> Result<Self, String> {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let lo: u16 = a.trim().parse().map_err(|e| format!("invalid node port range {range:?}: {e}"))?;
        let hi: u16 = b.trim().parse().map_err(|e| format!("invalid node port range {range:?}: {e}"))?;
        Self::new(lo, hi)
    }

    pub fn range(&self) -> String {
        format!("{}-{}", self.lo, self.hi)
    }

    pub fn allocate(&self, port: i64, owner: &str) -> Result<(), AllocError> {
        let p = u128::try_from(port).map_err(|_| AllocError::NotInRange)?;
        self.pool.allocate(p, owner, false)
    }

    pub fn allocate_committed(&self, port: i64, owner: &str) -> Result<(), AllocError> {
        let p = u128::try_from(port).map_err(|_| AllocError::NotInRange)?;
        self.pool.allocate(p, owner, true)
    }

    pub fn allocate_next(&self, owner: &str) -> Result<i64, AllocError> {
        self.pool.allocate_next(owner, false).map(|p| p as i64)
    }

    pub fn allocate_next_committed(&self, owner: &str) -> Result<i64, AllocError> {
        self.pool.allocate_next(owner, true).map(|p| p as i64)
    }

    pub fn commit(&self, owner: &str) {
        self.pool.commit(owner)
    }

    pub fn release_owner(&self, owner: &str) {
        self.pool.release_owner(owner)
    }

    pub fn is_allocated(&self, port: i64) -> bool {
        u128::try_from(port).is_ok_and(|p| self.pool.is_allocated(p))
    }

    pub fn reset(&self, entries: &[(i64, String)]) {
        let e: Vec<(u128, String)> =
            entries.iter().filter_map(|(p, o)| u128::try_from(*p).ok().map(|n| (n, o.clone()))).collect();
        self.pool.reset(&e)
    }

    pub fn not_in_range_message(&self) -> String {
        format!("provided port is not in the valid range. The range of valid ports is {}", self.range())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_range_reserves_first_and_skips_network_and_broadcast() {
        let a = IpAllocator::new("10.0.0.0/29").unwrap();
        assert_eq!(a.first().to_string(), "10.0.0.1");
        assert_eq!(a.family(), IpFamily::V4);
        assert!(!a.contains("10.0.0.0".parse().unwrap()));
        assert!(!a.contains("10.0.0.7".parse().unwrap()));
        assert!(a.contains("10.0.0.6".parse().unwrap()));
        // .2 to .6 are dynamic: five of them, never .1.
        let mut got: Vec<String> =
            (0..5).map(|i| a.allocate_next(IpFamily::V4, &format!("o{i}")).unwrap().to_string()).collect();
        got.sort();
        assert_eq!(got, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        assert_eq!(a.allocate_next(IpFamily::V4, "x"), Err(AllocError::Full));
        // The kubernetes service may still ask for .1 explicitly.
        assert_eq!(a.allocate(a.first(), "k"), Ok(()));
        assert_eq!(a.allocate("10.0.0.3".parse().unwrap(), "y"), Err(AllocError::Allocated));
        assert_eq!(a.allocate("10.1.0.3".parse().unwrap(), "y"), Err(AllocError::NotInRange));
        assert_eq!(a.allocate("::1".parse().unwrap(), "y"), Err(AllocError::NotInRange));
    }

    #[test]
    fn owners_commit_release_and_reset() {
        let a = IpAllocator::new("10.0.0.0/24").unwrap();
        let ip = a.allocate_next(IpFamily::V4, "svc-a").unwrap();
        // The same owner asking again is not a conflict (create retries).
        assert_eq!(a.allocate(ip, "svc-a"), Ok(()));
        assert_eq!(a.allocate(ip, "svc-b"), Err(AllocError::Allocated));
        a.commit("svc-a");
        assert_eq!(a.owned_by("svc-a"), vec![ip]);
        a.release_owner("svc-a");
        assert!(!a.is_allocated(ip));
        let seeded: IpAddr = "10.0.0.50".parse().unwrap();
        a.reset(&[(seeded, "old".into()), ("192.168.0.1".parse().unwrap(), "elsewhere".into())]);
        assert!(a.is_allocated(seeded));
        assert_eq!(a.allocate(seeded, "new"), Err(AllocError::Allocated));
        assert_eq!(
            a.not_in_range_message("1.2.3.4"),
            "the provided IP (1.2.3.4) is not in the valid range. The range of valid IPs is 10.0.0.0/24"
        );
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(IpAllocator::new("10.0.0.7/24").unwrap().cidr(), "10.0.0.0/24");
        assert!(IpAllocator::new("10.0.0.0").is_err());
        assert!(IpAllocator::new("10.0.0.0/31").is_err());
        assert!(IpAllocator::new("nonsense/8").is_err());
        let v6 = IpAllocator::new("fd00::/108").unwrap();
        assert_eq!(v6.family(), IpFamily::V6);
        assert_eq!(v6.first().to_string(), "fd00::1");
        assert!(v6.contains(v6.allocate_next(IpFamily::V6, "x").unwrap()));
        assert_eq!(v6.allocate_next(IpFamily::V4, "x"), Err(AllocError::NotInRange));
        assert!(IpAllocator::new("10.0.0.0/24,10.1.0.0/24").is_err(), "two of one family");
        assert!(IpAllocator::new("10.0.0.0/24,fd00::/108,fd01::/108").is_err(), "three");
    }

    #[test]
    fn dual_stack_ranges_by_family() {
        let a = IpAllocator::new("fd00::/108, 10.0.0.0/24").unwrap();
        assert!(a.is_dual_stack());
        assert_eq!(a.family(), IpFamily::V6, "the first range is the primary");
        assert_eq!(a.cidrs(), ["fd00::/108", "10.0.0.0/24"]);
        assert_eq!(a.first().to_string(), "fd00::1");
        let v4 = a.allocate_next(IpFamily::V4, "s").unwrap();
        let v6 = a.allocate_next(IpFamily::V6, "s").unwrap();
        assert!(v4.is_ipv4() && v6.is_ipv6());
        a.commit("s");
        assert_eq!(a.owned_by("s").len(), 2);
        assert_eq!(a.allocate(v4, "t"), Err(AllocError::Allocated));
        assert!(a.not_in_range_message("fe80::1").ends_with("The range of valid IPs is fd00::/108"));
        assert!(a.not_in_range_message("1.2.3.4").ends_with("The range of valid IPs is 10.0.0.0/24"));
        a.release_owner("s");
        assert!(!a.is_allocated(v4) && !a.is_allocated(v6));
    }

    #[test]
    fn node_ports() {
        let p = PortAllocator::parse("30000-30002").unwrap();
        assert_eq!(p.allocate(30001, "a"), Ok(()));
        assert_eq!(p.allocate(30001, "b"), Err(AllocError::Allocated));
        assert_eq!(p.allocate(80, "b"), Err(AllocError::NotInRange));
        let n1 = p.allocate_next("b").unwrap();
        let n2 = p.allocate_next("c").unwrap();
        assert!(n1 != n2 && n1 != 30001 && n2 != 30001);
        assert_eq!(p.allocate_next("d"), Err(AllocError::Full));
        p.release_owner("b");
        assert!(!p.is_allocated(n1));
        assert!(PortAllocator::parse("5-1").is_err());
        assert_eq!(
            p.not_in_range_message(),
            "provided port is not in the valid range. The range of valid ports is 30000-30002"
        );
    }
}
