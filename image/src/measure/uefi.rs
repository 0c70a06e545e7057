//! What each platform's firmware measures when it boots the UEFI disk, predicted from the
//! artifact alone (`manifest.json` → `uefi.predictions`).
//!
//! The boot: the firmware finds no boot entry of ours and boots the removable-media path
//! `\EFI\BOOT\BOOTX64.EFI` on the disk — the UKI. edk2's measured boot (Tcg2Dxe /
//! DxeTpm2MeasureBootLib for a TPM; TdTcg2Dxe for TDX, PCR 1/7 → RTMR[0], PCR 2–6 → RTMR[1],
//! PCR 8–15 → RTMR[2]) logs, in order:
//!
//! ```text
//! PCR 4  EV_EFI_ACTION "Calling EFI Application from Boot Option"   (ReadyToBoot, first boot)
//! PCR 4  EV_SEPARATOR 00000000                                       (ReadyToBoot, PCR 0–7)
//! PCR 5  EV_SEPARATOR 00000000
//! PCR 5  EV_EFI_GPT_EVENT the disk's GPT header and used entries     (first image from the disk)
//! PCR 4  EV_EFI_BOOT_SERVICES_APPLICATION the UKI's Authenticode digest
//! PCR 4  EV_EFI_BOOT_SERVICES_APPLICATION the kernel's (.linux) Authenticode digest: systemd-stub
//!        257 loads it with the firmware's LoadImage; its security override (which skips the
//!        firmware's hooks, measurement included) is installed only under Secure Boot
//! PCR 5  EV_EFI_ACTION "Exit Boot Services Invocation", "… Returned with Success"
//! ```
//!
//! TDX logs the same events with SHA-384 (PCR 4 and 5 both into RTMR[1]; one separator for
//! RTMR[1]). Then systemd-stub measures its sections into PCR 11 (each present one of
//! [`STUB_MEASURED_SECTIONS`]: name with NUL, then data) and the kernel's EFI stub its
//! LoadOptions into PCR 9, then the initrd systemd-stub hands it (LINUX_EFI_INITRD_MEDIA):
//! with nothing on the ESP but the UKI that is a cpio of `/.extra/os-release` made from `.osrel`
//! ([`stub_initrd`]). Under TDX these go to RTMR[2]: systemd-stub 257 measures its sections into
//! both the TPM and the CC protocol, but Linux's EFI stub uses the CC protocol only when the
//! firmware has no TCG2 protocol, so its two events are predicted as optional and RTMR[2] as
//! closed (no other event may be in it); its value is therefore one of two and not written.
//! Neither path is checked here (no TDX hardware).
//!
//! Checked under QEMU with Debian 12's OVMF (2022.11) and swtpm, reading the PCRs after the
//! boot: PCR 4, PCR 5, PCR 9 and PCR 11 equal these predictions, PCR 12 is zero (no command line
//! from the boot entry). The initrd's bytes were read from the guest's memory (QMP `pmemsave`)
//! before the kernel freed them; [`stub_initrd`] gives the same 420 bytes.
//!
//! Assumed, and said so in the manifest: no other boot option (PXE, another disk) runs first —
//! it would add its own PCR 4 event — and no option ROM is measured. Under an edk2 firmware
//! these are the values for a boot from the disk alone (`qemu/run` with `SW_DISK` sets the disk
//! as the only boot device). The clouds' firmware is edk2-derived; their logs are not checked here.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256, Sha384};

use crate::manifest::{Event, Prediction};

pub const CALLING: &str = "Calling EFI Application from Boot Option";
pub const EBS_INVOCATION: &str = "Exit Boot Services Invocation";
pub const EBS_SUCCESS: &str = "Exit Boot Services Returned with Success";

/// The digests the predictions need, from the artifact.
pub struct Inputs<'a> {
    pub uki_authenticode_sha256: &'a [u8],
    pub uki_authenticode_sha384: &'a [u8],
    pub kernel_authenticode_sha256: &'a [u8],
    pub kernel_authenticode_sha384: &'a [u8],
    /// UEFI_GPT_DATA as the firmware logs it ([`crate::disk::gpt::gpt_event_data`]).
    pub gpt_event: &'a [u8],
    /// The UKI's command line, for the kernel's own PCR 9 / RTMR[2] event.
    pub cmdline: &'a str,
    /// The UKI's sections systemd-stub measures into PCR 11, in its order ([`stub_sections`]).
    pub stub_sections: &'a [(String, Vec<u8>)],
}

