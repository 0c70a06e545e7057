//! A minimal DHCPv4 client (RFC 2131): DISCOVER → OFFER → REQUEST → ACK on one interface, then
//! renewal at T1 in a background thread. Messages are encoded and decoded by `dhcproto`.
//!
//! Before the interface has an address, a UDP socket bound to `0.0.0.0:68` on the device
//! (`SO_BINDTODEVICE`) with `SO_BROADCAST` sends to `255.255.255.255:67`; the request sets the
//! broadcast flag so that servers answer to `255.255.255.255:68`, which Linux delivers to that
//! socket without an address configured.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use socket2::{Domain, Protocol, Socket, Type};

use super::cmdline::mask_to_prefix;

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
/// Waits per attempt: RFC 2131 suggests exponential backoff.
const ATTEMPT_WAITS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("DHCP socket on {device}: {source}")]
    Socket { device: String, source: io::Error },
    #[error("no DHCP {expected:?} on {device} after {attempts} attempts")]
    Timeout {
        device: String,
        expected: MessageType,
        attempts: usize,
    },
    #[error("the DHCP server refused the request (NAK)")]
    Nak,
    #[error("invalid DHCP reply: {0}")]
    Invalid(String),
}

/// What the server granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Option<Ipv4Addr>,
    /// `None`: infinite.
    pub lease_time: Option<Duration>,
    /// When to renew (T1): the server's value, else half the lease.
    pub renew_after: Option<Duration>,
}

/// Obtains a lease on `device` (hardware address `mac`).
pub fn obtain(device: &str, mac: [u8; 6]) -> Result<Lease, DhcpError> {
    let socket = open(device)?;
    let xid = rand_xid();
    let offer = exchange(
        &socket,
        device,
        &discover(xid, mac),
        xid,
        MessageType::Offer,
    )?;
    let server = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(server)) => Some(*server),
        _ => None,
    };
    let request = request(xid, mac, Some((offer.yiaddr(), server)), None);
    let ack = exchange(&socket, device, &request, xid, MessageType::Ack)?;
    lease_from_ack(&ack)
}

/// Renews `lease` (RENEWING state: our address in `ciaddr`, no server identifier).
pub fn renew(device: &str, mac: [u8; 6], lease: &Lease) -> Result<Lease, DhcpError> {
    let socket = open(device)?;
    let xid = rand_xid();
    let message = request(xid, mac, None, Some(lease.address));
    let ack = exchange(&socket, device, &message, xid, MessageType::Ack)?;
    lease_from_ack(&ack)
}

