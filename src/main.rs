//! The `leaderproxy` command.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use leaderproxy::config;
use leaderproxy::config::TcpProtocol;

#[derive(Parser)]
#[command(
    name = "leaderproxy",
    version,
    about = "Leader-aware reverse proxy for single-leader clusters"
)]
struct Cli {
    /// Log level or filter (e.g. `info`, `debug`, `leaderproxy=debug`); RUST_LOG wins when set.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve traffic with the given config.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config: print a summary (exit 0) or every problem (exit 2).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the effective config instead of the summary: every key,
        /// the preset merged in and every default filled in, as YAML.
        #[arg(long)]
        explain: bool,
    },
}

fn init_logs(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

fn summary(cfg: &config::Config) -> String {
    let mut s = String::new();
    use std::fmt::Write as _;
    let listen: Vec<String> = cfg
        .listen
        .iter()
        .zip(&cfg.listen_proxy_protocol)
        .map(|(a, pp)| {
            if *pp {
                format!("{a} (PROXY protocol)")
            } else {
                a.to_string()
            }
        })
        .collect();
    let _ = writeln!(s, "{}: OK", cfg.source.display());
    if let Some(p) = &cfg.preset {
        let _ = writeln!(s, "  preset:   {p} (check --explain prints every key)");
    }
    if !listen.is_empty() {
        let _ = writeln!(s, "  listen:   {}", listen.join(", "));
    }
    for l in &cfg.tcp {
        let _ = match l.protocol {
            // A RESP listener has no `to`: each command goes by its class.
            TcpProtocol::Resp => writeln!(
                s,
                "  tcp:      {} resp (reads to the replicas, writes to the primary)",
                l.addr
            ),
            TcpProtocol::Raw => writeln!(s, "  tcp:      {} to {}", l.addr, l.to.as_str()),
        };
    }
    let _ = writeln!(s, "  admin:    {}", cfg.admin);
    let _ = writeln!(s, "  workers:  {}", cfg.workers);
    let _ = writeln!(s, "  backends: {}", cfg.backends.len());
    for b in &cfg.backends {
        let data = b
            .tcp
            .as_ref()
            .map(|t| format!(" tcp {t}"))
            .unwrap_or_default();
        let url = if b.has_url() {
            b.url.as_str()
        } else {
            "(no url)"
        };
        let _ = writeln!(s, "    - {} {url}{data} weight {}", b.name, b.weight);
    }
    if let Some(d) = &cfg.discovery.dns {
        let what = match &d.lookup {
            config::DnsLookup::Addresses { name, port } => format!("A/AAAA {name} port {port}"),
            config::DnsLookup::Srv { name } => format!("SRV {name}"),
        };
        let _ = writeln!(
            s,
            "  discovery dns:     {what} {:?} every {}",
            d.scheme,
            humantime::format_duration(d.interval)
        );
    }
    if let Some(m) = &cfg.discovery.members {
        let _ = writeln!(
            s,
            "  discovery members: {:?} member list every {}",
            m.kind,
            humantime::format_duration(m.interval)
        );
    }
    let _ = writeln!(
        s,
        "  leader:   {} every {} (timeout {})",
        asks(&cfg.leader.probe),
        humantime::format_duration(cfg.leader.probe.interval),
        humantime::format_duration(cfg.leader.probe.timeout)
    );
    let _ = writeln!(
        s,
        "  health:   {} every {} (timeout {}, rise {}, fall {})",
        asks(&cfg.health.probe),
        humantime::format_duration(cfg.health.probe.interval),
        humantime::format_duration(cfg.health.probe.timeout),
        cfg.health.rise,
        cfg.health.fall
    );
    let _ = writeln!(
        s,
        "  routes:   {} rules (no match => write)",
        cfg.routes.len()
    );
    let _ = writeln!(
        s,
        "  reads:    {:?}, fallback_to_leader {}",
        cfg.reads.policy, cfg.reads.fallback_to_leader
    );
    let _ = write!(
        s,
        "  writes:   hold {}, max_held {}",
        humantime::format_duration(cfg.writes.hold),
        cfg.writes.max_held
    );
    s
}

/// Writes `text` to `out`. A reader that went away (`check … | head`:
/// EPIPE, Rust ignores SIGPIPE) is not an error: the rest is dropped and the
/// command ends quietly with success. Any other write error: exit 1.
fn print_out(out: &mut impl Write, text: &str) -> Result<(), ExitCode> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "cannot write the output: {e}");
            Err(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { config, explain } => match config::load(&config) {
            Ok(cfg) => {
                let text = if explain {
                    config::explain_text(&cfg)
                } else {
                    summary(&cfg) + "\n"
                };
                if let Err(code) = print_out(&mut std::io::stdout().lock(), &text) {
                    return code;
                }
                for w in cfg.warnings() {
                    let _ = writeln!(std::io::stderr(), "WARNING: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "{e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run { config } => {
            init_logs(&cli.log_level, cli.log_format);
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            run(cfg)
        }
    }
}

fn run(cfg: config::Config) -> ExitCode {
    let running = match leaderproxy::app::start(cfg) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::from(1);
        }
    };
    tracing::info!(listen = ?running.listen, admin = %running.admin, "leaderproxy started");
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the signal runtime");
            return ExitCode::from(1);
        }
    };
    let control = running.control.clone();
    rt.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading config"); let _ = control.reload().await; }
            }
        }
    });
    running.shutdown();
    running.join();
    tracing::info!("leaderproxy stopped");
    ExitCode::SUCCESS
}

/// What a probe asks, for the `check` summary: `METHOD path`, or the native
/// kind at each backend's data address.
fn asks(p: &leaderproxy::config::ProbeConfig) -> String {
    match &p.native {
        Some(n) => format!("native {} at backends[].tcp", n.kind.name()),
        None => format!("{} {}", p.method, p.path),
    }
}
