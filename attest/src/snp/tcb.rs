//! SEV-SNP TCB versions and the per-generation minimum a verifier accepts.
//!
//! The minimum is kept per processor generation because each numbers its SPLs on its own (a
//! Milan SNP SPL 0x18 says nothing about a Genoa) and Turin lays TCB_VERSION out differently.
//! Defaults, from AMD's security bulletins: see [`SnpMinTcb::default`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sev::firmware::host::TcbVersion;

use crate::error::SnpError;

/// One SEV-SNP TCB version (security patch levels of each firmware component).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnpTcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl From<TcbVersion> for SnpTcb {
    fn from(t: TcbVersion) -> Self {
        SnpTcb {
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
            fmc: t.fmc,
        }
    }
}

impl SnpTcb {
    /// Refuses if any component is below `min`'s (FMC only where both have one).
    pub fn check_at_least(&self, min: &SnpTcb) -> Result<(), SnpError> {
        let mut pairs = vec![
            ("bootloader", self.bootloader, min.bootloader),
            ("tee", self.tee, min.tee),
            ("snp", self.snp, min.snp),
            ("microcode", self.microcode, min.microcode),
        ];
        if let (Some(got), Some(m)) = (self.fmc, min.fmc) {
            pairs.push(("fmc", got, m));
        }
        for (component, got, min) in pairs {
            if got < min {
                return Err(SnpError::TcbTooLow {
                    component,
                    min,
                    got,
                });
            }
        }
        Ok(())
    }

    /// Decodes a 64-bit TCB_VERSION in `generation`'s layout (SEV-SNP ABI, TCB_VERSION):
    /// Milan and Genoa: bootloader bits 0-7, TEE 8-15, SNP 48-55, microcode 56-63;
    /// Turin: FMC 0-7, bootloader 8-15, TEE 16-23, SNP 24-31, microcode 56-63.
    pub fn from_raw(generation: SnpGeneration, raw: u64) -> SnpTcb {
        let b = raw.to_le_bytes();
        match generation {
            SnpGeneration::Milan | SnpGeneration::Genoa => SnpTcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            },
            SnpGeneration::Turin => SnpTcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// The processor generations whose AMD roots this crate carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnpGeneration {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004/8004 (Zen 4).
    Genoa,
    /// EPYC 9005 (Zen 5).
    Turin,
}

impl SnpGeneration {
    /// Every generation.
    pub const ALL: [SnpGeneration; 3] = [Self::Milan, Self::Genoa, Self::Turin];

    /// AMD's name, as in [`crate::SnpDetails::generation`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Milan => "Milan",
            Self::Genoa => "Genoa",
            Self::Turin => "Turin",
        }
    }

    /// The generation of that name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|g| g.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for SnpGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The minimum REPORTED_TCB, per processor generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnpMinTcb {
    /// Milan's minimum.
    pub milan: SnpTcb,
    /// Genoa's minimum.
    pub genoa: SnpTcb,
    /// Turin's minimum.
    pub turin: SnpTcb,
}

/// Milan's SNP firmware SPL with AMD-SB-3019's fix (CVE-2024-56161, microcode signature
/// verification; "SEV firmware SNP SPL 0x18 on Milan, 0x17 on Genoa").
pub const SB3019_MILAN_SNP_SPL: u8 = 0x18;
/// Genoa's SNP firmware SPL with AMD-SB-3019's fix.
pub const SB3019_GENOA_SNP_SPL: u8 = 0x17;

impl Default for SnpMinTcb {
    /// AMD-SB-3019 (February 2025; CVE-2024-56161, a malicious microcode patch loaded by the
    /// host breaks SEV-SNP): its fix raises the SNP firmware SPL, to 0x18 on Milan and 0x17 on
    /// Genoa; a report below that cannot prove the fix. Other components stay 0 (the bulletin
    /// names no further minimum). Turin (Zen 5) is not in that bulletin: no minimum by
    /// default; set one with `turin:...` when AMD publishes one for it.
    fn default() -> Self {
        SnpMinTcb {
            milan: SnpTcb {
                snp: SB3019_MILAN_SNP_SPL,
                ..SnpTcb::default()
            },
            genoa: SnpTcb {
                snp: SB3019_GENOA_SNP_SPL,
                ..SnpTcb::default()
            },
            turin: SnpTcb::default(),
        }
    }
}

impl SnpMinTcb {
    /// No minimum at all (every component 0).
    pub fn none() -> Self {
        SnpMinTcb {
            milan: SnpTcb::default(),
            genoa: SnpTcb::default(),
            turin: SnpTcb::default(),
        }
    }

