//! The monitor applying membership: a reload, a discovery answer, and the
//! reconcile both end in (nodes kept, added, removed or retiring). What to
//! do is decided by the pure code in [`crate::health::membership`]; this
//! file starts and stops the probe loops and logs.

use std::sync::Arc;

use super::Aggregator;
use crate::config::Config;
use crate::health::counter::Health;
use crate::health::leader::TermFloor;
use crate::health::membership::{self, Found, Held, Source};
use crate::health::node::Node;
use crate::routing::Backend;

impl Aggregator {
    /// A discovery source's answer (`None`: turned off), asked under
    /// config generation `gen`: dropped if a reload came since; else the
    /// source's set takes it ([`Held::answer`]) and, if that changed, the
    /// backends are reconciled.
    pub(super) fn discovered(&mut self, source: Source, gen: u64, found: Option<Vec<Found>>) {
        if gen != self.config_gen {
            tracing::debug!(
                source = source.label(),
                asked_under = gen,
                config_generation = self.config_gen,
                "discovery answer asked before a reload dropped; the next one counts"
            );
            return;
        }
        let held = &mut self.found[source.index()];
        let changed = match found {
            None => held.take().is_some(),
            Some(f) => held
                .get_or_insert_with(Held::default)
                .answer(f, self.cfg.discovery.remove_after),
        };
        if changed {
            self.reconcile(false);
        }
    }

    pub(super) fn reload(&mut self, cfg: Arc<Config>) -> Vec<String> {
        let notes = membership::restart_notes(&self.cfg, &cfg);
        let cfg = membership::applied(&self.cfg, &cfg);
        let probes_changed = membership::probes_changed(&self.cfg, &cfg);
        if cfg.leader.term_pointer != self.cfg.leader.term_pointer {
            // Terms from another pointer are another sequence.
            self.terms = TermFloor::default();
        }
        self.cfg = cfg.clone();
        self.config_gen += 1;

        if cfg.discovery.dns.is_none() {
            self.found[Source::Dns.index()] = None;
        }
        if cfg.discovery.members.is_none() {
            self.found[Source::Members.index()] = None;
        }
        self.reconcile(probes_changed);
        // Publish a new table even if routing did not change: the config is part of it.
        self.force_publish = true;
        notes
    }

