//! Interleaved rounds: every contender runs once per round, round after round, so a change in
//! the machine's load spreads over all of them; the medians are reported.

use super::stats::median;

/// One contender's outcome over the rounds.
pub enum Outcome<T> {
    /// Its measures, one per round so far.
    Done(Vec<T>),
    /// It could not run here (not a failure): why.
    Skipped(String),
    /// It failed: why.
    Failed(String),
}

impl<T> Outcome<T> {
    /// The measures, when there are any.
    pub fn measures(&self) -> Option<&[T]> {
        match self {
            Self::Done(m) if !m.is_empty() => Some(m),
            _ => None,
        }
    }

    /// Why there are no measures.
    pub fn why(&self) -> &str {
        match self {
            Self::Skipped(why) | Self::Failed(why) => why,
            Self::Done(_) => "no result",
        }
    }

    /// The median of `f` over the measures.
    pub fn median(&self, f: impl Fn(&T) -> f64) -> Option<f64> {
        self.measures().map(|m| median(m.iter().map(f).collect()))
    }
}

/// Runs `rounds` rounds of `count` contenders, `run(i)` measuring contender `i` once. A
/// contender that skips or fails is not run again. `progress(i)` is called before each run.
pub fn interleaved<T>(
    count: usize,
    rounds: usize,
    mut progress: impl FnMut(usize),
    mut run: impl FnMut(usize) -> Result<T, Outcome<T>>,
) -> Vec<Outcome<T>> {
    let mut outcomes: Vec<Outcome<T>> = (0..count).map(|_| Outcome::Done(Vec::new())).collect();
    for _ in 0..rounds {
        for (i, outcome) in outcomes.iter_mut().enumerate() {
            let Outcome::Done(measures) = outcome else {
                continue;
            };
            progress(i);
            match run(i) {
                Ok(measure) => measures.push(measure),
                Err(other) => *outcome = other,
            }
        }
    }
    outcomes
}
