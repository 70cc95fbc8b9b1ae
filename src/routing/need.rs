//! What a read must see: plain data the table picks by
//! (`RoutingTable::pick_fresh`). The consistency layer makes one
//! from a session's writes and the client's position (`Need::of`).

/// What a read must see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    /// Only backends whose probed position is at least this.
    pub min_position: Option<u64>,
    /// The session wrote, no position is known: only the leader.
    pub leader_only: bool,
}

impl Need {
    /// Only the leader.
    pub const LEADER: Need = Need {
        min_position: None,
        leader_only: true,
    };

    /// No requirement: any follower.
    pub fn is_none(&self) -> bool {
        self.min_position.is_none() && !self.leader_only
    }
}
