//! Support code that `#[vedart::main]` / `#[vedart::test]` expand to.

/// Held by a `#[vedart::test(seed = N)]` body: if the test fails (panics),
/// says which seed to replay, since the seed is what makes the failure repeat.
#[derive(Debug)]
pub struct SeedNote {
    test: &'static str,
    seed: u64,
}

impl SeedNote {
    /// Notes `test` running with `seed`.
    pub fn new(test: &'static str, seed: u64) -> SeedNote {
        SeedNote { test, seed }
    }
}

impl Drop for SeedNote {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed on the deterministic runtime with seed = {}: the same seed replays \
                 the same schedule and virtual times",
                self.test, self.seed
            );
        }
    }
}
