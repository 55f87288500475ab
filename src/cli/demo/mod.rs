//! `jobgate demo`: the gateway, an embedded OIDC issuer and an echo upstream on loopback, in
//! one process and one Pingora server, with no network and no setup (SPEC §1).
//!
//! The issuer makes a fresh RSA-2048 key every run, so no private key ships with jobgate or
//! outlives the process. It serves discovery and a JWKS like any issuer, and a token endpoint
//! shaped like GitHub Actions' own (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`), so a
//! workflow's token-fetching step works against it unchanged. Query parameters override the
//! claims of a realistic job of `acme/app`, which is how the printed examples get denied.
//!
//! The gateway runs `config/demo.toml` (or the copy built into the binary) with the demo's
//! ports substituted, validated like any config. Once the issuer answers and the gateway
//! has its keys (`/readyz`), the demo prints copy-paste `curl` lines, each with the status
//! it gives; `tests/demo.rs` runs exactly those lines.
//!
//! One file per part: `layout` (ports and the config text), `issuer` (the embedded OIDC
//! issuer) with `job` (the claims of its tokens), `echo` (the upstream), `respond` (their
//! JSON answers) and `guide` (the printed examples, once everything is ready).

pub mod echo;
pub mod guide;
pub mod issuer;
pub mod job;
pub mod layout;
pub mod respond;
#[cfg(test)]
mod tests;

use std::net::TcpListener;
use std::os::fd::IntoRawFd as _;
use std::process::ExitCode;

use async_trait::async_trait;

use echo::EchoApp;
use guide::{announce_when_ready, instructions};
use issuer::{DemoIssuer, IssuerApp};
use layout::{DEFAULT_PORTS, DemoPorts, EffectiveConfigFile, load_config};
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};

/// Exit status for bad usage or a bad config (SPEC §1).
const EXIT_BAD_CONFIG: u8 = 2;

/// Exit status for a runtime failure, such as a port already in use.
const EXIT_RUNTIME: u8 = 1;

/// Arguments of `jobgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The gateway's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.proxy, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The admin listener's port (/metrics, /healthz, /readyz).
    #[arg(long, default_value_t = DEFAULT_PORTS.admin, value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: u16,
    /// The embedded OIDC issuer's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.issuer, value_parser = clap::value_parser!(u16).range(1..))]
    pub issuer_port: u16,
    /// The echo upstream's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.upstream, value_parser = clap::value_parser!(u16).range(1..))]
    pub upstream_port: u16,
}

/// Runs the demo until Ctrl-C (SIGINT) or SIGTERM stops the gateway, the issuer and the
/// echo upstream together.
pub fn run(args: DemoArgs) -> ExitCode {
    let ports = DemoPorts {
        proxy: args.port,
        admin: args.admin_port,
        issuer: args.issuer_port,
        upstream: args.upstream_port,
    };
    if let Err(message) = ports.check_distinct() {
        eprintln!("jobgate demo: {message}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    // Checked before anything starts: Pingora would only panic in a service thread.
    if let Err(message) = ports.check_free() {
        eprintln!("jobgate demo: {message}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let (source, effective, config) = match load_config(ports) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let issuer = match DemoIssuer::generate(ports.issuer_url()) {
        Ok(issuer) => issuer,
        Err(message) => {
            eprintln!("jobgate demo: {message}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // Editing config/demo.toml reloads it live, but only when the file on disk IS the
    // effective config. Otherwise SIGHUP must not re-read a file with other ports, so the
    // gateway is pointed at a private copy of the effective config.
    let live_reload = source.disk_path().is_some() && effective == source.text();
    let reload_copy = if live_reload {
        None
    } else {
        match EffectiveConfigFile::write(&effective) {
            Ok(file) => Some(file),
            Err(message) => {
                eprintln!("jobgate demo: {message}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    };
    let reload_path = reload_copy
        .as_ref()
        .map_or_else(|| source.path().to_path_buf(), |file| file.path.clone());

    let banner = instructions(ports, &source.label(), issuer.kid(), live_reload);
    let services = match demo_services(ports, issuer) {
        Ok(services) => services,
        Err(message) => {
            eprintln!("jobgate demo: {message}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    std::thread::spawn(move || announce_when_ready(ports, &banner));

    let result = crate::ops::server::serve_with(config, &reload_path, live_reload, services);
    drop(reload_copy);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jobgate demo: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// The issuer and the echo upstream as Pingora services, one thread each: they run in the
/// gateway's server, so the gateway's signal handling stops them too. Their sockets listen
/// from here on, before the gateway's key store makes its first fetch.
fn demo_services(
    ports: DemoPorts,
    issuer: DemoIssuer,
) -> Result<Vec<Box<dyn ServiceWithDependents>>, String> {
    let mut issuer_service = Service::new("jobgate demo issuer".to_string(), IssuerApp { issuer });
    issuer_service.threads = Some(1);
    let mut echo_service = Service::new("jobgate demo upstream".to_string(), EchoApp);
    echo_service.threads = Some(1);
    Ok(vec![
        PreBound::bind(ports.issuer, issuer_service)?,
        PreBound::bind(ports.upstream, echo_service)?,
    ])
}

/// A listening service whose socket is bound before the server runs. The gateway's key
/// store starts fetching before the server does; a connection to a bound socket waits in
/// the listen backlog and is answered once the service runs, where an unbound port would
/// refuse it. Pingora's listener takes a socket it finds in the server's fd table under its
/// address (as after a graceful upgrade) instead of binding a new one.
struct PreBound {
    address: String,
    listener: Option<TcpListener>,
    service: Box<dyn ServiceWithDependents>,
}

impl PreBound {
    fn bind<A>(port: u16, mut service: Service<A>) -> Result<Box<dyn ServiceWithDependents>, String>
    where
        Service<A>: ServiceWithDependents + 'static,
    {
        let address = DemoPorts::address(port).to_string();
        // Tokio, which Pingora hands the socket to, needs it non-blocking.
        let listener = TcpListener::bind(&address)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|error| format!("cannot listen on {address}: {error}"))?;
        service.add_tcp(&address);
        Ok(Box::new(PreBound {
            address,
            listener: Some(listener),
            service: Box::new(service),
        }))
    }
}

#[async_trait]
impl ServiceWithDependents for PreBound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let (Some(fds), Some(listener)) = (&fds, self.listener.take()) {
            fds.lock().add(self.address.clone(), listener.into_raw_fd());
        }
        self.service
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await;
    }

    fn name(&self) -> &str {
        self.service.name()
    }

    fn threads(&self) -> Option<usize> {
        self.service.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.service.listen_addresses()
    }
}
