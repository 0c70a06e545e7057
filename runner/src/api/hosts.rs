//! Which `Host` names reach a worker instead of the API.
//!
//! Host routing is the operator's choice: only names strictly under `--worker-domain` can be
//! claimed by a worker, and only requests for such names are routed to one. Every other name —
//! the API's own (`--api-host`, `localhost`), IP literals, anything outside the domain — reaches
//! the API, whatever the path. So no client can claim a name through which other clients talk
//! to the API (and hand it their scripts, configs and tokens): the names the API answers to and
//! the names workers answer to never meet. Without `--worker-domain` no worker has a host name.

use std::net::IpAddr;

/// Names that always mean the machine itself.
const LOCAL_NAMES: [&str; 2] = ["localhost", "localhost.localdomain"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostnameError {
    #[error(
        "hostname: this runner routes no host names to workers (its operator has not set \
         --worker-domain); reach the worker at /w/{{id}}/ instead"
    )]
    RoutingOff,
    #[error("hostname {0:?} is not a valid DNS name")]
    Invalid(String),
    #[error("hostname {0:?} is an IP address; only DNS names under {1} can be claimed")]
    IpLiteral(String, String),
    #[error("hostname {0:?} is one of the runner's own names (the API answers it)")]
    Reserved(String),
    #[error("hostname {0:?} is not under this runner's worker domain {1} (e.g. app.{1})")]
    OutsideDomain(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRoutingError {
    #[error(
        "--worker-domain {0:?} is not a DNS name (an IP address or a local name cannot be one)"
    )]
    BadDomain(String),
    #[error("--api-host {0:?} is not a valid host name")]
    BadApiHost(String),
}

/// The operator's host-routing settings: the worker domain and the API's own names.
#[derive(Debug, Clone, Default)]
pub struct HostRouting {
    /// Lowercase, without a trailing dot; `None`: no host routing.
    worker_domain: Option<String>,
    /// The API's names, lowercase: never a worker's, even under the worker domain.
    api_hosts: Vec<String>,
}

impl HostRouting {
    /// Checks the settings: the domain must be a DNS name (not an IP literal, not a local name).
    pub fn new(
        worker_domain: Option<&str>,
        api_hosts: &[String],
    ) -> Result<Self, HostRoutingError> {
        let worker_domain = match worker_domain.map(str::trim).filter(|d| !d.is_empty()) {
            None => None,
            Some(domain) => {
                let name = normalize(domain)
                    .filter(|name| !is_ip_literal(name) && !is_local_name(name))
                    .ok_or_else(|| HostRoutingError::BadDomain(domain.to_owned()))?;
                Some(name)
            }
        };
        let api_hosts = api_hosts
            .iter()
            .map(|host| {
                let trimmed = host.trim().trim_start_matches('[').trim_end_matches(']');
                if is_ip_literal(trimmed) {
                    return Ok(trimmed.to_ascii_lowercase());
                }
                normalize(trimmed).ok_or_else(|| HostRoutingError::BadApiHost(host.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            worker_domain,
            api_hosts,
        })
    }

    pub fn worker_domain(&self) -> Option<&str> {
        self.worker_domain.as_deref()
    }

    /// Checks a name a worker asks to answer for, and returns it normalized (lowercase, no
    /// trailing dot).
    pub fn claimable(&self, requested: &str) -> Result<String, HostnameError> {
        let requested = requested.trim();
        let Some(domain) = &self.worker_domain else {
            return Err(HostnameError::RoutingOff);
        };
        let bare = requested.trim_start_matches('[').trim_end_matches(']');
        if is_ip_literal(bare) {
            return Err(HostnameError::IpLiteral(
                requested.to_owned(),
                domain.clone(),
            ));
        }
        let name = normalize(requested).ok_or_else(|| HostnameError::Invalid(requested.into()))?;
        if is_local_name(&name) || self.api_hosts.contains(&name) {
            return Err(HostnameError::Reserved(name));
        }
        if !is_strictly_under(&name, domain) {
            return Err(HostnameError::OutsideDomain(name, domain.clone()));
        }
        Ok(name)
    }

    /// The worker name a request's `Host` header asks for, when it is one a worker may hold;
    /// `None` sends the request to the API.
    pub fn worker_host(&self, host_header: &str) -> Option<String> {
        let domain = self.worker_domain.as_deref()?;
        let name = strip_port(host_header.trim())
            .trim_end_matches('.')
            .to_ascii_lowercase();
        (is_strictly_under(&name, domain)
            && !self.api_hosts.contains(&name)
            && !is_local_name(&name))
        .then_some(name)
    }
}

/// `name` lowercased without its trailing dot, when it is a DNS name: labels of letters, digits
/// and hyphens, not starting or ending with a hyphen.
fn normalize(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (name.len() <= 253 && name.split('.').all(valid_label)).then_some(name)
}

fn is_ip_literal(name: &str) -> bool {
    // Dotted-decimal IPv4 is also a valid DNS-label sequence: check it first. So are forms
    // such as `127.1` or `0x7f.1` that resolvers accept as IPv4: any name whose last label is
    // all digits (or hex) is treated as an address, never as a DNS name.
    name.parse::<IpAddr>().is_ok()
        || name.rsplit('.').next().is_some_and(|last| {
            !last.is_empty()
                && (last.bytes().all(|b| b.is_ascii_digit())
                    || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit())))
        })
}

