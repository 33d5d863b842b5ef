//! The delayed operation (Kafka's purgatory, docs/architecture.md §5): an operation
//! that cannot complete yet is tried again whenever something it watches moves, until
//! it is satisfied or its deadline passes. Consumer fetch (until `min_bytes`), follower
//! fetch (until there is data) and acks (until the high watermark or the durable offset
//! passes the batch) are all this one loop, over the partitions' progress watches.
//!
//! Subscribing happens before the first attempt, so a change that lands between an
//! attempt and the wait still wakes it.
use futures::future::select_all;
use tokio::sync::watch;
use tokio::time::Instant;

/// What one attempt gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Satisfied: answer with this.
    Done(T),
    /// Not yet: this is the answer should the deadline pass (or nothing be left to
    /// watch) before a later attempt is satisfied.
    Wait(T),
}

/// Runs `attempt` now and after every change of any watch in `watched`, until it is
/// [`Attempt::Done`], the `deadline` passed, or every watched sender is gone; returns
/// the last attempt's answer. Without a deadline it waits as long as anything is
/// watched (the caller bounds it by dropping the future). An attempt may await (a
/// fetch reads its segments on a blocking thread); [`complete`] takes a plain function.
pub async fn complete_async<P, T, F>(
    mut watched: Vec<watch::Receiver<P>>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> F,
) -> T
where
    F: std::future::Future<Output = Attempt<T>>,
{
    loop {
        let answer = match attempt().await {
            Attempt::Done(answer) => return answer,
            Attempt::Wait(answer) => answer,
        };
        if watched.is_empty() || deadline.is_some_and(|d| Instant::now() >= d) {
            return answer;
        }
        let gone = {
            let changed = select_all(watched.iter_mut().map(|w| Box::pin(w.changed())));
            let woke = match deadline {
                Some(d) => tokio::time::timeout_at(d, changed).await.ok(),
                None => Some(changed.await),
            };
            // A watch whose sender is gone (its partition closed) is dropped; the next
            // attempt sees why.
            woke.and_then(|(result, index, _)| result.is_err().then_some(index))
        };
        if let Some(index) = gone {
            watched.swap_remove(index);
        }
    }
}

/// [`complete_async`] with an attempt that does not await.
pub async fn complete<P, T>(
    watched: Vec<watch::Receiver<P>>,
    deadline: Option<Instant>,
    mut attempt: impl FnMut() -> Attempt<T>,
) -> T {
    complete_async(watched, deadline, || std::future::ready(attempt())).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn completes_when_a_watched_value_satisfies_it() {
        let (tx, rx) = watch::channel(0);
        let waiter = tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            let seen = rx.clone();
            complete(vec![rx], Some(deadline), || {
                let v = *seen.borrow();
                if v >= 3 {
                    Attempt::Done(v)
                } else {
                    Attempt::Wait(-1)
                }
            })
            .await
        });
        for v in 1..=3 {
            tokio::task::yield_now().await;
            tx.send_replace(v);
        }
        assert_eq!(waiter.await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn answers_with_the_last_attempt_at_the_deadline() {
        let (_tx, rx) = watch::channel(0);
        let start = Instant::now();
        let mut attempts = 0;
        let answer = complete(vec![rx], Some(start + Duration::from_millis(500)), || {
            attempts += 1;
            Attempt::Wait(attempts)
        })
        .await;
        // Once now, once after the deadline passed.
        assert_eq!(answer, 2);
        assert!(Instant::now() >= start + Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_between_subscribing_and_waiting_is_not_missed() {
        let (tx, rx) = watch::channel(0);
        let mut first = true;
        let answer = complete(vec![rx], None, || {
            if first {
                first = false;
                // Lands after the attempt looked, before the wait started.
                tx.send_replace(1);
                return Attempt::Wait("missed");
            }
            Attempt::Done("woken")
        })
        .await;
        assert_eq!(answer, "woken");
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_nothing_is_left_to_watch() {
        let (tx, rx) = watch::channel(0);
        drop(tx);
        let answer = complete(vec![rx], None, || Attempt::Wait("closed")).await;
        assert_eq!(answer, "closed");
        let answer = complete(Vec::<watch::Receiver<()>>::new(), None, || {
            Attempt::Wait("nothing")
        })
        .await;
        assert_eq!(answer, "nothing");
    }
}
