//! The proxy: one request's path through Pingora, from the client's headers to the
//! upstream's answer.
//!
//! - `gateway`: the thin [`ProxyHttp`](pingora::proxy::ProxyHttp) implementation, one short
//!   hook per step, and `ctx`/`session`, what the hooks carry and read;
//! - `spoof`: client-sent identity headers removed first (SPEC §3 step 1);
//! - `routing`: path normalisation and the route table;
//! - `authorize`: the server-free decision for an authenticated route (token, verification,
//!   revocation, rules, identity headers), tested and benchmarked without a server;
//! - `upstream`: each route's peers, in rotation, paused after a refused connection;
//! - `refusal`: a refusal's wire form (JSON or gRPC);
//! - `state`: the [`GatewayState`](state::GatewayState) a request reads, swapped whole on
//!   reload;
//! - `audit`: the audit record of a request and the log it goes to (SPEC §6);
//! - `conn`: the proxy listeners' accept loop and each client connection's limits
//!   (`max_connections`, `header_timeout`, `idle_timeout`, SPEC §8), around Pingora's HTTP app;
//! - `tls`: certificate files — the upstream CA bundle `state` loads, and the listener's
//!   cert and key that `ops` checks at start-up.
//!
//! `state`, `audit` and `tls` sit here, not in `ops`, because the request path reads them:
//! `authorize` and the hooks need the state, the `logging` hook writes the audit record.
//! `ops` starts this proxy, so it sits above and may import from here, never the reverse.
//!
//! May import: `config`, `auth`, `policy` and the shared leaves; never `ops` or `cli`.

pub mod audit;
pub mod authorize;
pub mod conn;
pub mod ctx;
pub mod gateway;
pub mod refusal;
pub mod routing;
pub mod session;
pub mod spoof;
pub mod state;
pub mod tls;
pub mod upstream;

pub use gateway::Gateway;
