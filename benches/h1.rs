//! Criterion benchmarks of the HTTP/1.1 codec (`leaderproxy::h1`): parse and
//! rewrite of a typical request head, parse of a typical response head, and
//! the chunked decoder. For scale, the same request through a `HeaderMap` and
//! `proxy::headers::prepare_request` (what the hyper path does per request).
//!
//! ```text
//! cargo bench --bench h1
//! cargo bench --bench h1 -- --quick
//! ```

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leaderproxy::h1::{
    encode_request, encode_response, parse_request, parse_response, ChunkedDecoder, Decoded,
    ForwardOpts, Limits, Progress, RequestHead, ResponseHead, ResponseOpts, Version,
};

/// An etcd v3 put as curl sends it through a load balancer: ~400 bytes.
const REQUEST: &[u8] = b"POST /v3/kv/put HTTP/1.1\r\n\
Host: etcd.service.internal:2379\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Content-Type: application/json\r\n\
Content-Length: 38\r\n\
Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJyb290In0.c2ln\r\n\
X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n\
X-Forwarded-For: 203.0.113.9\r\n\
Connection: keep-alive\r\n\
Accept-Encoding: gzip, deflate\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
\r\n";

/// An etcd gateway answer.
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Access-Control-Allow-Headers: accept, content-type, authorization\r\n\
Access-Control-Allow-Methods: POST, GET, OPTIONS, PUT, DELETE\r\n\
Access-Control-Allow-Origin: *\r\n\
Content-Type: application/json\r\n\
Grpc-Metadata-Content-Type: application/grpc\r\n\
Date: Tue, 14 Apr 2026 10:00:00 GMT\r\n\
Content-Length: 157\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    assert!((350..=500).contains(&REQUEST.len()), "{}", REQUEST.len());
    let limits = Limits::default();
    let client: IpAddr = "192.0.2.7".parse().unwrap();
    let fwd = ForwardOpts {
        client_ip: client,
        tls: false,
        allow_upgrade: false,
    };
    let mut g = c.benchmark_group("h1");

    let mut head = RequestHead::default();
    g.throughput(Throughput::Bytes(REQUEST.len() as u64));
    g.bench_function("parse_request_400B", |b| {
        b.iter(|| {
            let r = parse_request(black_box(REQUEST), &limits, &mut head);
            assert_eq!(r, Ok(Progress::Complete(REQUEST.len())));
        })
    });

    let mut out = Vec::with_capacity(1024);
    g.bench_function("parse_and_rewrite_request_400B", |b| {
        b.iter(|| {
            let r = parse_request(black_box(REQUEST), &limits, &mut head);
            assert!(matches!(r, Ok(Progress::Complete(_))));
            out.clear();
            encode_request(&head, REQUEST, &fwd, &mut out);
            black_box(&out);
        })
    });

    // Today's hyper path for the same head: httparse into a HeaderMap, then
    // prepare_request (hyper's own parse and encode come on top of this).
    g.bench_function("headermap_prepare_request_400B", |b| {
        b.iter(|| {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            req.parse(black_box(REQUEST)).unwrap();
            let mut builder = http::Request::builder()
                .method(req.method.unwrap())
                .uri(req.path.unwrap());
            for h in req.headers.iter() {
                builder = builder.header(h.name, h.value);
            }
            let (mut parts, ()) = builder.body(()).unwrap().into_parts();
            leaderproxy::proxy::headers::prepare_request(&mut parts, client, false);
            black_box(parts);
        })
    });

    let mut resp = ResponseHead::default();
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("parse_response", |b| {
        b.iter(|| {
            let r = parse_response(black_box(RESPONSE), &limits, false, &mut resp);
            assert_eq!(r, Ok(Progress::Complete(RESPONSE.len())));
        })
    });
    let ro = ResponseOpts {
        client_version: Version::Http11,
        client_keep_alive: true,
        head_request: false,
        upgrade: false,
    };
    g.bench_function("parse_and_rewrite_response", |b| {
        b.iter(|| {
            let r = parse_response(black_box(RESPONSE), &limits, false, &mut resp);
            assert!(matches!(r, Ok(Progress::Complete(_))));
            out.clear();
            black_box(encode_response(&resp, RESPONSE, &ro, &mut out));
        })
    });

    // 16 KiB body in 1 KiB chunks.
    let mut chunked = Vec::new();
    for _ in 0..16 {
        leaderproxy::h1::framing::encode_chunk(&[b'x'; 1024], &mut chunked);
    }
    leaderproxy::h1::framing::encode_last_chunk(b"", &mut chunked);
    g.throughput(Throughput::Bytes(chunked.len() as u64));
    g.bench_function("chunked_decode_16KiB", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::default();
            let mut pos = 0;
            let mut total = 0;
            loop {
                let (n, ev) = d.decode(&chunked[pos..]).unwrap();
                pos += n;
                match ev {
                    Decoded::Data(r) => total += r.len(),
                    Decoded::End { .. } => break,
                    Decoded::NeedMore => unreachable!(),
                }
            }
            assert_eq!(total, 16 * 1024);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
