//! The pulse-train price decoder: a pure state machine over timestamped edges.
//!
//! Vending machines, coin validators and many "price line" interfaces tell the amount as a train
//! of pulses, one per unit of value (`gpio.pulse.unit`). The line is noisy: contacts bounce,
//! long cables pick up spikes, a relay may stick. The decoder's rules:
//!
//! - A level held for less than `min_width` is noise. A short active spike is a glitch and never
//!   counts; a short inactive dip inside a pulse is a bounce and does not split the pulse.
//! - A pulse active for `max_width` or longer means a stuck line or a wrong configuration: the
//!   whole train is refused, never charged in part.
//! - The train ends when the line has been quiet for `gap` after the last pulse; the decoder then
//!   reports the number of pulses. More than `max_pulses` refuses the train.
//!
//! Times are the kernel's edge timestamps (a monotonic clock), so scheduling delays in user space
//! do not change what a pulse measures. The decoder never reads a clock: the caller reports edges
//! with [`PulseDecoder::edge`] and the passing of time with [`PulseDecoder::advance`], and asks
//! [`PulseDecoder::deadline`] when time next matters. That makes every transition testable with
//! synthetic edge sequences.
//!
//! Noise that keeps toggling the line for longer than `min_width` (spikes closer together than
//! `min_width`) is indistinguishable from a pulse on one wire; filter it in hardware (an RC
//! filter or an optocoupler) if the installation has it.

use std::time::Duration;

use crate::gpio::PulsePin;

/// The timing rules of a pulse input (from `[gpio.pulse]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PulseTiming {
    /// Shorter levels are noise.
    pub min_width: Duration,
    /// A pulse this long or longer is a stuck line.
    pub max_width: Duration,
    /// Quiet time that ends a train.
    pub gap: Duration,
    /// More pulses than this refuse the train.
    pub max_pulses: u32,
}

impl PulseTiming {
    /// The timing of a configured pulse input.
    pub fn from_config(pin: &PulsePin) -> PulseTiming {
        PulseTiming {
            min_width: Duration::from_millis(pin.min_width_ms),
            max_width: Duration::from_millis(pin.max_width_ms),
            gap: Duration::from_millis(pin.gap_ms),
            max_pulses: pin.max_pulses,
        }
    }
}

/// What a finished train decoded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A well-formed train of this many pulses.
    Train {
        /// Number of pulses, 1 to `max_pulses`.
        pulses: u32,
    },
    /// The train was malformed; nothing may be charged for it.
    Rejected(Rejection),
}

/// Why a train was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// A pulse lasted `max_width` or longer.
    #[error(
        "a pulse lasted at least {width:?}, gpio.pulse.max_width_ms or longer: the line is stuck \
         or the machine's pulse timing differs from the config; the train was ignored"
    )]
    TooLong {
        /// How long the line had been active when the decoder gave up on it.
        width: Duration,
    },
    /// More than `max_pulses` pulses.
    #[error("more than {max} pulses in one train (gpio.pulse.max_pulses); the train was ignored")]
    TooManyPulses {
        /// The configured maximum.
        max: u32,
    },
}

/// Pulses already counted in the current train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counted {
    pulses: u32,
    /// When the last counted pulse ended: the end-of-train gap runs from here.
    last_end: Duration,
}

/// The decoder's states. Every transition is in [`PulseDecoder::edge`] (levels) or
/// [`PulseDecoder::expire`] (time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No train in progress; the line is inactive.
    Idle,
    /// The line is active since `since`: a pulse, or a glitch if it ends too soon.
    Active {
        since: Duration,
        before: Option<Counted>,
    },
    /// The line went inactive at `fell`; if it stays so for `min_width` the pulse is over,
    /// otherwise the dip was a bounce.
    Falling {
        since: Duration,
        fell: Duration,
        before: Option<Counted>,
    },
    /// Between pulses of a train, waiting for the next pulse or the end-of-train gap.
    Between(Counted),
    /// The train was refused; everything is ignored until the line has been inactive for `gap`.
    Discarding { last: Duration, active: bool },
}

/// Decodes one pulse input. See the module docs for the rules.
#[derive(Clone, Debug)]
pub struct PulseDecoder {
    timing: PulseTiming,
    state: State,
}

impl PulseDecoder {
    /// A decoder waiting for the first pulse, assuming the line is inactive.
    pub fn new(timing: PulseTiming) -> PulseDecoder {
        PulseDecoder {
            timing,
            state: State::Idle,
        }
    }

