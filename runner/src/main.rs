use std::io::IsTerminal;

use clap::Parser;
use runner::config::Config;
use runner::config::LogFormat;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    if runner::init::is_pid1() {
        // The appliance image: the kernel started us as init (runner/src/init/). Never returns.
        runner::init::run(|config| init_logging(config.log_format), serve);
    }
    let config = Config::parse();
    init_logging(config.log_format);
    serve(config)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(runner::server::serve(config))?;
    Ok(())
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
