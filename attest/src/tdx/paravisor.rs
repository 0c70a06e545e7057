//! A paravisor TD (Azure's TDX CVMs). dcap-qvl 0.7.1 verifies such a TD's quote completely —
//! root CA CRL, TCB info and QE identity (signatures, chains, dates), the PCK chain and CRL, the
//! QE report and its binding of the attestation key, the QE against its identity, the quote's
//! signature, the platform's TCB level (Revoked refused) — and then, as its very last check,
//! refuses TDATTRIBUTES without SEPT_VE_DISABLE. A paravisor TD does not set it: the paravisor
//! inside the TD handles the #VE itself, and it is the paravisor (named by MRTD) that the policy
//! trusts. dcap-qvl returns no TCB status with that refusal.
//!
//! So, only for a TD the caller has already accepted as an allow-listed paravisor, and only
//! when that refusal is dcap-qvl's whole complaint, [`tcb_status`] recomputes the TCB status
//! dcap-qvl had computed (its steps 8–10: the platform's TCB level, converged with the TDX
//! module's and the QE's levels) from the same collateral, with dcap-qvl's own public types
//! (`TcbLevel::shortfalls`, `TcbInfo::tdx_module_identity`, `TcbStatusWithAdvisory::merge`).
//! Tests compare it with dcap-qvl's status on the recorded quotes dcap-qvl accepts.

use dcap_qvl::qe_identity::QeTcbLevel;
use dcap_qvl::quote::Quote;
use dcap_qvl::tcb_info::{TcbInfo, TcbLevel, TcbStatusWithAdvisory};
use dcap_qvl::QuoteCollateralV3;
use serde::Deserialize;

/// dcap-qvl's whole message (`{:#}`) when SEPT_VE_DISABLE is the only thing it refuses.
pub(crate) const SEPT_VE_REFUSAL: &str = "SEPT_VE_DISABLE is not enabled";

/// ISVSVN's offset in an SGX report body (the QE report).
const QE_ISV_SVN: usize = 258;

#[derive(Deserialize)]
struct QeIdentityLevels {
    #[serde(rename = "tcbLevels")]
    tcb_levels: Vec<QeTcbLevel>,
}

/// The TCB status and advisories of `quote` (a TD 1.0 report body) under `collateral`, as
/// dcap-qvl computes them. Call only after dcap-qvl verified `quote` with `collateral` and
/// refused it with [`SEPT_VE_REFUSAL`] alone; the error says what could not be matched.
pub(crate) fn tcb_status(
    quote: &Quote,
    collateral: &QuoteCollateralV3,
) -> Result<TcbStatusWithAdvisory, String> {
    if quote.report.as_td15().is_some() {
        return Err("a TD 1.5 report body (its current TCB is not evaluated here)".into());
    }
    let td = quote.report.as_td10().ok_or("no TD report in the quote")?;
    let chain = dcap_qvl::intel::extract_cert_chain(quote).map_err(|e| format!("{e:#}"))?;
    let leaf = chain.first().ok_or("no PCK certificate in the quote")?;
    let pck = dcap_qvl::intel::parse_pck_extension(leaf).map_err(|e| format!("{e:#}"))?;
    let mut tcb_info: TcbInfo =
        serde_json::from_str(&collateral.tcb_info).map_err(|e| format!("TCB info: {e}"))?;
    canonicalize(&mut tcb_info);

    // The platform: the first level all of whose components the platform meets.
    let mut platform = None;
    for level in &tcb_info.tcb_levels {
        let short = level
            .shortfalls(&pck.cpu_svn, pck.pce_svn, Some(&td.tee_tcb_svn))
            .map_err(|e| format!("{e:#}"))?;
        if short.is_empty() {
            platform = Some(level);
            break;
        }
    }
    let platform = platform.ok_or("no matching TCB level")?;
    let mut status = TcbStatusWithAdvisory::new(platform.tcb_status, platform.advisory_ids.clone());

    // The TDX module, by its version (TEE_TCB_SVN[1]) and ISVSVN (TEE_TCB_SVN[0]).
    if let Some(identity) = tcb_info
        .tdx_module_identity(&td.tee_tcb_svn)
        .map_err(|e| format!("{e:#}"))?
    {
        let module = identity
            .tcb_levels
            .iter()
            .find(|l| l.shortfall(&td.tee_tcb_svn).is_none())
            .ok_or("the TDX module's ISVSVN is below every level")?;
        status = status.merge(&TcbStatusWithAdvisory::new(
            module.tcb_status,
            module.advisory_ids.clone(),
        ));
    }

    // The QE, by its report's ISVSVN.
    let qe_report = quote.auth_data.clone().into_v3().qe_report;
    let isv_svn = u16::from_le_bytes([qe_report[QE_ISV_SVN], qe_report[QE_ISV_SVN + 1]]);
    let qe: QeIdentityLevels =
        serde_json::from_str(&collateral.qe_identity).map_err(|e| format!("QE identity: {e}"))?;
    let qe_level = qe
        .tcb_levels
        .iter()
        .find(|l| isv_svn >= l.tcb.isvsvn)
        .ok_or("the QE's ISVSVN is below every level")?;
    Ok(status.merge(&TcbStatusWithAdvisory::new(
        qe_level.tcb_status,
        qe_level.advisory_ids.clone(),
    )))
}

/// Intel QVL's (and dcap-qvl's) order of TCB levels, whatever the JSON's: SGX components
/// highest first, then PCE SVN, then (TDX) the TDX components.
fn canonicalize(tcb_info: &mut TcbInfo) {
    let is_tdx = tcb_info.version >= 3 && tcb_info.id == "TDX";
    tcb_info.tcb_levels.sort_by(|a: &TcbLevel, b: &TcbLevel| {
        b.tcb
            .sgx_components
            .cmp(&a.tcb.sgx_components)
            .then_with(|| b.tcb.pce_svn.cmp(&a.tcb.pce_svn))
            .then_with(|| {
                if is_tdx {
                    b.tcb.tdx_components.cmp(&a.tcb.tdx_components)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::vectors;

    /// On a recorded TD 1.0 quote dcap-qvl accepts, the recomputed status and advisories are
    /// dcap-qvl's own.
    #[test]
    fn the_recomputed_tcb_status_is_dcap_qvls() {
        let e = vectors::tdx(vectors::TDX_V4, vectors::TDX_V4_COLLATERAL);
        let (from, to) = vectors::collateral_window(e.collateral.as_ref().unwrap());
        let collateral = super::super::verify::to_dcap(e.collateral.as_ref().unwrap());
        let verified =
            dcap_qvl::verify::rustcrypto::verify(&e.quote, &collateral, from + (to - from) / 2)
                .unwrap();
        let quote = Quote::parse(&e.quote).unwrap();
        let ours = tcb_status(&quote, &collateral).unwrap();
        assert_eq!(ours.status.to_string(), verified.status);
        assert_eq!(ours.advisory_ids, verified.advisory_ids);

        // Levels in another order in the JSON: the same answer (Intel's order is restored).
        let mut shuffled = collateral.clone();
        let mut info: serde_json::Value = serde_json::from_str(&shuffled.tcb_info).unwrap();
        info["tcbLevels"].as_array_mut().unwrap().reverse();
        shuffled.tcb_info = info.to_string();
        let reordered = tcb_status(&quote, &shuffled).unwrap();
        assert_eq!(reordered, ours);

        // A TD 1.5 body is not evaluated here.
        let v5 = Quote::parse(vectors::TDX_V5).unwrap();
        assert!(tcb_status(&v5, &collateral).is_err());
    }
}
