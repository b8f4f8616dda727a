//! Flow table behaviour: direction, TCP teardown and reuse, timeouts by
//! class, eviction of the longest-idle flow.

use super::*;
use crate::decode::LinkType;
use crate::decode::decode;
use crate::synth::{self, L4};

fn packet(src: &str, dst: &str, l4: L4) -> Vec<u8> {
    synth::ethernet(src, dst, l4, b"")
}

/// Tracks a packet; a new flow gets the next id (0, 1, ...).
fn track(
    t: &mut FlowTable<()>,
    frame: &[u8],
    secs: u64,
    ended: &mut Vec<(u64, EndReason)>,
) -> Tracked {
    let p = decode(LinkType::ETHERNET, frame).unwrap();
    let id = t.stats().created;
    t.track(
        &p,
        frame.len() as u32,
        Timestamp::from_secs(secs),
        id,
        &mut |f, why| ended.push((f.id, why)),
    )
}

const SYN: L4 = L4::Tcp {
    flags: 0x02,
    seq: 0,
};
const SYN_ACK: L4 = L4::Tcp {
    flags: 0x12,
    seq: 0,
};
const ACK: L4 = L4::Tcp {
    flags: 0x10,
    seq: 1,
};
const FIN: L4 = L4::Tcp {
    flags: 0x11,
    seq: 1,
};
const RST: L4 = L4::Tcp {
    flags: 0x04,
    seq: 1,
};

#[test]
fn both_directions_share_a_flow_and_the_first_sender_originates() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let a = track(
        &mut t,
        &packet("10.0.0.9:40000", "10.0.0.1:6881", SYN),
        1,
        &mut ended,
    );
    let b = track(
        &mut t,
        &packet("10.0.0.1:6881", "10.0.0.9:40000", SYN_ACK),
        1,
        &mut ended,
    );
    assert!(a.is_new && !b.is_new);
    assert_eq!(a.flow, b.flow);
    assert_eq!(
        (a.direction, b.direction),
        (Direction::Originator, Direction::Responder)
    );
    let f = t.get(a.flow);
    assert_eq!(f.originator().to_string(), "10.0.0.9:40000");
    assert_eq!(f.packets, [1, 1]);
    assert_eq!(t.len(), 1);
}

#[test]
fn a_syn_ack_seen_first_makes_its_receiver_the_originator() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let a = track(
        &mut t,
        &packet("10.0.0.1:6881", "10.0.0.9:40000", SYN_ACK),
        1,
        &mut ended,
    );
    assert_eq!(a.direction, Direction::Responder);
    assert_eq!(t.get(a.flow).originator().to_string(), "10.0.0.9:40000");
}

#[test]
fn udp_flows_time_out_in_packet_time() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    track(
        &mut t,
        &packet("10.0.0.1:1", "10.0.0.2:2", L4::Udp),
        100,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.3:1", "10.0.0.2:2", L4::Udp),
        150,
        &mut ended,
    );
    t.expire(Timestamp::from_secs(160), &mut |f, why| {
        ended.push((f.id, why))
    });
    assert!(ended.is_empty());
    t.expire(Timestamp::from_secs(161), &mut |f, why| {
        ended.push((f.id, why))
    });
    assert_eq!(ended, vec![(0, EndReason::IdleTimeout)]);
    assert_eq!(t.len(), 1);
    assert_eq!(t.stats().timed_out, 1);
}

#[test]
fn a_packet_after_the_timeout_opens_a_new_flow_even_before_expiry_runs() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let frame = packet("10.0.0.1:1", "10.0.0.2:2", L4::Udp);
    let a = track(&mut t, &frame, 100, &mut ended);
    let b = track(&mut t, &frame, 160, &mut ended);
    assert!(!b.is_new && ended.is_empty(), "60 s is within the timeout");
    assert_eq!(t.get(a.flow).id, 0);
    let c = track(&mut t, &frame, 221, &mut ended);
    assert!(c.is_new);
    assert_eq!(ended, vec![(0, EndReason::IdleTimeout)]);
    assert_eq!(t.get(c.flow).id, 1);
    assert_eq!((t.len(), t.stats().timed_out), (1, 1));
}