    /// The line became active (`true`) or inactive at `at`. Deadlines up to `at` are applied
    /// first, so an edge that arrives before its timer fired is still judged in order.
    pub fn edge(&mut self, active: bool, at: Duration) -> Option<Decoded> {
        let out = self.advance(at);
        self.state = match (self.state, active) {
            (State::Idle, true) => State::Active {
                since: at,
                before: None,
            },
            (State::Between(counted), true) => State::Active {
                since: at,
                before: Some(counted),
            },
            (State::Active { since, before }, false) => State::Falling {
                since,
                fell: at,
                before,
            },
            // A dip shorter than min_width: the pulse goes on.
            (State::Falling { since, before, .. }, true) => State::Active { since, before },
            (State::Discarding { .. }, active) => State::Discarding { last: at, active },
            // The same level twice (an edge lost in the kernel's buffer): nothing changes.
            (state, _) => state,
        };
        out
    }

    /// When time next changes something, if nothing else happens on the line.
    pub fn deadline(&self) -> Option<Duration> {
        let t = &self.timing;
        match self.state {
            State::Idle | State::Discarding { active: true, .. } => None,
            State::Active { since, .. } => Some(since.saturating_add(t.max_width)),
            State::Falling { fell, .. } => Some(fell.saturating_add(t.min_width)),
            State::Between(counted) => Some(counted.last_end.saturating_add(t.gap)),
            State::Discarding {
                last,
                active: false,
            } => Some(last.saturating_add(t.gap)),
        }
    }

    /// Time has reached `now` without an edge: applies every deadline up to it.
    pub fn advance(&mut self, now: Duration) -> Option<Decoded> {
        let mut out = None;
        while let Some(deadline) = self.deadline() {
            if now < deadline {
                break;
            }
            let (next, decoded) = self.expire(deadline);
            self.state = next;
            out = decoded.or(out);
        }
        out
    }

