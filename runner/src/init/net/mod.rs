//! The network: loopback, then the first Ethernet interface (or the one `ip=` names) configured by
//! DHCP or statically ([`cmdline`]), through rtnetlink. Name servers go to `/etc/resolv.conf`.

pub mod cmdline;
pub mod dhcp;

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use self::cmdline::Mode;

/// How long init waits for the network device to appear after its driver loaded.
const DEVICE_WAIT: Duration = Duration::from_secs(5);
const RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Cmdline(#[from] cmdline::CmdlineError),
    #[error("no network interface {0}")]
    NoDevice(String),
    #[error("cannot read the hardware address of {device}: {reason}")]
    Mac { device: String, reason: String },
    #[error("DHCP failed: {0}")]
    Dhcp(#[from] dhcp::DhcpError),
    #[error("netlink: cannot {action}: {source}")]
    Netlink {
        action: String,
        source: rtnetlink::Error,
    },
    #[error("cannot start the netlink runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write {RESOLV_CONF}: {0}")]
    ResolvConf(std::io::Error),
}

/// The address configuration applied to the interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// Configures the network as the kernel command line says (DHCP when it says nothing).
pub fn configure(kernel_cmdline: &str) -> Result<(), NetError> {
    let started = Instant::now();
    let mode = cmdline::parse(kernel_cmdline)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(NetError::Runtime)?;
    let handle = runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetError::Runtime)?;
        tokio::spawn(connection);
        set_up(&handle, "lo").await?;
        Ok::<_, NetError>(handle)
    })?;
    let (device, fixed) = match mode {
        Mode::Off => {
            tracing::info!("init: ip=off: loopback only");
            return Ok(());
        }
        Mode::Dhcp { device } => (device, None),
        Mode::Static(s) => (s.device.clone(), Some(s)),
    };
    let device = match device {
        Some(device) => wait_for_device(&device)?,
        None => first_ethernet()?,
    };
    runtime.block_on(set_up(&handle, &device))?;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: {device} up"
    );
    wait_for_carrier(&device);
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: {device} has a carrier"
    );
    let addressing = match fixed {
        None => {
            let mac = mac_address(&device)?;
            let lease = dhcp::obtain(&device, mac)?;
            tracing::info!(
                lease_s = ?lease.lease_time.map(|d| d.as_secs()),
                server = ?lease.server,
                "init: DHCP lease on {device}"
            );
            let addressing = Addressing {
                address: lease.address,
                prefix: lease.prefix,
                gateway: lease.gateway,
                dns: lease.dns.clone(),
            };
            dhcp::keep_renewing(device.clone(), mac, lease);
            addressing
        }
        Some(s) => {
            if let Some(hostname) = &s.hostname {
                if let Err(e) = nix::unistd::sethostname(hostname) {
                    tracing::warn!("init: cannot set the host name: {e}");
                }
            }
            Addressing {
                address: s.address,
                prefix: s.prefix,
                gateway: s.gateway,
                dns: s.dns,
            }
        }
    };
    runtime.block_on(apply(&handle, &device, &addressing))?;
    write_resolv_conf(Path::new(RESOLV_CONF), &addressing.dns)?;
    tracing::info!(
        device = %device,
        address = %format!("{}/{}", addressing.address, addressing.prefix),
        gateway = ?addressing.gateway,
        dns = ?addressing.dns,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "init: network up"
    );
    Ok(())
}

