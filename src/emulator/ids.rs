//! Ids shaped like Dintero's: `<account id>.<base58>` for sessions and transactions.
//!
//! Clients must treat ids as opaque, but looking like the real thing keeps logs, journals and
//! demo screens realistic and catches code that assumes a shape (length limits, no dots).

/// Bitcoin's base58 alphabet, which Dintero's ids use (no `0`, `O`, `I`, `l`).
const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Random ids. Not seeded: ids only need to be unique, and a fault plan's seed must not depend
/// on how many ids were drawn.
#[derive(Debug, Default)]
pub struct IdGen {
    rng: fastrand::Rng,
}

impl IdGen {
    /// `<account>.<22 base58 characters>` (about 128 bits, like a UUID in base58).
    pub fn object(&mut self, account: &str) -> String {
        format!("{account}.{}", self.base58(22))
    }

    /// An opaque bearer token.
    pub fn token(&mut self) -> String {
        self.base58(43)
    }

    /// A terminal operation id.
    pub fn operation(&mut self) -> String {
        format!("op_{}", self.base58(16))
    }

    fn base58(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(BASE58[self.rng.usize(..BASE58.len())]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_dinteros() {
        let mut ids = IdGen::default();
        let a = ids.object("T12345678");
        let b = ids.object("T12345678");
        assert_ne!(a, b);
        let (aid, rest) = a.split_once('.').unwrap();
        assert_eq!(aid, "T12345678");
        assert_eq!(rest.len(), 22);
        assert!(rest.bytes().all(|c| BASE58.contains(&c)));
    }
}
