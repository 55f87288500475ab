//! Soak: mixed traffic (valid, invalid, denied, public) against the real binary while the
//! issuer's keys rotate and the config reloads, with RSS sampled throughout.
//!
//! Ignored in the normal suite (it runs for minutes). Run it with `bash scripts/soak.sh`
//! (default 10 minutes) or:
//! `SOAK_SECONDS=600 cargo test --release --test soak -- --ignored --nocapture`

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::json;
use support::issuer::{TestIssuer, TestKey};
use support::world::World;

const AUDIENCE: &str = "soak";
const KINDS: [&str; 4] = ["valid", "invalid", "denied", "public"];

/// Tokens every worker uses; swapped on each key rotation.
struct Tokens {
    valid: String,
    invalid: String,
    denied: String,
}

fn mint_tokens(issuer: &TestIssuer, key: &TestKey) -> Tokens {
    let mut forged = issuer.mint_with_key(key, issuer.github_claims(AUDIENCE));
    // Flip the last signature character: a well-formed token whose signature fails.
    let last = forged
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    forged.push(last);
    Tokens {
        valid: issuer.mint_with_key(key, issuer.github_claims(AUDIENCE)),
        invalid: forged,
        denied: issuer.mint_with_key(
            key,
            issuer.github_claims_with(
                AUDIENCE,
                json!({"repository_owner": "evil", "repository": "evil/app"}),
            ),
        ),
    }
}

/// The name and prefix of a public route that each config reload renames, so that every
/// reload changes the routing table.
fn generation_keys(generation: u64) -> String {
    format!("name = \"generation-{generation}\"\npath_prefix = \"/generation/{generation}\"\n")
}

