//! Numeric dates (`exp`, `nbf`, `iat`): absent (the mod_auth_openidc cases), in the future,
//! huge, negative, fractional or text, and a far-future `exp` bounded by `max_token_age`.

use serde_json::json;

use crate::support::issuer::{Signer, mint_raw, now};
use crate::{AUD, Siege, attacked_issuer, besieged, header, json_bytes, ready, with_raw_member};

#[test]
fn mod_auth_openidc_cases_missing_exp_or_iat_and_future_nbf_are_refused() {
    let world = ready();
    let now = now();
    world.refused(
        &world.issuer().mint_github_with(AUD, json!({"exp": null})),
        "malformed_token",
        "no exp",
    );
    world.refused(
        &world.issuer().mint_github_with(AUD, json!({"iat": null})),
        "malformed_token",
        "no iat",
    );
    world.refused(
        &world
            .issuer()
            .mint_github_with(AUD, json!({"exp": null, "iat": null, "nbf": null})),
        "malformed_token",
        "no time claims at all",
    );
    // Beyond the 60 s leeway.
    world.refused(
        &world
            .issuer()
            .mint_github_with(AUD, json!({"nbf": now + 120, "exp": now + 900})),
        "not_yet_valid",
        "nbf two minutes ahead",
    );
    world.refused(
        &world.issuer().mint_github_with(
            AUD,
            json!({"nbf": now + 86_400, "iat": now, "exp": now + 90_000}),
        ),
        "not_yet_valid",
        "nbf a day ahead",
    );
    world.finish();
}

#[test]
fn huge_negative_fractional_and_textual_numeric_dates() {
    let world = ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let huge = "99999999999999999999999";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("exp 1e400", "exp", "1e400".into(), "malformed_token"),
        ("exp -1e400", "exp", "-1e400".into(), "malformed_token"),
        (
            "exp with 400 digits",
            "exp",
            format!("1{}", "0".repeat(400)),
            "malformed_token",
        ),
        ("iat 1e400", "iat", "1e400".into(), "malformed_token"),
        ("nbf 1e400", "nbf", "1e400".into(), "malformed_token"),
        ("exp -1", "exp", "-1".into(), "expired"),
        (
            "exp -99999999999999999999999",
            "exp",
            format!("-{huge}"),
            "expired",
        ),
        ("exp 1.5e9 (2017)", "exp", "1.5e9".into(), "expired"),
        ("exp 0", "exp", "0".into(), "expired"),
        (
            "exp as a string",
            "exp",
            format!("\"{}\"", now() + 300),
            "malformed_token",
        ),
        (
            "exp as a huge string",
            "exp",
            format!("\"{huge}\""),
            "malformed_token",
        ),
        ("exp true", "exp", "true".into(), "malformed_token"),
        ("exp null", "exp", "null".into(), "malformed_token"),
        (
            "exp an array",
            "exp",
            format!("[{}]", now() + 300),
            "malformed_token",
        ),
        (
            "iat 99999999999999999999999",
            "iat",
            huge.into(),
            "issued_in_future",
        ),
        (
            "nbf 99999999999999999999999",
            "nbf",
            huge.into(),
            "not_yet_valid",
        ),
        (
            "iat u64::MAX",
            "iat",
            u64::MAX.to_string(),
            "issued_in_future",
        ),
        (
            "nbf u64::MAX + 1",
            "nbf",
            "18446744073709551616".into(),
            "not_yet_valid",
        ),
    ];
    for (what, name, raw, reason) in cases {
        // Issuer-signed, so that the claim checks are reached.
        let token = mint_raw(
            &header,
            &with_raw_member(&claims, name, &raw),
            Signer::Key(&rsa),
        );
        world.refused(&token, reason, what);
    }
    world.finish();
}

#[test]
fn far_future_exp_saturates_and_max_token_age_still_bounds_it() {
    // Not an attack the gateway can refuse by itself: an issuer may sign any exp. What
    // matters is that exp + leeway does not overflow (saturating arithmetic), and that
    // max_token_age still bounds such a token by its iat.
    let mut world = besieged(attacked_issuer())
        .issuer_keys("max_token_age = \"15m\"")
        .start();
    let rsa = world.rsa();
    let claims = world.claims();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    for raw in ["99999999999999999999999", "18446744073709551615", "1e300"] {
        let token = mint_raw(
            &header,
            &with_raw_member(&claims, "exp", raw),
            Signer::Key(&rsa),
        );
        world.admitted(&token, &format!("exp {raw}, iat now"));
        let mut old = claims.clone();
        let twenty_minutes_ago = now() - 20 * 60;
        old["iat"] = json!(twenty_minutes_ago);
        old["nbf"] = json!(twenty_minutes_ago);
        let token = mint_raw(
            &header,
            &with_raw_member(&old, "exp", raw),
            Signer::Key(&rsa),
        );
        world.refused(&token, "expired", &format!("exp {raw}, iat 20 min ago"));
    }
    assert_eq!(world.upstream().hits(), 3);
    world.assert_alive();
}
