//! Clients misbehaving or many: slowloris, 10 000 idle keep-alive connections, waves of
//! them, idle connections left open, and the connection limits of SPEC §8
//! (`max_connections`, `header_timeout`, `idle_timeout`) with small values.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::raw::{End, read_response, read_until_closed};
use crate::support::world::World;
use crate::support::{get, wait_until};
use crate::{assert_public_ok, max_open_files, mib, with_public_route};

// Many slow clients, each within the default `header_timeout` (10 s): other clients are
// served quickly, memory stays bounded, slow requests complete when they finish. The
// deadline itself is checked with a short `header_timeout` in
// `a_client_trickling_its_head_is_closed_after_header_timeout`.
#[test]
fn slowloris_clients_do_not_starve_others() {
    const SLOW: usize = 200;
    const ROUNDS: usize = 50;
    let mut world = with_public_route().start_listening();
    let rss_before = world.rss_kib();
    let fds_before = world.open_fds();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&world.addr(), Duration::from_secs(5))
                .expect("connect a slow client");
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .expect("write timeout");
            stream
                .write_all(b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .expect("request line");
            stream
        })
        .collect();

    // Normal clients, every 100 ms while the slow ones drip.
    let addr = world.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let normal = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
            let asked = Instant::now();
            let response = get(addr, "/public/fast");
            latencies.push((response.status, asked.elapsed()));
            std::thread::sleep(Duration::from_millis(100));
        }
        latencies
    });
    let mut write_errors = 0;
    for _ in 0..ROUNDS {
        for stream in &mut slow {
            if stream.write_all(b"a").is_err() {
                write_errors += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let latencies = normal.join().expect("the normal client thread");
    let rss_during = world.rss_kib();
    let fds_during = world.open_fds();

    // What became of the slow connections: still waiting, closed, or answered?
    let (mut open, mut closed, mut answered) = (0, 0, 0);
    for stream in &mut slow {
        let (bytes, end) = read_until_closed(stream, Instant::now() + Duration::from_millis(5));
        match (bytes.is_empty(), end) {
            (false, _) => answered += 1,
            (true, End::Open) => open += 1,
            (true, _) => closed += 1,
        }
    }
    // Finishing the header gets each open one served.
    let mut served = 0;
    for stream in &mut slow {
        if stream.write_all(b"\r\n\r\n").is_ok() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if read_response(stream) == Some(200) {
                served += 1;
            }
        }
    }
    let mut sorted: Vec<Duration> = latencies.iter().map(|(_, took)| *took).collect();
    sorted.sort();
    let worst = sorted.last().copied().unwrap_or_default();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "slowloris: {SLOW} clients x {ROUNDS} bytes at 10 bytes/s; {} normal requests, median \
         {median:?}, worst {worst:?}; after {:.1} s the slow ones were: {open} still open, \
         {closed} closed by jobgate, {answered} answered; {write_errors} write errors; \
         {served} served once finished; jobgate RSS {:.1} -> {:.1} MiB, fds {fds_before} -> {fds_during}",
        latencies.len(),
        ROUNDS as f64 / 10.0,
        mib(rss_before),
        mib(rss_during)
    );
    assert!(
        latencies.len() >= 10,
        "only {} normal requests",
        latencies.len()
    );
    assert!(
        latencies.iter().all(|(status, _)| *status == 200),
        "{latencies:?}"
    );
    assert!(
        worst < Duration::from_secs(5),
        "a normal request took {worst:?}"
    );
    assert!(
        rss_during < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_during} KiB"
    );
    assert_eq!(open + closed + answered, SLOW);
    assert_eq!(served, open, "a slow request that finished was not served");
    drop(slow);
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    world.assert_alive();
}