#[test]
#[ignore = "runs for minutes: SOAK_SECONDS=600 cargo test --release --test soak -- --ignored --nocapture"]
fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let workers: usize = std::env::var("SOAK_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut generation = 0;
    let world = World::builder()
        .issuer(TestIssuer::start())
        .issuer_name("soak")
        .issuer_keys("refresh = \"5s\"")
        .audience(AUDIENCE)
        .upstream("soak")
        .server("threads = 2")
        .audit_file()
        .route(
            r#"
            name = "api"
            path_prefix = "/api"
            upstream = "{upstream}"
            audience = "{audience}"
            [[route.allow]]
            repository_owner = "acme"
            "#,
        )
        .route("name = \"public\"\npath_prefix = \"/public\"\nupstream = \"{upstream}\"\nauth = false\n")
        .route(&format!(
            "{}upstream = \"{{upstream}}\"\nauth = false\n",
            generation_keys(generation)
        ))
        .start_listening();
    // Never ready within 30 s fails here.
    world.wait_readyz(200, Duration::from_secs(30));
    let issuer = world.issuer();
    let tokens = Arc::new(RwLock::new(mint_tokens(issuer, &issuer.signing_key())));
    let base = format!("http://{}", world.addr());

    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let failed: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let traffic: Vec<_> = (0..workers)
        .map(|worker| {
            let (stop, sent, failed, tokens, base) = (
                Arc::clone(&stop),
                Arc::clone(&sent),
                Arc::clone(&failed),
                Arc::clone(&tokens),
                base.clone(),
            );
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .expect("client");
                runtime.block_on(async move {
                    let mut n = worker;
                    while !stop.load(Ordering::Relaxed) {
                        let kind = n % KINDS.len();
                        n += 1;
                        let (path, token, expected) = {
                            let tokens = tokens.read().expect("tokens lock");
                            match kind {
                                0 => ("/api/x", Some(tokens.valid.clone()), 200),
                                1 => ("/api/x", Some(tokens.invalid.clone()), 401),
                                2 => ("/api/x", Some(tokens.denied.clone()), 403),
                                _ => ("/public/x", None, 200),
                            }
                        };
                        let mut request = client.get(format!("{base}{path}"));
                        if let Some(token) = token {
                            request = request.bearer_auth(token);
                        }
                        sent[kind].fetch_add(1, Ordering::Relaxed);
                        let status = request
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        if status != expected && failed[kind].fetch_add(1, Ordering::Relaxed) < 5 {
                            eprintln!("{}: expected {expected}, got {status}", KINDS[kind]);
                        }
                    }
                });
            })
        })
        .collect();

    let mut rss = vec![(0u64, world.rss_kib())];
    let (mut rotations, mut reloads) = (0, 0);
    let mut next_sample = started + Duration::from_secs(10);
    let mut next_rotation = started + Duration::from_secs(60);
    let mut next_reload = started + Duration::from_secs(45);
    let mut retire: Option<(String, Instant)> = None;
    let mut signing_kid = issuer.signing_key().kid().to_string();
    let mut publish: Option<(TestKey, Instant)> = None;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        if now >= next_sample {
            rss.push((started.elapsed().as_secs(), world.rss_kib()));
            next_sample += Duration::from_secs(10);
        }
        if now >= next_rotation && publish.is_none() {
            // Publish the next key first; sign with it only once the gateway's scheduled
            // refresh (every 5 s) has surely seen it, as a real issuer rotates.
            rotations += 1;
            let key = issuer.add_rsa_key(&format!("soak-{rotations}"));
            publish = Some((key, now + Duration::from_secs(15)));
            next_rotation += Duration::from_secs(60);
        }
        if let Some((key, _)) = publish.take_if(|(_, at)| now >= *at) {
            *tokens.write().expect("tokens lock") = mint_tokens(issuer, &key);
            // Workers may hold a token of the old key for one more request: retire it later.
            let old_kid = std::mem::replace(&mut signing_kid, key.kid().to_string());
            retire = Some((old_kid, now + Duration::from_secs(10)));
        }
        if let Some((kid, _)) = retire.take_if(|(_, at)| now >= *at) {
            issuer.remove_key(&kid);
        }
        if now >= next_reload {
            generation += 1;
            world.edit_config(|config| {
                let previous = generation_keys(generation - 1);
                assert!(config.contains(&previous), "no {previous:?} in:\n{config}");
                config.replace(&previous, &generation_keys(generation))
            });
            world.signal("HUP");
            reloads += 1;
            next_reload += Duration::from_secs(45);
        }
    }
    stop.store(true, Ordering::SeqCst);
    for worker in traffic {
        worker.join().expect("traffic worker");
    }
    rss.push((started.elapsed().as_secs(), world.rss_kib()));

    let total: u64 = sent.iter().map(|n| n.load(Ordering::Relaxed)).sum();
    println!(
        "\nsoak report: {seconds} s, {workers} workers, {rotations} key rotations, {reloads} config reloads"
    );
    println!("| kind | requests | unexpected status |");
    println!("| --- | ---: | ---: |");
    for (index, kind) in KINDS.iter().enumerate() {
        println!(
            "| {kind} | {} | {} |",
            sent[index].load(Ordering::Relaxed),
            failed[index].load(Ordering::Relaxed)
        );
    }
    println!(
        "| all | {total} | {} |",
        failed
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .sum::<u64>()
    );
    let at = |second: u64| {
        rss.iter()
            .find(|(s, _)| *s >= second)
            .map_or(0, |(_, kib)| *kib)
    };
    let (start_kib, two_min_kib, end_kib) = (
        rss[0].1,
        at(120.min(seconds / 5)),
        rss.last().map_or(0, |(_, k)| *k),
    );
    let growth = (end_kib as f64 - two_min_kib as f64) / two_min_kib.max(1) as f64 * 100.0;
    println!(
        "RSS: start {start_kib} KiB, minute 2 {two_min_kib} KiB, end {end_kib} KiB ({growth:+.1}% after minute 2)"
    );
    println!("RSS samples (s, KiB): {rss:?}");
    assert_eq!(
        failed[0].load(Ordering::Relaxed),
        0,
        "valid requests failed"
    );
    assert_eq!(
        failed[3].load(Ordering::Relaxed),
        0,
        "public requests failed"
    );
    assert!(growth < 10.0, "RSS grew {growth:.1}% after minute 2");
}
