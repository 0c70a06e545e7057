//! Where `runner verify`, `deploy` and `verifier` get the collateral evidence does not carry:
//! an SNP VCEK from AMD's KDS, TDX DCAP collateral from Intel's PCS or a PCCS (see attest's
//! README, "Collateral"). On by default; `--collateral-offline` reads a bundle instead of the
//! network, `--no-collateral-fetch` turns it off (evidence must then carry its own).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use attest::collateral::{CollateralClient, CollateralConfig, AMD_KDS_URL, INTEL_PCS_URL};

/// Collateral options, shared by the commands that verify evidence.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CollateralArgs {
    /// AMD Key Distribution Service base URL (or a mirror with its paths), for SEV-SNP VCEKs
    /// and CRLs. Default: https://kdsintf.amd.com
    #[arg(long, value_name = "URL")]
    pub collateral_url_amd: Option<String>,
    /// Intel PCS v4 or PCCS base URL, for TDX collateral (PCK CRL, TCB info, QE identity).
    /// Default: https://api.trustedservices.intel.com
    #[arg(long, value_name = "URL")]
    pub collateral_url_intel: Option<String>,
    /// Keep fetched collateral in this directory too (readable later with
    /// --collateral-offline).
    #[arg(long, value_name = "DIR")]
    pub collateral_cache: Option<PathBuf>,
    /// Never fetch: answer from this collateral bundle (a JSON file or a cache directory).
    #[arg(long, value_name = "FILE|DIR", conflicts_with = "no_collateral_fetch")]
    pub collateral_offline: Option<PathBuf>,
    /// Fetch no collateral: SNP evidence must carry its VCEK and TDX evidence its collateral.
    #[arg(long)]
    pub no_collateral_fetch: bool,
    /// Timeout of one collateral request, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 20)]
    pub collateral_timeout: u64,
    /// At most this many collateral requests a minute, to AMD, Intel and Google together (0:
    /// no limit). Evidence needing more is refused for now ("retry in N s"); answers already
    /// cached are still served. Bounds what requesters can make a verifier ask on their behalf.
    /// Default: 60.
    #[arg(long, value_name = "N")]
    pub collateral_max_fetches_per_minute: Option<u32>,
    /// At most this many of those a minute on behalf of one requester (`runner verifier`: one
    /// client address, an IPv6 /64), so that one cannot spend everybody's budget (0: no limit;
    /// behind a reverse proxy every client has the proxy's address). Default: 10.
    #[arg(long, value_name = "N")]
    pub collateral_max_fetches_per_requester: Option<u32>,
}

impl CollateralArgs {
    /// The client these options describe; `None` with `--no-collateral-fetch`.
    pub fn client(
        &self,
    ) -> Result<Option<Arc<CollateralClient>>, attest::collateral::CollateralError> {
        self.config()
            .map(|config| CollateralClient::new(config).map(Arc::new))
            .transpose()
    }

    /// The client's configuration; `None` with `--no-collateral-fetch`. Google's launch
    /// endorsements are fetched only once a root is set (`TpmPolicyArgs::fetch_endorsements`).
    pub fn config(&self) -> Option<CollateralConfig> {
        if self.no_collateral_fetch {
            return None;
        }
        Some(CollateralConfig {
            amd_url: self
                .collateral_url_amd
                .clone()
                .unwrap_or_else(|| AMD_KDS_URL.into()),
            intel_url: self
                .collateral_url_intel
                .clone()
                .unwrap_or_else(|| INTEL_PCS_URL.into()),
            // `Default` (tests) gives 0: use the library's default then.
            timeout: match self.collateral_timeout {
                0 => CollateralConfig::default().timeout,
                secs => Duration::from_secs(secs),
            },
            cache_dir: self.collateral_cache.clone(),
            offline: self.collateral_offline.clone(),
            max_fetches_per_minute: self
                .collateral_max_fetches_per_minute
                .unwrap_or(attest::collateral::MAX_FETCHES_PER_MINUTE),
            max_fetches_per_requester: self
                .collateral_max_fetches_per_requester
                .unwrap_or(attest::collateral::MAX_FETCHES_PER_REQUESTER),
            ..CollateralConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        collateral: CollateralArgs,
    }

    fn parse(args: &[&str]) -> Result<CollateralArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("verify").chain(args.iter().copied()))
            .map(|c| c.collateral)
    }

    #[test]
    fn by_default_collateral_is_fetched_from_amd_and_intel() {
        let client = parse(&[]).unwrap().client().unwrap().unwrap();
        let config = client.config();
        assert_eq!(config.amd_url, "https://kdsintf.amd.com");
        assert_eq!(config.intel_url, "https://api.trustedservices.intel.com");
        assert_eq!(config.timeout, Duration::from_secs(20));
        assert_eq!((&config.cache_dir, &config.offline), (&None, &None));
        assert_eq!(config.max_fetches_per_minute, 60, "bounded by default");
        assert_eq!(config.max_fetches_per_requester, 10, "per requester too");
        assert_eq!(
            config.google_root, None,
            "no Google root: no endorsement fetched"
        );
    }

    #[test]
    fn urls_cache_offline_and_opting_out_are_options() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.json");
        std::fs::write(&bundle, r#"{"version":1,"answers":[]}"#).unwrap();
        let cache = dir.path().join("cache");
        let args = parse(&[
            "--collateral-url-amd",
            "http://kds.mirror",
            "--collateral-url-intel",
            "http://pccs.local:8081",
            "--collateral-cache",
            cache.to_str().unwrap(),
            "--collateral-offline",
            bundle.to_str().unwrap(),
            "--collateral-timeout",
            "3",
            "--collateral-max-fetches-per-minute",
            "7",
        ])
        .unwrap();
        let client = args.client().unwrap().unwrap();
        let config = client.config();
        assert_eq!(config.amd_url, "http://kds.mirror");
        assert_eq!(config.intel_url, "http://pccs.local:8081");
        assert_eq!(config.cache_dir.as_deref(), Some(cache.as_path()));
        assert_eq!(config.offline.as_deref(), Some(bundle.as_path()));
        assert_eq!(config.timeout, Duration::from_secs(3));
        assert_eq!(config.max_fetches_per_minute, 7);
        assert!(cache.is_dir(), "the cache directory is created");

        assert!(parse(&["--no-collateral-fetch"])
            .unwrap()
            .client()
            .unwrap()
            .is_none());
        assert!(parse(&["--no-collateral-fetch", "--collateral-offline", "x"]).is_err());
        // A bundle that is not there is an error now, not at the first verification.
        let missing = parse(&["--collateral-offline", "/no/such/bundle.json"]).unwrap();
        assert!(missing.client().is_err());
    }
}
