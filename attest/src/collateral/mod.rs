//! Collateral the verifier fetches itself: the VCEK and CRL from AMD's Key Distribution Service
//! for SEV-SNP, and the DCAP collateral (PCK CRL, TCB info, QE identity, root CA CRL) from
//! Intel's PCS or a PCCS for TDX. Every answer is checked (signature to the pinned AMD / Intel
//! root, nextUpdate at `now`, revocation) before it is cached or used; a cached answer is
//! checked again on each use, so nothing stale is accepted from the cache or an offline bundle.
//!
//! See README.md, "Collateral", for URLs, the cache and the bundle format.

mod amd;
mod crl;
mod error;
mod google;
mod http;
mod intel;
mod limit;
mod store;
pub(crate) mod x509;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use amd::{AmdCertChain, AmdProduct, AmdSigningKey};
pub use error::CollateralError;
pub(crate) use google::wanted as wanted_endorsement;
pub use google::{GoogleTee, GOOGLE_ENDORSEMENTS_URL};
pub use limit::as_requester;
pub use store::Entry;

use crate::evidence::{CertKind, Evidence};
use crate::verify::Endorsements;

/// AMD's Key Distribution Service.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";
/// Intel's Provisioning Certification Service (API v4).
pub const INTEL_PCS_URL: &str = "https://api.trustedservices.intel.com";
/// Where Intel PCS publishes the SGX root CA's CRL (the root certificate's CRL distribution
/// point); a PCCS serves it at `/sgx/certification/v4/rootcacrl` instead.
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// How long a 404 is remembered (seconds): no request for the same answer until then.
pub const NOT_FOUND_KEPT: u64 = 600;
/// Default budget of outbound requests per minute, all services together.
pub const MAX_FETCHES_PER_MINUTE: u32 = 60;
/// Default budget of outbound requests per minute for each requester (see [`as_requester`]).
pub const MAX_FETCHES_PER_REQUESTER: u32 = 10;
/// At most this many requesters' budgets are tracked.
pub const MAX_REQUESTERS: usize = 10_000;
/// Default bound on the 404s remembered.
pub const MAX_NOT_FOUND: usize = 10_000;

/// Where to get collateral and how to keep it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollateralConfig {
    /// AMD KDS base URL (or a mirror serving the same paths).
    pub amd_url: String,
    /// Intel PCS or PCCS base URL (the paths under `/sgx|tdx/certification/v4/`).
    pub intel_url: String,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Keep answers in this directory as well as in memory (also readable as an offline bundle).
    pub cache_dir: Option<PathBuf>,
    /// Offline: answer only from this bundle (a JSON file or a directory), never the network.
    pub offline: Option<PathBuf>,
    /// Outbound requests per minute, all services together (`0`: no limit). Past it a fetch
    /// fails with [`CollateralError::RateLimited`]; cached answers are still served.
    pub max_fetches_per_minute: u32,
    /// Outbound requests per minute for each requester named with [`as_requester`] (`0`: no
    /// limit), taken before the global budget. Past it a fetch fails with
    /// [`CollateralError::RequesterRateLimited`].
    pub max_fetches_per_requester: u32,
    /// At most this many 404s are remembered (each for [`NOT_FOUND_KEPT`] seconds).
    pub max_not_found: usize,
    /// Google's launch endorsements: the base under which `tdx/<MRTD hex>.binarypb` and
    /// `sevsnp/<launch digest hex>.binarypb` are published (or a mirror of it).
    pub google_url: String,
    /// Google's root for launch endorsements (DER). Without it no endorsement is fetched.
    pub google_root: Option<Vec<u8>>,
    /// Read endorsements from this directory (laid out as `google_url`: `tdx/…`, `sevsnp/…`)
    /// instead of the network.
    pub google_dir: Option<PathBuf>,
}

impl Default for CollateralConfig {
    fn default() -> Self {
        CollateralConfig {
            amd_url: AMD_KDS_URL.into(),
            intel_url: INTEL_PCS_URL.into(),
            timeout: Duration::from_secs(20),
            cache_dir: None,
            offline: None,
            max_fetches_per_minute: MAX_FETCHES_PER_MINUTE,
            max_fetches_per_requester: MAX_FETCHES_PER_REQUESTER,
            max_not_found: MAX_NOT_FOUND,
            google_url: GOOGLE_ENDORSEMENTS_URL.into(),
            google_root: None,
            google_dir: None,
        }
    }
}

