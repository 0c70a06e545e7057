//! Getting a TDX quote on this machine.
//!
//! configfs-tsm (`provider` = `tdx_guest`) turns the 64-byte inblob into a TDREPORT and has the
//! host's quoting enclave sign it: `outblob` is the DCAP quote. Without configfs-tsm,
//! `/dev/tdx_guest` can only give the TDREPORT (MACed for this platform, not verifiable
//! elsewhere), so no quote: [`crate::Error::TdxQuoteNeedsConfigfs`].

use dcap_qvl::quote::Quote;

use super::TEE_TYPE_TDX;
use crate::error::Error;
use crate::evidence::TdxEvidence;
use crate::tsm::TsmReport;

/// Evidence from a configfs-tsm report.
pub(crate) fn from_tsm(report: TsmReport, report_data: &[u8; 64]) -> Result<TdxEvidence, Error> {
    let malformed = |reason: String| Error::Malformed {
        what: "TDX quote",
        reason,
    };
    let quote = Quote::parse(&report.outblob).map_err(|e| malformed(format!("{e:#}")))?;
    if quote.header.tee_type != TEE_TYPE_TDX {
        return Err(malformed(format!(
            "TEE type {:#x} is not TDX",
            quote.header.tee_type
        )));
    }
    let td = quote
        .report
        .as_td10()
        .ok_or_else(|| malformed("no TD report in the quote".into()))?;
    if &td.report_data != report_data {
        return Err(Error::ReportDataNotEchoed("TDX quote"));
    }
    tracing::debug!(
        version = quote.header.version,
        bytes = report.outblob.len(),
        "TDX quote"
    );
    Ok(TdxEvidence {
        quote: report.outblob,
        collateral: None,
        event_log: None,
        tpm: None,
    })
}
