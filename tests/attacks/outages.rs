//! The Envoy anchor: an issuer outage is never a 401, and never a crash.

use std::time::Duration;

use serde_json::json;

use crate::support::issuer::{Behaviour, Signer, TestKey, mint_raw, now};
use crate::{AUD, ISSUER, Siege, attacked_issuer, besieged, header, json_bytes, ready};

#[test]
fn issuer_outage_after_start_keeps_valid_tokens_working_and_is_never_a_401() {
    let mut world = ready();
    let valid = world.token();
    world.admitted(&valid, "before the outage");
    let mut admitted = 1;
    for behaviour in [Behaviour::Fail, Behaviour::Garbage] {
        world.issuer().set_behaviour(behaviour);
        // Past min_refetch_interval, so that the unknown kid below asks for a refetch.
        std::thread::sleep(Duration::from_millis(1100));
        // Known keys keep serving: a token seen before (cached) and a fresh one.
        world.admitted(&valid, &format!("{behaviour:?}: cached token"));
        world.admitted(&world.token(), &format!("{behaviour:?}: fresh token"));
        admitted += 2;
        // A kid that needs the failing refetch: an outage, not a bad token.
        let newcomer = TestKey::rsa(&format!("new-{behaviour:?}"));
        let token = world.token_signed_by(&newcomer);
        world.unavailable(
            &token,
            &format!("{behaviour:?}: unknown kid, refetch fails"),
        );
        // Budget spent and the last fetch failed: still an outage.
        let another = TestKey::p256("another").with_kid(&format!("other-{behaviour:?}"));
        let token = world.token_signed_by(&another);
        world.unavailable(&token, &format!("{behaviour:?}: unknown kid, budget spent"));
        // A forgery under a known kid is still judged: keys are there.
        let impostor = TestKey::rsa("rsa-1");
        world.refused(
            &world.token_signed_by(&impostor),
            "bad_signature",
            &format!("{behaviour:?}: forged under a known kid"),
        );
        world.assert_alive();
    }
    assert_eq!(world.upstream().hits(), admitted);
    world.issuer().heal();
    world.assert_alive();
}

#[test]
fn issuer_down_at_start_is_503_for_every_well_formed_token_never_401() {
    let issuer = attacked_issuer();
    issuer.fail();
    let mut world = besieged(issuer).start_listening();
    let ready = world.readyz();
    assert_eq!(ready.status, 503, "{}", ready.text());
    let claims = world.claims();
    let rsa = world.rsa();
    let impostor = TestKey::rsa("rsa-1");
    let stranger = TestKey::rsa("stranger");
    let now = now();
    let expired = json!({"iat": now - 900, "nbf": now - 900, "exp": now - 600});
    let cases: Vec<(&str, String)> = vec![
        ("a valid token", world.issuer().mint(claims.clone())),
        (
            "a forged signature",
            world.issuer().mint_with_key(&impostor, claims.clone()),
        ),
        (
            "an unknown kid",
            world.issuer().mint_with_key(&stranger, claims.clone()),
        ),
        (
            "another audience",
            world.issuer().mint_github("https://other.example"),
        ),
        (
            "an expired token",
            world.issuer().mint_github_with(AUD, expired),
        ),
        (
            "an ES256 token",
            world.issuer().mint_with_key(&world.ec(), claims.clone()),
        ),
        (
            "no kid",
            mint_raw(
                &json_bytes(&header("RS256", None)),
                &json_bytes(&claims),
                Signer::Key(&rsa),
            ),
        ),
    ];
    // Several rounds: the key store keeps retrying; nothing changes the answer.
    for round in 0..3 {
        for (what, token) in &cases {
            world.unavailable(token, &format!("round {round}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // What cannot be a token at all, or is refused by name, is refused without keys.
    world.refused(
        "not-a-token",
        "malformed_token",
        "not a JWS, during the outage",
    );
    let none = mint_raw(
        &json_bytes(&header("none", None)),
        &json_bytes(&claims),
        Signer::Unsigned,
    );
    world.refused(&none, "alg_not_allowed", "alg none, during the outage");
    assert_eq!(world.upstream().hits(), 0);
    world.assert_alive();
    let ready = world.readyz();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains(ISSUER), "{}", ready.text());
}
