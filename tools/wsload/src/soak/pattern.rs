//! Reproducible bytes: every session's data is a function of its seed and the offset in its
//! stream, so the echo is checked byte for byte without keeping a copy of what was sent.

/// The splitmix64 increment (2^64 / golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// splitmix64's output function: a bijection that spreads every input bit over the word.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small, fast, seedable generator (splitmix64) for the soak's choices. Not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// A generator of its own for a task, so tasks do not share one.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi] (inclusive); `lo` when the range is empty.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-uniform in [lo, hi]: as many values between 1 and 10 as between 10 and 100.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi <= lo || lo <= 0.0 {
            return lo;
        }
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
}

/// Writes the bytes at `offset..offset + out.len()` of the stream that `seed` names. Byte `p`
/// is byte `p % 8` of the word `mix(seed + (p / 8 + 1) * GOLDEN)`.
pub fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut p = offset;
    let mut i = 0;
    while i < out.len() {
        let word = mix(seed.wrapping_add((p / 8 + 1).wrapping_mul(GOLDEN))).to_le_bytes();
        let start = (p % 8) as usize;
        let n = (8 - start).min(out.len() - i);
        out[i..i + n].copy_from_slice(&word[start..start + n]);
        i += n;
        p += n as u64;
    }
}

/// Checks that `got` is the stream's bytes at `offset`; `scratch` is reused between calls.
/// On a difference, says where and what.
pub fn verify(seed: u64, offset: u64, got: &[u8], scratch: &mut Vec<u8>) -> Result<(), String> {
    scratch.clear();
    scratch.resize(got.len(), 0);
    fill(seed, offset, scratch);
    // A slice comparison is one memcmp, fast even in a debug build; the search is for errors.
    if got == &scratch[..] {
        return Ok(());
    }
    match got.iter().zip(scratch.iter()).position(|(a, b)| a != b) {
        None => Ok(()),
        Some(i) => Err(format!(
            "byte {} of the stream is {:#04x}, expected {:#04x}",
            offset + i as u64,
            got[i],
            scratch[i]
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_the_same_however_it_is_split() {
        let mut whole = vec![0u8; 1000];
        fill(42, 3, &mut whole);
        for cut in [0, 1, 5, 7, 8, 9, 500, 999, 1000] {
            let mut a = vec![0u8; cut];
            let mut b = vec![0u8; 1000 - cut];
            fill(42, 3, &mut a);
            fill(42, 3 + cut as u64, &mut b);
            a.extend_from_slice(&b);
            assert_eq!(a, whole, "cut at {cut}");
        }
    }

    #[test]
    fn seeds_give_different_streams() {
        let (mut a, mut b) = (vec![0u8; 64], vec![0u8; 64]);
        fill(1, 0, &mut a);
        fill(2, 0, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn verify_finds_the_first_wrong_byte() {
        let mut data = vec![0u8; 100];
        fill(7, 50, &mut data);
        let mut scratch = Vec::new();
        assert_eq!(verify(7, 50, &data, &mut scratch), Ok(()));
        data[10] ^= 1;
        let err = verify(7, 50, &data, &mut scratch).unwrap_err();
        assert!(err.starts_with("byte 60 of the stream"), "{err}");
        // The same bytes at another offset are wrong.
        data[10] ^= 1;
        assert!(verify(7, 51, &data, &mut scratch).is_err());
    }

    #[test]
    #[ignore = "a timing probe, run by hand: cargo test -p wsload -- --ignored speed"]
    fn speed() {
        let mut data = vec![0u8; 16 << 20];
        let t = std::time::Instant::now();
        fill(3, 0, &mut data);
        let filled = t.elapsed();
        let mut scratch = Vec::new();
        let t = std::time::Instant::now();
        verify(3, 0, &data, &mut scratch).unwrap();
        eprintln!("16 MiB: fill {filled:?}, verify {:?}", t.elapsed());
    }

    #[test]
    fn rng_ranges() {
        let mut rng = Rng::new(9);
        for _ in 0..10_000 {
            let x = rng.between(3, 5);
            assert!((3..=5).contains(&x));
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
            let l = rng.log_uniform(2.0, 300.0);
            assert!((2.0..=300.0 + 1e-9).contains(&l));
        }
        assert_eq!(rng.between(4, 4), 4);
    }
}
