//! Which node hosts a meeting: a pure scoring of the registry's snapshot, and the Redis scripts
//! that make the claim atomic so that nodes racing for one meeting agree on one owner.
//!
//! The claim `<prefix>:meeting:<id>:node` holds the owner's node id with a TTL that the owner
//! refreshes while the meeting has a hub on it (see [`REFRESH`]). A claim stands while its owner
//! heartbeats and is not draining; otherwise the next join replaces it in the same script that
//! checked it, so two nodes can never both take a meeting over.
//!
//! The scripts read node keys that are not passed in `KEYS`: this needs one Redis (or a
//! Sentinel-managed primary), not Redis Cluster, which is what `docs/operations.md` prescribes.

use super::registry::{NodeInfo, NodeLoad};

/// Participants one media core carries with headroom (docs/operations.md, capacity plan:
/// about 0.35 % of a core per participant of an 8-person meeting, used to 60 %).
pub const PARTICIPANTS_PER_CORE: f64 = 170.0;
/// Forwarded bits per second one media core carries at that load (170 × 4.42 Mbit/s).
pub const BITS_PER_CORE: f64 = 750e6;
/// A node keeps a meeting that joins through it unless another node is lighter by more than
/// this (in cores): an even cluster then places without redirecting anyone, and the load
/// figures, a second old, are not trusted to finer than that.
pub const SELF_MARGIN: f64 = 0.1;

/// A node's load in "cores": the CPU it uses now, plus what its participants and forwarded
/// bitrate stand for. The CPU figure lags (a meeting placed a second ago has not yet sent
/// media) so participants count on their own; bitrate breaks ties between nodes whose CPU
/// readings are equal.
pub fn score(load: &NodeLoad) -> f64 {
    let cpu = if load.cpu.is_finite() {
        load.cpu.max(0.0)
    } else {
        0.0
    };
    cpu + load.participants as f64 / PARTICIPANTS_PER_CORE + load.bitrate_bps as f64 / BITS_PER_CORE
}

/// The node a new meeting should go to, from live nodes: the least loaded one that is not
/// draining, except that `me` keeps it when within [`SELF_MARGIN`] of the best. When every
/// node drains, `me` takes it (someone must host; the drain moves it again later). `None` only
/// when `me` is not among the nodes and no other node is eligible.
pub fn choose<'a>(me: &str, nodes: &'a [NodeInfo]) -> Option<&'a NodeInfo> {
    let eligible = nodes.iter().filter(|n| !n.draining);
    let best = eligible.min_by(|a, b| {
        score(&a.load)
            .total_cmp(&score(&b.load))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mine = nodes.iter().find(|n| n.id == me);
    match (best, mine) {
        (Some(best), Some(mine))
            if !mine.draining && score(&mine.load) <= score(&best.load) + SELF_MARGIN =>
        {
            Some(mine)
        }
        (Some(best), _) => Some(best),
        (None, mine) => mine,
    }
}

/// Returns the standing owner `{id, info}` of the meeting, or, when there is none (never
/// claimed, owner dead, owner draining), claims it for the candidate and returns that.
/// `nil` when the candidate itself is no longer alive: the caller looks again.
///
/// KEYS[1]: the claim. ARGV[1]: node key prefix, ARGV[2]: candidate id, ARGV[3]: claim TTL (ms).
pub const CLAIM: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner then
  local info = redis.call('GET', ARGV[1] .. owner)
  if info then
    local ok, node = pcall(cjson.decode, info)
    if ok and not node.draining then
      return {owner, info}
    end
  end
end
local info = redis.call('GET', ARGV[1] .. ARGV[2])
if not info then
  return false
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return {ARGV[2], info}
"#;

/// The standing owner `{id, info}` when it is alive and not draining, else `nil`.
/// KEYS[1]: the claim. ARGV[1]: node key prefix.
pub const OWNER: &str = r#"
local owner = redis.call('GET', KEYS[1])
if not owner then
  return false
end
local info = redis.call('GET', ARGV[1] .. owner)
if not info then
  return false
end
local ok, node = pcall(cjson.decode, info)
if ok and not node.draining then
  return {owner, info}
end
return false
"#;

/// Keeps this node's claims alive for the meetings it hosts: extends those it holds and takes
/// back those that vanished (a Redis restart), never one another node holds. Returns how many
/// it holds. KEYS: the claims. ARGV[1]: this node's id, ARGV[2]: claim TTL (ms).
pub const REFRESH: &str = r#"
local held = 0
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    held = held + 1
  elseif not owner then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
    held = held + 1
  end
end
return held
"#;

/// Drops claims this node holds (drain); another node's are left alone. Returns how many.
/// KEYS: the claims. ARGV[1]: this node's id.
pub const RELEASE: &str = r#"
local released = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, cpu: f64, participants: u64, draining: bool) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("http://{id}.example"),
            load: NodeLoad {
                cpu,
                participants,
                bitrate_bps: 0,
            },
            draining,
            heartbeat_ms: 0,
        }
    }

    #[test]
    fn the_least_loaded_node_gets_the_meeting() {
        let nodes = [
            node("a", 0.9, 150, false),
            node("b", 0.2, 30, false),
            node("c", 0.5, 80, false),
        ];
        assert_eq!(choose("a", &nodes).map(|n| n.id.as_str()), Some("b"));
        assert_eq!(choose("x", &nodes).map(|n| n.id.as_str()), Some("b"));
    }

    #[test]
    fn participants_count_before_their_cpu_shows() {
        // Equal CPU readings, but `a` was just given 100 participants.
        let nodes = [node("a", 0.1, 100, false), node("b", 0.1, 0, false)];
        assert_eq!(choose("a", &nodes).map(|n| n.id.as_str()), Some("b"));
    }

    #[test]
    fn the_receiving_node_keeps_a_meeting_when_within_the_margin() {
        let nodes = [node("a", 0.30, 10, false), node("b", 0.25, 10, false)];
        assert_eq!(choose("a", &nodes).map(|n| n.id.as_str()), Some("a"));
        let even = [node("a", 0.0, 0, false), node("b", 0.0, 0, false)];
        assert_eq!(choose("b", &even).map(|n| n.id.as_str()), Some("b"));
        // Ties between others are broken by id, so every node computes the same answer.
        assert_eq!(choose("x", &even).map(|n| n.id.as_str()), Some("a"));
    }

    #[test]
    fn a_draining_node_is_skipped_even_when_lightest() {
        let nodes = [node("a", 0.0, 0, true), node("b", 0.8, 120, false)];
        assert_eq!(choose("a", &nodes).map(|n| n.id.as_str()), Some("b"));
        assert_eq!(choose("b", &nodes).map(|n| n.id.as_str()), Some("b"));
    }

    #[test]
    fn when_every_node_drains_the_receiving_one_hosts() {
        let nodes = [node("a", 0.0, 0, true), node("b", 0.0, 0, true)];
        assert_eq!(choose("b", &nodes).map(|n| n.id.as_str()), Some("b"));
        assert!(choose("x", &nodes).is_none());
        assert!(choose("x", &[]).is_none());
    }

    #[test]
    fn nonsense_cpu_readings_do_not_win() {
        let nodes = [node("a", f64::NAN, 50, false), node("b", -3.0, 60, false)];
        // NaN and negative count as 0: the participants decide.
        assert_eq!(choose("x", &nodes).map(|n| n.id.as_str()), Some("a"));
    }
}