/// Opens `count` connections to `addr`, in batches, each carrying one keep-alive request
/// answered 200, and returns them open and idle.
fn open_keep_alive(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    const BATCH: usize = 500;
    let request = b"GET /public/keep HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while held.len() < count {
        let mut batch: Vec<TcpStream> = (0..BATCH.min(count - held.len()))
            .map(|_| {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .expect("connect (is the listen backlog full?)");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("read timeout");
                stream
                    .set_write_timeout(Some(Duration::from_secs(5)))
                    .expect("write timeout");
                stream
                    .write_all(request)
                    .expect("send a keep-alive request");
                stream
            })
            .collect();
        for stream in &mut batch {
            assert_eq!(
                read_response(stream),
                Some(200),
                "after {} connections",
                held.len()
            );
        }
        held.extend(batch);
    }
    held
}

#[test]
fn ten_thousand_idle_keep_alive_connections_are_held_and_others_still_served() {
    const CONNECTIONS: usize = 10_000;
    let own_limit = max_open_files("self").unwrap_or(0);
    if own_limit < 20_000 {
        eprintln!(
            "SKIPPED ten_thousand_idle_keep_alive_connections: the test process may open \
             {own_limit} files (needs 20 000: run `ulimit -n 20000` first)"
        );
        return;
    }
    // Above the default `max_connections` (10 000): the held ones and the new ones.
    let mut world = with_public_route()
        .server("max_connections = 20000")
        .start_listening();
    let gateway_limit = max_open_files(&world.pid().to_string()).unwrap_or(0);
    if gateway_limit < (CONNECTIONS + 1_000) as u64 {
        eprintln!(
            "SKIPPED ten_thousand_idle_keep_alive_connections: jobgate may open {gateway_limit} \
             files (needs {})",
            CONNECTIONS + 1_000
        );
        return;
    }
    for _ in 0..20 {
        assert_public_ok(&world, "/public/warm", Duration::from_secs(3));
    }
    let rss_before = world.rss_kib();
    let fds_before = world.open_fds();
    let started = Instant::now();
    let mut held = open_keep_alive(world.addr(), CONNECTIONS);
    let opened = started.elapsed();
    let rss_held = world.rss_kib();
    let fds_held = world.open_fds();

    // Others are still served, on new connections and on held ones.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        assert_public_ok(&world, "/public/new", Duration::from_secs(5));
        worst = worst.max(asked.elapsed());
    }
    let request = b"GET /public/again HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for stream in held.iter_mut().step_by(CONNECTIONS / 100) {
        stream.write_all(request).expect("reuse a held connection");
        assert_eq!(
            read_response(stream),
            Some(200),
            "a held connection was dropped"
        );
    }
    let per_connection = (rss_held.saturating_sub(rss_before) * 1024) / CONNECTIONS as u64;
    eprintln!(
        "10k connections: opened and used in {opened:?}; jobgate RSS {:.1} -> {:.1} MiB \
         (~{per_connection} bytes per idle connection), fds {fds_before} -> {fds_held}; \
         worst new request while held {worst:?}",
        mib(rss_before),
        mib(rss_held)
    );
    assert!(
        fds_held >= fds_before + CONNECTIONS,
        "jobgate holds {fds_held} fds"
    );
    // Measured 42–45 KB with jemalloc under Pingora's own accept loop (54–58 KB with glibc
    // malloc, 104 KB with mimalloc), ~4 KB under `proxy::conn`'s; the bound leaves room for
    // a noisy machine.
    assert!(
        per_connection < 96 * 1024,
        "{per_connection} bytes of RSS per idle connection"
    );

    // Released, the descriptors go back (pooled upstream connections may stay).
    drop(held);
    let closing = Instant::now();
    let released = wait_until(Duration::from_secs(20), || {
        world.open_fds() < fds_before + 300
    });
    let fds_released = world.open_fds();
    eprintln!(
        "10k connections: released after {:?}, fds {fds_released}, RSS {:.1} MiB (the \
         allocator keeps it)",
        closing.elapsed(),
        mib(world.rss_kib())
    );
    assert!(released, "jobgate still holds {fds_released} fds");
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    world.assert_alive();
}

