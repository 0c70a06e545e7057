//! What goes into the initramfs, and with which modes. The runner is `/init`; everything else is
//! what it needs at run time and nothing more: its ELF interpreter and shared libraries, the CA
//! bundle, a few files glibc reads, the kernel modules and their load order (if the kernel has
//! any). The same tree serves as an initramfs or, read-only, as the root disk ([`Layout`]).

use std::path::PathBuf;

use initramfs::{Archive, Contents};

use crate::runner::HostFile;

/// The CA bundle of Debian's `ca-certificates`; workers' `fetch` and the runner's own TLS clients
/// may use the system store.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The inputs of the root file system.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The stripped runner, installed as `/init`.
    pub runner: PathBuf,
    /// ELF interpreter and shared libraries.
    pub libraries: Vec<HostFile>,
    /// CA bundle, if the build host has one.
    pub ca_bundle: Option<PathBuf>,
    pub kernel_release: String,
    /// Modules in load order: path below `lib/modules/<release>/` and contents.
    pub modules: Vec<(String, Vec<u8>)>,
    /// The runner's configuration files (path in the image, contents): measured with the
    /// initramfs, unlike anything the host could hand the appliance at run time.
    pub config_files: Vec<(String, Vec<u8>)>,
    pub layout: Layout,
}

/// Where the tree ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Unpacked by the kernel into a writable tmpfs before init runs; the kernel opens
    /// `/dev/console` in it for init's standard streams before anything is mounted.
    Initramfs,
    /// A read-only disk (erofs): no device node (the kernel has opened the console on its own
    /// built-in initramfs before it mounts the disk, and mounts devtmpfs on `/dev`), and nothing
    /// init writes may live in it — every such path is a mount point or points into `/run`.
    Disk,
}

/// Where init writes the name servers DHCP gives it: `/etc/resolv.conf` is a symlink to it, so
/// the root may be read-only.
pub const RESOLV_CONF_TARGET: &str = "/run/resolv.conf";
/// The state disk's mount point (init mounts it; it must exist on a read-only root).
pub const STATE_MOUNT_POINT: &str = "var/lib/runner";

/// Where the image keeps the runner's configuration files.
pub const CONFIG_DIR: &str = "/etc/runner";

const ETC_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost\n";
const ETC_NSSWITCH: &str = "hosts: files dns\n";
const ETC_PASSWD: &str = "root:x:0:0:root:/root:/nonexistent\n";
const ETC_GROUP: &str = "root:x:0:\n";