/// Fetches, checks and caches collateral. Cheap to share (`Arc`); safe across threads.
#[derive(Debug)]
pub struct CollateralClient {
    config: CollateralConfig,
    http: http::Http,
    store: store::Store,
    /// Requests answered 404, and until when (unix seconds) not to ask again: an unknown chip ID
    /// or FMSPC costs the service one request per [`NOT_FOUND_KEPT`], not one per evidence.
    not_found: limit::NotFound,
    /// Outbound requests per minute.
    budget: limit::Budget,
    /// Outbound requests per minute, per requester.
    requesters: limit::RequesterBudgets,
    /// One request per key at a time.
    flights: limit::Flights,
    /// Tests only: the key that signs the AMD CRL (AMD's ARK otherwise).
    #[cfg(test)]
    amd_crl_signer: Option<Vec<u8>>,
}

/// What the verifier must supply for `evidence`: a VCEK-signed SNP report without a VCEK in its
/// certificate table (nor in `have`) — a VLEK comes with the evidence, KDS does not serve it —,
/// TDX without collateral.
pub fn needs_collateral(evidence: &Evidence, have: &Endorsements) -> bool {
    match evidence {
        Evidence::Snp(e) => {
            // KEY_INFO (0x48), SIGNING_KEY in bits 4:2; 0 = VCEK.
            let vcek_signed = e.report.get(0x48).is_some_and(|b| (b >> 2) & 7 == 0);
            vcek_signed && have.snp_vcek.is_none() && e.cert(&CertKind::Vcek).is_none()
        }
        Evidence::Tdx(e) => have.tdx_collateral.is_none() && e.collateral.is_none(),
        Evidence::None(_) => false,
        // Azure's guest gets no certificate table: the HCL report's SNP report needs the VCEK;
        // on TDX, the quote Azure made of the TDREPORT needs its DCAP collateral.
        Evidence::AzureVtpm(a) => match azure_hardware(a) {
            Some(AzureHardware::Snp(_)) => have.snp_vcek.is_none(),
            Some(AzureHardware::TdQuote(_)) => have.tdx_collateral.is_none(),
            None => false,
        },
    }
}

/// What the verifier must check behind Azure vTPM evidence.
enum AzureHardware {
    /// The SNP report inside the HCL report.
    Snp(Vec<u8>),
    /// The TD quote the evidence carries for the HCL report's TDREPORT.
    TdQuote(Vec<u8>),
}

/// The hardware evidence behind Azure vTPM evidence (`None` for an unparsable HCL report, or
/// TDX evidence without its quote: verification refuses those, no collateral helps).
fn azure_hardware(a: &crate::tpm::AzureVtpmEvidence) -> Option<AzureHardware> {
    let hcl = crate::tpm::HclReport::parse(&a.hcl_report).ok()?;
    match hcl.kind {
        crate::tpm::HclReportKind::Snp => Some(AzureHardware::Snp(hcl.hw_report)),
        crate::tpm::HclReportKind::Tdx => a.td_quote.clone().map(AzureHardware::TdQuote),
    }
}

