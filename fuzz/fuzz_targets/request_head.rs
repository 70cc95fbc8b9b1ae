//! Any bytes as a request head: no panic, and an accepted head re-encodes
//! to a head that parses, with the same framing, method and target, and
//! re-encodes again to the same bytes but one more `X-Forwarded-For` hop.
#![no_main]

use leaderproxy::h1::{encode_request, parse_request, ForwardOpts, Limits, Progress, RequestHead};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut head = RequestHead::default();
    let Ok(Progress::Complete(n)) = parse_request(data, &limits, &mut head) else {
        return;
    };
    assert_eq!(n, head.head_len);
    assert!(n <= data.len());
    let o = ForwardOpts {
        client_ip: "192.0.2.7".parse().unwrap(),
        tls: false,
        allow_upgrade: data.len() % 2 == 0,
    };
    let mut out = Vec::new();
    encode_request(&head, data, &o, &mut out);
    let mut again = RequestHead::default();
    let r = parse_request(&out, &limits, &mut again);
    // The forwarded head may exceed the client's limits by the fields we add.
    let big = Limits {
        max_headers: limits.max_headers + 3,
        max_head_bytes: limits.max_head_bytes * 2,
        max_request_line: limits.max_request_line + 1,
    };
    let r = match r {
        Ok(p) => Ok(p),
        Err(_) => parse_request(&out, &big, &mut again),
    };
    assert_eq!(
        r,
        Ok(Progress::Complete(out.len())),
        "forwarded head refused: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(again.framing, head.framing);
    assert_eq!(again.method.get(&out), head.method.get(data));
    assert_eq!(again.is_head, head.is_head);
    assert_eq!(again.te_trailers, head.te_trailers);
    assert!(again.keep_alive);
    let host = head
        .authority
        .or(head.host)
        .map_or(&[][..], |h| h.get(data));
    assert_eq!(again.host.map(|h| h.get(&out)), Some(host));
});
