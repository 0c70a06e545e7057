//! Builds the minimal kernel alone (or finds it in the cache) and prints where it is:
//! `cargo run -p appliance-image --example kernel -- [CACHE] [JOBS]`.
//!
//! CACHE defaults to the image tool's (`$XDG_CACHE_HOME/smart-worker/image`, else
//! `~/.cache/smart-worker/image`); JOBS to the number of CPUs.

fn main() -> anyhow::Result<()> {
    let (cache, jobs) = appliance_image::util::cache_and_jobs_args(std::env::args_os().skip(1))
        .map_err(anyhow::Error::msg)?;
    let built = appliance_image::kernel::minimal::build(&cache, None, jobs)?;
    println!("bzimage {}", built.bzimage.display());
    println!("config {}", built.config.display());
    println!("release {}", built.release);
    println!("cache_key {}", built.cache_key);
    println!("source_deb_sha256 {}", built.source_deb_sha256);
    Ok(())
}