    /// Brings the nodes in line with the backends wanted now — the static
    /// ones of the config in force plus every discovery source's last good
    /// set ([`membership::desired`]) — for reloads and discoveries alike.
    /// A backend whose name and address did not change keeps its node
    /// (health, claim, ejection) and its `Backend` (in-flight count, pooled
    /// connections); new ones start probing; removed ones leave the table
    /// and their in-flight requests finish on the `Arc` they hold. A
    /// discovered leader that discovery no longer lists stays, marked
    /// retiring, while it still claims leadership ([`Self::drop_retired`]).
    fn reconcile(&mut self, probes_changed: bool) {
        let cfg = self.cfg.clone();
        let sets = self.found.each_ref().map(|h| h.as_ref().map(Held::set));
        let w = membership::desired(&cfg.backends, &sets, &cfg.discovery);
        self.report_wanted(&w);
        let wanted = w.backends;
        let sources: Vec<&'static str> = wanted
            .iter()
            .map(|bc| membership::source_of(bc, &cfg.backends, &sets))
            .collect();
        let mut old: Vec<Node> = std::mem::take(&mut self.nodes);
        let mut renamed = Vec::new();
        for (bc, source) in wanted.iter().zip(sources) {
            if let Some(pos) = old.iter().position(|n| n.backend.same_as(bc)) {
                let mut n = old.remove(pos);
                if let Some(was) = n.backend.rename(&bc.name, &self.metrics) {
                    tracing::info!(backend = %bc.name, was = %was, url = %bc.url, "backend renamed; it keeps its health, claim and connections");
                    renamed.push(was);
                }
                n.backend.set_weight(bc.weight);
                if n.backend.set_placement(bc) {
                    tracing::info!(backend = %bc.name, zone = bc.zone.as_deref().unwrap_or("none"), priority = bc.priority, "backend zone or priority changed; it keeps its health and connections");
                }
                n.backend.set_tls(bc.tls.as_ref());
                if n.backend.pool.limit() != cfg.max_upstream_connections(bc) {
                    tracing::warn!(backend = %bc.name, "max_connections changed; a backend kept by a reload keeps its limit until a restart");
                }
                n.health.set_thresholds(cfg.health.rise, cfg.health.fall);
                n.source = source;
                if n.retiring {
                    tracing::info!(backend = %bc.name, "backend listed again by discovery; no longer retiring");
                    n.retiring = false;
                }
                if probes_changed {
                    self.spawn_probes(&mut n);
                }
                self.nodes.push(n);
            } else {
                let how = if source == "static" {
                    "reload"
                } else {
                    "discovery"
                };
                tracing::info!(backend = %bc.name, url = %bc.url, source, "backend added by {how}");
                let limit = cfg.max_upstream_connections(bc);
                let b = Arc::new(Backend::new(bc, &self.metrics, self.workers, limit));
                self.add_node(b, source);
            }
        }
        let leader = self.picture.as_ref().and_then(|p| p.leader);
        for mut n in old {
            let static_again = cfg.backends.iter().any(|b| n.backend.same_as(b));
            let leads = leader == Some(n.backend.id);
            if membership::keeps_retiring_leader(
                n.source,
                leads,
                n.claim.is_claiming(),
                static_again,
            ) {
                if !n.retiring {
                    tracing::warn!(backend = %n.backend.name(), "discovery no longer lists the leader; it stays while it leads");
                    n.retiring = true;
                }
                self.nodes.push(n);
                continue;
            }
            self.remove_node(n);
        }
        for was in renamed {
            self.forget_label(&was);
        }
        // Publish even if routing did not change: the backend list did.
        self.force_publish = true;
    }

    /// Logs the finds not used (once per change of the list) and the
    /// `discovery.max_backends` cap (counted every time it cuts, logged
    /// once per change of how many it leaves out).
    fn report_wanted(&mut self, w: &membership::Wanted) {
        if w.problems != self.last_problems {
            for p in &w.problems {
                tracing::warn!(problem = %p, "discovered address not used");
            }
            self.last_problems = w.problems.clone();
        }
        if w.capped > 0 {
            self.metrics.discovery_capped.inc();
        }
        if w.capped != self.last_capped {
            let max = self.cfg.discovery.max_backends;
            if w.capped > 0 {
                tracing::warn!(
                    left_out = w.capped,
                    max_backends = max,
                    "more discovered addresses than discovery.max_backends; the rest are left out"
                );
            } else {
                tracing::info!(
                    max_backends = max,
                    "discovered addresses within discovery.max_backends again"
                );
            }
            self.last_capped = w.capped;
        }
    }

    fn remove_node(&mut self, n: Node) {
        tracing::info!(backend = %n.backend.name(), source = n.source, "backend removed; its in-flight requests finish");
        self.forget_label(&n.backend.name());
        // Dropping the node aborts its probe loops.
    }

    /// Drops the metric label sets of `name` unless a node still carries it.
    fn forget_label(&self, name: &str) {
        if !self.nodes.iter().any(|m| m.backend.name().as_str() == name) {
            self.metrics.forget_backend(name);
        }
    }

    /// Removes retiring nodes that no longer claim leadership.
    pub(super) fn drop_retired(&mut self) {
        if !self.nodes.iter().any(|n| n.retiring) {
            return;
        }
        let (gone, keep): (Vec<Node>, Vec<Node>) =
            std::mem::take(&mut self.nodes).into_iter().partition(|n| {
                n.retiring && !(n.claim.is_claiming() && n.health.state() != Health::Down)
            });
        self.nodes = keep;
        for n in gone {
            tracing::info!(backend = %n.backend.name(), "retiring backend no longer leads");
            self.remove_node(n);
        }
        self.force_publish = true;
    }
}