/// Renews at T1 for as long as the lease is finite; logs each outcome. If renewal keeps failing,
/// the address stays configured (the appliance keeps serving) and an error is logged.
pub fn keep_renewing(device: String, mac: [u8; 6], mut lease: Lease) {
    let spawned = std::thread::Builder::new()
        .name("init-dhcp".into())
        .spawn(move || {
            while let Some(wait) = lease.renew_after {
                std::thread::sleep(wait);
                match renew(&device, mac, &lease) {
                    Ok(new) if new.address == lease.address => {
                        tracing::info!(lease_s = ?new.lease_time.map(|d| d.as_secs()), "init: DHCP lease renewed");
                        lease = new;
                    }
                    Ok(new) => {
                        tracing::error!(old = %lease.address, new = %new.address, "init: DHCP renewal offered another address; keeping the old one");
                        lease.renew_after = new.renew_after;
                    }
                    Err(e) => {
                        tracing::error!("init: DHCP renewal failed: {e}; retrying in a minute");
                        lease.renew_after = Some(Duration::from_secs(60));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!("init: cannot start DHCP renewal: {e}");
    }
}

fn open(device: &str) -> Result<UdpSocket, DhcpError> {
    let error = |source| DhcpError::Socket {
        device: device.to_owned(),
        source,
    };
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(error)?;
    socket.set_reuse_address(true).map_err(error)?;
    socket.set_broadcast(true).map_err(error)?;
    socket.bind_device(Some(device.as_bytes())).map_err(error)?;
    let any = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
    socket.bind(&any.into()).map_err(error)?;
    Ok(socket.into())
}

/// Sends `message` and waits for the reply of type `expected` with transaction id `xid`,
/// resending with backoff. A NAK ends the exchange.
fn exchange(
    socket: &UdpSocket,
    device: &str,
    message: &Message,
    xid: u32,
    expected: MessageType,
) -> Result<Message, DhcpError> {
    let bytes = encode(message)?;
    let server = SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT);
    let socket_error = |source| DhcpError::Socket {
        device: device.to_owned(),
        source,
    };
    let mut buf = vec![0u8; 1500];
    for wait in ATTEMPT_WAITS {
        socket.send_to(&bytes, server).map_err(socket_error)?;
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .map_err(socket_error)?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(socket_error(e)),
            };
            let Ok(reply) = Message::decode(&mut Decoder::new(&buf[..n])) else {
                continue;
            };
            if reply.xid() != xid || reply.opcode() != Opcode::BootReply {
                continue;
            }
            match reply.opts().msg_type() {
                Some(t) if t == expected => return Ok(reply),
                Some(MessageType::Nak) => return Err(DhcpError::Nak),
                _ => continue,
            }
        }
    }
    Err(DhcpError::Timeout {
        device: device.to_owned(),
        expected,
        attempts: ATTEMPT_WAITS.len(),
    })
}

fn encode(message: &Message) -> Result<Vec<u8>, DhcpError> {
    let mut bytes = Vec::with_capacity(300);
    message
        .encode(&mut Encoder::new(&mut bytes))
        .map_err(|e| DhcpError::Invalid(format!("cannot encode: {e}")))?;
    Ok(bytes)
}

fn base(xid: u32, mac: [u8; 6], kind: MessageType, ciaddr: Ipv4Addr) -> Message {
    let unspecified = Ipv4Addr::UNSPECIFIED;
    let mut message =
        Message::new_with_id(xid, ciaddr, unspecified, unspecified, unspecified, &mac);
    message.set_flags(Flags::default().set_broadcast());
    let opts = message.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    let mut client_id = vec![1u8];
    client_id.extend_from_slice(&mac);
    opts.insert(DhcpOption::ClientIdentifier(client_id));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
        OptionCode::AddressLeaseTime,
        OptionCode::Renewal,
    ]));
    message
}

/// A DISCOVER.
pub fn discover(xid: u32, mac: [u8; 6]) -> Message {
    base(xid, mac, MessageType::Discover, Ipv4Addr::UNSPECIFIED)
}

/// A REQUEST: selecting an offer (`offered`: address and server id) or renewing (`renewing`: our
/// current address, sent as `ciaddr`).
pub fn request(
    xid: u32,
    mac: [u8; 6],
    offered: Option<(Ipv4Addr, Option<Ipv4Addr>)>,
    renewing: Option<Ipv4Addr>,
) -> Message {
    let mut message = base(
        xid,
        mac,
        MessageType::Request,
        renewing.unwrap_or(Ipv4Addr::UNSPECIFIED),
    );
    if let Some((address, server)) = offered {
        message
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(address));
        if let Some(server) = server {
            message
                .opts_mut()
                .insert(DhcpOption::ServerIdentifier(server));
        }
    }
    message
}

/// The lease an ACK grants.
pub fn lease_from_ack(ack: &Message) -> Result<Lease, DhcpError> {
    let address = ack.yiaddr();
    if address.is_unspecified() {
        return Err(DhcpError::Invalid("ACK without an address".into()));
    }
    let opts = ack.opts();
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => mask_to_prefix(*mask)
            .ok_or_else(|| DhcpError::Invalid(format!("non-contiguous netmask {mask}")))?,
        _ => 24,
    };
    let gateway = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(routers)) => routers.first().copied(),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(servers)) => servers.clone(),
        _ => Vec::new(),
    };
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(server)) => Some(*server),
        _ => None,
    };
    let lease_time = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(u32::MAX)) => None,
        Some(DhcpOption::AddressLeaseTime(secs)) => Some(Duration::from_secs(u64::from(*secs))),
        _ => None,
    };
    let renew_after = match opts.get(OptionCode::Renewal) {
        Some(DhcpOption::Renewal(secs)) if lease_time.is_some() => {
            Some(Duration::from_secs(u64::from(*secs)))
        }
        _ => lease_time.map(|d| d / 2),
    };
    Ok(Lease {
        address,
        prefix,
        gateway,
        dns,
        server,
        lease_time,
        renew_after,
    })
}

