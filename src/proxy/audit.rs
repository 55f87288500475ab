//! The audit log (SPEC §6): one JSON line per request on an authenticated route, tying it
//! to the job that made it.
//!
//! The request path only hands a record to a bounded channel; a writer thread formats and
//! writes. When the writer falls behind, records are dropped and counted
//! (`jobgate_audit_dropped_total`): a slow disk never slows a request.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::auth::claims::Claims;
use crate::auth::identity::job_url;
use crate::auth::verify::{UnverifiedClaims, VerifiedToken};
use crate::clock;
use crate::config::rules::RuleRef;
use crate::config::{AuditOutput, IssuerConfig};
use crate::metrics::metrics;
use crate::refusal::{Outcome, Reason};

/// Records waiting for the writer; past this, new ones are dropped.
pub const QUEUE_CAPACITY: usize = 16_384;

/// Claims logged under their own names when the signature verified.
const VERIFIED_FIELDS: [&str; 14] = [
    "iss",
    "sub",
    "repository",
    "repository_owner",
    "ref",
    "sha",
    "job_workflow_ref",
    "environment",
    "actor",
    "event_name",
    "run_id",
    "run_attempt",
    "check_run_id",
    "jti",
];

/// Who made the request, as far as jobgate knows.
#[derive(Debug, Clone)]
pub enum AuditIdentity {
    /// No token.
    None,
    /// The signature verified: claims under their own names, plus the issuer for `job_url`.
    Verified {
        token: Arc<VerifiedToken>,
        issuer: Arc<IssuerConfig>,
    },
    /// The token did not verify: only its identifiers, as `unverified_*`.
    Unverified(Box<UnverifiedClaims>),
}

/// One request on an authenticated route.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub time: SystemTime,
    pub route: String,
    pub outcome: Outcome,
    pub reason: Option<Reason>,
    pub rule: Option<RuleRef>,
    pub status: u16,
    pub method: http::Method,
    pub path: String,
    pub client_ip: Option<IpAddr>,
    pub identity: AuditIdentity,
    pub upstream_status: Option<u16>,
    pub duration: Duration,
}

impl AuditRecord {
    /// The JSON object of SPEC §6.
    pub fn to_json(&self) -> Value {
        let mut line = Map::new();
        line.insert("ts".into(), clock::format_rfc3339_millis(self.time).into());
        line.insert("route".into(), self.route.clone().into());
        line.insert("outcome".into(), self.outcome.as_str().into());
        line.insert(
            "reason".into(),
            self.reason.map_or(Value::Null, |r| r.as_str().into()),
        );
        line.insert(
            "rule".into(),
            self.rule
                .map_or(Value::Null, |rule| rule.label(&self.route).into()),
        );
        line.insert("status".into(), self.status.into());
        line.insert("method".into(), self.method.as_str().into());
        line.insert("path".into(), self.path.clone().into());
        line.insert(
            "client_ip".into(),
            self.client_ip
                .map_or(Value::Null, |ip| ip.to_string().into()),
        );
        match &self.identity {
            AuditIdentity::None => {}
            AuditIdentity::Verified { token, issuer } => {
                for field in VERIFIED_FIELDS {
                    line.insert(field.into(), claim_json(&token.claims, field));
                }
                line.insert(
                    "job_url".into(),
                    job_url(&issuer.server_url, &token.claims).map_or(Value::Null, Value::from),
                );
            }
            AuditIdentity::Unverified(claims) => {
                let fields = [
                    ("unverified_iss", &claims.iss),
                    ("unverified_sub", &claims.sub),
                    ("unverified_repository", &claims.repository),
                    ("unverified_run_id", &claims.run_id),
                    ("unverified_check_run_id", &claims.check_run_id),
                    ("unverified_jti", &claims.jti),
                ];
                for (name, value) in fields {
                    if let Some(value) = value {
                        line.insert(name.into(), value.clone().into());
                    }
                }
            }
        }
        line.insert(
            "upstream_status".into(),
            self.upstream_status.map_or(Value::Null, Value::from),
        );
        line.insert(
            "duration_ms".into(),
            ((self.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0).into(),
        );
        Value::Object(line)
    }
}

fn claim_json(claims: &Claims, name: &str) -> Value {
    claims.text(name).map_or(Value::Null, Value::from)
}

enum Message {
    Record(Box<AuditRecord>),
    /// Reopen the file (log rotation on SIGHUP).
    Reopen,
}

/// The handle the request path writes to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    sender: Option<SyncSender<Message>>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("audit message")
    }
}

impl AuditLog {
    /// A log that writes nothing (`output = "off"`).
    pub fn off() -> AuditLog {
        AuditLog { sender: None }
    }

