//! Builds the minimal kernel alone (or finds it in the cache) and prints where it is:
//! `cargo run -p appliance-image --example kernel -- [CACHE] [JOBS]`.
//!
//! CACHE defaults to the image tool's (`$XDG_CACHE_HOME/smart-worker/image`, else
//! `~/.cache/smart-worker/image`); JOBS to the number of CPUs.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let cache = match args.next() {
        Some(cache) => PathBuf::from(cache),
        None => appliance_image::util::default_cache_dir()
            .ok_or_else(|| anyhow::anyhow!("no CACHE argument, XDG_CACHE_HOME or HOME"))?,
    };
    let jobs = match args.next() {
        Some(jobs) => jobs.to_string_lossy().parse()?,
        None => appliance_image::util::default_jobs(),
    };
    let built = appliance_image::kernel::minimal::build(&cache, None, jobs)?;
    println!("bzimage {}", built.bzimage.display());
    println!("config {}", built.config.display());
    println!("release {}", built.release);
    println!("cache_key {}", built.cache_key);
    println!("source_deb_sha256 {}", built.source_deb_sha256);
    Ok(())
}