/// Runs for about a minute: `cargo test --test faults -- --ignored waves`.
#[test]
#[ignore = "slow (three waves of 10 000 connections, ~60 s); run it by name with --ignored"]
fn repeated_waves_of_ten_thousand_connections_plateau() {
    const CONNECTIONS: usize = 10_000;
    if max_open_files("self").unwrap_or(0) < 20_000 {
        eprintln!("SKIPPED: the test process may not open 20 000 files");
        return;
    }
    let mut world = with_public_route()
        .server("max_connections = 20000")
        .start_listening();
    let mut peaks = Vec::new();
    for wave in 0..3 {
        let started = Instant::now();
        let held = open_keep_alive(world.addr(), CONNECTIONS);
        peaks.push(world.rss_kib());
        drop(held);
        eprintln!(
            "wave {wave}: 10k connections in {:?}, RSS at the peak {:.1} MiB",
            started.elapsed(),
            mib(peaks[wave])
        );
        assert!(wait_until(Duration::from_secs(15), || world.open_fds() < 1_100));
    }
    // glibc keeps freed memory, and the second wave does not reuse all of the first's (it
    // peaks near twice as high); after that the footprint is flat, not cumulative.
    assert!(
        peaks[2] < peaks[1] + peaks[1] / 10,
        "RSS peaks per wave: {peaks:?} KiB"
    );
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    world.assert_alive();
}

/// Runs for about 70 s: `cargo test --test faults -- --ignored idle_connections`.
#[test]
#[ignore = "slow (~70 s): run it by name with --ignored"]
fn idle_connections_are_closed_within_seventy_seconds() {
    let mut world = with_public_route().start_listening();
    // One connection that never sends anything, one idle after a request.
    let mut silent =
        TcpStream::connect_timeout(&world.addr(), Duration::from_secs(5)).expect("connect");
    let mut reused = open_keep_alive(world.addr(), 1).remove(0);
    let fds_idle = world.open_fds();
    std::thread::sleep(Duration::from_secs(70));
    let (_, silent_end) =
        read_until_closed(&mut silent, Instant::now() + Duration::from_millis(50));
    let (_, reused_end) =
        read_until_closed(&mut reused, Instant::now() + Duration::from_millis(50));
    eprintln!(
        "after 70 s idle: the silent connection is {silent_end:?}, the one idle after a \
         request is {reused_end:?}; jobgate fds {fds_idle} -> {}",
        world.open_fds()
    );
    assert_ne!(silent_end, End::Open, "a connection that never sent a byte");
    assert_ne!(
        reused_end,
        End::Open,
        "a keep-alive connection idle after one request"
    );
    world.assert_alive();
}

// ---------------------------------------------------------------------------------------
// The connection limits of SPEC §8, with small values.
// ---------------------------------------------------------------------------------------

const REFUSED: &str = "jobgate_connections_refused_total";

/// A world with the public route and these `[server]` limits, started with no proxy
/// connection open (the start-up probes are closed and no longer counted).
fn limited(server: &str) -> World {
    let world = with_public_route().server(server).start_listening();
    world.wait_metric("jobgate_connections", &[], |open| open == 0.0);
    world
}

