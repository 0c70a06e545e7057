//! Builds the pinned AmdSev OVMF alone (or finds it in the cache), checks that the SNP launch
//! digest can be computed for it, and prints where it is:
//! `cargo run -p appliance-image --example amdsev_ovmf -- [CACHE] [JOBS]`.
//!
//! CACHE defaults to the image tool's (`$XDG_CACHE_HOME/smart-worker/image`, else
//! `~/.cache/smart-worker/image`); JOBS to the number of CPUs.

use appliance_image::measure::amdsev_ovmf;

fn main() -> anyhow::Result<()> {
    let (cache, jobs) = appliance_image::util::cache_and_jobs_args(std::env::args_os().skip(1))
        .map_err(anyhow::Error::msg)?;
    let ovmf = amdsev_ovmf::build(&cache, jobs)?;
    let facts = amdsev_ovmf::check_firmware(&ovmf)?;
    println!("ovmf {}", ovmf.display());
    println!("sha256 {}", appliance_image::util::sha256_file(&ovmf)?);
    println!("sev_hashes_table_gpa {:#x}", facts.hashes_table_gpa);
    for (gpa, size, kind) in &facts.sections {
        println!("snp_section {kind} {gpa:#x} {size:#x}");
    }
    println!("origin {}", amdsev_ovmf::origin());
    Ok(())
}
