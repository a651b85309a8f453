//! A fixed staging area for the inputs that arrive at new addresses every run (a training
//! step's batch, seed and step counter; a sampler's canvas), so that a program's CUDA graph
//! key (crate::graph) repeats and its graph is captured and replayed.
//!
//! A graph bakes in the addresses its launches read. An input uploaded fresh each run moves,
//! so without staging the key never repeats and such programs never get a graph. Here an
//! input seen at two different addresses (not donated: a donated input's storage becomes an
//! output and keeps its address) is *moving*, from then on: each run copies it (device to
//! device, queued on the stream before the steps or the graph) into its own place in one
//! staging buffer, and the launches read the copy there. The copy is outside the graph, so the
//! graph only sees the staging addresses. The buffer grows (and moves, invalidating a graph
//! once) only when another input starts moving.

use crate::plan::ALIGN;

/// The staging bookkeeping of one loaded program, with no device.
#[derive(Clone, Debug, Default)]
pub struct Staging {
    /// The previous run's input addresses.
    last: Vec<u64>,
    /// Per input: its offset in the staging buffer once it moved.
    at: Vec<Option<u64>>,
    /// Bytes the staging buffer needs.
    pub bytes: u64,
}

/// One run's staging: the copies to queue (staging offset, input index, bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Staged {
    pub copies: Vec<(u64, usize, u64)>,
}

impl Staging {
    /// Notes this run's input addresses and sizes (the first `donated` inputs are donated)
    /// and returns the inputs to copy into staging (offset, input, bytes).
    pub fn plan(&mut self, addr: &[u64], bytes: &[u64], donated: usize) -> Staged {
        if self.at.len() != addr.len() {
            self.at = vec![None; addr.len()];
        }
        for i in donated..addr.len() {
            let moved = self.last.get(i).is_some_and(|&a| a != addr[i]);
            if moved && self.at[i].is_none() && bytes[i] > 0 {
                self.at[i] = Some(self.bytes);
                self.bytes = (self.bytes + bytes[i]).next_multiple_of(ALIGN);
            }
        }
        self.last = addr.to_vec();
        let copies = (0..addr.len())
            .filter(|&i| i >= donated)
            .filter_map(|i| self.at[i].map(|o| (o, i, bytes[i])))
            .collect();
        Staged { copies }
    }

    /// The addresses the launches read: staged inputs at `base` + their offset.
    pub fn addresses(&self, addr: &[u64], staged: &Staged, base: u64) -> Vec<u64> {
        let mut a = addr.to_vec();
        for &(o, i, _) in &staged.copies {
            a[i] = base + o;
        }
        a
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::graph::{Action, GraphBook, GraphKey};

    /// A training step: state donated (its addresses hold), the batch, seed and step fresh
    /// each run. Without staging the key never repeats; with it the graph is captured on the
    /// third run (the batch moved on the second) and replayed from then on.
    #[test]
    fn fresh_batch_inputs_are_staged_and_the_graph_replays() {
        let arena = 1u64 << 30;
        let state = [4096u64, 8192];
        let sizes = [1024u64, 1024, 4 * 32 * 32, 8, 4];
        let (mut plain, mut staged) = (GraphBook::default(), GraphBook::default());
        let mut st = Staging::default();
        let mut stage_buf: Option<(u64, u64)> = None; // (address, bytes)
        let mut fresh = 1u64 << 40;
        let mut actions = vec![];
        for _ in 0..6 {
            let mut addr = state.to_vec();
            for _ in 0..3 {
                fresh += 1 << 20;
                addr.push(fresh);
            }
            let key = |inputs: Vec<u64>| GraphKey { arena, inputs };
            assert_eq!(plain.decide(&key(addr.clone()), true), Action::Direct);
            let s = st.plan(&addr, &sizes, 2);
            // the executor (re)allocates the staging buffer when it needs more bytes
            if stage_buf.is_none_or(|(_, b)| b < st.bytes) {
                stage_buf = Some((fresh + (1 << 30), st.bytes));
            }
            let base = stage_buf.unwrap().0;
            let run = st.addresses(&addr, &s, base);
            for &(o, i, b) in &s.copies {
                assert!(i >= 2, "a donated input was staged");
                assert_eq!(b, sizes[i]);
                assert_eq!(o % ALIGN, 0);
                assert!(o + b <= st.bytes);
            }
            let a = staged.decide(&key(run.clone()), true);
            if a == Action::Capture {
                staged.captured(key(run));
            }
            actions.push(a);
        }
        use Action::*;
        assert_eq!(actions, [Direct, Direct, Capture, Replay, Replay, Replay]);
        assert_eq!(plain.captures, 0);
        // the staged copies do not overlap
        let s = st.plan(&[4096, 8192, 1, 2, 3], &sizes, 2);
        let mut spans: Vec<(u64, u64)> = s.copies.iter().map(|&(o, _, b)| (o, o + b)).collect();
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
        assert_eq!(spans.len(), 3);
    }

    /// Inputs whose addresses hold are never copied; an input that starts moving later
    /// grows the buffer once.
    #[test]
    fn steady_inputs_are_not_copied() {
        let mut st = Staging::default();
        let sizes = [64u64, 64];
        for _ in 0..3 {
            assert!(st.plan(&[100, 200], &sizes, 0).copies.is_empty());
        }
        let s = st.plan(&[100, 300], &sizes, 0);
        assert_eq!(s.copies, [(0, 1, 64)]);
        assert_eq!(st.bytes, ALIGN);
        let s = st.plan(&[100, 400], &sizes, 0);
        assert_eq!(s.copies, [(0, 1, 64)], "still staged, same place");
        assert_eq!(st.addresses(&[100, 400], &s, 5000), [100, 5000]);
    }
}
