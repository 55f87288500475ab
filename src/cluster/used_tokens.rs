//! Used `single_use` tokens in Redis: `SET NX` with the token's remaining lifetime, so the
//! first gateway to record a token wins and Redis forgets it when it could no longer verify.

use std::sync::Arc;

use async_trait::async_trait;

use super::client::{Cluster, Op};
use crate::policy::replay::{FirstUse, TokenId, UsedTokenStore};

pub struct RedisUsedTokens {
    cluster: Arc<Cluster>,
}

impl RedisUsedTokens {
    pub fn new(cluster: Arc<Cluster>) -> RedisUsedTokens {
        RedisUsedTokens { cluster }
    }
}

#[async_trait]
impl UsedTokenStore for RedisUsedTokens {
    async fn first_use(&self, route: &str, token: TokenId, forget_at: u64, now: u64) -> FirstUse {
        let key = self.cluster.key("used", &[route.as_bytes(), &token.0]);
        let ttl_ms = forget_at.saturating_sub(now).max(1).saturating_mul(1_000);
        let set = self
            .cluster
            .call(Op::SingleUse, |mut connection| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async::<Option<String>>(&mut connection)
                    .await
            })
            .await;
        match set {
            Some(Some(_)) => FirstUse::Yes,
            Some(None) => FirstUse::Replayed,
            None => FirstUse::Unknown,
        }
    }
}
