//! A share of the event loop's time for reading /proc/PID/maps. A closed fd's file is looked
//! for among its process's mappings; a process chooses how long its maps are (tens of
//! thousands of lines) and how often it closes fds, so the reads are capped per second. A file
//! not looked for is kept as mapped until the next rescan: never `ok` on a guess.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::facts::{DevNum, Mapping};
use crate::scope::procfs;

/// The window the budget is spent in.
const WINDOW: Duration = Duration::from_secs(1);

pub struct MapsBudget {
    per_window: Duration,
    window_start: Cell<Instant>,
    spent: Cell<Duration>,
}

impl MapsBudget {
    /// At most `per_window` of each second reading maps.
    pub fn new(per_window: Duration) -> Self {
        Self {
            per_window,
            window_start: Cell::new(Instant::now()),
            spent: Cell::new(Duration::ZERO),
        }
    }

    /// The mappings of `pid` that map the file `dev`:`ino` now, or None when this second's
    /// budget is spent.
    pub fn mappings_of(&self, pid: u32, dev: DevNum, ino: u64) -> Option<Vec<Mapping>> {
        let now = Instant::now();
        if now.duration_since(self.window_start.get()) >= WINDOW {
            self.window_start.set(now);
            self.spent.set(Duration::ZERO);
        }
        if self.spent.get() >= self.per_window {
            return None;
        }
        let maps = procfs::mappings_of(pid, dev, ino);
        self.spent.set(self.spent.get() + now.elapsed());
        Some(maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads while the window's budget lasts, then none until the next window.
    #[test]
    fn reads_stop_when_the_budget_is_spent_and_resume_in_the_next_window() {
        let (me, dev) = (std::process::id(), DevNum { major: 0, minor: 0 });
        let budget = MapsBudget::new(Duration::from_nanos(1));
        assert!(budget.mappings_of(me, dev, 1).is_some(), "the first read");
        assert!(budget.mappings_of(me, dev, 1).is_none(), "spent");
        budget.window_start.set(Instant::now() - WINDOW);
        assert!(budget.mappings_of(me, dev, 1).is_some(), "a new window");
        assert!(
            MapsBudget::new(Duration::ZERO)
                .mappings_of(me, dev, 1)
                .is_none()
        );
    }
}
