//! The deterministic random generator of the simulations: a schedule is a
//! pure function of its seed (tests) or of its script bytes (fuzz target).

/// xorshift64*: small, deterministic, no dependencies. A scripted generator
/// ([`Rng::scripted`], for the fuzz target) first returns the bytes of its
/// script, one per draw, then goes on as the generator of seed 0.
pub(crate) struct Rng {
    state: u64,
    script: Vec<u8>,
    pos: usize,
}

impl Rng {
    /// A generator for `seed`; any seed (0 included) gives a non-zero state.
    pub(crate) fn new(seed: u64) -> Self {
        Rng {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            script: Vec::new(),
            pos: 0,
        }
    }

    /// A generator whose first draws are the bytes of `script` (so every
    /// choice of a schedule is a byte the fuzzer controls: `below(n)` for
    /// n <= 256 and `chance` take one byte each).
    #[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
    pub(crate) fn scripted(script: &[u8]) -> Self {
        Rng {
            script: script.to_vec(),
            ..Rng::new(0)
        }
    }

    pub(crate) fn next(&mut self) -> u64 {
        if let Some(&b) = self.script.get(self.pos) {
            self.pos += 1;
            return u64::from(b);
        }
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-enough in `0..n` (0 when `n` is 0); always draws once.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with the given probability in percent.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
