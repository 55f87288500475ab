//! The `Authorization` header (SPEC §3 step 5): the token's length limit, duplicate headers,
//! other schemes and a bearer without a token.

use crate::support::issuer::TestIssuer;
use crate::{
    AUD, Api, api_world, assert_invalid_request, assert_missing_token, call_with_authorization,
    ready,
};

#[test]
fn token_longer_than_max_token_bytes_is_refused_before_parsing() {
    let limit = 3000;
    let world = api_world(TestIssuer::start())
        .server(&format!("max_token_bytes = {limit}"))
        .start();
    let at_limit = world.issuer().mint_github_of_length(AUD, limit);
    let over = world.issuer().mint_github_of_length(AUD, limit + 1);
    world.assert_admits(&at_limit);
    assert_eq!(world.upstream().hits(), 1);
    // One byte over: refused even though it is validly signed.
    world.assert_invalid_token(&over, "token_too_large");
    // Not even a JWS: the length is checked first.
    world.assert_invalid_token(&"x".repeat(limit + 1), "token_too_large");
    assert_eq!(world.upstream().hits(), 1);
}

#[test]
fn default_max_token_bytes_is_16384() {
    let world = ready();
    let at_limit = world.issuer().mint_github_of_length(AUD, 16_384);
    world.assert_admits(&at_limit);
    let over = world.issuer().mint_github_of_length(AUD, 16_385);
    world.assert_invalid_token(&over, "token_too_large");
    assert_eq!(world.upstream().hits(), 1);
}

#[test]
fn two_authorization_headers_are_invalid_request() {
    let world = ready();
    let token = world.token();
    let bearer = format!("Bearer {token}");
    let response = call_with_authorization(&world, &[&bearer, &bearer]);
    assert_invalid_request(&response, &token);
    let response = call_with_authorization(&world, &["Basic dXNlcjpwYXNz", &bearer]);
    assert_invalid_request(&response, &token);
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn no_authorization_is_missing_token_with_a_bare_challenge() {
    let world = ready();
    let response = call_with_authorization(&world, &[]);
    assert_missing_token(&response);
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn basic_scheme_is_missing_token() {
    let world = ready();
    for value in ["Basic dXNlcjpwYXNz", "Token abc.def.ghi", "Bearer-ish abc"] {
        let response = call_with_authorization(&world, &[value]);
        assert_missing_token(&response);
    }
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn bearer_without_a_token_or_with_two_is_invalid_request() {
    let world = ready();
    let token = world.token();
    let two = format!("Bearer {token} {token}");
    for value in ["Bearer", "Bearer    ", two.as_str()] {
        let response = call_with_authorization(&world, &[value]);
        assert_invalid_request(&response, &token);
    }
    assert_eq!(world.upstream().hits(), 0);
}
