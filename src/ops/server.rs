//! Running the gateway: builds the Pingora server (proxy listeners + admin listener) from a
//! loaded config, and handles signals. The proxy listeners are bound here and accepted on by
//! `proxy::conn`, which enforces the `[server]` connection limits (SPEC §8); the admin
//! listener stays a plain Pingora service, neither counted nor limited.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::ServiceWithDependents;
use pingora::services::listening::Service;

use crate::config::Config;
use crate::metrics::metrics;
use crate::ops::admin::AdminApp;
use crate::ops::reload::Reloader;
use crate::policy::revocation::RevocationStore;
use crate::proxy::Gateway;
use crate::proxy::conn::{ConnGuard, ConnLimits, ConnMetrics, GuardedService};
use crate::proxy::ctx::IN_FLIGHT;
use crate::proxy::state::{GatewayState, SharedState};

/// Why `serve` stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Setup(String),
}

/// Maps Unix signals to Pingora's shutdown kinds. SIGQUIT (Pingora's "graceful upgrade")
/// is not ours to use: only SIGTERM (drain) and SIGINT (stop now) end the server.
struct SignalWatch {
    grace_period: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for SignalWatch {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(grace_period = ?self.grace_period, "SIGTERM: draining in-flight requests");
                exit_when_drained(self.grace_period);
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping");
                ShutdownSignal::FastShutdown
            }
        }
    }
}

/// After SIGTERM, Pingora stops accepting and then sleeps the whole grace period. This
/// watcher ends the process with status 0 as soon as no request is in flight.
fn exit_when_drained(grace_period: Duration) {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    std::thread::spawn(move || {
        let deadline = Instant::now() + grace_period;
        // Give the listeners a moment to stop accepting first.
        std::thread::sleep(Duration::from_millis(200));
        while Instant::now() < deadline {
            if IN_FLIGHT.load(Ordering::SeqCst) == 0 {
                tracing::info!("drained; exiting");
                std::process::exit(0);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}

/// A proxy listener, bound before start-up so that an address in use is a setup error; with
/// Pingora's backlog (65 535; std's `bind` uses 128).
fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    let addr: std::net::SocketAddr = address
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    // As Pingora's listener: SO_REUSEADDR, the system's IPV6_V6ONLY default.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(65_535)?;
    Ok(socket.into())
}

fn pingora_conf(config: &Config) -> ServerConf {
    let grace = config.server.grace_period;
    ServerConf {
        threads: config.server.threads.max(1),
        // Whole seconds only; round up so a drain is never cut short.
        grace_period_seconds: Some(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)),
        graceful_shutdown_timeout_seconds: Some(1),
        pid_file: String::new(),
        upgrade_sock: String::new(),
        ..ServerConf::default()
    }
}

/// Runs the gateway until a shutdown signal. Returns once the server has stopped.
/// `watch`: also reload when the config file changes (SIGHUP always reloads).
pub fn serve(config: Config, config_path: &Path, watch: bool) -> Result<(), ServeError> {
    serve_with(config, config_path, watch, Vec::new())
}

/// [`serve`], with extra Pingora services in the same server (the demo's issuer and echo
/// upstream), so one signal stops them all.
pub fn serve_with(
    config: Config,
    config_path: &Path,
    watch: bool,
    extra: Vec<Box<dyn ServiceWithDependents>>,
) -> Result<(), ServeError> {
    for warning in &config.warnings {
        tracing::warn!(
            "{}:{}:{}: {}",
            config_path.display(),
            warning.line,
            warning.column,
            warning.message
        );
    }
    metrics().set_config_info(&config.sha256);
    let conf = pingora_conf(&config);
    let grace_period = config.server.grace_period;
    let listen = config.server.listen.clone();
    let tls = config.server.tls.clone();
    let admin_listen = config.server.admin_listen.clone();
    let limits = ConnLimits {
        max_connections: config.server.max_connections,
        header_timeout: config.server.header_timeout,
        idle_timeout: config.server.idle_timeout,
    };
    let revocations = Arc::new(RevocationStore::default());
    let cluster = config
        .cluster
        .as_ref()
        .map(|cluster| crate::cluster::start(cluster, &revocations))
        .transpose()
        .map_err(ServeError::Setup)?;
    let runtime_revocations =
        crate::ops::revocations::runtime_store(&config, &revocations, cluster.as_ref())
            .map_err(ServeError::Setup)?;
    let mut first =
        GatewayState::build(config, None, Arc::clone(&revocations)).map_err(ServeError::Setup)?;
    if let Some(shared) = &cluster {
        first.buckets = Arc::new(crate::cluster::RedisBuckets::new(Arc::clone(
            &shared.cluster,
        )));
        first.used_store = Some(Arc::new(crate::cluster::RedisUsedTokens::new(Arc::clone(
            &shared.cluster,
        ))));
    }
    let state: SharedState = Arc::new(ArcSwap::from_pointee(first));
    revocations.watch();
    Reloader {
        state: Arc::clone(&state),
        path: config_path.to_path_buf(),
    }
    .spawn(watch);

    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let gateway = Gateway {
        state: Arc::clone(&state),
        tls: tls.is_some(),
    };
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, gateway);
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2_idle_timeout = Some(limits.idle_timeout);
    proxy.server_options = Some(options);
    let acceptor = match &tls {
        Some(files) => {
            crate::proxy::tls::check_listener_files(&files.cert, &files.key)
                .map_err(ServeError::Setup)?;
            let (Some(cert), Some(key)) = (files.cert.to_str(), files.key.to_str()) else {
                return Err(ServeError::Setup("TLS file paths must be UTF-8".into()));
            };
            let mut settings = TlsSettings::intermediate(cert, key)
                .map_err(|e| ServeError::Setup(format!("TLS listener: {e}")))?;
            // HTTP/2 and HTTP/1.1, by ALPN.
            settings.enable_h2();
            Some(settings.build())
        }
        None => None,
    };
    let mut listeners = Vec::new();
    for address in &listen {
        listeners
            .push(bind(address).map_err(|e| ServeError::Setup(format!("listen {address}: {e}")))?);
    }
    let conn_metrics = ConnMetrics {
        open: metrics().connections.clone(),
        refused_max_connections: metrics()
            .connections_refused_total
            .with_label_values(&["max_connections"]),
        refused_header_timeout: metrics()
            .connections_refused_total
            .with_label_values(&["header_timeout"]),
    };
    let guard = ConnGuard::new(Arc::new(proxy), limits, acceptor, conn_metrics);
    let proxy = GuardedService::new("jobgate proxy", listeners, guard);
    let mut admin = Service::new(
        "jobgate admin".to_string(),
        AdminApp {
            state,
            revocations: crate::ops::revocations::RevocationApi {
                runtime: runtime_revocations,
            },
        },
    );
    admin.add_tcp(&admin_listen);
    server.add_service(proxy);
    server.add_service(admin);
    for service in extra {
        server.add_boxed_service(service);
    }

    tracing::info!(listen = ?listen, admin = %admin_listen, "jobgate serving");
    server.run(RunArgs {
        shutdown_signal: Box::new(SignalWatch { grace_period }),
    });
    Ok(())
}
