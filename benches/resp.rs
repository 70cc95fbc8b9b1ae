//! Criterion benchmarks of what a RESP listener (`tcp[].protocol: resp`)
//! does per command and per reply, outside any I/O: a client's pipeline of
//! 16 commands (`redis-benchmark -P 16` style) parsed and classified with the
//! built-in command table, and the replies walked the way the shared
//! upstream connection splits them between clients.
//!
//! ```text
//! cargo bench --bench resp
//! cargo bench --bench resp -- --quick
//! ```

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use leaderproxy::resp::command::{Class, Table};
use leaderproxy::resp::parse::{parse_command, reply_len, Limits, Progress};
use leaderproxy::resp::Span;

/// 8 GETs and 8 SETs with 3-byte values, as redis-benchmark sends them.
fn pipeline() -> Vec<u8> {
    let mut b = Vec::new();
    for i in 0..8 {
        b.extend_from_slice(format!("*2\r\n$3\r\nGET\r\n$16\r\nkey:{i:012}\r\n").as_bytes());
        b.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$16\r\nkey:{i:012}\r\n$3\r\nxxx\r\n").as_bytes(),
        );
    }
    b
}

/// Their replies: a bulk string for each GET, `+OK` for each SET.
fn replies() -> Vec<u8> {
    b"$3\r\nxxx\r\n+OK\r\n".repeat(8)
}

fn bench(c: &mut Criterion) {
    let lim = Limits::default();
    let table = Table::builtin();
    let batch = pipeline();
    let answers = replies();
    let mut g = c.benchmark_group("resp");

    g.throughput(Throughput::Elements(16));
    let mut args: Vec<Span> = Vec::with_capacity(8);
    g.bench_function("parse_16_commands", |b| {
        b.iter(|| {
            let mut at = 0;
            while let Ok(Progress::Complete(n)) = parse_command(&batch[at..], &lim, &mut args) {
                at += n;
            }
            black_box(at)
        })
    });

    let mut argv: Vec<&[u8]> = Vec::with_capacity(8);
    g.bench_function("parse_and_classify_16_commands", |b| {
        b.iter(|| {
            let (mut at, mut reads) = (0, 0);
            while let Ok(Progress::Complete(n)) = parse_command(&batch[at..], &lim, &mut args) {
                argv.clear();
                argv.extend(args.iter().map(|s| s.get(&batch[at..])));
                if table.classify(&argv) == Class::Read {
                    reads += 1;
                }
                at += n;
            }
            black_box(reads)
        })
    });

    g.bench_function("classify_only_16_commands", |b| {
        let parsed: Vec<Vec<&[u8]>> = {
            let mut out = Vec::new();
            let mut at = 0;
            while let Ok(Progress::Complete(n)) = parse_command(&batch[at..], &lim, &mut args) {
                out.push(args.iter().map(|s| s.get(&batch[at..])).collect());
                at += n;
            }
            out
        };
        b.iter(|| {
            for a in &parsed {
                black_box(table.classify(a));
            }
        })
    });

    g.bench_function("reply_walk_16_replies", |b| {
        b.iter(|| {
            let (mut at, mut k) = (0, 0);
            while let Ok(Progress::Complete(n)) = reply_len(&answers[at..], &lim) {
                at += n;
                k += 1;
            }
            black_box(k)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
