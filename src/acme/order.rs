//! One certificate order, RFC 8555 through instant-acme: the order, its HTTP-01 challenge
//! answered by the running http listener, the CSR with a fresh key, the chain.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, OrderStatus, RetryPolicy,
};

use crate::table::challenge::Challenges;

/// How long the CA may take to validate and to issue.
const VALIDATION_PATIENCE: Duration = Duration::from_secs(90);

/// Why an order failed: a fixed `reason` for the metric, and the CA's or the network's words.
#[derive(Debug)]
pub struct Failure {
    pub reason: &'static str,
    pub detail: String,
}

impl Failure {
    /// `stage` is the reason when the error says nothing more telling.
    pub fn of(stage: &'static str, e: instant_acme::Error) -> Self {
        let reason = match &e {
            instant_acme::Error::Api(p)
                if p.r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":rateLimited")) =>
            {
                "rate_limited"
            }
            instant_acme::Error::Api(_) => stage,
            instant_acme::Error::Timeout(_) => "timeout",
            // A connection that could not be made, or a response that never came.
            instant_acme::Error::Hyper(_) | instant_acme::Error::Other(_) => "unreachable",
            _ => stage,
        };
        Self {
            reason,
            detail: e.to_string(),
        }
    }
}

/// A certificate chain and its private key, both PEM.
pub struct Issued {
    pub chain: String,
    pub key: String,
}

/// Orders a certificate for `host`, offering each challenge on `challenges` while the CA
/// validates it.
pub async fn obtain(
    account: &Account,
    host: &str,
    challenges: &Arc<Challenges>,
) -> Result<Issued, Failure> {
    let identifiers = [Identifier::Dns(host.to_owned())];
    let mut order = (account.new_order(&NewOrder::new(&identifiers)).await)
        .map_err(|e| Failure::of("order", e))?;
    let mut offered = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|e| Failure::of("order", e))?;
        match authorization.status {
            // Validated by an earlier order of this account: nothing to prove.
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            status => {
                return Err(Failure {
                    reason: "challenge",
                    detail: format!("the authorization for {host} is {status:?}"),
                })
            }
        }
        let mut challenge = authorization
            .challenge(ChallengeType::Http01)
            .ok_or_else(|| Failure {
                reason: "challenge",
                detail: format!("the CA offers no HTTP-01 challenge for {host}"),
            })?;
        let key_authorization = challenge.key_authorization();
        offered.push(challenges.offer(host, &challenge.token, key_authorization.as_str()));
        challenge
            .set_ready()
            .await
            .map_err(|e| Failure::of("challenge", e))?;
    }
    // Every half second, without backing off (a CA's Retry-After still comes first): doubling
    // from 250 ms left an order the CA had finished waiting up to 32 s for the next look,
    // twice; a certificate issued in a second was picked up 72 s later.
    let patience = RetryPolicy::new()
        .initial_delay(Duration::from_millis(500))
        .backoff(1.0)
        .timeout(VALIDATION_PATIENCE);
    let status = (order.poll_ready(&patience).await).map_err(|e| Failure::of("challenge", e))?;
    drop(offered);
    if status != OrderStatus::Ready {
        return Err(Failure {
            reason: "challenge",
            detail: format!("the order for {host} is {status:?} after its challenge"),
        });
    }
    let key = order
        .finalize()
        .await
        .map_err(|e| Failure::of("finalize", e))?;
    let chain =
        (order.poll_certificate(&patience).await).map_err(|e| Failure::of("finalize", e))?;
    Ok(Issued { chain, key })
}
