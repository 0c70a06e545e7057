use std::io::IsTerminal;

use clap::Parser;
use runner::config::Config;
use runner::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // deno's fetch builds TLS clients with the process-wide rustls provider; with more than one
    // compiled in (ring for our listener, aws-lc-rs from deno's tree) it must be chosen here.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if runner::init::is_pid1() {
        // The appliance image: the kernel started us as init (runner/src/init/), which runs the
        // server as its child (`appliance-server` below). Never returns.
        runner::init::run(|config| init_logging(config.log_format));
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Verify(args)) => {
            init_client_logging();
            verify(&args)
        }
        Some(Command::Deploy(args)) => {
            init_client_logging();
            deploy(&args)
        }
        Some(Command::Verifier(args)) => {
            init_logging(LogFormat::Text);
            verifier(&args)
        }
        Some(Command::ApplianceServer) => {
            let config = runner::init::server_config()?;
            init_logging(config.log_format);
            serve(config)
        }
        None => {
            init_logging(cli.serve.log_format);
            serve(cli.serve)
        }
    }
}

/// Runs Smart Workers: JavaScript workers in their own V8 isolates, created over HTTP.
/// Without a subcommand it serves (see the options below).
#[derive(Parser)]
#[command(
    name = "runner",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Verify an appliance's attestation (RA-TLS), then send it one request over the pinned
    /// connection and print the answer.
    Verify(runner::tls::verify::VerifyArgs),
    /// Create a worker on an appliance after verifying its attestation (as `verify` does):
    /// the script and config are sent only over the verified, pinned connection. Prints the
    /// worker's id and management token as JSON.
    Deploy(runner::tls::deploy::DeployArgs),
    /// Run the attestation verifier service for Omni Keys: checks a runner's evidence and signs
    /// the authorization the on-chain permitter trusts. Prints its signer address at start.
    Verifier(runner::verifier::VerifierArgs),
    /// The appliance's server, as init's child (runner/src/init/supervisor.rs).
    #[command(name = "appliance-server", hide = true)]
    ApplianceServer,
}

fn verifier(args: &runner::verifier::VerifierArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(runner::verifier::run(args))?;
    Ok(())
}

fn verify(args: &runner::tls::verify::VerifyArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = runtime.block_on(runner::tls::verify::run(args))?;
    let verified = &answer.verified;
    if verified.insecure {
        eprintln!(
            "verified: tee={} — INSECURE development evidence (allowed by --allow-insecure-dev)",
            verified.tee
        );
    } else {
        eprintln!(
            "verified: tee={} measurements={:?}",
            verified.tee, verified.measurements
        );
    }
    print_tpm(verified);
    eprintln!("HTTP {}", answer.status);
    std::io::Write::write_all(&mut std::io::stdout(), &answer.body)?;
    if !(200..300).contains(&answer.status) {
        anyhow::bail!("the appliance answered HTTP {}", answer.status);
    }
    Ok(())
}

/// What the TPM quote showed and why its key was trusted (loud when nothing vouches for it),
/// and the Google launch endorsement the cloud firmware was accepted by, if any.
fn print_tpm(verified: &attest::Verified) {
    let endorsement = (verified.tdx.as_ref())
        .and_then(|t| t.firmware_endorsement.as_ref())
        .or_else(|| verified.snp.as_ref()?.firmware_endorsement.as_ref());
    if let Some(e) = endorsement {
        eprintln!(
            "verified firmware: endorsed by Google (launch endorsement for UEFI {}, signed at {} Unix seconds)",
            e.uefi_digest, e.signed_at
        );
    }
    if let Some(t) = &verified.tpm {
        eprintln!(
            "verified TPM: {} — AK {}; boot log {}; image platform {}",
            t.ak_trust,
            t.ak_name,
            if t.event_log_replayed {
                "replayed"
            } else {
                "absent"
            },
            t.uefi_platform
                .as_deref()
                .unwrap_or("(not identified by the TPM)")
        );
    }
}

fn deploy(args: &runner::tls::deploy::DeployArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let deployed = runtime.block_on(runner::tls::deploy::run(args))?;
    if deployed.verified.insecure {
        eprintln!(
            "verified: tee={} — INSECURE development evidence (allowed by --allow-insecure-dev)",
            deployed.verified.tee
        );
    } else {
        eprintln!(
            "verified: tee={} measurements={:?}",
            deployed.verified.tee, deployed.verified.measurements
        );
    }
    print_tpm(&deployed.verified);
    eprintln!(
        "created worker {}; keep the token: it is shown only once",
        deployed.id
    );
    println!(
        "{}",
        serde_json::json!({ "id": deployed.id, "token": deployed.token })
    );
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(runner::server::serve(config))?;
    Ok(())
}

/// The client commands (`verify`, `deploy`): warnings only (e.g. what `--expect` will refuse),
/// unless RUNNER_LOG says otherwise.
fn init_client_logging() {
    let filter = EnvFilter::try_from_env("RUNNER_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("RUNNER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
