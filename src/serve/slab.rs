//! A worker's connections, addressed by the 64-bit token epoll hands back with each event.
//!
//! A token is a slot index (low 32 bits) and that slot's *generation* (high 32). Closing a
//! connection bumps its slot's generation, so an event for the closed connection that is still
//! in the same `epoll_wait` batch cannot reach a new connection that reused the slot: its token
//! no longer matches. Generation `u32::MAX` is never used, which keeps the tokens with that high
//! half — [`RESERVED`] among them — free for the worker's own descriptors (its eventfd bell).

/// A token no slot ever has: the worker registers its own eventfd with it.
pub const RESERVED: u64 = u64::MAX;

/// The generation a slot never reaches (see the module docs).
const RESERVED_GENERATION: u32 = u32::MAX;

/// Values addressed by token, with O(1) insert, lookup and removal, reusing freed slots.
pub struct Slab<T> {
    slots: Vec<Slot<T>>,
    /// Indexes of empty slots; the last one is the next to fill.
    free: Vec<u32>,
    len: usize,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab { slots: Vec::new(), free: Vec::new(), len: 0 }
    }
}

impl<T> Slab<T> {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The token the next [`Slab::insert`] will use: the worker registers the socket with epoll
    /// under it before the connection is stored.
    pub fn vacant_token(&mut self) -> u64 {
        let index = self.vacant_index();
        token(index, self.slots[index as usize].generation)
    }

    /// Stores `value` under [`Slab::vacant_token`]'s token, which it returns.
    pub fn insert(&mut self, value: T) -> u64 {
        let index = self.vacant_index();
        self.free.pop();
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.value.is_none());
        slot.value = Some(value);
        self.len += 1;
        token(index, slot.generation)
    }

    pub fn get_mut(&mut self, token: u64) -> Option<&mut T> {
        let slot = self.slots.get_mut((token & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != token >> 32 {
            return None; // a stale token: the slot was freed (and maybe reused) since
        }
        slot.value.as_mut()
    }

    /// Takes the value behind `token` out, and retires the token.
    pub fn remove(&mut self, token: u64) -> Option<T> {
        let index = (token & 0xffff_ffff) as u32;
        let slot = self.slots.get_mut(index as usize)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = next_generation(slot.generation);
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    /// Keeps the values for which `keep(token, value)` returns true; the others are removed and
    /// handed to `removed`.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut T) -> bool, mut removed: impl FnMut(T)) {
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            let t = token(index as u32, slot.generation);
            let Some(value) = slot.value.as_mut() else { continue };
            if !keep(t, value) {
                if let Some(value) = self.remove(t) {
                    removed(value);
                }
            }
        }
    }

    fn vacant_index(&mut self) -> u32 {
        if let Some(&index) = self.free.last() {
            return index;
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot { generation: 0, value: None });
        self.free.push(index);
        index
    }
}

fn next_generation(generation: u32) -> u32 {
    let next = generation.wrapping_add(1);
    if next == RESERVED_GENERATION {
        0
    } else {
        next
    }
}

fn token(index: u32, generation: u32) -> u64 {
    u64::from(generation) << 32 | u64::from(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacant_token_is_the_token_insert_uses() {
        let mut slab = Slab::default();
        let t = slab.vacant_token();
        assert_eq!(slab.vacant_token(), t, "asking twice does not consume a slot");
        assert_eq!(slab.insert("a"), t);
        assert_ne!(slab.vacant_token(), t);
        assert_eq!(slab.get_mut(t), Some(&mut "a"));
        assert_eq!(slab.len(), 1);
    }

    /// The bug generations exist for: a connection closes while an event for it is still in
    /// the `epoll_wait` batch, a new connection takes its slot, and the stale event must not
    /// reach the newcomer.
    #[test]
    fn a_stale_token_does_not_reach_the_slots_next_value() {
        let mut slab = Slab::default();
        let old = slab.insert("old");
        assert_eq!(slab.remove(old), Some("old"));
        let new = slab.insert("new");
        assert_eq!(new & 0xffff_ffff, old & 0xffff_ffff, "the slot is reused");
        assert_ne!(new, old);
        assert_eq!(slab.get_mut(old), None);
        assert_eq!(slab.remove(old), None, "a stale token removes nothing");
        assert_eq!(slab.get_mut(new), Some(&mut "new"));
        assert!(slab.get_mut(RESERVED).is_none());
    }

    /// After 2³² − 1 reuses the generation wraps to 0, skipping `u32::MAX`, so that no slot's
    /// token ever equals the worker's bell token.
    #[test]
    fn generations_wrap_around_the_reserved_one() {
        assert_eq!(next_generation(0), 1);
        assert_eq!(next_generation(u32::MAX - 2), u32::MAX - 1);
        assert_eq!(next_generation(u32::MAX - 1), 0);
        let mut slab = Slab::default();
        let t = slab.insert(1);
        slab.slots[0].generation = u32::MAX - 1;
        let t = t | u64::from(u32::MAX - 1) << 32;
        assert_eq!(slab.remove(t), Some(1));
        assert_eq!(slab.vacant_token(), 0, "generation 0 again, never u32::MAX");
    }

    #[test]
    fn retain_removes_what_it_does_not_keep_and_hands_it_over() {
        let mut slab = Slab::default();
        let tokens: Vec<u64> = (0..5).map(|i| slab.insert(i)).collect();
        let mut gone = Vec::new();
        slab.retain(|_, v| *v % 2 == 0, |v| gone.push(v));
        assert_eq!(gone, [1, 3]);
        assert_eq!(slab.len(), 3);
        assert!(slab.get_mut(tokens[1]).is_none());
        assert_eq!(slab.get_mut(tokens[4]), Some(&mut 4));
        // Freed slots are reused, last freed first.
        assert_eq!(slab.insert(9) & 0xffff_ffff, 3);
    }
}
