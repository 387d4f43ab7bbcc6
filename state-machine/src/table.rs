//! [`KeyedVec`]: items in insertion order, addressed by position, found by key.
//!
//! Deals, users and investments are each kept this way: a plain `Vec` (positions are the
//! compact `u32` ids the rest of the state uses, and iteration is in decision order) plus a
//! hash table of slots. A slot is the item's `u32` position and 32 bits of its key's hash, so
//! the index costs about nine bytes per item, growing it never has to read the items again, and
//! the `Vec` grows by doubling on its own instead of being sized to the hash table's capacity
//! as a general-purpose ordered map does.

use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use hashbrown::HashTable;

/// The hasher of tables keyed by internal, sequential indexes (not chosen by clients).
pub(crate) type FixedHasher = foldhash::fast::FixedState;

/// The hasher of the tables keyed by client-chosen ids (deal, user and request ids), seeded once
/// per process by the host ([`set_hash_seed`]) so that nobody can compute colliding ids ahead
/// (hash flooding). The seed never changes what a replica decides: tables are only looked up,
/// never iterated, and positions come from the `Vec`s.
static KEY_HASHER: OnceLock<SeedableRandomState> = OnceLock::new();

/// Seeds the hash of client-chosen ids for the rest of the process; call it once, before any
/// state is built (the node does, with a random seed). Returns `false`, changing nothing, if the
/// hasher was already seeded or used. Without a call the seed is fixed (tests, tools).
pub fn set_hash_seed(seed: [u64; 2]) -> bool {
    if KEY_HASHER.get().is_some() {
        return false;
    }
    let shared: &'static SharedSeed = Box::leak(Box::new(SharedSeed::from_u64(seed[0])));
    KEY_HASHER
        .set(SeedableRandomState::with_seed(seed[1], shared))
        .is_ok()
}

fn key_hasher() -> &'static SeedableRandomState {
    KEY_HASHER.get_or_init(SeedableRandomState::fixed)
}

/// The hasher of other maps over client-chosen keys, with the process's seed.
pub(crate) type KeyHasher = SeedableRandomState;

/// A [`KeyHasher`] with the process's seed.
pub(crate) fn key_hash_builder() -> KeyHasher {
    key_hasher().clone()
}

/// Something with a key of its own.
pub(crate) trait Keyed {
    type Key: ?Sized + Hash + Eq;
    fn key(&self) -> &Self::Key;
}

impl Keyed for Box<str> {
    type Key = str;
    fn key(&self) -> &str {
        self
    }
}

/// Where a key is, or the hash to insert it under.
pub(crate) enum Lookup {
    Found(u32),
    Vacant(u32),
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    pos: u32,
    hash: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct KeyedVec<T> {
    items: Vec<T>,
    index: HashTable<Slot>,
}

impl<T> Default for KeyedVec<T> {
    fn default() -> KeyedVec<T> {
        KeyedVec {
            items: Vec::new(),
            index: HashTable::new(),
        }
    }
}

/// Two items share a key; only possible in decoded, corrupt data.
#[derive(Debug)]
pub(crate) struct DuplicateKey;

/// 32 bits of the key's hash: enough to place and tag an item in tables of up to 2^32 slots.
fn hash_of<K: ?Sized + Hash>(key: &K) -> u32 {
    (key_hasher().hash_one(key) >> 32) as u32
}

/// The table's 64-bit hash from the stored 32 bits: the low bits choose the bucket and the top
/// seven are the tag, and both come from the same 32 bits, so stored slots rehash exactly.
fn spread(hash: u32) -> u64 {
    (u64::from(hash) << 32) | u64::from(hash)
}

impl<T: Keyed> KeyedVec<T> {
    /// Builds the index over `items`, refusing duplicate keys.
    pub(crate) fn from_vec(items: Vec<T>) -> Result<KeyedVec<T>, DuplicateKey> {
        let mut table = KeyedVec {
            index: HashTable::with_capacity(items.len()),
            items: Vec::with_capacity(items.len()),
        };
        for item in items {
            match table.lookup(item.key()) {
                Lookup::Found(_) => return Err(DuplicateKey),
                Lookup::Vacant(hash) => {
                    table.insert_vacant(hash, item);
                }
            }
        }
        Ok(table)
    }

    pub(crate) fn lookup(&self, key: &T::Key) -> Lookup {
        let hash = hash_of(key);
        let items = &self.items;
        let found = self.index.find(spread(hash), |slot| {
            slot.hash == hash
                && items
                    .get(slot.pos as usize)
                    .is_some_and(|item| item.key() == key)
        });
        match found {
            Some(slot) => Lookup::Found(slot.pos),
            None => Lookup::Vacant(hash),
        }
    }

    /// Appends `item`, whose key [`KeyedVec::lookup`] just reported vacant under `hash`.
    pub(crate) fn insert_vacant(&mut self, hash: u32, item: T) -> u32 {
        let pos = self.items.len() as u32;
        self.items.push(item);
        self.index
            .insert_unique(spread(hash), Slot { pos, hash }, |slot| spread(slot.hash));
        pos
    }

    pub(crate) fn position(&self, key: &T::Key) -> Option<u32> {
        match self.lookup(key) {
            Lookup::Found(pos) => Some(pos),
            Lookup::Vacant(_) => None,
        }
    }

    pub(crate) fn get(&self, key: &T::Key) -> Option<&T> {
        self.position(key).and_then(|pos| self.at(pos))
    }

    pub(crate) fn get_mut(&mut self, key: &T::Key) -> Option<&mut T> {
        self.position(key).and_then(|pos| self.at_mut(pos))
    }

    /// Keeps the items for which `keep` (which may change them, but not their keys) returns
    /// true, in order, at new positions; returns the memory of the rest. Rebuilds the index.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&mut T) -> bool) {
        self.items.retain_mut(keep);
        self.items.shrink_to_fit();
        let mut index = HashTable::with_capacity(self.items.len());
        for (pos, item) in self.items.iter().enumerate() {
            let hash = hash_of(item.key());
            let slot = Slot {
                pos: pos as u32,
                hash,
            };
            index.insert_unique(spread(hash), slot, |slot| spread(slot.hash));
        }
        self.index = index;
    }
}

impl<T> KeyedVec<T> {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn at(&self, pos: u32) -> Option<&T> {
        self.items.get(pos as usize)
    }

    pub(crate) fn at_mut(&mut self, pos: u32) -> Option<&mut T> {
        self.items.get_mut(pos as usize)
    }

    /// Items in insertion order.
    pub(crate) fn items(&self) -> &[T] {
        &self.items
    }

    /// Items in insertion order, for changes that keep every key as it is.
    pub(crate) fn items_mut(&mut self) -> &mut [T] {
        &mut self.items
    }
}
