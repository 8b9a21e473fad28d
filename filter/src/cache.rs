//! A bounded cache of certificate assessments keyed by the certificate's SHA-256, so keep-alive
//! requests and reconnecting peers do not re-verify signatures.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::policy::Assessment;

/// How long an assessment without a notAfter (an unparsable certificate) is kept, in seconds.
const UNPARSABLE_TTL_SECS: i64 = 300;

/// Entries kept per VM when nothing else is said.
pub const DEFAULT_CAPACITY: usize = 1024;

/// Assessments by certificate digest. Entries expire at the certificate's notAfter; when full,
/// expired entries go first, then the oldest.
#[derive(Debug)]
pub struct AssessmentCache {
    capacity: usize,
    entries: HashMap<[u8; 32], (Arc<Assessment>, i64)>,
    order: VecDeque<[u8; 32]>,
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
        }
    }

    /// The live entry for `digest` at `now`.
    pub fn get(&mut self, digest: &[u8; 32], now: i64) -> Option<Arc<Assessment>> {
        match self.entries.get(digest) {
            Some((assessment, expires)) if now <= *expires => Some(Arc::clone(assessment)),
            Some(_) => {
                self.entries.remove(digest);
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
    }

    fn make_room(&mut self, now: i64) {
        self.entries.retain(|_, (_, expires)| *expires >= now);
        self.order.retain(|d| self.entries.contains_key(d));
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