/// The sections systemd-stub 257 measures (its `unified_sections`, `.pcrsig` excluded), in the
/// order it measures them: for each one present, the name with a NUL, then the data
/// (`VirtualSize` bytes), each its own PCR 11 extend. The stub's own `.sbat` is among them.
pub const STUB_MEASURED_SECTIONS: &[&str] = &[
    ".linux", ".osrel", ".cmdline", ".initrd", ".ucode", ".splash", ".dtb", ".uname", ".sbat",
    ".pcrpkey", ".profile",
];

/// The measured sections of a UKI (PE32+), as [`Inputs::stub_sections`] wants them.
pub fn stub_sections(uki: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    use object::read::pe::PeFile64;
    use object::LittleEndian as LE;
    let pe = PeFile64::parse(uki).map_err(|e| e.to_string())?;
    let table = pe.section_table();
    let mut out = Vec::new();
    for name in STUB_MEASURED_SECTIONS {
        let Some(header) = table.iter().find(|h| {
            h.raw_name().starts_with(name.as_bytes())
                && h.raw_name().get(name.len()).is_none_or(|&b| b == 0)
        }) else {
            continue;
        };
        let at = header.pointer_to_raw_data.get(LE) as usize;
        let size = header.virtual_size.get(LE) as usize;
        let data = uki
            .get(at..at + size)
            .ok_or_else(|| format!("section {name} lies outside the file"))?;
        out.push(((*name).to_owned(), data.to_vec()));
    }
    Ok(out)
}

/// PCR 11's events (`register`: `PCR11`, or `RTMR2` under TDX) with `D`'s digests.
fn stub_events<D: Digest>(inputs: &Inputs<'_>, register: &str, alg: &str) -> Vec<Event> {
    let mut events = Vec::new();
    for (name, data) in inputs.stub_sections {
        let mut named = name.as_bytes().to_vec();
        named.push(0);
        let what = format!("systemd-stub: the UKI's {name} section");
        events.push(event(
            register,
            "EV_IPL",
            alg,
            &D::digest(&named),
            &format!("{what}'s name"),
        ));
        events.push(event(
            register,
            "EV_IPL",
            alg,
            &D::digest(data),
            &format!("{what}'s data"),
        ));
    }
    events
}

/// A register's value after extending each digest in turn from zero.
pub fn replay<D: Digest>(digests: &[Vec<u8>]) -> Vec<u8> {
    let mut value = vec![0u8; <D as Digest>::output_size()];
    for digest in digests {
        let mut h = D::new();
        h.update(&value);
        h.update(digest);
        value = h.finalize().to_vec();
    }
    value
}

fn event(register: &str, event_type: &str, alg: &str, digest: &[u8], what: &str) -> Event {
    Event {
        register: register.into(),
        event_type: event_type.into(),
        digest_alg: alg.into(),
        digest: hex::encode(digest),
        what: what.into(),
        optional: false,
    }
}

/// Linux's EFI stub's PCR 9 events: its LoadOptions (the `.cmdline` systemd-stub passes), then
/// the initrd systemd-stub passes ([`stub_initrd`] of the UKI's `.osrel`).
fn kernel_events<D: Digest>(inputs: &Inputs<'_>, register: &str, alg: &str) -> Vec<Event> {
    let mut events = Vec::new();
    if let Ok(Some(options)) = super::tdx::load_options(inputs.cmdline, false) {
        events.push(event(
            register,
            "EV_EVENT_TAG",
            alg,
            &D::digest(&options),
            "Linux's EFI stub: its LoadOptions (the .cmdline in UTF-16 with a NUL)",
        ));
    }
    if let Some((_, osrel)) = inputs.stub_sections.iter().find(|(n, _)| n == ".osrel") {
        events.push(event(
            register,
            "EV_EVENT_TAG",
            alg,
            &D::digest(stub_initrd(osrel)),
            "Linux's EFI stub: the initrd systemd-stub passes (a cpio of /.extra/os-release)",
        ));
    }
    events
}

