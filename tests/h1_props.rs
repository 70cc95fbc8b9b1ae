//! Property tests of `leaderproxy::h1`: random bytes never panic; random valid
//! heads parse, re-encode and re-parse to the same request and framing, and
//! every prefix of one is "need more", never an error; the chunked decoder
//! yields the body whatever the chunking and however the bytes arrive.

use leaderproxy::h1::framing::{encode_chunk, encode_last_chunk};
use leaderproxy::h1::{
    encode_request, parse_request, parse_response, ChunkedDecoder, Decoded, ForwardOpts, Framing,
    Limits, Name, Progress, RequestHead, ResponseHead,
};
use proptest::prelude::*;

fn opts() -> ForwardOpts {
    ForwardOpts {
        client_ip: "198.51.100.4".parse().unwrap(),
        tls: false,
        allow_upgrade: false,
    }
}

/// Decodes a whole chunked body fed in the given piece sizes.
fn decode_in_pieces(input: &[u8], pieces: &[usize]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut d = ChunkedDecoder::default();
    let mut buf = Vec::new();
    let mut body = Vec::new();
    let mut fed = 0;
    let mut p = pieces.iter().cycle();
    loop {
        let (n, ev) = d.decode(&buf).map_err(|e| e.to_string())?;
        match ev {
            Decoded::Data(r) => body.extend_from_slice(&buf[r]),
            Decoded::End { trailers } => return Ok((body, buf[trailers].to_vec())),
            Decoded::NeedMore => {
                if fed == input.len() {
                    return Err("ran out".into());
                }
                let end = (fed + p.next().copied().unwrap_or(1).max(1)).min(input.len());
                buf.drain(..n);
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
                continue;
            }
        }
        buf.drain(..n);
    }
}

fn method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "X-ACL",
    ])
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,20}",
        1 => prop::sample::select(vec![
            "Accept", "User-Agent", "Keep-Alive", "Proxy-Connection", "Upgrade", "TE",
            "X-Forwarded-For", "X-Forwarded-Proto", "Trailer", "Expect", "Cookie",
        ]).prop_map(String::from),
    ]
    .prop_filter("framing and Host are chosen apart", |n| {
        !matches!(
            Name::of(n.as_bytes()),
            Name::Host | Name::ContentLength | Name::TransferEncoding | Name::Connection
        )
    })
}

#[derive(Debug, Clone)]
struct ValidHead {
    bytes: Vec<u8>,
    framing: Framing,
}

fn valid_head() -> impl Strategy<Value = ValidHead> {
    (
        method(),
        "(/[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,12}){1,4}(\\?[A-Za-z0-9=&%/?-]{0,20})?",
        any::<bool>(),
        prop::collection::vec(
            (
                field_name(),
                "[ \t]{0,2}",
                "[!-~]([ -~\t]{0,30}[!-~])?",
                "[ \t]{0,2}",
            ),
            0..12,
        ),
        0u8..3,
        0u64..100_000,
        prop::option::of(prop::sample::select(vec![
            "close",
            "keep-alive",
            "x-a, close",
            // Never hop-by-hop, listed or not; and a second line.
            "Host, X-Forwarded-For, content-length",
            "x-a\r\nConnection: x-forwarded-for, X-B",
        ])),
    )
        .prop_map(|(m, path, http11, fields, fr, len, conn)| {
            let mut s = format!("{m} {path} HTTP/1.{}\r\n", u8::from(http11));
            s.push_str("Host: db.example:2379\r\n");
            for (n, w1, v, w2) in &fields {
                s.push_str(&format!("{n}:{w1}{v}{w2}\r\n"));
            }
            if let Some(c) = conn {
                s.push_str(&format!("Connection: {c}\r\n"));
            }
            let framing = match fr {
                1 => {
                    s.push_str(&format!("Content-Length: {len}\r\n"));
                    Framing::Length(len)
                }
                2 if http11 => {
                    s.push_str("Transfer-Encoding: chunked\r\n");
                    Framing::Chunked
                }
                _ => Framing::None,
            };
            s.push_str("\r\n");
            ValidHead {
                bytes: s.into_bytes(),
                framing,
            }
        })
}

/// (lowercase name, value) of the fields a backend receives end to end.
fn e2e(head: &RequestHead, buf: &[u8]) -> Vec<(String, Vec<u8>)> {
    let listed: Vec<String> = head
        .connection
        .iter()
        .map(|c| String::from_utf8_lossy(c.get(buf)).to_ascii_lowercase())
        .collect();
    head.fields
        .iter()
        .filter(|f| {
            !f.kind.is_hop_by_hop()
                && !matches!(
                    f.kind,
                    Name::Host
                        | Name::ContentLength
                        | Name::XForwardedFor
                        | Name::XForwardedProto
                        | Name::XForwardedHost
                )
        })
        .map(|f| {
            (
                String::from_utf8_lossy(f.name.get(buf)).to_ascii_lowercase(),
                f.value.get(buf).to_vec(),
            )
        })
        .filter(|(n, _)| !listed.contains(n))
        .collect()
}

/// The X-Forwarded-For values of a head.
fn xff(head: &RequestHead, buf: &[u8]) -> Vec<Vec<u8>> {
    head.fields
        .iter()
        .filter(|f| f.kind == Name::XForwardedFor)
        .map(|f| f.value.get(buf).to_vec())
        .collect()
}

