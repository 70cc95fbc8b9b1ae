//! The `leaderproxy` binary's own output: `check` piped into a reader that
//! has gone away (`leaderproxy check … | head`) exits quietly instead of
//! panicking on the closed pipe (EPIPE; Rust ignores SIGPIPE); its summary
//! names what each `tcp` listener does.

use std::process::{Command, Stdio};

/// A config file that `check` accepts, in a fresh temporary directory.
fn valid_config() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("leaderproxy-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lp.yaml");
    std::fs::write(
        &path,
        "listen: 127.0.0.1:1\nbackends: [{name: a, url: 'http://127.0.0.1:2'}]\nleader: {path: /l, expect: {status: [200]}}\n",
    )
    .unwrap();
    path
}

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> Stdio {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let _enter = rt.enter();
    let (tx, rx) = tokio::net::unix::pipe::pipe().unwrap();
    drop(rx);
    Stdio::from(tx.into_blocking_fd().unwrap())
}

#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    let config = valid_config();
    for explain in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leaderproxy"));
        cmd.arg("check").arg("--config").arg(&config);
        if explain {
            cmd.arg("--explain");
        }
        let out = cmd
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "explain {explain}: {stderr}");
        assert!(
            out.status.success(),
            "explain {explain}: {:?} {stderr}",
            out.status
        );
    }
    let _ = std::fs::remove_dir_all(config.parent().unwrap());
}

#[test]
fn check_names_each_tcp_listener_by_what_it_does() {
    let dir = std::env::temp_dir().join(format!("leaderproxy-cli-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lp.yaml");
    std::fs::write(
        &path,
        "preset: redis-sentinel\nbackends: [{name: a, url: 'http://127.0.0.1:2', tcp: '127.0.0.1:3'}]\n\
         tcp:\n  - { listen: 127.0.0.1:4, protocol: resp }\n  - { listen: 127.0.0.1:5, to: write }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_leaderproxy"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "  tcp:      127.0.0.1:4 resp (reads to the replicas, writes to the primary)\n"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("  tcp:      127.0.0.1:5 to write\n"),
        "{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
