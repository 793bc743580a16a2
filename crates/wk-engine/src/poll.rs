//! The pace of a wait: poll soon after the start (tens of milliseconds), then less and less
//! often, up to a ceiling. A condition that comes true is noticed at most one current interval
//! late, and a wait that goes on for long costs no more requests than a fixed ceiling would.

use std::time::Duration;

/// The ceiling of a wait on WuKongIM's own API (a node's health, a join, a member back in its
/// cluster): a request per member a round is cheap beside a join's seconds, and a wait that
/// ends within a tenth of a second of its condition keeps a join near WuKongIM's own time.
pub(crate) const API: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub(crate) struct Poll {
    next: Duration,
    max: Duration,
}

impl Poll {
    /// First interval 25 ms, doubling up to `max`.
    pub(crate) fn up_to(max: Duration) -> Poll {
        Poll {
            next: Duration::from_millis(25).min(max),
            max,
        }
    }

    /// The interval to wait now; the next one is twice as long (at most the ceiling).
    pub(crate) fn interval(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }

    pub(crate) async fn sleep(&mut self) {
        tokio::time::sleep(self.interval()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn fast_at_first_then_up_to_the_ceiling() {
        let mut p = super::Poll::up_to(Duration::from_millis(500));
        let ms: Vec<u128> = (0..7).map(|_| p.interval().as_millis()).collect();
        assert_eq!(ms, [25, 50, 100, 200, 400, 500, 500]);
        let mut low = super::Poll::up_to(Duration::from_millis(10));
        assert_eq!(low.interval(), Duration::from_millis(10));
    }
}
