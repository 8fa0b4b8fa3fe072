//! What a matched rule does for one request: the answer Signpost writes itself, or the
//! forward to make (upstream, target, and the signals for the upstream's response). Both front
//! doors turn a routing [`Decision`] into this one way.

use std::sync::Arc;

use crate::protocol::answer::Answer;
use crate::protocol::forward::SignalHeaders;
use crate::route::Decision;
use crate::table::Signals;
use crate::upstream::Upstream;

/// What a routed request becomes.
#[derive(Debug)]
pub enum Outcome {
    Answer(Answer),
    Forward(ForwardPlan),
}

/// Where a routed request is forwarded.
#[derive(Debug, Clone)]
pub struct ForwardPlan {
    pub upstream: Arc<Upstream>,
    /// Upstream request target: path and query.
    pub target: String,
    /// Deprecation headers for the response, when the tenant has any.
    pub signals: Option<Box<SignalHeaders>>,
}

impl Outcome {
    /// `signals` are the tenant's deprecation dates, if it has any.
    pub fn of(decision: Decision<'_>, signals: Option<&Signals>) -> Self {
        // Most tenants signal nothing: then no `Link` is built at all.
        let signals = signals.filter(|s| !s.is_empty());
        let signal = |successor: &str, s: &Signals| {
            SignalHeaders::new(s.deprecation.as_ref(), s.sunset.as_ref(), successor)
        };
        match decision {
            Decision::Redirect { status, location } => {
                let signals = signals.and_then(|s| signal(&location, s));
                Outcome::Answer(Answer::redirect(status, location, signals))
            }
            Decision::Gone { page } => Outcome::Answer(Answer::gone(page.clone())),
            Decision::Reject { status, why } => Outcome::Answer(Answer::reject(status, why)),
            Decision::Challenge { key_authorization } => {
                Outcome::Answer(Answer::challenge(key_authorization))
            }
            Decision::Forward { upstream, path } => Outcome::Forward(ForwardPlan {
                signals: signals.and_then(|s| signal(&format!("{}{path}", upstream.origin), s)),
                upstream: upstream.clone(),
                target: path,
            }),
        }
    }
}