#[test]
fn tcp_timeouts_follow_the_connection_state() {
    let cfg = FlowConfig::default();
    let mut t: FlowTable<()> = FlowTable::new(cfg.clone());
    let mut ended = Vec::new();
    // Opening: a SYN with no answer.
    track(
        &mut t,
        &packet("10.0.0.1:1", "10.0.0.2:80", SYN),
        0,
        &mut ended,
    );
    // Established: both sides talked.
    track(
        &mut t,
        &packet("10.0.0.3:1", "10.0.0.2:80", SYN),
        0,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.2:80", "10.0.0.3:1", SYN_ACK),
        0,
        &mut ended,
    );
    // Closed: FIN both ways.
    track(
        &mut t,
        &packet("10.0.0.4:1", "10.0.0.2:80", ACK),
        0,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.4:1", "10.0.0.2:80", FIN),
        0,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.2:80", "10.0.0.4:1", FIN),
        0,
        &mut ended,
    );
    let mut at = |secs| {
        let mut out = Vec::new();
        t.expire(Timestamp::from_secs(secs), &mut |f, _| out.push(f.id));
        out
    };
    assert_eq!(at(16), vec![2], "closing times out first");
    assert_eq!(at(61), vec![0], "then the unanswered SYN");
    assert_eq!(at(300), Vec::<u64>::new());
    assert_eq!(at(301), vec![1], "established lasts longest");
}

#[test]
fn a_new_syn_after_a_close_starts_a_new_flow() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let first = track(
        &mut t,
        &packet("10.0.0.1:5000", "10.0.0.2:6881", ACK),
        1,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.2:6881", "10.0.0.1:5000", RST),
        2,
        &mut ended,
    );
    let second = track(
        &mut t,
        &packet("10.0.0.1:5000", "10.0.0.2:6881", SYN),
        3,
        &mut ended,
    );
    assert!(second.is_new);
    assert_eq!(ended, vec![(0, EndReason::Reused)]);
    assert_ne!(t.get(second.flow).id, 0);
    let _ = first;
}

#[test]
fn a_full_table_evicts_the_longest_idle_flow() {
    let cfg = FlowConfig {
        max_flows: 3,
        ..FlowConfig::default()
    };
    let mut t: FlowTable<()> = FlowTable::new(cfg);
    let mut ended = Vec::new();
    track(
        &mut t,
        &packet("10.0.0.1:1", "10.0.0.9:9", L4::Udp),
        1,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.2:1", "10.0.0.9:9", ACK),
        2,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.3:1", "10.0.0.9:9", L4::Udp),
        3,
        &mut ended,
    );
    // Flow 0 becomes the most recent; flow 1 (TCP) is now the longest idle.
    track(
        &mut t,
        &packet("10.0.0.1:1", "10.0.0.9:9", L4::Udp),
        4,
        &mut ended,
    );
    track(
        &mut t,
        &packet("10.0.0.4:1", "10.0.0.9:9", L4::Udp),
        5,
        &mut ended,
    );
    assert_eq!(ended, vec![(1, EndReason::Evicted)]);
    assert_eq!(t.len(), 3);
    assert_eq!(t.stats().evicted, 1);
    assert_eq!(t.stats().peak, 3);
}

