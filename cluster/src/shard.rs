//! The stable mapping of a channel to its data shard.
//!
//! `shard_for` must never change for a given `(app, channel, shards)`: every node computes it
//! independently and stored data depends on it. It is FNV-1a (64-bit) over the app id, a
//! separator byte that cannot occur in ids, and the channel id, reduced modulo the shard count.

use chatsdk_storage::GroupId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, b| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME))
}

/// The data shard (1..=shards) of a channel. `shards` of 0 is treated as 1.
pub fn shard_for(app: &str, channel: &str, shards: u32) -> GroupId {
    let h = fnv1a(
        fnv1a(fnv1a(FNV_OFFSET, app.as_bytes()), &[0xff]),
        channel.as_bytes(),
    );
    (h % u64::from(shards.max(1))) as GroupId + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_is_stable_and_in_range() {
        // Pinned values: changing the function would strand stored channels on the wrong shard.
        assert_eq!(
            shard_for("app", "general", 16),
            shard_for("app", "general", 16)
        );
        assert_eq!(shard_for("a", "bc", 1), 1);
        let pinned = [
            shard_for("app-1", "general", 16),
            shard_for("app-1", "random", 16),
            shard_for("app-2", "general", 64),
        ];
        assert_eq!(pinned, [2, 13, 45]);
        for i in 0..1000 {
            let s = shard_for("app", &format!("ch{i}"), 16);
            assert!((1..=16).contains(&s));
        }
    }

    #[test]
    fn channels_spread_over_shards() {
        let spread: std::collections::BTreeSet<GroupId> = (0..200)
            .map(|i| shard_for(&format!("a{i}"), "x", 64))
            .collect();
        assert!(spread.len() > 40, "poor spread: {}", spread.len());
    }
}
