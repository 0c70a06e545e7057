//! The same figures for deno, side by side: the same V8 engine, one process per script.
//!
//! The deno binary is `--deno PATH`, else `deno` on `PATH`, else the `deno` npm package installed
//! into `$HOME/.cache/smart-worker/bench-npm` (the package ships the binary through an optional,
//! platform-specific dependency such as `@deno/linux-x64-glibc`).

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tempfile::TempDir;
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use crate::measure::{idle_script, millis, progress};
use crate::system;

/// How long an idle deno process runs before its memory is read.
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// A deno binary and what `deno --version` says of it.
pub struct Deno {
    pub path: PathBuf,
    pub version: String,
}

/// deno's figures, or why there are none.
pub enum DenoFigures {
    Measured {
        deno: Deno,
        /// Spawn of `deno run --quiet <file>` to its exit, one sample per run.
        cold_start_ms: Vec<f64>,
        /// The RSS of one `deno run` process idling on a timer.
        idle_rss_kib: u64,
    },
    Unavailable(String),
}

impl DenoFigures {
    /// The deno binary measured, if any.
    pub fn binary(&self) -> Option<&Deno> {
        match self {
            DenoFigures::Measured { deno, .. } => Some(deno),
            DenoFigures::Unavailable(_) => None,
        }
    }
}

/// Finds (or installs) deno and measures it; never fails: a problem becomes
/// [`DenoFigures::Unavailable`] with the reason.
pub async fn measure(explicit: Option<&Path>, runs: usize) -> DenoFigures {
    let measured = async {
        let deno = locate(explicit).await?;
        eprintln!("deno: {} ({})", deno.path.display(), deno.version);
        let scratch = Scratch::new()?;
        let cold_start_ms = scratch.cold_starts(&deno, runs).await?;
        let idle_rss_kib = scratch.idle_rss_kib(&deno).await?;
        anyhow::Ok(DenoFigures::Measured {
            deno,
            cold_start_ms,
            idle_rss_kib,
        })
    };
    measured.await.unwrap_or_else(|error| {
        eprintln!("deno: skipped: {error:#}");
        DenoFigures::Unavailable(format!("{error:#}"))
    })
}

async fn locate(explicit: Option<&Path>) -> Result<Deno> {
    if let Some(path) = explicit {
        return Deno::at(path).await;
    }
    if let Some(path) = on_path("deno") {
        return Deno::at(&path).await;
    }
    let prefix = npm_prefix()?;
    match installed_binary(&prefix) {
        Some(path) => Deno::at(&path).await,
        None => install_from_npm(&prefix).await,
    }
}

impl Deno {
    /// The deno binary at `path`, checked by running `--version`.
    async fn at(path: &Path) -> Result<Deno> {
        let output = Command::new(path)
            .arg("--version")
            .output()
            .await
            .with_context(|| format!("run {} --version", path.display()))?;
        let stdout = checked(output, &format!("{} --version", path.display()))?;
        // `deno 2.x.y (stable, release, …)` then `v8 …` then `typescript …`.
        let version = stdout.lines().take(2).collect::<Vec<_>>().join(", ");
        Ok(Deno {
            path: path.to_owned(),
            version,
        })
    }