/// The initrd systemd-stub 257 builds when the ESP holds nothing but the UKI: a newc cpio with the
/// directory `.extra` (inode 1, mode 0555) and `.extra/os-release` (inode 2, mode 0444, the
/// `.osrel` section), no times or owners, then its fixed trailer record.
pub fn stub_initrd(osrel: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, inode: u32, mode: u32, name: &str, data: &[u8]) {
        let fields = [
            inode,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            0,
            0,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for field in fields {
            out.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(out.len().next_multiple_of(4), 0);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    let mut out = Vec::new();
    entry(&mut out, 1, 0o040555, ".extra", b"");
    entry(&mut out, 2, 0o100444, ".extra/os-release", osrel);
    // systemd's trailer is a fixed string (upper-case B), 124 bytes.
    out.extend_from_slice(b"070701");
    for field in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0] {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(b"0000000B00000000TRAILER!!!\0\0\0\0");
    out
}

/// The boot's PCR 4 and PCR 5 events (`pcr4`, `pcr5` names the registers: `PCR4`/`PCR5` for a
/// TPM, `RTMR1` for both under TDX) with `D`'s digests.
fn boot_events<D: Digest>(
    inputs: &Inputs<'_>,
    (pcr4, pcr5): (&str, &str),
    alg: &str,
    uki: &[u8],
    kernel: &[u8],
) -> Vec<Event> {
    let h = |bytes: &[u8]| D::digest(bytes).to_vec();
    let mut events = vec![
        event(pcr4, "EV_EFI_ACTION", alg, &h(CALLING.as_bytes()), CALLING),
        event(pcr4, "EV_SEPARATOR", alg, &h(&[0; 4]), "separator"),
    ];
    if pcr5 != pcr4 {
        events.push(event(pcr5, "EV_SEPARATOR", alg, &h(&[0; 4]), "separator"));
    }
    events.extend([
        event(
            pcr5,
            "EV_EFI_GPT_EVENT",
            alg,
            &h(inputs.gpt_event),
            "the disk's GPT",
        ),
        event(
            pcr4,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
            alg,
            uki,
            "the UKI",
        ),
        event(
            pcr4,
            "EV_EFI_BOOT_SERVICES_APPLICATION",
            alg,
            kernel,
            "the kernel (.linux), loaded by systemd-stub with LoadImage",
        ),
        event(
            pcr5,
            "EV_EFI_ACTION",
            alg,
            &h(EBS_INVOCATION.as_bytes()),
            EBS_INVOCATION,
        ),
        event(
            pcr5,
            "EV_EFI_ACTION",
            alg,
            &h(EBS_SUCCESS.as_bytes()),
            EBS_SUCCESS,
        ),
    ]);
    events
}

fn value_of(events: &[Event], register: &str, replay: fn(&[Vec<u8>]) -> Vec<u8>) -> String {
    let digests: Vec<Vec<u8>> = events
        .iter()
        .filter(|e| e.register == register)
        .map(|e| hex::decode(&e.digest).unwrap_or_default())
        .collect();
    hex::encode(replay(&digests))
}

/// A vTPM platform: PCR 4 and PCR 5 (SHA-256 bank) with their values.
fn vtpm(inputs: &Inputs<'_>, trust: &str) -> Prediction {
    let events = boot_events::<Sha256>(
        inputs,
        ("PCR4", "PCR5"),
        "sha256",
        inputs.uki_authenticode_sha256,
        inputs.kernel_authenticode_sha256,
    );
    let mut events = events;
    events.extend(stub_events::<Sha256>(inputs, "PCR11", "sha256"));
    events.extend(kernel_events::<Sha256>(inputs, "PCR9", "sha256"));
    let values = ["PCR4", "PCR5", "PCR9", "PCR11"]
        .into_iter()
        .map(|r| (r.to_owned(), value_of(&events, r, replay::<Sha256>)))
        .collect();
    Prediction {
        trust: trust.into(),
        events,
        values,
        closed: Vec::new(),
    }
}

/// The predictions for every platform.
pub fn predictions(inputs: &Inputs<'_>) -> BTreeMap<String, Prediction> {
    let mut out = BTreeMap::new();
    out.insert(
        "qemu-ovmf-tpm".to_owned(),
        vtpm(
            inputs,
            "Nothing is measured by hardware: QEMU with Debian's OVMF measures the boot into a \
             software TPM (swtpm) that the host controls, so this proves nothing against the host \
             and serves to check the predictions.",
        ),
    );
    out.insert(
        "azure-vtpm".to_owned(),
        vtpm(
            inputs,
            "The hardware (SNP or TDX) measures Azure's paravisor and firmware, which Microsoft \
             vouches for through the vTPM's attestation key; the image is identified only by \
             the vTPM's PCR 4 (the UKI and its kernel), kept by that paravisor inside the TEE.",
        ),
    );
    out.insert(
        "gcp-snp-vtpm".to_owned(),
        vtpm(
            inputs,
            "The SNP launch digest covers only Google's firmware (check it against Google's \
             signed launch endorsement); the image is identified by PCR 4 of the vTPM, which \
             Google's hypervisor runs outside the TEE.",
        ),
    );
    out.insert(
        "aws-snp".to_owned(),
        vtpm(
            inputs,
            "The SNP launch digest is that of AWS's published firmware (virtee sev-snp-measure \
             --vmm-type ec2), not of this image; the image is identified by PCR 4 of the \
             NitroTPM, a vTPM that AWS's Nitro hypervisor runs outside the TEE.",
        ),
    );
    let mut tdx = boot_events::<Sha384>(
        inputs,
        ("RTMR1", "RTMR1"),
        "sha384",
        inputs.uki_authenticode_sha384,
        inputs.kernel_authenticode_sha384,
    );
    let rtmr1 = value_of(&tdx, "RTMR1", replay::<Sha384>);
    tdx.extend(stub_events::<Sha384>(inputs, "RTMR2", "sha384"));
    // Linux's EFI stub measures into the CC protocol only when the firmware offers no TCG2
    // protocol (6.12 `efi_measure_tagged_event`); Google's TDX firmware may offer its vTPM's.
    // systemd-stub 257 measures its sections into both. So the kernel's two events are optional,
    // and RTMR[2] is closed: nothing but these events may be in it (a command line or initrd
    // from the ESP would add the stub's own events).
    tdx.extend(
        kernel_events::<Sha384>(inputs, "RTMR2", "sha384")
            .into_iter()
            .map(|e| Event {
                optional: true,
                ..e
            }),
    );
    out.insert(
        "gcp-tdx".to_owned(),
        Prediction {
            trust: "The TDX module measures Google's firmware into MRTD and that firmware the \
                    boot configuration into RTMR[0] (both Google's: check them against Google's \
                    signed launch endorsement for the MRTD, which google/gce-tcb-verifier's \
                    gcetcbendorsement extracts and verifies); \
                    the firmware measures the UKI and its kernel into RTMR[1] inside the TEE, \
                    and systemd-stub the UKI's sections into RTMR[2], which may hold nothing \
                    else (Linux's own two events there are optional: it logs them to a vTPM \
                    instead when the firmware has one); no vTPM is relied on."
                .into(),
            events: tdx,
            values: BTreeMap::from([("RTMR1".to_owned(), rtmr1)]),
            closed: vec!["RTMR2".to_owned()],
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(a: &'a [u8], b: &'a [u8], gpt: &'a [u8]) -> Inputs<'a> {
        Inputs {
            uki_authenticode_sha256: a,
            uki_authenticode_sha384: b,
            kernel_authenticode_sha256: a,
            kernel_authenticode_sha384: b,
            gpt_event: gpt,
            cmdline: "console=ttyS0",
            stub_sections: &[],
        }
    }

    #[test]
    fn pcr4_matches_an_independent_extend_by_hand() {
        let uki = Sha256::digest(b"uki").to_vec();
        let kernel = Sha256::digest(b"kernel").to_vec();
        let mut i = inputs(&uki, &[0; 48], b"gpt");
        i.kernel_authenticode_sha256 = &kernel;
        let p = predictions(&i);
        // By hand: PCR4 = H(H(H(H(0 || H(action)) || H(sep)) || uki) || kernel).
        let extend = |pcr: [u8; 32], d: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(pcr);
            h.update(d);
            h.finalize().into()
        };
        let mut pcr = [0u8; 32];
        pcr = extend(
            pcr,
            &Sha256::digest(b"Calling EFI Application from Boot Option"),
        );
        pcr = extend(pcr, &Sha256::digest([0u8; 4]));
        pcr = extend(pcr, &uki);
        pcr = extend(pcr, &kernel);
        let qemu = &p["qemu-ovmf-tpm"];
        assert_eq!(qemu.values["PCR4"], hex::encode(pcr));
        assert_eq!(p["aws-snp"].values["PCR4"], hex::encode(pcr));
        let pcr4: Vec<_> = qemu
            .events
            .iter()
            .filter(|e| e.register == "PCR4")
            .collect();
        assert_eq!(pcr4.len(), 4);
        assert_eq!(pcr4[2].digest, hex::encode(&uki));
        assert_eq!(pcr4[2].what, "the UKI");
        // A UKI one byte different gives another PCR 4.
        let other = Sha256::digest(b"ukI").to_vec();
        let mut j = inputs(&other, &[0; 48], b"gpt");
        j.kernel_authenticode_sha256 = &kernel;
        assert_ne!(
            predictions(&j)["qemu-ovmf-tpm"].values["PCR4"],
            hex::encode(pcr)
        );
    }

    #[test]
    fn tdx_puts_pcr4_and_pcr5_into_rtmr1_with_one_separator() {
        let sections = [(".osrel".to_owned(), b"ID=appliance\n".to_vec())];
        let mut i = inputs(&[1; 32], &[2; 48], b"gpt");
        i.stub_sections = &sections;
        let p = predictions(&i);
        let tdx = &p["gcp-tdx"];
        let rtmr1: Vec<_> = tdx
            .events
            .iter()
            .filter(|e| e.register == "RTMR1")
            .collect();
        assert_eq!(rtmr1.len(), 7);
        assert_eq!(
            rtmr1
                .iter()
                .filter(|e| e.event_type == "EV_SEPARATOR")
                .count(),
            1
        );
        assert!(rtmr1.iter().all(|e| e.digest.len() == 96));
        let digests: Vec<Vec<u8>> = rtmr1
            .iter()
            .map(|e| hex::decode(&e.digest).unwrap())
            .collect();
        assert_eq!(tdx.values["RTMR1"], hex::encode(replay::<Sha384>(&digests)));
        assert_eq!(tdx.events.last().unwrap().register, "RTMR2");
        assert!(!tdx.values.contains_key("RTMR2"));
        // RTMR[2] is closed; only Linux's own events in it (EV_EVENT_TAG) are optional, the
        // stub's sections are required.
        assert_eq!(tdx.closed, ["RTMR2"]);
        let rtmr2: Vec<_> = tdx
            .events
            .iter()
            .filter(|e| e.register == "RTMR2")
            .collect();
        assert!(rtmr2.iter().any(|e| !e.optional));
        for e in &rtmr2 {
            assert_eq!(e.optional, e.event_type == "EV_EVENT_TAG", "{}", e.what);
        }
        assert!(tdx
            .events
            .iter()
            .all(|e| e.register == "RTMR2" || !e.optional));
        // The TPM platforms predict everything, closed or not.
        assert!(p["qemu-ovmf-tpm"].closed.is_empty());
        assert!(p["qemu-ovmf-tpm"].events.iter().all(|e| !e.optional));
    }

    #[test]
    fn pcr11_is_the_stubs_sections_name_then_data_in_its_order() {
        let kernel = vec![7u8; 3000];
        let uki =
            crate::disk::uki::build_uki(&crate::disk::uki::tests::tiny_pe(), "quiet", &kernel)
                .unwrap();
        let sections = stub_sections(&uki).unwrap();
        let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [".linux", ".osrel", ".cmdline"],
            "the stub's order, not the file's"
        );
        assert_eq!(sections[0].1, kernel, "VirtualSize bytes, no padding");
        assert_eq!(sections[2].1, b"quiet");
        let mut i = inputs(&[0; 32], &[0; 48], b"gpt");
        i.stub_sections = &sections;
        let p = predictions(&i);
        let h = |b: &[u8]| Sha256::digest(b).to_vec();
        let by_hand = replay::<Sha256>(&[
            h(b".linux\0"),
            h(&kernel),
            h(b".osrel\0"),
            h(crate::disk::uki::OS_RELEASE.as_bytes()),
            h(b".cmdline\0"),
            h(b"quiet"),
        ]);
        assert_eq!(p["qemu-ovmf-tpm"].values["PCR11"], hex::encode(by_hand));
    }

    #[test]
    fn the_stubs_initrd_is_the_cpio_seen_in_the_guest() {
        let osrel = br#"ID=smart-worker
NAME="Smart Worker appliance"
"#;
        let cpio = stub_initrd(osrel);
        // Read from the guest's memory under OVMF (image/README.md): 420 bytes with this hash,
        // which is also PCR 9's second extend seen in swtpm.
        assert_eq!(cpio.len(), 420);
        assert_eq!(
            hex::encode(Sha256::digest(&cpio)),
            "88dfb383edb771ff0aa8f6e231afc091496e241f5c141843f51c69b299e35663"
        );
        assert!(cpio.ends_with(b"TRAILER!!!\0\0\0\0"));
        // And the prediction uses it.
        let sections = vec![(".osrel".to_owned(), osrel.to_vec())];
        let mut i = inputs(&[0; 32], &[0; 48], b"gpt");
        i.stub_sections = &sections;
        let pcr9: Vec<_> = predictions(&i)["qemu-ovmf-tpm"]
            .events
            .iter()
            .filter(|e| e.register == "PCR9")
            .map(|e| e.digest.clone())
            .collect();
        assert_eq!(pcr9[1], hex::encode(Sha256::digest(&cpio)));
    }
}
