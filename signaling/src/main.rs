use clap::Parser;
use parley_signaling::configuration::{Cli, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(path) = &cli.dump_openapi {
        std::fs::write(path, parley_signaling::openapi_json())?;
        return Ok(());
    }
    parley_signaling::telemetry::init();
    let config = Config::load(&cli)?;
    tracing::info!(config = %config.describe(), "starting Parley");
    let server = match parley_signaling::spawn(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "cannot start");
            return Err(e);
        }
    };
    println!("Parley is running at http://{}", server.http_addr());
    shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