fn unix(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CollateralClient {
    /// A client with `config`; reads the offline bundle now, if one is given.
    pub fn new(config: CollateralConfig) -> Result<Self, CollateralError> {
        let store = store::Store::new(config.cache_dir.clone(), config.offline.as_deref())?;
        Ok(CollateralClient {
            http: http::Http::new(config.timeout)?,
            store,
            not_found: limit::NotFound::new(config.max_not_found),
            budget: limit::Budget::new(config.max_fetches_per_minute),
            requesters: limit::RequesterBudgets::new(
                config.max_fetches_per_requester,
                MAX_REQUESTERS,
            ),
            flights: limit::Flights::default(),
            config,
            #[cfg(test)]
            amd_crl_signer: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CollateralConfig {
        &self.config
    }

    /// Fetches and checks the endorsements `evidence` needs at `now`: for SNP the VCEK of the
    /// report's chip and REPORTED_TCB (its ASK checked against AMD's CRL), for TDX the quote's
    /// DCAP collateral (on Azure: of the SNP report inside the HCL report, or of the TD quote
    /// beside it). `none` evidence needs nothing.
    pub async fn endorsements(
        &self,
        evidence: &Evidence,
        now: SystemTime,
    ) -> Result<Endorsements, CollateralError> {
        let now = unix(now);
        match evidence {
            Evidence::Snp(e) => Ok(Endorsements {
                snp_vcek: Some(self.vcek_for_report(&e.report, now).await?),
                tdx_collateral: None,
            }),
            Evidence::Tdx(e) => Ok(Endorsements {
                snp_vcek: None,
                tdx_collateral: Some(self.tdx_collateral(&e.quote, now).await?),
            }),
            Evidence::None(_) => Ok(Endorsements::default()),
            Evidence::AzureVtpm(a) => match azure_hardware(a) {
                Some(AzureHardware::Snp(report)) => Ok(Endorsements {
                    snp_vcek: Some(self.vcek_for_report(&report, now).await?),
                    tdx_collateral: None,
                }),
                Some(AzureHardware::TdQuote(quote)) => Ok(Endorsements {
                    snp_vcek: None,
                    tdx_collateral: Some(self.tdx_collateral(&quote, now).await?),
                }),
                None => Ok(Endorsements::default()),
            },
        }
    }

    /// [`Self::endorsements`] from synchronous code (including code already on a Tokio
    /// worker, such as a TLS certificate verifier): runs on its own thread and runtime.
    pub fn endorsements_blocking(
        &self,
        evidence: &Evidence,
        now: SystemTime,
    ) -> Result<Endorsements, CollateralError> {
        block_on(self.endorsements(evidence, now))
    }

    /// Writes every answer held in memory as an offline bundle: a JSON file, or one file per
    /// answer into an existing directory.
    pub fn export_bundle(&self, path: &Path) -> Result<(), CollateralError> {
        store::write_bundle(path, &self.store.entries())
    }

    /// Every answer held in memory.
    pub fn entries(&self) -> Vec<Entry> {
        self.store.entries()
    }

    /// The answer for `key` (`service:/path?query`): offline from the bundle; else a cached
    /// answer that `check` still accepts; else fetched from `url`, checked and cached. `check`
    /// returns how long the answer may be kept (`None`: for ever).
    async fn answer(
        &self,
        key: String,
        url: String,
        headers: &[&str],
        now: u64,
        check: impl Fn(&Entry) -> Result<Option<u64>, CollateralError>,
    ) -> Result<Entry, CollateralError> {
        if let Some(entry) = self.store.offline(&key) {
            let entry = entry?;
            check(&entry)?;
            return Ok(entry);
        }
        if let Some(known) = self.known(&key, &url, now, &check) {
            return known;
        }
        let fetch = || self.fetch(key.clone(), url.clone(), headers, now, &check);
        self.flights.run(&key, fetch).await
    }

    /// A cached answer `check` still accepts, or a remembered 404.
    fn known(
        &self,
        key: &str,
        url: &str,
        now: u64,
        check: &impl Fn(&Entry) -> Result<Option<u64>, CollateralError>,
    ) -> Option<Result<Entry, CollateralError>> {
        if let Some(entry) = self.store.get(key, now) {
            if check(&entry).is_ok() {
                tracing::debug!(%key, "collateral from the cache");
                return Some(Ok(entry));
            }
        }
        self.not_found
            .remembered(key, now)
            .then(|| Err(CollateralError::NotFound { url: url.into() }))
    }

    /// Sends the request for `key` (the only one under way for it), within the budget.
    async fn fetch(
        &self,
        key: String,
        url: String,
        headers: &[&str],
        now: u64,
        check: &impl Fn(&Entry) -> Result<Option<u64>, CollateralError>,
    ) -> Result<Entry, CollateralError> {
        // A fetch for the same key that ended just before this one began may have answered.
        if let Some(known) = self.known(&key, &url, now, check) {
            return known;
        }
        if let Some(requester) = limit::requester() {
            if let Err(retry_after) = self.requesters.take(&requester) {
                tracing::warn!(%url, %requester, retry_after, "collateral request not sent: the requester's budget of outbound requests is spent");
                return Err(CollateralError::RequesterRateLimited {
                    url,
                    requester,
                    per_minute: self.config.max_fetches_per_requester,
                    retry_after,
                });
            }
        }
        if let Err(retry_after) = self.budget.take() {
            tracing::warn!(%url, retry_after, "collateral request not sent: the budget of outbound requests is spent");
            return Err(CollateralError::RateLimited { url, retry_after });
        }
        let (body, found) = match self.http.get(&url, headers).await {
            Err(e @ CollateralError::NotFound { .. }) => {
                self.not_found
                    .remember(key, now.saturating_add(NOT_FOUND_KEPT), now);
                return Err(e);
            }
            other => other?,
        };
        let mut entry = Entry {
            key,
            body,
            headers: found,
            next_update: None,
        };
        entry.next_update = check(&entry)?;
        tracing::info!(%url, "collateral fetched");
        self.store.put(entry.clone())?;
        Ok(entry)
    }
}

/// Runs `future` to completion on its own thread and runtime: callable from synchronous code,
/// including code already on a Tokio worker (such as a TLS certificate verifier).
fn block_on<T: Send>(
    future: impl std::future::Future<Output = Result<T, CollateralError>> + Send,
) -> Result<T, CollateralError> {
    // The requester this thread works for goes with the work to the fetching thread.
    let requester = limit::requester();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let run = || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| CollateralError::Transport {
                            url: String::new(),
                            reason: format!("cannot start a runtime: {e}"),
                        })?;
                    runtime.block_on(future)
                };
                match &requester {
                    Some(requester) => as_requester(requester, run),
                    None => run(),
                }
            })
            .join()
            .unwrap_or_else(|_| {
                Err(CollateralError::Unsupported(
                    "the collateral fetch panicked".into(),
                ))
            })
    })
}

#[cfg(test)]
mod tests;