fn rand_xid() -> u32 {
    let mut bytes = [0u8; 4];
    // The kernel CRNG is ready (checked before the network); a failure only weakens the xid.
    // SAFETY: the pointer and length describe `bytes`.
    unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    u32::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn roundtrip(message: &Message) -> Message {
        Message::decode(&mut Decoder::new(&encode(message).unwrap())).unwrap()
    }

    /// An ACK as QEMU's user-mode network (slirp) sends it.
    fn slirp_ack(xid: u32) -> Message {
        let mut ack = Message::new_with_id(
            xid,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(10, 0, 2, 15),
            Ipv4Addr::new(10, 0, 2, 2),
            Ipv4Addr::UNSPECIFIED,
            &MAC,
        );
        ack.set_opcode(Opcode::BootReply);
        let opts = ack.opts_mut();
        opts.insert(DhcpOption::MessageType(MessageType::Ack));
        opts.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        opts.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        opts.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        opts.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(
            10, 0, 2, 3,
        )]));
        opts.insert(DhcpOption::AddressLeaseTime(86_400));
        ack
    }

    #[test]
    fn discover_broadcasts_and_asks_for_what_we_configure() {
        let message = roundtrip(&discover(7, MAC));
        assert_eq!(message.xid(), 7);
        assert_eq!(message.opcode(), Opcode::BootRequest);
        assert_eq!(message.chaddr(), MAC);
        assert!(message.flags().broadcast());
        assert_eq!(message.opts().msg_type(), Some(MessageType::Discover));
        let Some(DhcpOption::ParameterRequestList(asked)) =
            message.opts().get(OptionCode::ParameterRequestList)
        else {
            panic!("no parameter request list")
        };
        for code in [
            OptionCode::SubnetMask,
            OptionCode::Router,
            OptionCode::DomainNameServer,
        ] {
            assert!(asked.contains(&code), "{code:?}");
        }
    }

    #[test]
    fn request_selects_the_offer_or_renews_with_ciaddr() {
        let offered = (
            Ipv4Addr::new(10, 0, 2, 15),
            Some(Ipv4Addr::new(10, 0, 2, 2)),
        );
        let selecting = roundtrip(&request(9, MAC, Some(offered), None));
        assert_eq!(selecting.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            selecting.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(offered.0))
        );
        assert!(selecting.opts().get(OptionCode::ServerIdentifier).is_some());
        assert!(selecting.ciaddr().is_unspecified());

        let renewing = roundtrip(&request(9, MAC, None, Some(offered.0)));
        assert_eq!(renewing.ciaddr(), offered.0);
        assert!(renewing
            .opts()
            .get(OptionCode::RequestedIpAddress)
            .is_none());
        assert!(renewing.opts().get(OptionCode::ServerIdentifier).is_none());
    }

    #[test]
    fn an_ack_becomes_a_lease() {
        let lease = lease_from_ack(&roundtrip(&slirp_ack(3))).unwrap();
        assert_eq!(
            lease,
            Lease {
                address: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                server: Some(Ipv4Addr::new(10, 0, 2, 2)),
                lease_time: Some(Duration::from_secs(86_400)),
                renew_after: Some(Duration::from_secs(43_200)),
            }
        );
    }

    #[test]
    fn an_infinite_lease_is_never_renewed_and_a_bad_ack_is_refused() {
        let mut ack = slirp_ack(1);
        ack.opts_mut()
            .insert(DhcpOption::AddressLeaseTime(u32::MAX));
        let lease = lease_from_ack(&ack).unwrap();
        assert_eq!((lease.lease_time, lease.renew_after), (None, None));

        let mut no_address = slirp_ack(1);
        no_address.set_yiaddr(Ipv4Addr::UNSPECIFIED);
        assert!(lease_from_ack(&no_address).is_err());

        let mut bad_mask = slirp_ack(1);
        bad_mask
            .opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0)));
        assert!(lease_from_ack(&bad_mask).is_err());
    }
}