    /// The minimum for the generation of that name; for a name this crate does not know, the
    /// component-wise highest of all (strictest).
    pub fn for_generation(&self, name: &str) -> SnpTcb {
        match SnpGeneration::from_name(name) {
            Some(g) => *self.get(g),
            None => {
                let all = [self.milan, self.genoa, self.turin];
                let max = |f: fn(&SnpTcb) -> u8| all.iter().map(f).max().unwrap_or(0);
                SnpTcb {
                    bootloader: max(|t| t.bootloader),
                    tee: max(|t| t.tee),
                    snp: max(|t| t.snp),
                    microcode: max(|t| t.microcode),
                    fmc: all.iter().filter_map(|t| t.fmc).max(),
                }
            }
        }
    }

    /// One generation's minimum.
    pub fn get(&self, g: SnpGeneration) -> &SnpTcb {
        match g {
            SnpGeneration::Milan => &self.milan,
            SnpGeneration::Genoa => &self.genoa,
            SnpGeneration::Turin => &self.turin,
        }
    }

    fn get_mut(&mut self, g: SnpGeneration) -> &mut SnpTcb {
        match g {
            SnpGeneration::Milan => &mut self.milan,
            SnpGeneration::Genoa => &mut self.genoa,
            SnpGeneration::Turin => &mut self.turin,
        }
    }

    /// Replaces the minimum of the generations `spec` names (all without a prefix).
    pub fn apply(&mut self, spec: &SnpMinTcbSpec) {
        for g in SnpGeneration::ALL {
            if spec.generation.is_none_or(|only| only == g) {
                *self.get_mut(g) = match spec.value {
                    TcbValue::Components(t) => t,
                    TcbValue::Raw(raw) => SnpTcb::from_raw(g, raw),
                };
            }
        }
    }
}

/// One `--snp-min-tcb` value: `[GENERATION:]TCB`, where GENERATION is `milan`, `genoa` or
/// `turin` (without it, every generation) and TCB is either components,
/// `bootloader=4,tee=0,snp=0x18,microcode=0xdb[,fmc=N]` (a component left out is 0), or the
/// 64-bit TCB_VERSION in hex as tools print it (`0xdb18000000000004`; only with a
/// generation, as the layout differs), or `none` (every component 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnpMinTcbSpec {
    /// The generation it applies to; `None`: all.
    pub generation: Option<SnpGeneration>,
    value: TcbValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcbValue {
    Components(SnpTcb),
    Raw(u64),
}

/// A `--snp-min-tcb` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpMinTcbSpecError {
    /// The prefix before `:` is not a generation.
    #[error("unknown processor generation {0:?} (expected milan, genoa or turin)")]
    UnknownGeneration(String),
    /// A component name is not one of the TCB's.
    #[error("unknown TCB component {0:?} (expected bootloader, tee, snp, microcode or fmc)")]
    UnknownComponent(String),
    /// A component's value is not a number from 0 to 255 (decimal or 0x hex).
    #[error("TCB component {component}: {value:?} is not a number from 0 to 255")]
    BadComponentValue {
        /// The component.
        component: String,
        /// Its text.
        value: String,
    },
    /// A raw TCB_VERSION is not 1 to 16 hex digits after `0x`.
    #[error("{0:?} is not a 64-bit TCB_VERSION (0x and up to 16 hex digits)")]
    BadRaw(String),
    /// A raw TCB_VERSION without a generation: its layout differs between generations.
    #[error(
        "a raw TCB_VERSION needs its generation (milan:, genoa: or turin:): the layout differs"
    )]
    RawNeedsGeneration,
    /// A `name=value` item without `=`.
    #[error("{0:?} is not name=value")]
    NotNameValue(String),
}

impl FromStr for SnpMinTcbSpec {
    type Err = SnpMinTcbSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (generation, body) = match s.split_once(':') {
            Some((g, body)) => (
                Some(
                    SnpGeneration::from_name(g.trim())
                        .ok_or_else(|| SnpMinTcbSpecError::UnknownGeneration(g.to_owned()))?,
                ),
                body.trim(),
            ),
            None => (None, s),
        };
        let value = if body.eq_ignore_ascii_case("none") {
            TcbValue::Components(SnpTcb::default())
        } else if let Some(hex) = body.strip_prefix("0x").filter(|_| !body.contains('=')) {
            if generation.is_none() {
                return Err(SnpMinTcbSpecError::RawNeedsGeneration);
            }
            if hex.is_empty() || hex.len() > 16 {
                return Err(SnpMinTcbSpecError::BadRaw(body.to_owned()));
            }
            TcbValue::Raw(
                u64::from_str_radix(hex, 16)
                    .map_err(|_| SnpMinTcbSpecError::BadRaw(body.to_owned()))?,
            )
        } else {
            TcbValue::Components(parse_components(body)?)
        };
        Ok(SnpMinTcbSpec { generation, value })
    }
}

