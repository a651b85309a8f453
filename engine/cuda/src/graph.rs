//! CUDA-graph capture and replay of a loaded program's steps: the bookkeeping, with no device.
//!
//! A captured graph bakes in every address its launches use: the arena's, the inputs', and
//! the tensor maps encoded from them. So a graph belongs to one loaded program (fixed shapes:
//! `run` refuses other ones) and is keyed by the arena's base and the inputs' addresses. A
//! training step that donates its state gets the same addresses back each step (the updated
//! state is written into the donated storage), so it is captured once and replayed; anything
//! that moves an address (a reallocated arena, a donation that could not reuse the storage
//! because the caller kept a handle, freshly allocated inputs at new addresses) invalidates
//! the graph. A program is captured only once the same key came twice in a row, so inputs
//! that move every run never pay for captures; the other runs queue their steps directly.
//! Inputs seen to move (a step's batch, seed and counter) are copied into a fixed staging
//! buffer before the steps (crate::staging), so the key of such programs repeats too.
//! Profiling (per-launch events) and GIDD_CUDA_GRAPHS=0 also run directly.

/// What a graph was captured for: every address its launches use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphKey {
    pub arena: u64,
    pub inputs: Vec<u64>,
}

/// How to run the steps this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Queue every step on the stream.
    Direct,
    /// Queue them under stream capture, instantiate the graph, launch it, keep it.
    Capture,
    /// Launch the kept graph.
    Replay,
}

/// A loaded program's graph state (the graph itself lives beside it, in the executor).
#[derive(Clone, Debug, Default)]
pub struct GraphBook {
    /// The key of the kept graph, if one is kept.
    captured: Option<GraphKey>,
    /// The previous run's key.
    last: Option<GraphKey>,
    pub captures: usize,
    pub replays: usize,
    pub direct: usize,
}

impl GraphBook {
    /// The action for a run with `key`; `enabled` is false while profiling or when graphs are
    /// switched off. After Capture the caller reports [`GraphBook::captured`] (or a failure).
    pub fn decide(&mut self, key: &GraphKey, enabled: bool) -> Action {
        let action = if !enabled {
            Action::Direct
        } else if self.captured.as_ref() == Some(key) {
            Action::Replay
        } else if self.last.as_ref() == Some(key) {
            Action::Capture
        } else {
            Action::Direct
        };
        if action != Action::Replay && self.captured.as_ref() != Some(key) {
            // a kept graph for other addresses is stale: the caller drops it
            self.captured = None;
        }
        self.last = Some(key.clone());
        match action {
            Action::Direct => self.direct += 1,
            Action::Capture => self.captures += 1,
            Action::Replay => self.replays += 1,
        }
        action
    }

    /// Whether a graph is kept (the caller drops its graph when this turns false).
    pub fn has_graph(&self) -> bool {
        self.captured.is_some()
    }

    /// The capture for `key` succeeded: later runs with it replay.
    pub fn captured(&mut self, key: GraphKey) {
        self.captured = Some(key);
    }

    /// Forget everything (the arena was reallocated, or a capture failed).
    pub fn invalidate(&mut self) {
        self.captured = None;
        self.last = None;
    }
}

/// Whether graphs are on: GIDD_CUDA_GRAPHS=0 switches them off.
pub fn graphs_enabled() -> bool {
    std::env::var("GIDD_CUDA_GRAPHS").as_deref() != Ok("0")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(arena: u64, inputs: &[u64]) -> GraphKey {
        GraphKey {
            arena,
            inputs: inputs.to_vec(),
        }
    }

    #[test]
    fn captured_once_then_replayed_while_the_addresses_hold() {
        let mut b = GraphBook::default();
        let k = key(1 << 20, &[4096, 8192]);
        assert_eq!(b.decide(&k, true), Action::Direct);
        assert_eq!(b.decide(&k, true), Action::Capture);
        b.captured(k.clone());
        for _ in 0..5 {
            assert_eq!(b.decide(&k, true), Action::Replay);
        }
        assert_eq!((b.direct, b.captures, b.replays), (1, 1, 5));
    }

    #[test]
    fn a_moved_address_invalidates_the_graph() {
        let mut b = GraphBook::default();
        let k = key(1 << 20, &[4096, 8192]);
        b.decide(&k, true);
        b.decide(&k, true);
        b.captured(k.clone());
        assert_eq!(b.decide(&k, true), Action::Replay);
        // a donation that could not reuse the storage: the state comes back elsewhere
        let moved = key(1 << 20, &[12288, 8192]);
        assert_eq!(b.decide(&moved, true), Action::Direct);
        assert!(!b.has_graph(), "the stale graph is dropped");
        assert_eq!(
            b.decide(&k, true),
            Action::Direct,
            "no graph for the old key either"
        );
        // a reallocated arena
        b.decide(&k, true);
        b.captured(k.clone());
        assert_eq!(b.decide(&key(2 << 20, &[4096, 8192]), true), Action::Direct);
        assert!(!b.has_graph());
    }

    #[test]
    fn inputs_that_move_every_run_are_never_captured() {
        let mut b = GraphBook::default();
        for i in 0..10 {
            assert_eq!(
                b.decide(&key(1 << 20, &[4096 * (i + 1)]), true),
                Action::Direct
            );
        }
        assert_eq!(b.captures, 0);
    }

    #[test]
    fn profiling_and_the_switch_run_directly_and_drop_the_graph() {
        let mut b = GraphBook::default();
        let k = key(1 << 20, &[4096]);
        b.decide(&k, true);
        b.decide(&k, true);
        b.captured(k.clone());
        assert_eq!(b.decide(&k, false), Action::Direct);
        assert!(b.has_graph(), "a disabled run keeps the graph for its key");
        assert_eq!(b.decide(&k, true), Action::Replay);
        b.invalidate();
        assert_eq!(b.decide(&k, true), Action::Direct);
    }

    /// A training-like program donating its state: with the caller handing over the last
    /// handle, every output aliased to a donated input takes its storage, so the next run's
    /// addresses (the key) are this run's.
    #[test]
    fn donated_state_keeps_the_key() {
        use gidd_engine::{DType, Graph, Program};
        let g = Graph::new();
        let w = g.input("w", &[4], DType::F32);
        let d = g.input("d", &[4], DType::F32);
        let p = Program::compile(&[w.sub(&d).unwrap()], &["w", "d"])
            .unwrap()
            .with_aliases(&[(0, 0)])
            .unwrap();
        let pl = crate::lower::plan(&p).unwrap();
        let mut b = GraphBook::default();
        let mut addr = vec![4096u64, 8192];
        let mut fresh = 1u64 << 30;
        for step in 0..4 {
            let sole = step != 2; // at step 2 the caller keeps a handle to the old state
            let action = b.decide(&key(1 << 20, &addr), true);
            if action == Action::Capture {
                b.captured(key(1 << 20, &addr));
            }
            let reuse = crate::executor::reuse_plan(&p, &pl, 1, &|_| sole);
            addr[0] = match reuse[0] {
                Some(i) => addr[i],
                None => {
                    fresh += 4096;
                    fresh
                }
            };
            let want = [
                Action::Direct,
                Action::Capture,
                Action::Replay,
                Action::Direct,
            ][step];
            assert_eq!(action, want, "step {step}");
        }
    }
}