    /// Whether a train is being received (for logs and tests).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// The transition when the current state's deadline passes.
    fn expire(&self, deadline: Duration) -> (State, Option<Decoded>) {
        let t = &self.timing;
        match self.state {
            State::Active { .. } => (
                State::Discarding {
                    last: deadline,
                    active: true,
                },
                Some(Decoded::Rejected(Rejection::TooLong { width: t.max_width })),
            ),
            State::Falling {
                since,
                fell,
                before,
            } => {
                if fell.saturating_sub(since) < t.min_width {
                    let back = before.map_or(State::Idle, State::Between);
                    return (back, None);
                }
                let pulses = before.map_or(0, |c| c.pulses).saturating_add(1);
                if pulses > t.max_pulses {
                    let discard = State::Discarding {
                        last: fell,
                        active: false,
                    };
                    let max = t.max_pulses;
                    return (
                        discard,
                        Some(Decoded::Rejected(Rejection::TooManyPulses { max })),
                    );
                }
                let counted = Counted {
                    pulses,
                    last_end: fell,
                };
                (State::Between(counted), None)
            }
            State::Between(counted) => (
                State::Idle,
                Some(Decoded::Train {
                    pulses: counted.pulses,
                }),
            ),
            State::Idle | State::Discarding { .. } => (State::Idle, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timing() -> PulseTiming {
        PulseTiming {
            min_width: ms(20),
            max_width: ms(200),
            gap: ms(500),
            max_pulses: 5,
        }
    }

    /// Feeds `(level, ms)` edges, then lets time run to `end_ms`; returns every output.
    fn run(edges: &[(bool, u64)], end_ms: u64) -> Vec<Decoded> {
        let mut d = PulseDecoder::new(timing());
        let mut out = Vec::new();
        for &(level, at) in edges {
            out.extend(d.edge(level, ms(at)));
        }
        out.extend(d.advance(ms(end_ms)));
        out
    }

    fn train(n: u32) -> Vec<Decoded> {
        vec![Decoded::Train { pulses: n }]
    }

    #[test]
    fn table() {
        use Decoded::Rejected;
        type Case = (&'static str, &'static [(bool, u64)], u64, Vec<Decoded>);
        let cases: &[Case] = &[
            ("nothing", &[], 10_000, vec![]),
            ("one pulse", &[(true, 0), (false, 50)], 10_000, train(1)),
            (
                "three pulses",
                &[
                    (true, 0),
                    (false, 50),
                    (true, 100),
                    (false, 150),
                    (true, 200),
                    (false, 250),
                ],
                10_000,
                train(3),
            ),
            ("train not over yet", &[(true, 0), (false, 50)], 549, vec![]),
            (
                "train over at the gap",
                &[(true, 0), (false, 50)],
                550,
                train(1),
            ),
            ("glitch alone", &[(true, 0), (false, 19)], 10_000, vec![]),
            (
                "pulse of exactly min width",
                &[(true, 0), (false, 20)],
                10_000,
                train(1),
            ),
            (
                "glitch between pulses",
                &[
                    (true, 0),
                    (false, 50),
                    (true, 200),
                    (false, 205),
                    (true, 400),
                    (false, 450),
                ],
                10_000,
                train(2),
            ),
            (
                "bounce at the start and end of a pulse",
                &[
                    (true, 0),
                    (false, 1),
                    (true, 2),
                    (false, 60),
                    (true, 61),
                    (false, 62),
                ],
                10_000,
                train(1),
            ),
            (
                "dip inside a pulse",
                &[(true, 0), (false, 40), (true, 45), (false, 90)],
                10_000,
                train(1),
            ),
            (
                "stuck line",
                &[(true, 0)],
                10_000,
                vec![Rejected(Rejection::TooLong { width: ms(200) })],
            ),
            (
                "pulse of exactly max width",
                &[(true, 0), (false, 200)],
                10_000,
                vec![Rejected(Rejection::TooLong { width: ms(200) })],
            ),
            (
                "long pulse inside a train refuses it all",
                &[
                    (true, 0),
                    (false, 50),
                    (true, 100),
                    (false, 400),
                    (true, 450),
                    (false, 500),
                ],
                10_000,
                vec![Rejected(Rejection::TooLong { width: ms(200) })],
            ),
            (
                "too many pulses",
                &[
                    (true, 0),
                    (false, 30),
                    (true, 60),
                    (false, 90),
                    (true, 120),
                    (false, 150),
                    (true, 180),
                    (false, 210),
                    (true, 240),
                    (false, 270),
                    (true, 300),
                    (false, 330),
                    (true, 360),
                    (false, 390),
                ],
                10_000,
                vec![Rejected(Rejection::TooManyPulses { max: 5 })],
            ),
            (
                "repeated levels are ignored",
                &[(false, 0), (true, 10), (true, 20), (false, 60), (false, 70)],
                10_000,
                train(1),
            ),
            (
                "two trains",
                &[
                    (true, 0),
                    (false, 50),
                    (true, 1000),
                    (false, 1050),
                    (true, 1100),
                    (false, 1150),
                ],
                10_000,
                vec![Decoded::Train { pulses: 1 }, Decoded::Train { pulses: 2 }],
            ),
        ];
        for (name, edges, end, want) in cases {
            assert_eq!(run(edges, *end), *want, "{name}");
        }
    }

    #[test]
    fn a_refused_train_is_discarded_until_the_line_is_quiet() {
        let mut d = PulseDecoder::new(timing());
        assert_eq!(
            d.edge(true, ms(0)),
            None,
            "nothing decided at the rising edge"
        );
        assert_eq!(
            d.advance(ms(300)),
            Some(Decoded::Rejected(Rejection::TooLong { width: ms(200) }))
        );
        assert_eq!(d.deadline(), None, "stuck: nothing to wait for");
        assert_eq!(d.edge(false, ms(5000)), None);
        // Pulses within the gap after the release are the rest of the bad train.
        assert_eq!(d.edge(true, ms(5100)), None);
        assert_eq!(d.edge(false, ms(5150)), None);
        assert_eq!(d.advance(ms(5649)), None);
        assert!(!d.is_idle());
        assert_eq!(d.advance(ms(5650)), None);
        assert!(d.is_idle());
        assert_eq!(d.edge(true, ms(6000)), None);
        assert_eq!(d.edge(false, ms(6050)), None);
        assert_eq!(d.advance(ms(7000)), Some(Decoded::Train { pulses: 1 }));
    }

    #[test]
    fn a_late_edge_is_judged_after_the_deadline_it_passed() {
        let mut d = PulseDecoder::new(timing());
        d.edge(true, ms(0));
        d.edge(false, ms(50));
        // No advance() call in between: the next edge comes after the gap ended the train.
        assert_eq!(d.edge(true, ms(800)), Some(Decoded::Train { pulses: 1 }));
        d.edge(false, ms(850));
        assert_eq!(d.advance(ms(2000)), Some(Decoded::Train { pulses: 1 }));
    }

    #[test]
    fn huge_timestamps_do_not_overflow() {
        let mut d = PulseDecoder::new(timing());
        d.edge(true, Duration::MAX - ms(1));
        assert_eq!(d.deadline(), Some(Duration::MAX));
        assert!(d.advance(Duration::MAX).is_some());
    }
}
