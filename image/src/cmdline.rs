//! The appliance's kernel command line (measured with the kernel): every runner setting the
//! image makes is a `RUNNER_*=value` word here.

use crate::{rootfs, Options, CHAINS_FILE, DEFAULT_CMDLINE, KEY_STORES_FILE};

/// What a production image (without `--dev`) adds: the runner refuses to start without a TEE,
/// refuses worker creation on plain HTTP (a worker's config only over attested TLS), and logs
/// workers' console lines at `debug`, below the default `RUNNER_LOG` level, so they stay off
/// the host's serial console (the owner reads them through the API).
pub const PRODUCTION_CMDLINE: &[&str] = &[
    "RUNNER_REQUIRE_TEE=1",
    "RUNNER_CREATION_TLS_ONLY=1",
    "RUNNER_WORKER_LOG_LEVEL=debug",
];

/// The appliance's kernel command line: [`DEFAULT_CMDLINE`], the root's words, the runner's
/// configuration files, [`PRODUCTION_CMDLINE`] (unless `options.dev`), then the builder's words.
pub fn cmdline(options: &Options, root_words: impl IntoIterator<Item = String>) -> String {
    let production = (!options.dev)
        .then_some(PRODUCTION_CMDLINE)
        .into_iter()
        .flatten()
        .map(|w| (*w).to_owned());
    std::iter::once(DEFAULT_CMDLINE.to_owned())
        .chain(root_words)
        .chain(config_cmdline(options))
        .chain(production)
        .chain(options.cmdline_append.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The command-line words that point the runner at the configuration files the image carries.
pub fn config_cmdline(options: &Options) -> Vec<String> {
    let mut words = Vec::new();
    if options.key_stores.is_some() {
        words.push(format!(
            "RUNNER_KEY_STORES={}/{KEY_STORES_FILE}",
            rootfs::CONFIG_DIR
        ));
    }
    if options.chains.is_some() {
        words.push(format!(
            "RUNNER_CHAINS={}/{CHAINS_FILE}",
            rootfs::CONFIG_DIR
        ));
    }
    words
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::RunnerSource;

    fn options() -> Options {
        Options::new(
            PathBuf::from("."),
            PathBuf::from("out"),
            PathBuf::from("cache"),
            RunnerSource::Prebuilt(PathBuf::from("runner")),
        )
    }

    #[test]
    fn the_default_image_fails_closed() {
        let mut o = options();
        o.cmdline_append = vec!["RUNNER_LOG=info".into()];
        let words = cmdline(&o, ["root=/dev/dm-0".to_owned()]);
        let words: Vec<&str> = words.split(' ').collect();
        for w in PRODUCTION_CMDLINE {
            assert!(words.contains(w), "{w} missing from {words:?}");
        }
        assert!(words.contains(&"RUNNER_REQUIRE_TEE=1"));
        assert!(words.contains(&"RUNNER_CREATION_TLS_ONLY=1"));
        assert!(words.contains(&"RUNNER_WORKER_LOG_LEVEL=debug"));
        // The builder's words come last, so they can still override (measured all the same).
        assert_eq!(words.last(), Some(&"RUNNER_LOG=info"));
        assert!(words.starts_with(&["console=ttyS0", "panic=-1", "quiet", "root=/dev/dm-0"]));
    }

    #[test]
    fn dev_drops_the_production_words() {
        let mut o = options();
        o.dev = true;
        let line = cmdline(&o, Vec::new());
        assert!(!line.contains("RUNNER_REQUIRE_TEE"), "{line}");
        assert!(!line.contains("RUNNER_CREATION_TLS_ONLY"), "{line}");
        assert!(!line.contains("RUNNER_WORKER_LOG_LEVEL"), "{line}");
        assert_eq!(line, DEFAULT_CMDLINE);
    }
}
