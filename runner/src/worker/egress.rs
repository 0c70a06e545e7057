//! Where a worker's `fetch` and `WebSocket` may connect.
//!
//! Enforced by deno's net permission, whose deny rules are checked twice: on
//! the host name the worker wrote, and again (in deno_fetch's connector) on
//! every address that name resolves to, before connecting — so a host name
//! that resolves to `127.0.0.1` cannot bypass an IP rule, and every redirect
//! hop is a new `fetch` that is checked again. Rules are built here as deno
//! descriptors directly, because deno's text syntax cannot spell IPv6 subnets.
//!
//! Whatever the policy, a worker can never reach the runner's own listeners
//! (the API and HTTPS ports on any local address) nor cloud metadata
//! endpoints: those would let one worker manage its neighbours or read the
//! host's credentials.

use std::fmt;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use deno_runtime::deno_permissions::Host;
use deno_runtime::deno_permissions::NetDescriptor;
use deno_runtime::deno_permissions::PermissionDescriptorParser;
use deno_runtime::deno_permissions::Permissions;
use deno_runtime::deno_permissions::PermissionsContainer;
use deno_runtime::deno_permissions::PermissionsOptions;
use deno_runtime::deno_permissions::RuntimePermissionDescriptorParser;
use ipnet::IpNet;
use sys_traits::impls::RealSys;

/// The egress policy chosen in the runner's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressMode {
    /// Any destination except the runner itself and metadata endpoints (development default).
    AllowAll,
    /// Public addresses only: loopback, private, link-local, shared and multicast ranges are
    /// refused (the appliance image's default).
    PublicOnly,
    /// Only these hosts (deno `--allow-net` syntax: `host`, `host:port`, `*.domain`), and
    /// never the runner itself or metadata endpoints.
    AllowList(Vec<String>),
}

impl fmt::Display for EgressMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressMode::AllowAll => f.write_str("allow-all"),
            EgressMode::PublicOnly => f.write_str("public-only"),
            EgressMode::AllowList(hosts) => write!(f, "allow-list({})", hosts.join(",")),
        }
    }
}

/// The `--egress` flag: `allow-all`, `public-only`, or `allow:HOST[,HOST…]`.
impl FromStr for EgressMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "allow-all" => Ok(EgressMode::AllowAll),
            "public-only" => Ok(EgressMode::PublicOnly),
            other => match other.strip_prefix("allow:") {
                Some(list) => {
                    let hosts: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect();
                    if hosts.is_empty() {
                        return Err("allow: needs at least one host".into());
                    }
                    Ok(EgressMode::AllowList(hosts))
                }
                None => Err(format!(
                    "{other:?}: expected allow-all, public-only or allow:HOST[,HOST...]"
                )),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress allow list entry {0:?}: {1}")]
    AllowEntry(String, String),
}

/// Cloud metadata endpoints (AWS, GCP, Azure, OpenStack… use the IPv4 one; AWS also the IPv6).
const METADATA: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
];

/// Ranges that are not public: refused under `public-only`.
const NON_PUBLIC: [&str; 18] = [
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "64:ff9b:1::/48",
    "fc00::/7",
    "fe80::/10",
    "fec0::/10",
    "ff00::/8",
];

/// The rule a refused connection broke, for the worker's error and the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    OwnListener,
    Metadata,
    NonPublic,
    NotAllowListed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::OwnListener => {
                "workers may not connect to the runner's own API or HTTPS ports"
            }
            Refusal::Metadata => "workers may not connect to cloud metadata endpoints",
            Refusal::NonPublic => {
                "egress policy public-only: loopback, private and link-local addresses are refused"
            }
            Refusal::NotAllowListed => "egress policy allow-list: the host is not on the list",
        })
    }
}

/// The policy with the runner's listeners filled in; shared by every worker.
#[derive(Debug)]
pub struct EgressPolicy {
    mode: EgressMode,
    /// The runner's listeners as (address, port) rules.
    own: Vec<(IpNet, u16)>,
    non_public: Vec<IpNet>,
    /// The net permission's rules, made once for every worker.
    parser: Arc<RuntimePermissionDescriptorParser<RealSys>>,
    allow: Vec<NetDescriptor>,
    deny: Vec<NetDescriptor>,
}