    /// Starts the writer thread for `output`. A file is opened now, so a bad path is a
    /// start-up (or reload) error rather than silently lost lines.
    pub fn start(output: &AuditOutput) -> Result<AuditLog, String> {
        let sink = match output {
            AuditOutput::Off => return Ok(AuditLog::off()),
            AuditOutput::Stdout => Sink::Stdout,
            AuditOutput::File(path) => Sink::File {
                file: open_append(path)?,
                path: path.clone(),
            },
        };
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("jobgate-audit".into())
            .spawn(move || write_loop(receiver, sink))
            .map_err(|e| format!("cannot start the audit writer: {e}"))?;
        Ok(AuditLog {
            sender: Some(sender),
        })
    }

    /// Hands a record to the writer without ever waiting.
    pub fn record(&self, record: AuditRecord) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics().audit_dropped_total.inc();
            }
        }
    }

    /// Asks the writer to reopen its file, for log rotation.
    pub fn reopen(&self) {
        if let Some(sender) = &self.sender {
            let _ = sender.try_send(Message::Reopen);
        }
    }

    pub fn is_off(&self) -> bool {
        self.sender.is_none()
    }
}

fn open_append(path: &PathBuf) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the audit file {}: {e}", path.display()))
}

enum Sink {
    Stdout,
    File { file: std::fs::File, path: PathBuf },
}

impl Sink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Sink::File { file, .. } => file.write_all(bytes),
        }
    }
}

/// Formats records as they come and writes them in batches: whatever is queued is joined
/// into one write, so a burst costs one syscall, and a lone record is written at once.
fn write_loop(receiver: Receiver<Message>, mut sink: Sink) {
    let mut batch = Vec::with_capacity(64 * 1024);
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Record(record) => {
                    if serde_json::to_writer(&mut batch, &record.to_json()).is_ok() {
                        batch.push(b'\n');
                    }
                }
                Message::Reopen => {
                    flush(&mut sink, &mut batch);
                    if let Sink::File { file, path } = &mut sink {
                        match open_append(path) {
                            Ok(reopened) => *file = reopened,
                            Err(error) => {
                                tracing::error!(%error, "audit file reopen failed; writing to the old one")
                            }
                        }
                    }
                }
            }
            if batch.len() < 60 * 1024 {
                next = receiver.try_recv().ok();
            }
        }
        flush(&mut sink, &mut batch);
    }
    flush(&mut sink, &mut batch);
}

fn flush(sink: &mut Sink, batch: &mut Vec<u8>) {
    if batch.is_empty() {
        return;
    }
    if let Err(error) = sink.write_all(batch) {
        tracing::error!(%error, "audit write failed");
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(identity: AuditIdentity) -> AuditRecord {
        AuditRecord {
            time: SystemTime::UNIX_EPOCH,
            route: "deploy".into(),
            outcome: Outcome::Denied,
            reason: Some(Reason::PolicyDenied),
            rule: None,
            status: 403,
            method: http::Method::POST,
            path: "/v1/deploy".into(),
            client_ip: Some(IpAddr::from([127, 0, 0, 1])),
            identity,
            upstream_status: None,
            duration: Duration::from_micros(1500),
        }
    }

    #[test]
    fn unverified_tokens_log_only_prefixed_identifiers() {
        use crate::auth::verify::unverified_claims;
        use base64::Engine;
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"iss":"i","sub":"s","repository":"acme/app","run_id":"1","check_run_id":"2","jti":"j","environment":"prod"}"#,
        );
        let identity =
            AuditIdentity::Unverified(Box::new(unverified_claims(&format!("e30.{payload}.sig"))));
        let json = record(identity).to_json();
        assert_eq!(json["unverified_repository"], "acme/app");
        assert_eq!(json["unverified_check_run_id"], "2");
        assert!(json.get("repository").is_none());
        assert!(json.get("unverified_environment").is_none());
        assert_eq!(json["reason"], "policy_denied");
        assert_eq!(json["ts"], "1970-01-01T00:00:00.000Z");
        assert_eq!(json["duration_ms"], 1.5);
        assert_eq!(unverified_claims("garbage"), UnverifiedClaims::default());
    }

    #[test]
    fn file_output_appends_one_line_per_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.log");
        let log = AuditLog::start(&AuditOutput::File(path.clone())).expect("start");
        for _ in 0..3 {
            log.record(record(AuditIdentity::None));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 3 {
                for line in text.lines() {
                    let json: Value = serde_json::from_str(line).expect("one JSON object per line");
                    assert_eq!(json["route"], "deploy");
                }
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lines not written: {text:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
