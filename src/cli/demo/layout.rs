//! Where the demo runs: its four loopback ports (moved together with `--port-base`, checked
//! free before anything starts), and the config text with those ports substituted — from
//! `config/demo.toml` when present, else the copy built into the binary — written to a
//! file so that reloads work like in `serve`.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use crate::config::{self, Config};

/// Where the demo looks for its config, relative to the current directory.
pub(super) const CONFIG_PATH: &str = "config/demo.toml";

/// The same file as built into the binary, so `jobgate demo` works from any directory.
pub(super) const EMBEDDED_CONFIG: &str = include_str!("../../../config/demo.toml");

/// The four loopback ports of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoPorts {
    pub proxy: u16,
    pub admin: u16,
    pub issuer: u16,
    pub upstream: u16,
}

/// The ports `config/demo.toml` is written with; the flags' defaults.
pub const DEFAULT_PORTS: DemoPorts = DemoPorts {
    proxy: 8080,
    admin: 9090,
    issuer: 8090,
    upstream: 8081,
};

impl DemoPorts {
    /// Each port with the flag that sets it, for messages.
    fn named(&self) -> [(&'static str, u16); 4] {
        [
            ("--port", self.proxy),
            ("--admin-port", self.admin),
            ("--issuer-port", self.issuer),
            ("--upstream-port", self.upstream),
        ]
    }

    /// Two services cannot share a port.
    pub fn check_distinct(&self) -> Result<(), String> {
        let named = self.named();
        for (index, (flag, port)) in named.iter().enumerate() {
            if let Some((other, _)) = named[index + 1..].iter().find(|(_, p)| p == port) {
                return Err(format!(
                    "{flag} and {other} are both {port}; give each its own port"
                ));
            }
        }
        Ok(())
    }

    /// Binds each port on 127.0.0.1 and lets it go again, so that a port in use is a clear
    /// message naming the flag that moves it.
    pub fn check_free(&self) -> Result<(), String> {
        for (flag, port) in self.named() {
            if let Err(error) = TcpListener::bind(("127.0.0.1", port)) {
                let why = if error.kind() == std::io::ErrorKind::AddrInUse {
                    "is in use".to_string()
                } else {
                    format!("cannot be used ({error})")
                };
                let others = self.named().map(|(_, port)| port);
                return Err(format!(
                    "port {port} {why}; pass {flag} with a free port (e.g. {flag} {})",
                    suggest_port(port, &others)
                ));
            }
        }
        Ok(())
    }

    pub fn issuer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.issuer)
    }

    pub(super) fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// A nearby port that is free right now and not one of the demo's, for the "pass --port …"
/// hint.
fn suggest_port(taken: u16, demo_ports: &[u16]) -> u16 {
    (1..=100u16)
        .filter_map(|step| taken.checked_add(step))
        .filter(|port| !demo_ports.contains(port))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or(taken)
}