impl EgressPolicy {
    /// `listeners` are the addresses the runner actually bound; a wildcard address stands
    /// for every local address (loopback and each interface's).
    pub fn new(mode: EgressMode, listeners: &[SocketAddr]) -> Result<Arc<Self>, EgressError> {
        let parser = Arc::new(RuntimePermissionDescriptorParser::new(RealSys));
        let mut allow = Vec::new();
        if let EgressMode::AllowList(hosts) = &mode {
            for host in hosts {
                allow.push(
                    parser
                        .parse_net_descriptor(host)
                        .map_err(|e| EgressError::AllowEntry(host.clone(), e.to_string()))?,
                );
            }
        }
        let mut local: Vec<IpNet> = vec![
            net("127.0.0.0/8"),
            net("::1/128"),
            net("0.0.0.0/32"),
            net("::/128"),
        ];
        local.extend(interface_addresses().into_iter().map(IpNet::from));
        let mut own = Vec::new();
        for listener in listeners {
            own.push((IpNet::from(listener.ip()), listener.port()));
            for address in &local {
                own.push((*address, listener.port()));
            }
        }
        own.sort();
        own.dedup();
        let non_public: Vec<IpNet> = NON_PUBLIC.iter().map(|n| net(n)).collect();
        let deny = deny_rules(&parser, &mode, &own, &non_public);
        Ok(Arc::new(Self {
            mode,
            own,
            non_public,
            parser,
            allow,
            deny,
        }))
    }

    pub fn mode(&self) -> &EgressMode {
        &self.mode
    }

    /// The net permission for one worker: network through `fetch`/`WebSocket` within this
    /// policy; every other permission is denied, with no prompt.
    pub fn permissions(&self) -> PermissionsContainer {
        let allow_net = match &self.mode {
            EgressMode::AllowList(hosts) => Some(hosts.clone()),
            _ => Some(vec![]),
        };
        let options = PermissionsOptions {
            allow_net,
            prompt: false,
            ..Default::default()
        };
        let mut permissions = Permissions::from_options(self.parser.as_ref(), &options)
            .unwrap_or_else(|_| Permissions::none_without_prompt());
        permissions.net =
            Permissions::new_unary(Some(self.allow.clone()), Some(self.deny.clone()), false);
        PermissionsContainer::new(self.parser.clone(), permissions)
    }

    /// Which rule refused `target` (`host:port`, `[v6]:port` or `host`, as deno names it).
    pub fn refusal(&self, target: &str) -> Refusal {
        let (host, port) = split_target(target);
        let ip = host.parse::<IpAddr>().ok().map(normalize);
        if let Some(ip) = ip {
            if let Some(port) = port {
                if self
                    .own
                    .iter()
                    .any(|(net, p)| *p == port && net.contains(&ip))
                {
                    return Refusal::OwnListener;
                }
            }
            if METADATA.contains(&ip) {
                return Refusal::Metadata;
            }
            if self.mode == EgressMode::PublicOnly
                && self.non_public.iter().any(|net| net.contains(&ip))
            {
                return Refusal::NonPublic;
            }
        } else if host.eq_ignore_ascii_case("metadata.google.internal") {
            return Refusal::Metadata;
        } else if self.mode == EgressMode::PublicOnly && host.eq_ignore_ascii_case("localhost") {
            return Refusal::NonPublic;
        }
        match self.mode {
            EgressMode::AllowList(_) => Refusal::NotAllowListed,
            EgressMode::PublicOnly => Refusal::NonPublic,
            EgressMode::AllowAll => Refusal::OwnListener,
        }
    }

    /// The message of the `TypeError` a refused worker sees.
    pub fn explain(&self, api: &str, target: &str) -> String {
        format!(
            "{api}: connection to {target} refused: {}",
            self.refusal(target)
        )
    }
}

/// What the net permission refuses: the runner's own listeners and metadata endpoints always,
/// and under `public-only` every non-public range and `localhost`.
fn deny_rules(
    parser: &RuntimePermissionDescriptorParser<RealSys>,
    mode: &EgressMode,
    own: &[(IpNet, u16)],
    non_public: &[IpNet],
) -> Vec<NetDescriptor> {
    let mut rules: Vec<NetDescriptor> = own
        .iter()
        .map(|(net, port)| NetDescriptor(host_rule(*net), Some(u32::from(*port))))
        .collect();
    rules.extend(METADATA.iter().map(|ip| NetDescriptor(Host::Ip(*ip), None)));
    rules.extend(parser.parse_net_descriptor("metadata.google.internal").ok());
    if *mode == EgressMode::PublicOnly {
        rules.extend(
            non_public
                .iter()
                .map(|net| NetDescriptor(host_rule(*net), None)),
        );
        rules.extend(parser.parse_net_descriptor("localhost").ok());
    }
    rules
}

fn net(text: &str) -> IpNet {
    text.parse().expect("a constant network")
}

