//! Bounded cardinality: which label sets of a family get a series of their own. Pure.
//!
//! A family has at most `max` series, `other` buckets included. A label set once admitted
//! stays admitted while the process lives (so a counter never moves between series). Of a
//! family with a `program` label, the last tenth of the places is kept for `other` buckets:
//! - a new label set is admitted while fewer than `max - reserve` are;
//! - past that, a counter's or gauge's sample is added to the same labels with
//!   `program="other"` (admitted while fewer than `max - 1` are), and once those are full too
//!   to the family's catch-all, every label `other` (the last place);
//! - an `_info` sample past the cap is dropped, not summed;
//! - a family without a `program` label (bounded by what it counts) drops what is past the cap.
//!
//! Each label set not exported under its own labels is counted once ([`Admission::folded`]):
//! for gauges and info, in the current scrape ([`Admission::new_scrape`] starts one); for
//! counters, since start (remembered by hash, at most [`FOLDED_MEMORY`] of them).

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash};

use super::exposition::Kind;

/// At most this many folded label sets are remembered per family for the count.
pub(crate) const FOLDED_MEMORY: usize = 100_000;

/// Where a sample goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placed {
    /// Its own series, or an `other` bucket: these labels.
    Series(Vec<String>),
    /// Past the cap and not summable: left out.
    Dropped,
}

/// The admitted label sets of one family.
#[derive(Debug)]
pub(crate) struct Admission {
    kind: Kind,
    max: usize,
    program: Option<usize>,
    width: usize,
    admitted: HashSet<Vec<String>>,
    folded: HashSet<u64>,
    hasher: std::hash::RandomState,
}

impl Admission {
    /// `labels` are the family's label names; `max` its cap (at least 1).
    pub(crate) fn new(kind: Kind, labels: &[&str], max: usize) -> Admission {
        Admission {
            kind,
            max: max.max(1),
            program: labels.iter().position(|l| *l == "program"),
            width: labels.len(),
            admitted: HashSet::new(),
            folded: HashSet::new(),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Starts a scrape: a gauge's or info's folded count is that of the current scrape.
    pub(crate) fn new_scrape(&mut self) {
        if self.kind != Kind::Counter {
            self.folded.clear();
        }
    }

    /// Label sets not exported under their own labels (see the module docs).
    pub(crate) fn folded(&self) -> usize {
        self.folded.len()
    }

    /// Where a sample with these label values goes.
    pub(crate) fn place(&mut self, labels: Vec<String>) -> Placed {
        if self.admitted.contains(&labels) {
            return Placed::Series(labels);
        }
        let reserve = match self.program {
            Some(_) if self.kind != Kind::Info => (self.max / 10).max(1),
            _ => 0,
        };
        let reserve = reserve.min(self.max - 1);
        if self.admitted.len() < self.max - reserve {
            self.admitted.insert(labels.clone());
            return Placed::Series(labels);
        }
        self.note_folded(&labels);
        let Some(program) = self.program.filter(|_| self.kind != Kind::Info) else {
            return Placed::Dropped;
        };
        let mut other = labels;
        other[program] = "other".to_string();
        if self.admitted.contains(&other) || self.admitted.len() + 1 < self.max {
            self.admitted.insert(other.clone());
            return Placed::Series(other);
        }
        let all = vec!["other".to_string(); self.width];
        self.admitted.insert(all.clone());
        Placed::Series(all)
    }

    fn note_folded(&mut self, labels: &[String]) {
        if self.folded.len() < FOLDED_MEMORY {
            let mut h = self.hasher.build_hasher();
            labels.hash(&mut h);
            self.folded.insert(std::hash::Hasher::finish(&h));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(program: &str, port: u32) -> Vec<String> {
        vec![program.to_string(), port.to_string()]
    }

    #[test]
    fn past_the_cap_samples_fold_into_other_and_the_family_stays_within_it() {
        let mut a = Admission::new(Kind::Gauge, &["program", "port"], 20);
        let mut series = HashSet::new();
        for port in 0..500 {
            match a.place(labels(&format!("p{port}"), port)) {
                Placed::Series(l) => {
                    series.insert(l);
                }
                Placed::Dropped => panic!("a gauge is summed, not dropped"),
            }
        }
        assert_eq!(
            series.len(),
            20,
            "at most max series, other buckets included"
        );
        assert_eq!(a.admitted.len(), 20);
        assert!(
            series.contains(&labels("other", 18)),
            "program other, port kept"
        );
        assert!(series.contains(&vec!["other".to_string(), "other".to_string()]));
        assert_eq!(a.folded(), 500 - 18);
        // Admitted sets stay admitted.
        assert_eq!(a.place(labels("p3", 3)), Placed::Series(labels("p3", 3)));
        a.new_scrape();
        assert_eq!(a.folded(), 0, "a gauge counts the folds of one scrape");
    }

    #[test]
    fn info_past_the_cap_is_dropped_and_counters_remember_their_folds() {
        let mut info = Admission::new(Kind::Info, &["program", "port"], 3);
        let placed: Vec<Placed> = (0..5).map(|p| info.place(labels("x", p))).collect();
        assert_eq!(placed.iter().filter(|p| **p == Placed::Dropped).count(), 2);
        let mut counter = Admission::new(Kind::Counter, &["program", "port"], 3);
        for p in 0..10 {
            counter.place(labels("x", p));
        }
        counter.new_scrape();
        assert_eq!(counter.folded(), 8, "since start: 2 admitted of 10");
        let mut unlabelled = Admission::new(Kind::Gauge, &["proto"], 2);
        assert_eq!(
            unlabelled.place(vec!["a".into()]),
            Placed::Series(vec!["a".into()])
        );
        unlabelled.place(vec!["b".into()]);
        assert_eq!(unlabelled.place(vec!["c".into()]), Placed::Dropped);
    }
}
