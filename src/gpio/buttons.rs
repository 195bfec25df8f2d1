//! Push-button debouncing: a pure state machine over timestamped edges.
//!
//! A press counts once the line has been active for `debounce_ms` without interruption; the
//! button must then be released (inactive for `debounce_ms`) before it can count again, so
//! holding a button never repeats a cart. Contact bounce (a few ms of toggling when the button
//! is pressed or released) and spikes shorter than `debounce_ms` never count.
//!
//! The backends also ask the kernel to debounce the line with the same period where it can;
//! this software debouncer keeps the behaviour identical on lines or drivers without it.

use std::time::Duration;

/// The debouncer's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Not pressed.
    Released,
    /// Active since `since`; a press if it stays so for the debounce period.
    Pressing { since: Duration },
    /// Pressed and counted.
    Pressed,
    /// Inactive since `since`; released if it stays so for the debounce period.
    Releasing { since: Duration },
}

/// Debounces one button.
#[derive(Clone, Debug)]
pub struct Debouncer {
    period: Duration,
    state: State,
}

impl Debouncer {
    /// A debouncer for a released button.
    pub fn new(period: Duration) -> Debouncer {
        Debouncer {
            period,
            state: State::Released,
        }
    }

    /// The line became active (pressed) or inactive at `at`; returns whether a press was
    /// recognised (by a deadline that `at` passed).
    #[must_use]
    pub fn edge(&mut self, active: bool, at: Duration) -> bool {
        let pressed = self.advance(at);
        self.state = match (self.state, active) {
            (State::Released, true) => State::Pressing { since: at },
            (State::Pressing { .. }, false) => State::Released,
            (State::Pressed, false) => State::Releasing { since: at },
            (State::Releasing { .. }, true) => State::Pressed,
            (state, _) => state,
        };
        pressed
    }

    /// When time next changes something, if nothing else happens on the line.
    pub fn deadline(&self) -> Option<Duration> {
        match self.state {
            State::Pressing { since } | State::Releasing { since } => {
                Some(since.saturating_add(self.period))
            }
            State::Released | State::Pressed => None,
        }
    }

    /// Time has reached `now`; returns whether a press was recognised.
    #[must_use]
    pub fn advance(&mut self, now: Duration) -> bool {
        match self.deadline() {
            Some(deadline) if now >= deadline => match self.state {
                State::Pressing { .. } => {
                    self.state = State::Pressed;
                    true
                }
                _ => {
                    self.state = State::Released;
                    false
                }
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn presses(edges: &[(bool, u64)], end: u64) -> usize {
        let mut d = Debouncer::new(ms(20));
        let mut n = 0;
        for &(level, at) in edges {
            n += usize::from(d.edge(level, ms(at)));
        }
        n + usize::from(d.advance(ms(end)))
    }

    #[test]
    fn table() {
        type Case = (&'static str, &'static [(bool, u64)], u64, usize);
        let cases: &[Case] = &[
            ("clean press", &[(true, 0), (false, 100)], 1000, 1),
            ("press not yet steady", &[(true, 0)], 19, 0),
            ("press steady", &[(true, 0)], 20, 1),
            ("spike", &[(true, 0), (false, 5)], 1000, 0),
            (
                "bouncy press and release",
                &[
                    (true, 0),
                    (false, 2),
                    (true, 3),
                    (false, 5),
                    (true, 6),
                    (false, 150),
                    (true, 151),
                    (false, 153),
                ],
                1000,
                1,
            ),
            ("held down counts once", &[(true, 0)], 60_000, 1),
            (
                "two presses",
                &[(true, 0), (false, 100), (true, 300), (false, 400)],
                1000,
                2,
            ),
            (
                "release shorter than debounce is a bounce",
                &[(true, 0), (false, 100), (true, 110), (false, 200)],
                1000,
                1,
            ),
        ];
        for (name, edges, end, want) in cases {
            assert_eq!(presses(edges, *end), *want, "{name}");
        }
    }
}
