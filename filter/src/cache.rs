//! A bounded cache of certificate assessments keyed by the certificate's SHA-256, so keep-alive
//! requests and reconnecting peers do not re-verify signatures.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::policy::{Assessment, Policy};

/// How long an assessment without a notAfter (an unparsable certificate) is kept, in seconds.
const UNPARSABLE_TTL_SECS: i64 = 300;

/// Entries kept per VM when nothing else is said.
pub const DEFAULT_CAPACITY: usize = 1024;

/// How often, at most, a full cache looks for expired entries before evicting the oldest
/// (seconds): the sweep visits every entry, and a stream of new certificates must not pay for
/// it on each insertion.
const SWEEP_INTERVAL_SECS: i64 = 60;

/// Assessments by certificate digest. Entries expire at the certificate's notAfter (an expired
/// entry found by a lookup is dropped); when full, expired entries go first (swept at most once
/// a minute), then the oldest.
#[derive(Debug)]
pub struct AssessmentCache {
    capacity: usize,
    entries: HashMap<[u8; 32], (Arc<Assessment>, i64)>,
    /// The keys of `entries`, oldest first: always the same set.
    order: VecDeque<[u8; 32]>,
    next_sweep: i64,
}

impl Default for AssessmentCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl AssessmentCache {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_sweep: i64::MIN,
        }
    }

    /// The live entry for `digest` at `now`, made by `policy`. An entry of another policy is
    /// dropped like an expired one: a stream that began before an update can insert one after
    /// it, and the new CAs, CRLs and rules must reach that certificate.
    pub fn get(&mut self, digest: &[u8; 32], now: i64, policy: &Policy) -> Option<Arc<Assessment>> {
        match self.entries.get(digest) {
            Some((assessment, expires)) if now <= *expires && assessment.is_from(policy) => {
                Some(Arc::clone(assessment))
            }
            Some(_) => {
                self.entries.remove(digest);
                // Rare (a certificate outliving its notAfter, or a policy update), so a scan is fine.
                self.order.retain(|d| d != digest);
                None
            }
            None => None,
        }
    }

    /// Stores an assessment made at `now`.
    pub fn insert(&mut self, assessment: Arc<Assessment>, now: i64) {
        let expires = assessment
            .not_after()
            .unwrap_or(now.saturating_add(UNPARSABLE_TTL_SECS));
        if expires < now {
            return; // Already expired: caching it would only waste a slot.
        }
        let digest = assessment.fingerprint;
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&digest) {
            self.make_room(now);
        }
        if self.entries.insert(digest, (assessment, expires)).is_none() {
            self.order.push_back(digest);
        }
        debug_assert_eq!(self.order.len(), self.entries.len());
    }

    fn make_room(&mut self, now: i64) {
        if now >= self.next_sweep {
            self.next_sweep = now.saturating_add(SWEEP_INTERVAL_SECS);
            self.entries.retain(|_, (_, expires)| *expires >= now);
            self.order.retain(|d| self.entries.contains_key(d));
        }
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// Forgets everything (a new configuration changes what an assessment says).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
        self.next_sweep = i64::MIN;
    }

    /// Number of entries, live or not yet swept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