/// Builds the archive. Modes are fixed here, never taken from the build machine.
pub fn assemble(inputs: &Inputs) -> Result<Archive, initramfs::Error> {
    let mut archive = Archive::new();
    for dir in ["dev", "proc", "sys", "run", "etc"] {
        archive.add_dir(dir, 0o755)?;
    }
    archive.add_dir("tmp", 0o1777)?;
    archive.add_dir("root", 0o700)?;
    archive.add_dir(STATE_MOUNT_POINT, 0o755)?;
    if inputs.layout == Layout::Initramfs {
        // The kernel opens /dev/console for init's standard streams before anything is mounted.
        archive.add_char_device("dev/console", 0o600, 5, 1)?;
    }
    archive.add_symlink("etc/resolv.conf", RESOLV_CONF_TARGET)?;
    archive.add_file("init", 0o755, Contents::File(inputs.runner.clone()))?;
    for library in &inputs.libraries {
        // The interpreter must be executable (the kernel maps it); libraries need not be.
        let mode = if library.image_path.contains("/ld-linux") {
            0o755
        } else {
            0o644
        };
        archive.add_file(
            &library.image_path,
            mode,
            Contents::File(library.source.clone()),
        )?;
    }
    if let Some(bundle) = &inputs.ca_bundle {
        archive.add_file(CA_BUNDLE, 0o644, Contents::File(bundle.clone()))?;
    }
    for (path, text) in [
        ("etc/hosts", ETC_HOSTS),
        ("etc/nsswitch.conf", ETC_NSSWITCH),
        ("etc/passwd", ETC_PASSWD),
        ("etc/group", ETC_GROUP),
    ] {
        archive.add_file(path, 0o644, Contents::Bytes(text.as_bytes().to_vec()))?;
    }
    if !inputs.config_files.is_empty() {
        archive.add_dir(CONFIG_DIR.trim_start_matches('/'), 0o755)?;
    }
    for (path, contents) in &inputs.config_files {
        archive.add_file(path, 0o644, Contents::Bytes(contents.clone()))?;
    }
    // A kernel without modules (the minimal one) gets no list: init finds none and says so.
    if !inputs.modules.is_empty() {
        let modules_root = format!("/lib/modules/{}", inputs.kernel_release);
        let mut load_list = String::from("# Loaded in this order by the runner as init.\n");
        for (relative, contents) in &inputs.modules {
            let path = format!("{modules_root}/{relative}");
            archive.add_file(&path, 0o644, Contents::Bytes(contents.clone()))?;
            load_list.push_str(&path);
            load_list.push('\n');
        }
        archive.add_file(
            "etc/modules.load",
            0o644,
            Contents::Bytes(load_list.into_bytes()),
        )?;
    }
    Ok(archive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(dir: &std::path::Path) -> Inputs {
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::write(&path, name).unwrap();
            path
        };
        Inputs {
            runner: file("runner"),
            libraries: vec![
                HostFile {
                    image_path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
                    source: file("libc"),
                },
                HostFile {
                    image_path: "/lib64/ld-linux-x86-64.so.2".into(),
                    source: file("ld"),
                },
            ],
            ca_bundle: Some(file("ca")),
            kernel_release: "6.12.0-test".into(),
            modules: vec![(
                "kernel/net/core/failover.ko".into(),
                b"\x7fELF failover".to_vec(),
            )],
            config_files: vec![(
                format!("{CONFIG_DIR}/chains.json"),
                br#"{"local": {"rpc_url": "http://10.0.2.2:8545"}}"#.to_vec(),
            )],
            layout: Layout::Initramfs,
        }
    }

    #[test]
    fn the_runner_is_init_and_its_needs_are_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let archive = assemble(&inputs(dir.path())).unwrap();
        let cpio = archive.write_cpio(Vec::new(), 0).unwrap();
        let entries = initramfs::read_cpio(cpio.as_slice()).unwrap();
        let get = |path: &str| {
            entries
                .iter()
                .find(|(e, _)| e.path == path)
                .unwrap_or_else(|| panic!("{path} missing"))
        };

        assert_eq!(get("init").0.mode, 0o100755);
        assert_eq!(get("etc/runner/chains.json").0.mode, 0o100644);
        assert_eq!(get("init").1, b"runner");
        assert_eq!(get("dev/console").0.mode, 0o020600);
        assert_eq!(get("lib64/ld-linux-x86-64.so.2").0.mode, 0o100755);
        assert_eq!(get("lib/x86_64-linux-gnu/libc.so.6").0.mode, 0o100644);
        assert_eq!(get("tmp").0.mode, 0o041777);
        assert_eq!(get("etc/ssl/certs/ca-certificates.crt").1, b"ca");
        let list = String::from_utf8(get("etc/modules.load").1.clone()).unwrap();
        assert!(
            list.lines()
                .any(|l| l == "/lib/modules/6.12.0-test/kernel/net/core/failover.ko"),
            "{list}"
        );
        assert_eq!(
            get("lib/modules/6.12.0-test/kernel/net/core/failover.ko").1,
            b"\x7fELF failover"
        );
        for dir in ["proc", "sys", "run"] {
            assert_eq!(get(dir).0.mode, 0o040755, "{dir}");
        }
    }

    #[test]
    fn a_disk_root_has_no_device_node_and_nothing_init_writes() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = inputs(dir.path());
        disk.layout = Layout::Disk;
        disk.modules.clear();
        let archive = assemble(&disk).unwrap();

        assert!(!archive.contains("dev/console"));
        assert!(archive.contains("dev"), "the mount point for devtmpfs");
        assert!(archive.contains(STATE_MOUNT_POINT));
        assert!(!archive.contains("etc/modules.load"), "no modules, no list");
        let tree = tempfile::tempdir().unwrap();
        archive.write_tree(tree.path()).unwrap();
        assert_eq!(
            std::fs::read_link(tree.path().join("etc/resolv.conf")).unwrap(),
            std::path::Path::new(RESOLV_CONF_TARGET)
        );
        // The initramfs keeps its console node.
        assert!(assemble(&inputs(dir.path()))
            .unwrap()
            .contains("dev/console"));
    }
}