    /// `deno` with its state in `deno_dir`, no update check and no prompts.
    pub fn command(&self, deno_dir: &Path) -> Command {
        let mut command = Command::new(&self.path);
        command
            .env("DENO_DIR", deno_dir)
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("DENO_NO_PROMPT", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

/// The first executable file called `name` in a directory of `PATH`.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `$HOME/.cache/smart-worker/bench-npm`.
fn npm_prefix() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    Ok(Path::new(&home).join(".cache/smart-worker/bench-npm"))
}

/// Installs the `deno` npm package (its newest version) under `prefix`.
async fn install_from_npm(prefix: &Path) -> Result<Deno> {
    let view = Command::new("npm")
        .args(["view", "deno", "version"])
        .output()
        .await
        .context("run npm (is it installed?)")?;
    let version = checked(view, "npm view deno version")?.trim().to_owned();
    eprintln!(
        "deno: installing deno@{version} from npm into {}",
        prefix.display()
    );
    fs::create_dir_all(prefix)?;
    let install = Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(prefix)
        .args(["--no-audit", "--no-fund"])
        .arg(format!("deno@{version}"))
        .output()
        .await
        .context("run npm install")?;
    checked(install, "npm install deno")?;
    let path = installed_binary(prefix).with_context(|| {
        format!(
            "npm installed deno@{version} but {} holds no deno binary for this platform",
            prefix.display()
        )
    })?;
    Deno::at(&path).await
}

/// The native deno binary of an npm install under `prefix`: the platform package's, else the one
/// the `deno` package's install script links next to its JavaScript launcher. Never the launcher
/// itself (`bin.cjs`), which would add a node start to every deno start.
fn installed_binary(prefix: &Path) -> Option<PathBuf> {
    let modules = prefix.join("node_modules");
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let platform_package = format!("{}-{arch}-glibc", std::env::consts::OS);
    [
        modules.join("@deno").join(platform_package).join("deno"),
        modules.join("deno").join("deno"),
    ]
    .into_iter()
    .find(|candidate| is_elf(candidate))
}

fn is_elf(path: &Path) -> bool {
    let mut magic = [0; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

/// The stdout of a finished command, or an error showing its stderr.
fn checked(output: Output, what: &str) -> Result<String> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A temporary directory for the scripts deno runs and for its `DENO_DIR` (its caches).
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        Ok(Scratch {
            dir: tempfile::tempdir().context("create a temp dir for deno")?,
        })
    }

    fn deno_dir(&self) -> PathBuf {
        self.dir.path().join("deno-dir")
    }

    /// Writes `source` to a new file in the scratch directory.
    fn script(&self, name: &str, source: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("{}.js", e2e::tag(name)));
        fs::write(&path, source).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// Times `runs` runs of `deno run --quiet <file>`, from spawn to exit, each on its own file
    /// with the runner's idle worker (unique, so that deno's code cache never has it). One run
    /// before them is not timed: it pages the binary in and creates `DENO_DIR`.
    async fn cold_starts(&self, deno: &Deno, runs: usize) -> Result<Vec<f64>> {
        self.cold_start(deno).await?;
        let mut samples = Vec::with_capacity(runs);
        for i in 1..=runs {
            samples.push(self.cold_start(deno).await?);
            progress("deno cold start", i, runs);
        }
        Ok(samples)
    }

    async fn cold_start(&self, deno: &Deno) -> Result<f64> {
        let file = self.script("start", &idle_script("deno"))?;
        let started = Instant::now();
        let output = deno
            .command(&self.deno_dir())
            .arg("run")
            .arg("--quiet")
            .arg(&file)
            .output()
            .await
            .context("run deno")?;
        let elapsed = millis(started.elapsed());
        checked(output, "deno run")?;
        Ok(elapsed)
    }

    /// The RSS of one `deno run` process, [`IDLE_WAIT`] after its start, running the runner's
    /// idle worker and a timer that keeps it alive.
    async fn idle_rss_kib(&self, deno: &Deno) -> Result<u64> {
        let source = format!(
            "{}setInterval(() => {{}}, 1 << 30);\n",
            idle_script("deno-idle")
        );
        let file = self.script("idle", &source)?;
        let mut child = deno
            .command(&self.deno_dir())
            .arg("run")
            .arg("--quiet")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start deno")?;
        sleep(IDLE_WAIT).await;
        let pid = child.id();
        ensure!(
            child.try_wait()?.is_none(),
            "the idle deno process exited early"
        );
        let rss = system::rss_kib(pid.context("the idle deno process has no id")?);
        child.kill().await?;
        rss
    }
}
