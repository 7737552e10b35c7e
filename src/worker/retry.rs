//! Whether a failed upstream attempt is tried again, and how: one pure
//! decision from the error and what is known of the attempt, so the
//! rules live in one table (and one test) instead of in the exchange's
//! control flow. Budgets, server choice and the try limit are checked by
//! the caller after this says a retry is allowed.

use crate::error::{ProxyError, Retry, Side};
use crate::upstream::Outcome;

/// What is known of the attempt that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Attempt {
    /// It ran on a pooled connection (which the server may have closed).
    pub reused: bool,
    /// A fresh connection to the same server was already tried.
    pub fresh_tried: bool,
    /// The whole request is still at hand (no body streamed from the
    /// client), so it can be sent again.
    pub replayable: bool,
    /// The method is idempotent.
    pub idempotent: bool,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Same server, fresh connection: the pooled one was stale. The
    /// server is not at fault and no budget is spent.
    FreshConnection,
    /// Another server, spending from the group's retry budget when
    /// `budgeted` (the upstream may have seen the request).
    NextServer { budgeted: bool },
    /// Answer the client with the error.
    GiveUp,
}

/// The retry rule. Connect failures go to another server for any request
/// (nothing was sent: nginx's default `proxy_next_upstream`); a stale
/// pooled connection is replaced once; a failure before the answer is
/// retried elsewhere only for replayable idempotent requests; a `retry_on`
/// status only arises when a retry was possible.
pub(super) fn decide(e: &ProxyError, a: Attempt) -> Decision {
    match e.retry {
        Retry::Unsent => Decision::NextServer { budgeted: false },
        Retry::BeforeAnswer if a.reused && !a.fresh_tried && a.replayable => {
            Decision::FreshConnection
        }
        Retry::BeforeAnswer if a.replayable && a.idempotent => {
            Decision::NextServer { budgeted: true }
        }
        Retry::Status => Decision::NextServer { budgeted: true },
        Retry::BeforeAnswer | Retry::No => Decision::GiveUp,
    }
}

/// What a failed attempt tells the balancer about its server.
pub(super) fn outcome(e: &ProxyError, on_5xx: bool, elapsed: std::time::Duration) -> Outcome {
    match (e.side, e.retry) {
        // The client broke off: says nothing about the server.
        (Side::Downstream, _) => Outcome::Neutral,
        // A status counts against the server only where the group says so.
        (_, Retry::Status) if !on_5xx => Outcome::Success(elapsed),
        _ => Outcome::Failure,
    }
}

/// How the client connection goes on after a generated answer for `e`:
/// (close, linger). A request whose body was not read to its end must
/// close, reading what the client still sends; after an upstream failure
/// mid-exchange the connection closes; a failure before anything was
/// sent, or a retried status, leaves it as the client asked.
pub(super) fn after_answer(e: &ProxyError, keep_alive: bool, replayable: bool) -> (bool, bool) {
    let clean = matches!(e.retry, Retry::Unsent | Retry::Status);
    (!keep_alive || !replayable || !clean, !replayable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    const BOTH: [bool; 2] = [false, true];

    fn err(retry: Retry) -> ProxyError {
        ProxyError::upstream(ErrorKind::BadGateway).retry(retry)
    }

    /// Every combination of the attempt's facts, for each kind of retry.
    #[test]
    fn retry_decision_table() {
        use Decision::*;
        for reused in BOTH {
            for fresh_tried in BOTH {
                for replayable in BOTH {
                    for idempotent in BOTH {
                        let a = Attempt {
                            reused,
                            fresh_tried,
                            replayable,
                            idempotent,
                        };
                        let stale = reused && !fresh_tried && replayable;
                        let expected = [
                            (Retry::No, GiveUp),
                            (Retry::Unsent, NextServer { budgeted: false }),
                            (
                                Retry::BeforeAnswer,
                                if stale {
                                    FreshConnection
                                } else if replayable && idempotent {
                                    NextServer { budgeted: true }
                                } else {
                                    GiveUp
                                },
                            ),
                            (Retry::Status, NextServer { budgeted: true }),
                        ];
                        for (retry, want) in expected {
                            assert_eq!(decide(&err(retry), a), want, "{retry:?} {a:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_few_cases_spelled_out() {
        let fresh_post = Attempt {
            reused: false,
            fresh_tried: false,
            replayable: true,
            idempotent: false,
        };
        // A POST that reached the upstream is not sent elsewhere...
        assert_eq!(
            decide(&err(Retry::BeforeAnswer), fresh_post),
            Decision::GiveUp
        );
        // ...but one whose connect failed is.
        assert_eq!(
            decide(&err(Retry::Unsent), fresh_post),
            Decision::NextServer { budgeted: false }
        );
        // A stale pooled connection is replaced even for a POST.
        let pooled_post = Attempt {
            reused: true,
            ..fresh_post
        };
        assert_eq!(
            decide(&err(Retry::BeforeAnswer), pooled_post),
            Decision::FreshConnection
        );
        // A streamed body cannot be sent twice.
        let streamed = Attempt {
            replayable: false,
            idempotent: true,
            ..pooled_post
        };
        assert_eq!(
            decide(&err(Retry::BeforeAnswer), streamed),
            Decision::GiveUp
        );
    }

    #[test]
    fn outcomes_and_connection_after_an_answer() {
        let t = std::time::Duration::from_millis(3);
        let client = ProxyError::downstream(ErrorKind::ClientGone);
        assert_eq!(outcome(&client, true, t), Outcome::Neutral);
        assert_eq!(outcome(&err(Retry::No), false, t), Outcome::Failure);
        let status = ProxyError::upstream(ErrorKind::UpstreamStatus(503)).retry(Retry::Status);
        assert_eq!(outcome(&status, false, t), Outcome::Success(t));
        assert_eq!(outcome(&status, true, t), Outcome::Failure);

        // (keep_alive, replayable) -> (close, linger)
        assert_eq!(after_answer(&status, true, true), (false, false));
        assert_eq!(after_answer(&status, false, true), (true, false));
        assert_eq!(
            after_answer(&err(Retry::Unsent), true, true),
            (false, false)
        );
        assert_eq!(after_answer(&err(Retry::Unsent), true, false), (true, true));
        assert_eq!(after_answer(&err(Retry::No), true, true), (true, false));
        assert_eq!(
            after_answer(&err(Retry::BeforeAnswer), true, false),
            (true, true)
        );
    }
}