/// `text` with every `127.0.0.1:<default port>` replaced by the port chosen for that
/// service, in one pass (so swapping two ports works), other addresses left alone. Line
/// and column numbers stay those of the file, for error messages.
pub fn effective_config(text: &str, ports: DemoPorts) -> String {
    let pairs = [
        (DEFAULT_PORTS.proxy, ports.proxy),
        (DEFAULT_PORTS.admin, ports.admin),
        (DEFAULT_PORTS.issuer, ports.issuer),
        (DEFAULT_PORTS.upstream, ports.upstream),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    const HOST: &str = "127.0.0.1:";
    while let Some(at) = rest.find(HOST) {
        let (before, after) = rest.split_at(at + HOST.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = after.split_at(digits);
        let replaced = number
            .parse::<u16>()
            .ok()
            .and_then(|port| pairs.iter().find(|(from, _)| *from == port))
            .map(|(_, to)| to.to_string());
        out.push_str(replaced.as_deref().unwrap_or(number));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Finds the demo config, substitutes the ports and validates the result like any config:
/// the source, the effective text and the compiled config, or the messages to print.
pub(super) fn load_config(ports: DemoPorts) -> Result<(DemoConfigSource, String, Config), String> {
    let source = DemoConfigSource::find()?;
    let effective = effective_config(source.text(), ports);
    let config = config::parse(&effective, source.path()).map_err(|error| error.to_string())?;
    check_layout(&config, ports)
        .map_err(|message| format!("{}: error: {message}", source.path().display()))?;
    Ok((source, effective, config))
}

/// The printed examples assume where the gateway listens and which issuer it trusts: an
/// edited `config/demo.toml` that moved them is refused rather than half working.
pub fn check_layout(config: &Config, ports: DemoPorts) -> Result<(), String> {
    let listen = DemoPorts::address(ports.proxy).to_string();
    let admin = DemoPorts::address(ports.admin).to_string();
    let issuer = ports.issuer_url();
    let mut missing = Vec::new();
    if !config.server.listen.contains(&listen) {
        missing.push(format!("listen = \"{listen}\""));
    }
    if config.server.admin_listen != admin {
        missing.push(format!("admin_listen = \"{admin}\""));
    }
    if !config
        .issuers
        .iter()
        .any(|candidate| candidate.url == issuer)
    {
        missing.push(format!("an [[issuer]] with url = \"{issuer}\""));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the demo needs {} (written with the default ports; the flags move them)",
            missing.join(", ")
        ))
    }
}

/// Where the demo's config text came from.
pub(super) enum DemoConfigSource {
    Disk { path: PathBuf, text: String },
    Embedded { path: PathBuf },
}

impl DemoConfigSource {
    /// `config/demo.toml` under the current directory, else (when there is none) the copy
    /// built into the binary. A file that exists but cannot be read is an error, not a
    /// silent switch to other rules.
    fn find() -> Result<DemoConfigSource, String> {
        let path = PathBuf::from(CONFIG_PATH);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(DemoConfigSource::Disk { path, text }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(DemoConfigSource::Embedded { path })
            }
            Err(error) => Err(format!("{CONFIG_PATH}:0:0: error: cannot read it: {error}")),
        }
    }

    pub(super) fn text(&self) -> &str {
        match self {
            DemoConfigSource::Disk { text, .. } => text,
            DemoConfigSource::Embedded { .. } => EMBEDDED_CONFIG,
        }
    }

    /// The name messages use; for the built-in copy, the file it was built from.
    pub(super) fn path(&self) -> &Path {
        match self {
            DemoConfigSource::Disk { path, .. } | DemoConfigSource::Embedded { path } => path,
        }
    }

    pub(super) fn disk_path(&self) -> Option<&Path> {
        match self {
            DemoConfigSource::Disk { path, .. } => Some(path),
            DemoConfigSource::Embedded { .. } => None,
        }
    }

    pub(super) fn label(&self) -> String {
        match self {
            DemoConfigSource::Disk { path, .. } => path.display().to_string(),
            DemoConfigSource::Embedded { .. } => {
                format!("{CONFIG_PATH} (the copy built into jobgate)")
            }
        }
    }
}

/// A private copy of the effective config that SIGHUP re-reads, removed when dropped.
pub(super) struct EffectiveConfigFile {
    pub(super) path: PathBuf,
}

impl EffectiveConfigFile {
    pub(super) fn write(text: &str) -> Result<EffectiveConfigFile, String> {
        let dir = std::env::temp_dir();
        let mut last_error = None;
        for _ in 0..8 {
            let path = dir.join(format!(
                "jobgate-demo-{}-{:016x}.toml",
                std::process::id(),
                fastrand::u64(..)
            ));
            // `create_new`: never follow or overwrite what someone else put there.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let file_guard = EffectiveConfigFile { path };
                    file.write_all(text.as_bytes()).map_err(|error| {
                        format!("cannot write {}: {error}", file_guard.path.display())
                    })?;
                    return Ok(file_guard);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(format!(
            "cannot create the effective config in {}: {}",
            dir.display(),
            last_error.map_or_else(|| "unknown error".to_string(), |error| error.to_string())
        ))
    }
}

impl Drop for EffectiveConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