/// The first Ethernet interface (sysfs `type` 1) in name order, waiting for one to appear.
fn first_ethernet() -> Result<String, NetError> {
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        if let Some(device) = ethernet_devices(Path::new("/sys/class/net"))
            .into_iter()
            .next()
        {
            return Ok(device);
        }
        if Instant::now() >= deadline {
            return Err(NetError::NoDevice(format!(
                "(no Ethernet interface after {DEVICE_WAIT:?})"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for_device(device: &str) -> Result<String, NetError> {
    let deadline = Instant::now() + DEVICE_WAIT;
    while !Path::new("/sys/class/net").join(device).exists() {
        if Instant::now() >= deadline {
            return Err(NetError::NoDevice(device.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(device.to_owned())
}

/// Waits (bounded) until `device` reports a carrier: a DHCP request sent before the link is up is
/// lost, and the client would only resend it after its first timeout.
fn wait_for_carrier(device: &str) {
    let path = Path::new("/sys/class/net").join(device).join("carrier");
    let deadline = Instant::now() + DEVICE_WAIT;
    while Instant::now() < deadline {
        if std::fs::read_to_string(&path).is_ok_and(|c| c.trim() == "1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!("init: no carrier on {device} after {DEVICE_WAIT:?}; trying anyway");
}

/// Ethernet interfaces under `class_net` (`/sys/class/net`), sorted by name.
pub fn ethernet_devices(class_net: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(class_net) else {
        return Vec::new();
    };
    let mut devices: Vec<String> = entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("type")).is_ok_and(|t| t.trim() == "1")
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name != "lo")
        .collect();
    devices.sort();
    devices
}

fn mac_address(device: &str) -> Result<[u8; 6], NetError> {
    let path = Path::new("/sys/class/net").join(device).join("address");
    let text = std::fs::read_to_string(&path).map_err(|e| NetError::Mac {
        device: device.to_owned(),
        reason: e.to_string(),
    })?;
    parse_mac(text.trim()).ok_or_else(|| NetError::Mac {
        device: device.to_owned(),
        reason: format!("{:?} is not a MAC address", text.trim()),
    })
}

/// `52:54:00:12:34:56` → bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

async fn link_index(handle: &Handle, device: &str) -> Result<u32, NetError> {
    let netlink = |source| NetError::Netlink {
        action: format!("find {device}"),
        source,
    };
    let link = handle
        .link()
        .get()
        .match_name(device.to_owned())
        .execute()
        .try_next()
        .await
        .map_err(netlink)?;
    link.map(|link| link.header.index)
        .ok_or_else(|| NetError::NoDevice(device.to_owned()))
}

async fn set_up(handle: &Handle, device: &str) -> Result<(), NetError> {
    let index = link_index(handle, device).await?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|source| NetError::Netlink {
            action: format!("bring {device} up"),
            source,
        })
}

async fn apply(handle: &Handle, device: &str, addressing: &Addressing) -> Result<(), NetError> {
    let index = link_index(handle, device).await?;
    handle
        .address()
        .add(index, IpAddr::V4(addressing.address), addressing.prefix)
        .execute()
        .await
        .map_err(|source| NetError::Netlink {
            action: format!(
                "add {}/{} to {device}",
                addressing.address, addressing.prefix
            ),
            source,
        })?;
    if let Some(gateway) = addressing.gateway {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(index)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|source| NetError::Netlink {
                action: format!("add the default route via {gateway}"),
                source,
            })?;
    }
    Ok(())
}

/// Writes the name servers (glibc's resolver reads this file; no file means no DNS).
pub fn write_resolv_conf(path: &Path, dns: &[Ipv4Addr]) -> Result<(), NetError> {
    if dns.is_empty() {
        tracing::warn!("init: no name servers: DNS lookups will fail");
        return Ok(());
    }
    let text: String = dns.iter().map(|ip| format!("nameserver {ip}\n")).collect();
    std::fs::write(path, text).map_err(NetError::ResolvConf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_exactly() {
        assert_eq!(
            parse_mac("52:54:00:12:34:56"),
            Some([0x52, 0x54, 0, 0x12, 0x34, 0x56])
        );
        assert_eq!(parse_mac("52:54:00:12:34"), None);
        assert_eq!(parse_mac("52:54:00:12:34:56:78"), None);
        assert_eq!(parse_mac("52:54:00:12:34:zz"), None);
    }

    #[test]
    fn ethernet_devices_skip_loopback_and_other_types() {
        let dir = std::env::temp_dir().join(format!("runner-net-{}", std::process::id()));
        for (name, kind) in [("lo", "772"), ("eth1", "1"), ("eth0", "1"), ("sit0", "776")] {
            std::fs::create_dir_all(dir.join(name)).unwrap();
            std::fs::write(dir.join(name).join("type"), format!("{kind}\n")).unwrap();
        }
        assert_eq!(ethernet_devices(&dir), ["eth0", "eth1"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn resolv_conf_lists_each_server() {
        let path = std::env::temp_dir().join(format!("runner-resolv-{}", std::process::id()));
        write_resolv_conf(
            &path,
            &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "nameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
