//! Hot reload (SPEC §7): SIGHUP, and with `--watch` a change of the config file, re-read
//! the config. A valid one is compiled and swapped in whole for new requests; requests in
//! flight finish on the state they started with. An invalid one is logged and counted, and
//! the old one keeps serving. Listener addresses change only on restart.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::metrics::metrics;
use crate::policy::revocation::file_stamp;
use crate::proxy::state::{GatewayState, SharedState};

/// How often `--watch` looks at the config file.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Re-reads one config file into a live state.
pub struct Reloader {
    pub state: SharedState,
    pub path: PathBuf,
}

/// The settings a reload cannot change, because they are bound sockets.
fn listener_settings(config: &Config) -> (&[String], &str, Option<&config::TlsFiles>) {
    (
        &config.server.listen,
        &config.server.admin_listen,
        config.server.tls.as_ref(),
    )
}

impl Reloader {
    /// Loads, compiles and swaps in the config. On error the live state is untouched.
    pub fn reload(&self) -> Result<(), String> {
        let result = self.try_reload();
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics()
            .config_reloads_total
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(()) => tracing::info!(file = %self.path.display(), "config reloaded"),
            Err(error) => tracing::error!(
                file = %self.path.display(),
                "config reload refused; the previous config keeps serving:\n{error}"
            ),
        }
        result
    }

    fn try_reload(&self) -> Result<(), String> {
        let config = config::load(&self.path).map_err(|error| error.to_string())?;
        let previous = self.state.load_full();
        if listener_settings(&config) != listener_settings(&previous.config) {
            tracing::warn!("listen, admin_listen and TLS settings change only on restart");
        }
        if config.revocation_state_file != previous.config.revocation_state_file {
            tracing::warn!("`[revocation] state_file` changes only on restart");
        }
        for warning in &config.warnings {
            tracing::warn!(
                "{}:{}:{}: {}",
                self.path.display(),
                warning.line,
                warning.column,
                warning.message
            );
        }
        let sha256 = config.sha256.clone();
        let next = GatewayState::build(config, Some(&previous), Arc::clone(&previous.revocations))?;
        // Rotation: whichever writer is live reopens its file.
        next.audit.reopen();
        next.revocations.reload(true);
        self.state.store(Arc::new(next));
        metrics().set_config_info(&sha256);
        Ok(())
    }

    /// Reloads on every SIGHUP, and on every change of the file when `watch` is set, in a
    /// background thread for as long as the process runs.
    pub fn spawn(self, watch: bool) {
        let reloader = Arc::new(self);
        let on_signal = Arc::clone(&reloader);
        let spawned = std::thread::Builder::new()
            .name("jobgate-sighup".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(%error, "no SIGHUP reload: cannot start a runtime");
                        return;
                    }
                };
                runtime.block_on(async move {
                    use tokio::signal::unix::{SignalKind, signal};
                    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                        tracing::error!("no SIGHUP reload: cannot install the handler");
                        return;
                    };
                    while hangups.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading the config");
                        let _ = on_signal.reload();
                    }
                });
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "no SIGHUP reload: cannot start its thread");
        }
        if watch {
            let spawned = std::thread::Builder::new()
                .name("jobgate-watch".into())
                .spawn(move || watch_file(&reloader));
            if let Err(error) = spawned {
                tracing::error!(%error, "no --watch: cannot start its thread");
            }
        }
    }
}

fn watch_file(reloader: &Reloader) {
    let mut last = file_stamp(&reloader.path);
    loop {
        std::thread::sleep(WATCH_INTERVAL);
        let now = file_stamp(&reloader.path);
        if now.is_some() && now != last {
            last = now;
            let _ = reloader.reload();
        }
    }
}
