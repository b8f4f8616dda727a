//! Property tests: no input makes any parser of untrusted bytes panic.
//! Arbitrary frames under every link type go through the whole pipeline
//! (decode, flow table, every rule and detector), and arbitrary payloads
//! reach the detectors inside well-formed TCP and UDP packets.

use p2pguard::decode::LinkType;
use p2pguard::detect::DetectConfig;
use p2pguard::detect::bencode;
use p2pguard::detect::rules::{RuleSet, builtin_sources};
use p2pguard::flow::FlowConfig;
use p2pguard::pipeline::Pipeline;
use p2pguard::synth::{self, L4};
use p2pguard::timestamp::Timestamp;
use proptest::prelude::*;

fn pipeline() -> Pipeline {
    let rules = RuleSet::load_with(builtin_sources(), &[]).unwrap();
    Pipeline::new(
        FlowConfig {
            max_flows: 64,
            ..FlowConfig::default()
        },
        DetectConfig::new(rules),
    )
}

const LINKS: [i32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec((0usize..LINKS.len(), prop::collection::vec(any::<u8>(), 0..200)), 1..40)) {
        let mut p = pipeline();
        let mut ended = 0;
        for (i, (link, data)) in frames.iter().enumerate() {
            p.process(Timestamp::from_secs(i as u64), LinkType(LINKS[*link]), data, data.len() as u32, &mut |_| ended += 1);
        }
        p.finish(&mut |_| ended += 1);
        prop_assert_eq!(p.stats().packets, frames.len() as u64);
    }

    #[test]
    fn arbitrary_payloads_reach_every_detector_without_panic(
        payloads in prop::collection::vec((any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 1..300)), 1..16)
    ) {
        let mut p = pipeline();
        for (i, (udp, reply, payload)) in payloads.iter().enumerate() {
            let l4 = if *udp { L4::Udp } else { synth::TCP_DATA };
            let (src, dst) = if *reply { ("10.0.0.2:6881", "10.0.0.1:40000") } else { ("10.0.0.1:40000", "10.0.0.2:6881") };
            let frame = synth::ethernet(src, dst, l4, payload);
            p.process(Timestamp::from_secs(i as u64), LinkType::ETHERNET, &frame, frame.len() as u32, &mut |_| {});
        }
        let mut flows = 0;
        p.finish(&mut |_| flows += 1);
        prop_assert!(flows <= 2);
    }

    #[test]
    fn bencode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok((value, used)) = bencode::parse(&bytes) {
            prop_assert!(used <= bytes.len());
            if let Some(d) = value.as_dict() {
                let _ = d.entries().count();
            }
        }
    }

    #[test]
    fn bencode_like_bytes_never_panic(bytes in "[dlie0-9:a-z]{0,80}") {
        let _ = bencode::parse(bytes.as_bytes());
    }
}
