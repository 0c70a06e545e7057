//! The network settings on the kernel command line, in the kernel's own `ip=` syntax
//! (`Documentation/admin-guide/nfs/nfsroot.rst`), which our kernel does not act on itself
//! (`CONFIG_IP_PNP` is off), so init does:
//!
//! ```text
//! ip=dhcp                                   DHCP on the first Ethernet interface (the default)
//! ip=off | ip=none                          no network besides loopback
//! ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>
//!    e.g. ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3
//!    (an empty client with autoconf dhcp, e.g. ip=:::::eth1:dhcp, is DHCP on that device)
//! ```

use std::net::Ipv4Addr;

/// How to configure the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Dhcp { device: Option<String> },
    Static(Static),
    Off,
}

/// A fixed address from `ip=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Static {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    pub device: Option<String>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ip={value:?} on the kernel command line: {reason}")]
pub struct CmdlineError {
    pub value: String,
    pub reason: String,
}

/// The network mode from a kernel command line: the last `ip=` word counts; none means DHCP.
pub fn parse(cmdline: &str) -> Result<Mode, CmdlineError> {
    match cmdline
        .split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix("ip="))
        .next_back()
    {
        None => Ok(Mode::Dhcp { device: None }),
        Some(value) => parse_ip(value),
    }
}

fn parse_ip(value: &str) -> Result<Mode, CmdlineError> {
    let error = |reason: String| CmdlineError {
        value: value.to_owned(),
        reason,
    };
    match value {
        "dhcp" | "on" | "any" => return Ok(Mode::Dhcp { device: None }),
        "off" | "none" => return Ok(Mode::Off),
        _ => {}
    }
    let fields: Vec<&str> = value.split(':').collect();
    if fields.len() > 9 {
        return Err(error(format!("{} fields, at most 9", fields.len())));
    }
    let field = |i: usize| fields.get(i).copied().filter(|f| !f.is_empty());
    let addr = |i: usize, what: &str| -> Result<Option<Ipv4Addr>, CmdlineError> {
        field(i)
            .map(|f| {
                f.parse::<Ipv4Addr>()
                    .map_err(|_| error(format!("{what} {f:?} is not an IPv4 address")))
            })
            .transpose()
    };
    let device = field(5).map(str::to_owned);
    let autoconf = field(6).unwrap_or("off");
    let Some(address) = addr(0, "client address")? else {
        return match autoconf {
            "dhcp" | "on" | "any" => Ok(Mode::Dhcp { device }),
            _ => Err(error("no client address and autoconf is not dhcp".into())),
        };
    };
    if !matches!(autoconf, "off" | "none") {
        return Err(error(format!(
            "autoconf {autoconf:?} with a fixed address: use off"
        )));
    }
    let prefix = match addr(3, "netmask")? {
        Some(mask) => mask_to_prefix(mask)
            .ok_or_else(|| error(format!("netmask {mask} is not contiguous")))?,
        None => 24,
    };
    let dns = [addr(7, "dns0")?, addr(8, "dns1")?]
        .into_iter()
        .flatten()
        .collect();
    Ok(Mode::Static(Static {
        address,
        prefix,
        gateway: addr(2, "gateway")?,
        hostname: field(4).map(str::to_owned),
        device,
        dns,
    }))
}

/// `255.255.255.0` → 24; `None` for a non-contiguous mask.
pub fn mask_to_prefix(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let prefix = bits.leading_ones();
    (bits.checked_shl(prefix).unwrap_or(0) == 0).then_some(prefix as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_ip_word_means_dhcp_and_the_last_one_wins() {
        assert_eq!(
            parse("console=ttyS0 quiet").unwrap(),
            Mode::Dhcp { device: None }
        );
        assert_eq!(parse("ip=dhcp ip=off").unwrap(), Mode::Off);
        assert_eq!(parse("ip=none").unwrap(), Mode::Off);
    }

    #[test]
    fn full_static_form() {
        let mode = parse("console=ttyS0 ip=10.0.2.15::10.0.2.2:255.255.255.0:sw:eth0:off:10.0.2.3")
            .unwrap();
        assert_eq!(
            mode,
            Mode::Static(Static {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                hostname: Some("sw".into()),
                device: Some("eth0".into()),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
            })
        );
    }

    #[test]
    fn short_static_form_defaults() {
        let Mode::Static(s) = parse("ip=192.168.1.7").unwrap() else {
            panic!("static expected")
        };
        assert_eq!(
            (s.prefix, s.gateway, s.device, s.dns.len()),
            (24, None, None, 0)
        );
    }

    #[test]
    fn dhcp_on_a_named_device() {
        assert_eq!(
            parse("ip=:::::eth1:dhcp").unwrap(),
            Mode::Dhcp {
                device: Some("eth1".into())
            }
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        for bad in [
            "ip=10.0.2.300",
            "ip=10.0.2.15::10.0.2.2:255.0.255.0",
            "ip=:::::eth0:off",
            "ip=10.0.2.15:::::eth0:dhcp",
            "ip=1:2:3:4:5:6:7:8:9:10",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let e = parse("ip=10.0.2.15::gw").unwrap_err();
        assert!(e.to_string().contains("gateway"), "{e}");
    }

    #[test]
    fn masks_convert_to_prefixes() {
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(mask_to_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
    }
}
