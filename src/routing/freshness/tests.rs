use super::*;

#[test]
fn a_follower_is_fresh_enough_when_its_known_position_reached_the_reads() {
    let at = |p| Need {
        min_position: Some(p),
        leader_only: false,
    };
    assert!(fresh_enough(Need::default(), None), "nothing needed");
    assert!(!fresh_enough(Need::LEADER, Some(99)), "only the leader");
    assert!(fresh_enough(at(5), Some(5)));
    assert!(!fresh_enough(at(5), Some(4)));
    assert!(!fresh_enough(at(5), None), "unknown is never fresh");
    assert!(at(5).wants_a_fresh_follower());
    assert!(!Need::default().wants_a_fresh_follower());
    let both = Need {
        leader_only: true,
        ..at(5)
    };
    assert!(!both.wants_a_fresh_follower() && !fresh_enough(both, Some(9)));
}

#[test]
fn need_takes_the_larger_position_and_a_live_leader_window() {
    let now = Instant::now();
    let later = Some(now + std::time::Duration::from_secs(5));
    assert!(Need::after(None, None, false, None).is_none());
    assert_eq!(
        Need::after(Some(9), Some(7), false, later),
        Need {
            min_position: Some(9),
            leader_only: true
        }
    );
    assert_eq!(
        Need::after(None, Some(11), false, Some(now)),
        Need {
            min_position: Some(11),
            leader_only: false
        }
    );
    assert!(Need::after(None, None, true, None).leader_only);
}

#[test]
fn a_read_outside_the_scope_goes_to_the_leader_only_when_positions_matter() {
    assert_eq!(
        read_need(false, false, || panic!("not asked")),
        ReadNeed::Nothing
    );
    assert_eq!(read_need(true, false, || false), ReadNeed::Leader);
    assert_eq!(read_need(false, true, || false), ReadNeed::Leader);
    assert_eq!(read_need(true, false, || true), ReadNeed::Session);
    assert_eq!(read_need(false, true, || true), ReadNeed::Nothing);
}

#[test]
fn a_position_that_went_down_is_cleared() {
    assert_eq!(kept_position(None, 5), Some(5));
    assert_eq!(kept_position(Some(5), 5), Some(5));
    assert_eq!(kept_position(Some(5), 7), Some(7));
    assert_eq!(kept_position(Some(5), 4), None);
}

#[test]
fn the_reference_is_this_rounds_leader_or_else_highest_healthy_answer() {
    let healthy = [true, true, false];
    let round = [(0, Some(10)), (1, Some(12)), (2, Some(99))];
    assert_eq!(reference(&round, Some(0), &healthy), Some(10));
    assert_eq!(reference(&round, None, &healthy), Some(12));
    let leader_failed = [(0, None), (1, Some(12))];
    assert_eq!(reference(&leader_failed, Some(0), &healthy), None);
    assert_eq!(reference(&[], None, &healthy), None);
}

#[test]
fn unknown_lag_is_lagging_under_max_lag() {
    assert_eq!(lag(Some(20), Some(5), Some(10)), (Some(15), true));
    assert_eq!(lag(Some(20), Some(15), Some(10)), (Some(5), false));
    assert_eq!(lag(None, Some(15), Some(10)), (None, true));
    assert_eq!(lag(Some(20), None, Some(10)), (None, true));
    assert_eq!(lag(None, None, None), (None, false));
}

#[test]
fn a_write_records_its_position_else_keeps_reads_on_the_leader() {
    assert_eq!(after_ack(Some(3), Some(5)), Some(5));
    assert_eq!(after_ack(Some(3), None), Some(3));
    assert_eq!(after_ack(None, None), None);
    assert!(probes_after_ack(None, true, true));
    assert!(!probes_after_ack(Some(1), true, true), "the answer had one");
    assert!(!probes_after_ack(None, false, true), "failed");
    assert!(!probes_after_ack(None, true, false), "no positions.probe");
    assert_eq!(recorded(Some(7), false, false), Recorded::At(7));
    assert_eq!(recorded(None, true, true), Recorded::UntilRound);
    assert_eq!(recorded(None, true, false), Recorded::ForWindow);
    assert_eq!(recorded(None, false, true), Recorded::Nothing);
    assert!(round_settles(Some(3), 3) && round_settles(Some(3), 4));
    assert!(!round_settles(Some(3), 2) && !round_settles(None, 9));
}