fn parse_components(body: &str) -> Result<SnpTcb, SnpMinTcbSpecError> {
    let mut tcb = SnpTcb::default();
    for item in body.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (name, value) = item
            .split_once('=')
            .ok_or_else(|| SnpMinTcbSpecError::NotNameValue(item.to_owned()))?;
        let (name, value) = (name.trim(), value.trim());
        let bad = || SnpMinTcbSpecError::BadComponentValue {
            component: name.to_owned(),
            value: value.to_owned(),
        };
        let n = match value.strip_prefix("0x") {
            Some(hex) => u8::from_str_radix(hex, 16).map_err(|_| bad())?,
            None => value.parse::<u8>().map_err(|_| bad())?,
        };
        match name.to_ascii_lowercase().as_str() {
            "bootloader" | "bl" => tcb.bootloader = n,
            "tee" => tcb.tee = n,
            "snp" => tcb.snp = n,
            "microcode" | "ucode" => tcb.microcode = n,
            "fmc" => tcb.fmc = Some(n),
            _ => return Err(SnpMinTcbSpecError::UnknownComponent(name.to_owned())),
        }
    }
    Ok(tcb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_minimum_is_sb3019_per_generation() {
        let m = SnpMinTcb::default();
        assert_eq!(m.for_generation("Milan").snp, 0x18);
        assert_eq!(m.for_generation("Genoa").snp, 0x17);
        assert_eq!(m.for_generation("Turin"), SnpTcb::default());
        // An unknown generation gets the strictest of all.
        assert_eq!(m.for_generation("Venice").snp, 0x18);
    }

    #[test]
    fn raw_tcb_version_decodes_per_layout() {
        // Milan, as `snpguest` / CCF print it: microcode 0xdb, SNP 0x18, bootloader 4.
        let milan = SnpTcb::from_raw(SnpGeneration::Milan, 0xdb18_0000_0000_0004);
        assert_eq!(
            milan,
            SnpTcb {
                bootloader: 4,
                tee: 0,
                snp: 0x18,
                microcode: 0xdb,
                fmc: None
            }
        );
        // Turin's layout: microcode 0x11, SNP 0x22, TEE 0x33, bootloader 0x44, FMC 0x55.
        let turin = SnpTcb::from_raw(SnpGeneration::Turin, 0x1100_0000_2233_4455);
        assert_eq!(
            turin,
            SnpTcb {
                bootloader: 0x44,
                tee: 0x33,
                snp: 0x22,
                microcode: 0x11,
                fmc: Some(0x55)
            }
        );
    }

    #[test]
    fn specs_parse_and_apply_to_their_generations() {
        let mut m = SnpMinTcb::default();
        m.apply(&"genoa:snp=0x1b,microcode=84".parse().unwrap());
        assert_eq!(m.genoa.snp, 0x1b);
        assert_eq!(m.genoa.microcode, 84);
        assert_eq!(m.milan.snp, 0x18, "milan untouched");

        m.apply(&"milan:0xdb18000000000004".parse().unwrap());
        assert_eq!((m.milan.microcode, m.milan.bootloader), (0xdb, 4));

        m.apply(&"bl=1".parse().unwrap());
        for g in SnpGeneration::ALL {
            assert_eq!(
                *m.get(g),
                SnpTcb {
                    bootloader: 1,
                    ..SnpTcb::default()
                }
            );
        }
        m.apply(&"none".parse().unwrap());
        assert_eq!(m, SnpMinTcb::none());
    }

    #[test]
    fn bad_specs_are_refused_with_their_reason() {
        let err = |s: &str| s.parse::<SnpMinTcbSpec>().unwrap_err();
        assert_eq!(
            err("venice:snp=1"),
            SnpMinTcbSpecError::UnknownGeneration("venice".into())
        );
        assert_eq!(
            err("snp=1,foo=2"),
            SnpMinTcbSpecError::UnknownComponent("foo".into())
        );
        assert!(matches!(
            err("snp=256"),
            SnpMinTcbSpecError::BadComponentValue { .. }
        ));
        assert_eq!(
            err("0xdb18000000000004"),
            SnpMinTcbSpecError::RawNeedsGeneration
        );
        assert!(matches!(
            err("milan:0x1db18000000000004"),
            SnpMinTcbSpecError::BadRaw(_)
        ));
        assert!(matches!(
            err("milan:snp"),
            SnpMinTcbSpecError::NotNameValue(_)
        ));
    }
}