fn is_local_name(name: &str) -> bool {
    LOCAL_NAMES.contains(&name) || name.ends_with(".localhost")
}

fn is_strictly_under(name: &str, domain: &str) -> bool {
    name.len() > domain.len() + 1
        && name.ends_with(domain)
        && name.as_bytes()[name.len() - domain.len() - 1] == b'.'
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> HostRouting {
        HostRouting::new(
            Some("Workers.Example.com."),
            &["api.workers.example.com".into(), "203.0.113.7".into()],
        )
        .unwrap()
    }

    #[test]
    fn without_a_worker_domain_no_name_can_be_claimed_or_routed() {
        let off = HostRouting::new(None, &[]).unwrap();
        assert_eq!(
            off.claimable("app.example.com"),
            Err(HostnameError::RoutingOff)
        );
        assert_eq!(off.worker_host("app.example.com"), None);
        assert_eq!(off.worker_host("127.0.0.1:8080"), None);
    }

    #[test]
    fn only_names_strictly_under_the_domain_can_be_claimed() {
        let r = routing();
        assert_eq!(
            r.claimable("App.Workers.Example.COM.").unwrap(),
            "app.workers.example.com"
        );
        assert_eq!(
            r.claimable("a.b.workers.example.com").unwrap(),
            "a.b.workers.example.com"
        );
        for outside in [
            "workers.example.com",
            "example.com",
            "evilworkers.example.com",
            "x.org",
        ] {
            assert!(
                matches!(r.claimable(outside), Err(HostnameError::OutsideDomain(..))),
                "{outside}"
            );
        }
    }

    #[test]
    fn addresses_local_names_and_the_apis_names_are_refused() {
        let r = routing();
        for ip in [
            "127.0.0.1",
            "[::1]",
            "::1",
            "10.0.0.1",
            "1.workers.example.com.2",
            "0x7f.1",
        ] {
            assert!(
                matches!(r.claimable(ip), Err(HostnameError::IpLiteral(..))),
                "{ip}"
            );
        }
        for reserved in [
            "localhost",
            "LOCALHOST.",
            "x.localhost",
            "api.workers.example.com",
        ] {
            assert!(
                matches!(r.claimable(reserved), Err(HostnameError::Reserved(_))),
                "{reserved}"
            );
        }
        for bad in [
            "exa mple.workers.example.com",
            "-a.workers.example.com",
            "a..workers.example.com",
            "x:80",
        ] {
            assert!(
                matches!(r.claimable(bad), Err(HostnameError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn requests_reach_a_worker_only_by_a_name_under_the_domain() {
        let r = routing();
        assert_eq!(
            r.worker_host("App.workers.example.com.:8443").as_deref(),
            Some("app.workers.example.com")
        );
        for api in [
            "api.workers.example.com",
            "workers.example.com",
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost",
            "203.0.113.7",
            "example.com",
            "",
        ] {
            assert_eq!(r.worker_host(api), None, "{api}");
        }
    }

    #[test]
    fn a_domain_must_be_a_dns_name() {
        for bad in ["127.0.0.1", "localhost", "a b", "::1"] {
            assert!(HostRouting::new(Some(bad), &[]).is_err(), "{bad}");
        }
        assert!(HostRouting::new(Some(""), &[])
            .unwrap()
            .worker_domain()
            .is_none());
        assert!(HostRouting::new(None, &["not a name".into()]).is_err());
    }
}
