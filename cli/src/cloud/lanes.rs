//! Running an apply's writes together where their order does not matter.
//!
//! A plan is cut into steps, each step into lanes: the steps run one after
//! another (a step starts only when every write of the one before it is
//! done), the lanes of a step run together, up to [`PARALLEL_WRITES`] at a
//! time, and the writes of one lane one after another. GCP: a step of its
//! order, one write a lane. Azure: one NSG a lane (ARM takes one operation
//! at a time on an NSG, and an NSG's own order matters).
//!
//! After a failure, or once `hooks` stop acting, no write starts; those
//! already under way are waited for (never dropped mid-request), so that
//! what is reported applied is exactly what was. Applied writes are reported
//! in plan order (lanes in their order) when their step is done.

use std::cell::Cell;
use std::fmt::Display;
use std::future::Future;

use futures::stream::{self, StreamExt};

use super::Hooks;

/// Lanes under way at once within a step: cloud writes wait seconds for
/// their operations, so one at a time would take an hour for a thousand
/// rules; eight stays well inside the APIs' write rates.
pub const PARALLEL_WRITES: usize = 8;

/// What an apply returns: every change applied, or those and what stopped it.
pub type Applied = Result<Vec<String>, (Vec<String>, anyhow::Error)>;

/// Runs `steps` (each a list of lanes, each a list of changes) as the module
/// says.
pub async fn run<'a, C, Fut>(steps: Vec<Vec<Vec<&'a C>>>, hooks: &Hooks<'_>, execute: impl Fn(&'a C) -> Fut) -> Applied
where
    C: Display,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut done = Vec::new();
    let stopped = Cell::new(false);
    let mut failure = None;
    for lanes in steps {
        let execute = &execute;
        let stopped = &stopped;
        let results: Vec<Vec<(&C, anyhow::Result<()>)>> = stream::iter(lanes)
            .map(|lane| async move {
                let mut out = Vec::new();
                for c in lane {
                    if stopped.get() {
                        break;
                    }
                    let r = match hooks.check() {
                        Ok(()) => execute(c).await.map_err(|e| e.context(c.to_string())),
                        Err(e) => Err(e),
                    };
                    stopped.set(stopped.get() || r.is_err());
                    out.push((c, r));
                }
                out
            })
            .buffered(PARALLEL_WRITES)
            .collect()
            .await;
        for (c, r) in results.into_iter().flatten() {
            match r {
                Ok(()) => {
                    (hooks.progress)(&c.to_string());
                    done.push(c.to_string());
                }
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        if let Some(e) = failure {
            return Err((done, e));
        }
    }
    Ok(done)
}

/// One change a lane: a step's changes all independent.
pub fn singles<C>(step: &[C]) -> Vec<Vec<&C>> {
    step.iter().map(|c| vec![c]).collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::time::Duration;

    use super::*;

    /// A change of the test: its lane, its name, and whether it fails.
    struct C(u8, String, bool);

    impl Display for C {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.1)
        }
    }

    /// Runs `steps` with writes that take 5 ms (1 ms for a failing one, so
    /// that it fails while the others are under way): the result and every
    /// start and end, in the order they happened.
    fn go(steps: Vec<Vec<Vec<&C>>>) -> (Applied, Vec<String>) {
        let events = RefCell::new(Vec::new());
        let hooks = Hooks { progress: &|_| {}, may_act: &|| true };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let r = rt.block_on(run(steps, &hooks, |c| {
            let events = &events;
            async move {
                events.borrow_mut().push(format!("start {}", c.1));
                tokio::time::sleep(Duration::from_millis(if c.2 { 1 } else { 5 })).await;
                events.borrow_mut().push(format!("end {}", c.1));
                if c.2 {
                    anyhow::bail!("refused")
                }
                Ok(())
            }
        }));
        (r, events.into_inner())
    }

    fn changes(n: usize, failing: Option<usize>) -> Vec<C> {
        (0..n).map(|i| C((i % 3) as u8, format!("c{i}"), Some(i) == failing)).collect()
    }

    /// The most writes under way at once.
    fn most_at_once(events: &[String]) -> usize {
        let (mut live, mut most) = (0usize, 0);
        for e in events {
            live = if e.starts_with("start") { live + 1 } else { live - 1 };
            most = most.max(live);
        }
        most
    }

    #[test]
    fn a_step_starts_when_the_one_before_is_done_and_runs_together() {
        let cs = changes(20, None);
        let (r, events) = go(vec![singles(&cs[..12]), singles(&cs[12..])]);
        assert_eq!(r.expect("applied"), cs.iter().map(|c| c.1.clone()).collect::<Vec<_>>());
        let at = |e: &str| events.iter().position(|x| x == e).expect(e);
        let last_end = (0..12).map(|i| at(&format!("end c{i}"))).max().expect("ends");
        let first_start = (12..20).map(|i| at(&format!("start c{i}"))).min().expect("starts");
        assert!(last_end < first_start, "step 1 started before step 0 was done: {events:?}");
        assert_eq!(most_at_once(&events), PARALLEL_WRITES, "{events:?}");
    }

    #[test]
    fn a_lane_runs_in_its_order_beside_the_others() {
        let cs = changes(12, None);
        // Three lanes by c.0: c0, c3, c6, c9 / c1, c4, ... / c2, c5, ...
        let lanes: Vec<Vec<&C>> = (0..3).map(|l| cs.iter().filter(|c| c.0 == l).collect()).collect();
        let (r, events) = go(vec![lanes]);
        // Reported lane by lane, each in its order.
        let want: Vec<String> = (0..3).flat_map(|l| cs.iter().filter(move |c| c.0 == l).map(|c| c.1.clone())).collect();
        assert_eq!(r.expect("applied"), want);
        for l in 0..3u8 {
            let lane: Vec<&C> = cs.iter().filter(|c| c.0 == l).collect();
            for w in lane.windows(2) {
                let end = events.iter().position(|e| *e == format!("end {}", w[0].1)).expect("end");
                let start = events.iter().position(|e| *e == format!("start {}", w[1].1)).expect("start");
                assert!(end < start, "{} started before {} ended: {events:?}", w[1].1, w[0].1);
            }
        }
        assert_eq!(most_at_once(&events), 3, "the three lanes together: {events:?}");
    }

    #[test]
    fn after_a_failure_nothing_starts_and_what_was_under_way_is_reported() {
        let cs = changes(30, Some(3));
        let (r, events) = go(vec![singles(&cs[..20]), singles(&cs[20..])]);
        let (done, e) = r.expect_err("a change failed");
        assert!(format!("{e:#}").contains("c3: refused"), "{e:#}");
        // The eight started together (c0..c7) finish; c3 fails; nothing more starts.
        let started = events.iter().filter(|e| e.starts_with("start")).count();
        assert_eq!(started, PARALLEL_WRITES, "{events:?}");
        assert_eq!(done, ["c0", "c1", "c2", "c4", "c5", "c6", "c7"]);
    }

    #[test]
    fn a_failure_in_one_lane_stops_the_others_before_their_next_write() {
        let cs = changes(9, Some(1));
        let lanes: Vec<Vec<&C>> = (0..3).map(|l| cs.iter().filter(|c| c.0 == l).collect()).collect();
        let (r, events) = go(vec![lanes]);
        let (done, _) = r.expect_err("c1 failed");
        // c0, c1, c2 start together; c1 fails; no lane starts its second write.
        assert_eq!(done, ["c0", "c2"], "{events:?}");
        assert_eq!(events.iter().filter(|e| e.starts_with("start")).count(), 3, "{events:?}");
    }
}