/// The one X-Forwarded-For value `head` must be forwarded with.
fn forwarded_for(head: &RequestHead, buf: &[u8]) -> Vec<u8> {
    let mut want = Vec::new();
    for v in xff(head, buf) {
        want.extend_from_slice(&v);
        want.extend_from_slice(b", ");
    }
    want.extend_from_slice(b"198.51.100.4");
    want
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), split in 1usize..8) {
        let mut h = RequestHead::default();
        let _ = parse_request(&bytes, &Limits::default(), &mut h);
        let small = Limits { max_headers: 3, max_head_bytes: 64, max_request_line: 16 };
        let _ = parse_request(&bytes, &small, &mut h);
        let mut r = ResponseHead::default();
        let _ = parse_response(&bytes, &Limits::default(), false, &mut r);
        let _ = parse_response(&bytes, &small, true, &mut r);
        let _ = decode_in_pieces(&bytes, &[split]);
    }

    #[test]
    fn head_like_bytes_never_panic(
        prefix in prop::sample::select(vec!["GET / HTTP/1.1\r\nHost: a\r\n", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.1 200 OK\r\n"]),
        tail in prop::collection::vec(prop::sample::select(b"\r\n :;,\t\0\x7fa0Zf-\"=".to_vec()), 0..80),
    ) {
        let mut bytes = prefix.as_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let mut h = RequestHead::default();
        if let Ok(Progress::Complete(n)) = parse_request(&bytes, &Limits::default(), &mut h) {
            let mut out = Vec::new();
            encode_request(&h, &bytes, &opts(), &mut out);
            let mut again = RequestHead::default();
            prop_assert_eq!(parse_request(&out, &Limits::default(), &mut again), Ok(Progress::Complete(out.len())));
            prop_assert_eq!(again.framing, h.framing);
            if h.framing == Framing::Chunked {
                let _ = decode_in_pieces(&bytes[n..], &[3]);
            }
        }
        let mut r = ResponseHead::default();
        let _ = parse_response(&bytes, &Limits::default(), false, &mut r);
    }

    #[test]
    fn valid_heads_round_trip(v in valid_head()) {
        let limits = Limits::default();
        let mut h = RequestHead::default();
        let got = parse_request(&v.bytes, &limits, &mut h);
        prop_assert_eq!(got, Ok(Progress::Complete(v.bytes.len())), "{}", String::from_utf8_lossy(&v.bytes));
        prop_assert_eq!(h.framing, v.framing);
        // Every prefix needs more; none is an error.
        for cut in [1, v.bytes.len() / 3, v.bytes.len() / 2, v.bytes.len() - 1] {
            let mut p = RequestHead::default();
            prop_assert_eq!(parse_request(&v.bytes[..cut], &limits, &mut p), Ok(Progress::NeedMore));
        }
        let mut out = Vec::new();
        encode_request(&h, &v.bytes, &opts(), &mut out);
        let mut again = RequestHead::default();
        prop_assert_eq!(parse_request(&out, &limits, &mut again), Ok(Progress::Complete(out.len())));
        prop_assert_eq!(again.framing, h.framing);
        prop_assert_eq!(again.method.get(&out), h.method.get(&v.bytes));
        prop_assert_eq!(again.target.get(&out), h.target.get(&v.bytes));
        prop_assert_eq!(again.host.unwrap().get(&out), h.host.unwrap().get(&v.bytes));
        prop_assert_eq!(again.te_trailers, h.te_trailers);
        prop_assert!(again.keep_alive);
        prop_assert_eq!(e2e(&again, &out), e2e(&h, &v.bytes));
        // The client's X-Forwarded-For chain, whatever `Connection` lists,
        // with the client's address appended.
        prop_assert_eq!(xff(&again, &out), vec![forwarded_for(&h, &v.bytes)]);
        // Encoding the re-parsed head again changes nothing but the
        // X-Forwarded-For chain, which grows by one hop.
        let mut twice = Vec::new();
        encode_request(&again, &out, &opts(), &mut twice);
        let mut third = RequestHead::default();
        prop_assert_eq!(parse_request(&twice, &limits, &mut third), Ok(Progress::Complete(twice.len())));
        prop_assert_eq!(e2e(&third, &twice), e2e(&h, &v.bytes));
    }

    #[test]
    fn chunked_any_chunking_yields_the_body(
        body in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 1..20),
        pieces in prop::collection::vec(1usize..300, 1..10),
        ext in any::<bool>(),
        trailers in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        let mut rest = &body[..];
        let mut s = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*s.next().unwrap()).min(rest.len());
            if ext {
                wire.extend_from_slice(format!("{n:X};ext=\"v\"\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
            } else {
                encode_chunk(&rest[..n], &mut wire);
            }
            rest = &rest[n..];
        }
        let t: &[u8] = if trailers { b"X-Sum: 1\r\nGrpc-Status: 0\r\n" } else { b"" };
        encode_last_chunk(t, &mut wire);
        let (got, got_t) = decode_in_pieces(&wire, &pieces).unwrap();
        prop_assert_eq!(got, body);
        prop_assert_eq!(got_t, t.to_vec());
    }
}