#[test]
fn drain_ends_every_flow_in_creation_order() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    for i in 0..5 {
        let src = format!("10.0.0.{}:1", 5 - i);
        track(
            &mut t,
            &packet(&src, "10.0.0.9:9", L4::Udp),
            10 - i,
            &mut ended,
        );
    }
    let mut order = Vec::new();
    t.drain(&mut |f, why| order.push((f.id, why)));
    assert_eq!(
        order.iter().map(|o| o.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(order.iter().all(|o| o.1 == EndReason::EndOfInput));
    assert!(t.is_empty());
}

#[test]
fn many_flows_stay_consistent_under_churn() {
    // Insert, touch and expire thousands of flows; the table must never
    // lose or double-count one.
    let cfg = FlowConfig {
        max_flows: 500,
        ..FlowConfig::default()
    };
    let mut t: FlowTable<()> = FlowTable::new(cfg);
    let mut ended = 0u64;
    for i in 0..5000u64 {
        let src = format!(
            "10.{}.{}.{}:{}",
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255,
            1000 + i % 7
        );
        let l4 = if i % 3 == 0 { L4::Udp } else { ACK };
        let frame = packet(&src, "192.0.2.1:6881", l4);
        let p = decode(LinkType::ETHERNET, &frame).unwrap();
        t.track(&p, 60, Timestamp::from_secs(i / 10), i, &mut |_, _| {
            ended += 1
        });
        t.expire(Timestamp::from_secs(i / 10), &mut |_, _| ended += 1);
    }
    assert!(t.len() <= 500);
    assert_eq!(t.stats().created, ended + t.len() as u64);
}

#[test]
fn the_prefetch_hint_follows_the_index_layout() {
    // The hint is only useful if `index_ctrl` is where hashbrown keeps the
    // control bytes: values are stored downwards before them. Checked
    // across growth and removals, for every occupied bucket.
    // The index starts with room for INDEX_RESERVE flows: 60,000 packets
    // (two thirds of whose flows stay) make it grow past that.
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let mut buckets = t.index.num_buckets();
    let mut grew = 0;
    for i in 0..60_000u32 {
        let src = format!("10.{}.{}.{}:4000", i >> 16, (i >> 8) & 255, i & 255);
        track(&mut t, &packet(&src, "10.0.0.1:53", L4::Udp), 1, &mut ended);
        if i % 3 == 0 {
            let r = t.open_flows().next().map(|(_, r)| r).unwrap();
            t.take(r);
        }
        if t.index.num_buckets() != buckets {
            buckets = t.index.num_buckets();
            grew += 1;
        } else if i % 2048 != 0 {
            continue;
        }
        let slot = std::mem::size_of::<u32>();
        let mut occupied = 0;
        for b in 0..t.index.num_buckets() {
            if let Some(v) = t.index.get_bucket(b) {
                assert_eq!(v as *const u32 as usize + (b + 1) * slot, t.index_ctrl);
                occupied += 1;
            }
        }
        assert_eq!(occupied, t.len());
    }
    assert!(grew >= 1, "the index never grew");
}

#[test]
fn the_free_slot_hint_names_the_slots_new_flows_take() {
    let mut t: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut ended = Vec::new();
    let mut open = |t: &mut FlowTable<()>, i: u32| {
        let src = format!("10.0.{}.{}:4000", i >> 8, i & 255);
        track(t, &packet(&src, "10.0.0.1:53", L4::Udp), 1, &mut ended).flow
    };
    let mut flows: Vec<FlowRef> = (0..10).map(|i| open(&mut t, i)).collect();
    // Nothing freed: new slots in order.
    assert_eq!((t.next_slot(0), t.next_slot(1)), (10, 11));
    for r in [flows[2], flows[7], flows[4]] {
        t.take(r);
    }
    // The last freed first, then new slots.
    let expected: Vec<usize> = (0..5).map(|k| t.next_slot(k)).collect();
    assert_eq!(expected, vec![4, 7, 2, 10, 11]);
    flows.clear();
    for i in 100..105 {
        flows.push(open(&mut t, i));
    }
    let took: Vec<usize> = flows.iter().map(|r| r.0 as usize).collect();
    assert_eq!(took, expected);
    t.prefetch_free(0); // a hint: fetches and changes nothing
    t.prefetch_free(1000);
    assert_eq!(t.len(), 12);
}

#[test]
fn tracking_with_a_lookup_made_before_is_tracking() {
    let mut a: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let mut b: FlowTable<()> = FlowTable::new(FlowConfig::default());
    let (mut ended_a, mut ended_b) = (Vec::new(), Vec::new());
    let frames = [
        packet("10.0.0.9:40000", "10.0.0.1:6881", SYN),
        packet("10.0.0.1:6881", "10.0.0.9:40000", SYN_ACK),
        packet("[2001:db8::1]:5000", "[2001:db8::2]:6881", L4::Udp),
        packet("10.0.0.9:40000", "10.0.0.1:6881", RST),
        packet("10.0.0.9:40000", "10.0.0.1:6881", SYN),
    ];
    for (secs, frame) in frames.iter().enumerate() {
        let p = decode(LinkType::ETHERNET, frame).unwrap();
        let ts = Timestamp::from_secs(secs as u64);
        let id = secs as u64;
        let x = a.track(&p, 60, ts, id, &mut |f, why| ended_a.push((f.id, why)));
        let lookup = b.lookup(&p);
        b.prefetch_index(lookup.hash);
        b.prefetch_flow(lookup.hash);
        let y = b.track_looked_up(&p, &lookup, 60, ts, id, &mut |f, why| {
            ended_b.push((f.id, why))
        });
        assert_eq!(
            (x.flow, x.direction, x.is_new),
            (y.flow, y.direction, y.is_new)
        );
        assert_eq!(a.get(x.flow).packets, b.get(y.flow).packets);
    }
    assert_eq!(ended_a, ended_b);
    assert_eq!(ended_a, vec![(0, EndReason::Reused)]);
}