/// A single address is an exact rule; a range is a subnet rule.
fn host_rule(net: IpNet) -> Host {
    if net.prefix_len() == net.max_prefix_len() {
        Host::Ip(net.addr())
    } else {
        Host::IpSubnet(net)
    }
}

fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        ip => ip,
    }
}

fn split_target(target: &str) -> (&str, Option<u16>) {
    let target = target.trim().trim_matches('"');
    if let Some(rest) = target.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            return (ip, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match target.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (target, None),
    }
}

/// Every address of this machine's interfaces (a wildcard listener answers on each).
fn interface_addresses() -> Vec<IpAddr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addresses
        .filter_map(|interface| {
            let address = interface.address?;
            if let Some(v4) = address.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            address.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: EgressMode) -> Arc<EgressPolicy> {
        EgressPolicy::new(
            mode,
            &[
                "127.0.0.1:8080".parse().unwrap(),
                "0.0.0.0:8443".parse().unwrap(),
            ],
        )
        .unwrap()
    }

    #[test]
    fn modes_parse_from_the_flag() {
        assert_eq!("allow-all".parse(), Ok(EgressMode::AllowAll));
        assert_eq!("public-only".parse(), Ok(EgressMode::PublicOnly));
        assert_eq!(
            "allow:api.example.com, *.example.org:443".parse(),
            Ok(EgressMode::AllowList(vec![
                "api.example.com".into(),
                "*.example.org:443".into()
            ]))
        );
        assert!("allow:".parse::<EgressMode>().is_err());
        assert!("deny-all".parse::<EgressMode>().is_err());
        assert!(EgressPolicy::new(EgressMode::AllowList(vec!["http://x".into()]), &[]).is_err());
    }

    #[test]
    fn own_listeners_are_refused_under_every_policy() {
        for mode in [EgressMode::AllowAll, EgressMode::PublicOnly] {
            let policy = policy(mode);
            assert_eq!(policy.refusal("127.0.0.1:8080"), Refusal::OwnListener);
            assert_eq!(policy.refusal("127.0.0.2:8443"), Refusal::OwnListener);
            assert_eq!(policy.refusal("[::1]:8443"), Refusal::OwnListener);
            assert_eq!(
                policy.refusal("[::ffff:127.0.0.1]:8080"),
                Refusal::OwnListener
            );
            assert_eq!(policy.refusal("169.254.169.254:80"), Refusal::Metadata);
            assert_eq!(policy.refusal("[fd00:ec2::254]:80"), Refusal::Metadata);
        }
    }

    #[test]
    fn public_only_refuses_private_ranges() {
        let public_only = policy(EgressMode::PublicOnly);
        let open = policy(EgressMode::AllowAll);
        for target in [
            "10.1.2.3:80",
            "192.168.0.1:443",
            "[fe80::1]:80",
            "127.0.0.1:9",
            "localhost:80",
        ] {
            assert_eq!(public_only.refusal(target), Refusal::NonPublic, "{target}");
        }
        assert!(public_only
            .deny
            .contains(&NetDescriptor(Host::IpSubnet(net("fc00::/7")), None)));
        // The allow-all policy keeps private ranges reachable: only the runner and metadata.
        assert!(!open
            .deny
            .contains(&NetDescriptor(Host::IpSubnet(net("10.0.0.0/8")), None)));
        assert!(open.deny.contains(&NetDescriptor(
            Host::Ip("127.0.0.1".parse().unwrap()),
            Some(8080)
        )));
    }

    #[test]
    fn permissions_deny_resolved_addresses() {
        let mut permissions = policy(EgressMode::PublicOnly).permissions();
        let denied = |p: &mut PermissionsContainer, ip: &str, port: u16| {
            p.check_net_resolved(&ip.parse().unwrap(), port, "fetch()")
                .is_err()
        };
        assert!(denied(&mut permissions, "127.0.0.1", 8080));
        assert!(denied(&mut permissions, "10.0.0.1", 80));
        assert!(denied(&mut permissions, "fd12::1", 80));
        assert!(!denied(&mut permissions, "93.184.216.34", 443));
        let mut open = policy(EgressMode::AllowAll).permissions();
        assert!(denied(&mut open, "127.0.0.1", 8080));
        assert!(denied(&mut open, "::1", 8443));
        assert!(!denied(&mut open, "127.0.0.1", 9999));
    }

    #[test]
    fn explanations_name_the_rule() {
        let policy = policy(EgressMode::AllowList(vec!["api.example.com".into()]));
        assert!(policy
            .explain("fetch", "evil.example.com:443")
            .contains("allow-list"));
        assert!(policy
            .explain("fetch", "127.0.0.1:8080")
            .contains("runner's own API"));
    }
}