fn connect(world: &World) -> TcpStream {
    let stream =
        TcpStream::connect_timeout(&world.addr(), Duration::from_secs(5)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("write timeout");
    stream
}

#[test]
fn a_client_trickling_its_head_is_closed_after_header_timeout() {
    let mut world = limited("max_connections = 5\nheader_timeout = \"2s\"");
    let mut slow = connect(&world);
    slow.write_all(b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .expect("request line");
    // One header byte a second; meanwhile a normal client is served on its own connection.
    let mut seconds_open = 0;
    let mut end = End::Open;
    for _ in 0..8 {
        if slow.write_all(b"a").is_err() {
            end = End::Closed;
            break;
        }
        assert_public_ok(&world, "/public/fast", Duration::from_secs(3));
        let (bytes, ended) = read_until_closed(&mut slow, Instant::now() + Duration::from_secs(1));
        assert!(bytes.is_empty(), "the unfinished request was answered");
        end = ended;
        if end != End::Open {
            break;
        }
        seconds_open += 1;
    }
    assert_ne!(
        end,
        End::Open,
        "still open after 8 s with header_timeout 2s"
    );
    assert!(
        seconds_open >= 1,
        "closed before the deadline, after {seconds_open} s"
    );
    world.wait_metric(REFUSED, &[("reason", "header_timeout")], |n| n >= 1.0);
    assert_eq!(
        world.metric_or_zero(REFUSED, &[("reason", "max_connections")]),
        0.0
    );
    world.wait_metric("jobgate_connections", &[], |open| open == 0.0);
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    world.assert_alive();
}

#[test]
fn connections_past_max_connections_are_closed_at_once() {
    const MAX: usize = 5;
    // SPEC §8 acceptance: `max_connections + 200` clients at once.
    const EXTRA: usize = 200;
    let mut world = limited("max_connections = 5\nheader_timeout = \"5s\"");
    // The start-up probes' connections may still wait in the accept queue: let them be
    // accepted and closed before the cap is filled, or one of them takes a slot.
    std::thread::sleep(Duration::from_millis(500));
    world.wait_metric("jobgate_connections", &[], |open| open == 0.0);
    let mut held = open_keep_alive(world.addr(), MAX);
    world.wait_metric("jobgate_connections", &[], |open| open == MAX as f64);

    // Past the cap: all connect at once, are accepted by the kernel and closed by jobgate
    // without an answer.
    let mut extras: Vec<TcpStream> = (0..EXTRA).map(|_| connect(&world)).collect();
    for extra in &mut extras {
        let _ = extra.write_all(b"GET /public/extra HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }
    for extra in &mut extras {
        let (bytes, end) = read_until_closed(extra, Instant::now() + Duration::from_secs(5));
        assert_ne!(end, End::Open, "a connection past the cap was left open");
        assert!(bytes.is_empty(), "a connection past the cap was answered");
    }
    drop(extras);
    world.wait_metric(REFUSED, &[("reason", "max_connections")], |n| {
        n >= EXTRA as f64
    });
    assert_eq!(
        world.metric_or_zero(REFUSED, &[("reason", "max_connections")]),
        EXTRA as f64
    );

    // The held ones are served as before.
    let request = b"GET /public/again HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for stream in &mut held {
        stream.write_all(request).expect("reuse a held connection");
        assert_eq!(read_response(stream), Some(200), "a held connection");
    }
    // Closing two frees two slots for new clients.
    held.truncate(MAX - 2);
    world.wait_metric("jobgate_connections", &[], |open| open == (MAX - 2) as f64);
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    assert_eq!(
        world.metric_or_zero(REFUSED, &[("reason", "max_connections")]),
        EXTRA as f64
    );
    world.assert_alive();
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let mut world = limited("idle_timeout = \"2s\"\nheader_timeout = \"5s\"");
    // In use more often than idle_timeout: stays open (the wait starts at each response).
    let mut busy = open_keep_alive(world.addr(), 1).remove(0);
    let request = b"GET /public/busy HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        busy.write_all(request).expect("reuse within idle_timeout");
        assert_eq!(read_response(&mut busy), Some(200), "a busy connection");
    }
    world.wait_metric("jobgate_connections", &[], |open| open == 1.0);

    // Then idle: closed by jobgate, and no longer counted.
    let (bytes, end) = read_until_closed(&mut busy, Instant::now() + Duration::from_secs(8));
    assert!(bytes.is_empty(), "unexpected bytes on an idle connection");
    assert_ne!(end, End::Open, "still open 8 s after idle_timeout 2s");
    world.wait_metric("jobgate_connections", &[], |open| open == 0.0);
    // An idle close is not a refusal.
    assert_eq!(
        world.metric_or_zero(REFUSED, &[("reason", "header_timeout")]),
        0.0
    );
    assert_public_ok(&world, "/public/after", Duration::from_secs(3));
    world.assert_alive();
}
